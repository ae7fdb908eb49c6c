"""Feature mode end to end on small data: `llm4msr join-knowledge` (Beam) puts each user's vector
into the examples, training reads it from there, and the exported SavedModel takes it in the
request; scores equal a table-mode model with the same weights, unknown users included."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from llm4msr_tf.testing import write_toy_dataset, write_toy_knowledge

SKIP = 5  # users u0..u4 have no knowledge vector


def _examples(files):
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _user(ex):
    return ex.features.feature["user_id"].bytes_list.value[0].decode()


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature_mode")
    spec = write_toy_dataset(str(root / "data"))
    kb = write_toy_knowledge(str(root / "k"), skip_users=SKIP)
    from llm4msr_tf import cli

    # The real command line, in this process (TensorFlow and Beam are loaded once for the module).
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(["join-knowledge", "--data", str(root / "data"), "--knowledge", str(root / "k"),
                       "--out", str(root / "joined")])
    assert rc == 0, stdout.getvalue()
    return root, spec, kb, stdout.getvalue()


def test_join_puts_each_users_vector_into_every_example(joined):
    import tensorflow as tf

    from llm4msr_tf.data.spec import DatasetSpec

    root, spec, kb, stdout = joined
    out = DatasetSpec.load(str(root / "joined"))
    kf = out.knowledge_features["user_knowledge"]
    assert kf["dim"] == 24 and kf["key_feature"] == "user_id" and kf["default"] == "mean"
    users = kb.tables["user"]
    mean = users.vectors.mean(axis=0)
    for split in ("train", "eval", "test"):
        before = [tf.train.Example.FromString(r) for r in _examples(spec.tfrecord_files(split))]
        after = [tf.train.Example.FromString(r) for r in _examples(out.tfrecord_files(split))]
        unknown = sum(_user(e) in {f"u{i}" for i in range(SKIP)} for e in before)
        assert len(after) == len(before) == spec.splits[split]["rows"]
        assert 0 < unknown < len(before) and kf["unknown"][split] == unknown
        assert f"{split:<8} {len(before)} examples, {unknown} without user knowledge" in stdout
        for e in after:
            vec = np.asarray(e.features.feature["user_knowledge"].float_list.value, np.float32)
            want = users.get(_user(e))
            np.testing.assert_allclose(vec, mean if want is None else want, rtol=0, atol=1e-6 if want is None else 0)
        # Nothing else changed: the same examples, each once.
        strip = []
        for e in after:
            del e.features.feature["user_knowledge"]
            strip.append(e.SerializeToString(deterministic=True))
        assert sorted(strip) == sorted(e.SerializeToString(deterministic=True) for e in before)
    assert sorted(os.listdir(root / "joined" / "vocab")) == sorted(os.listdir(root / "data" / "vocab"))


def test_join_leaves_no_user_order_in_the_written_files(joined):
    """The CoGroupByKey emits each user's examples together; a training shuffle buffer smaller than
    the split would then see a few users at a time. After the join's hash shuffle, adjacent
    examples in each written file share a user about as often as in a random order."""
    import tensorflow as tf

    from llm4msr_tf.data.spec import DatasetSpec

    root, spec, _, _ = joined
    out = DatasetSpec.load(str(root / "joined"))
    users = [_user(tf.train.Example.FromString(r)) for r in _examples(spec.tfrecord_files("train"))]
    p = np.unique(users, return_counts=True)[1] / len(users)
    random_rate = float((p ** 2).sum())  # P(two random examples share a user)
    same = total = 0
    for f in out.tfrecord_files("train"):
        seq = [_user(tf.train.Example.FromString(r)) for r in _examples([f])]
        same += sum(a == b for a, b in zip(seq, seq[1:]))
        total += len(seq) - 1
    # Without the hash shuffle 96% of adjacent pairs share a user here; a random order ~random_rate (0.025).
    assert total > 1000 and same / total < 3 * random_rate, (same / total, random_rate)


@pytest.mark.slow
def test_train_in_feature_mode_and_serve_with_the_vector_in_the_request(joined):
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.models import ModelConfig, TrainConfig, build_model, load_model
    from llm4msr_tf.serving.client import with_user_knowledge
    from llm4msr_tf.training import run_training
    from llm4msr_tf.utils.io import UserInputError

    root, spec, kb, _ = joined
    model_cfg = ModelConfig(backbone="shared_bottom", user_knowledge_mode="feature", optimizer="legacy_adam")

    def train_cfg(data, out):
        return TrainConfig(data=data, knowledge=str(root / "k"), out=str(root / out), epochs=1, batch_size=256,
                           progress="none")

    # Data without the vectors: one clear error that says how to add them.
    with pytest.raises(UserInputError, match="join-knowledge"):
        run_training(train_cfg(str(root / "data"), "never"), model_cfg)
    assert not os.path.exists(root / "never")

    result = run_training(train_cfg(str(root / "joined"), "model"), model_cfg)
    assert 0.5 < result["test"]["overall"]["auc"] <= 1.0 and result["saved_model"] == "saved_model"
    served = tf.saved_model.load(str(root / "model" / "saved_model"))
    fn = served.signatures["serving_default"]

    # The request carries the vector: filled from a key-value lookup (a dict here), unknown users
    # get the mean, as in the joined training data.
    originals = _examples(spec.tfrecord_files("test"))
    users = kb.tables["user"]
    store = {k: users.vectors[i] for i, k in enumerate(users.keys)}
    requests = with_user_knowledge(originals, store, default=users.vectors.mean(axis=0))
    prob = fn(examples=tf.constant(requests))["probability"].numpy().reshape(-1)
    assert prob.shape == (len(originals),) and ((prob > 0) & (prob < 1)).all()
    with pytest.raises(Exception, match="user_knowledge"):
        fn(examples=tf.constant(originals[:4]))  # a request without the vector names the missing feature
    zeroed = with_user_knowledge(originals, {}, default=np.zeros(kb.dim))
    assert np.abs(fn(examples=tf.constant(zeroed))["probability"].numpy().reshape(-1) - prob).max() > 1e-4

    # Same weights in a table-mode model (user vectors inside it, mean default): same scores.
    trained = load_model(str(root / "model" / "model.keras"))
    table = build_model(DatasetSpec.load(str(root / "data")),
                        ModelConfig(backbone="shared_bottom", optimizer="legacy_adam"), knowledge=kb, compile=False)
    # The user-knowledge layers differ by design (a normalised table vs the normalisation the
    # request goes through, both fitted on the same vectors); every other weight is copied.
    skip = {id(w) for w in table.user_knowledge.weights}
    dst = [w for w in table.weights if id(w) not in skip]
    skip_src = {id(w) for w in trained.user_knowledge.weights}
    src = [w for w in trained.weights if id(w) not in skip_src]
    assert [tuple(w.shape) for w in dst] == [tuple(w.shape) for w in src]
    for d, w in zip(dst, src):
        d.assign(w)
    feats = tf.io.parse_example(tf.constant(originals), spec.feature_spec())
    want = table(feats, training=False)["probability"].numpy().reshape(-1)
    np.testing.assert_allclose(prob, want, rtol=0, atol=2e-6)
    metrics = json.load(open(root / "model" / "metrics.json"))
    assert metrics["test"]["overall"]["rows"] == len(originals)
