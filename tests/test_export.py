"""SavedModel export: both signatures match the Keras model in a fresh process, warmup replays,
saved_model_cli lists the signatures, bad requests fail clearly, versioned layout is atomic."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from conftest import prepared_ml100k, run_cli, run_py
from llm4msr_tf import serving as ex
from llm4msr_tf.data.spec import DatasetSpec
from llm4msr_tf.knowledge import load as load_knowledge
from llm4msr_tf.knowledge import write_knowledge
from llm4msr_tf.models import ModelConfig, build_model
from llm4msr_tf.utils.io import UserInputError

KDIM = 32


def half_known_knowledge(spec, out: str, seed: int = 0):
    """Seeded random knowledge for every scenario and the first half of the users only,
    so the other half (and any new user) must fall back to the default vector."""
    rng = np.random.default_rng(seed)
    users = spec.vocab("user_id")
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=KDIM)}
            for s in range(spec.num_scenarios)]
    recs += [{"key_type": "user", "key": u, "vector": rng.normal(size=KDIM)}
             for u in users[: len(users) // 2]]
    write_knowledge(out, recs, {"llm": "random-test"})
    return load_knowledge(out)


def small_config(**kw) -> ModelConfig:
    """An LLM4MSR MMoE small enough for tests."""
    base = dict(backbone="mmoe", embedding_dim=8, projection_dim=16, meta_generator_units=16,
                scenario_tower_units=(16,), per_scenario_metrics=False)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared_dataset):
    """(spec, LLM4MSR keras model, exported SavedModel dir, work dir) for the tests below."""
    root = tmp_path_factory.mktemp("export")
    spec = DatasetSpec.load(prepared_ml100k(tmp_path_factory, shared_dataset))
    kb = half_known_knowledge(spec, str(root / "knowledge"))
    tf.keras.utils.set_random_seed(7)  # reproducible weights
    model = build_model(spec, small_config(), knowledge=kb, compile=False)
    warm = ex.read_examples(spec, "eval", 64)
    export_dir = ex.export_versioned(model, spec, str(root / "serving"), "toy", version=7,
                                     warmup_examples=warm)
    # saved_model_cli starts TensorFlow (slow on a busy machine): run it while other tests run.
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    show = subprocess.Popen([cli, "show", "--dir", export_dir, "--all"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    yield spec, model, export_dir, root, show
    if show.poll() is None:
        show.kill()
        show.wait()


def test_versioned_layout_and_metadata(tiny):
    spec, _, export_dir, root, _ = tiny
    assert export_dir == str(root / "serving" / "toy" / "7")
    assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
    # Only the numeric version dir remains: no temp dirs for TF Serving to trip over.
    assert os.listdir(root / "serving" / "toy") == ["7"]
    meta = ex.load_export_metadata(export_dir)
    assert meta["model_name"] == "toy" and meta["warmup_records"] == 6
    assert set(meta["signatures"]) == {"serving_default", "predict_raw"}
    with pytest.raises(UserInputError, match="already exists"):
        ex.export_versioned(tiny[1], spec, str(root / "serving"), "toy", version=7)


N_TEST = 1_000_000  # more than the split holds: the whole ML-100K test split
NEW_USERS = ["never-seen-user-a", "never-seen-user-b"]


def test_graph_uses_only_ops_tf_serving_has(tiny):
    """TF Serving is C++ only: no Python-callback ops may hide in the signatures' graphs."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(tiny[2], "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    graph = sm.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for fn in graph.library.function for n in fn.node_def}
    assert "ParseExampleV2" in ops and ("LookupTableFindV2" in ops)
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}, sorted(ops)


def test_parity_warmup_and_unknown_users_in_fresh_process(tiny):
    """Both signatures on 3000 real test examples (and on one) match the Keras model (<= 1e-5);
    every warmup record runs through the signature it names; unknown users use the default
    knowledge vector."""
    spec, model, export_dir, root, _ = tiny
    test_examples = ex.read_examples(spec, "test", N_TEST)
    assert len(test_examples) == spec.splits["test"]["rows"]
    sids = tf.io.parse_example(tf.constant(test_examples), ex.serving_feature_spec(spec))["scenario_id"].numpy()
    assert set(sids.tolist()) == set(range(spec.num_scenarios))  # every scenario is checked
    assert json.load(open(os.path.join(export_dir, "assets.extra", "llm4msr_export.json")))["knowledge_folded"]
    feats = tf.io.parse_example(tf.constant(test_examples), ex.serving_feature_spec(spec))
    expected = model(feats, training=False)
    # Unknown users: the first test example with its user replaced by ids nobody has seen.
    one = {k: v[:1] for k, v in feats.items()}
    new = {k: tf.concat([v] * len(NEW_USERS), 0) for k, v in one.items()}
    new["user_id"] = tf.constant(NEW_USERS)
    np.save(root / "expected_prob.npy", expected["probability"].numpy())
    np.save(root / "expected_logit.npy", expected["logit"].numpy())
    np.save(root / "expected_new.npy", model(new, training=False)["probability"].numpy())
    known = spec.vocab("user_id")[0]
    lookup = model.user_knowledge
    assert lookup.rows(tf.constant(NEW_USERS)).numpy().tolist() == [0, 0]  # 0 = default row
    assert int(lookup.rows(tf.constant([known])).numpy()[0]) > 0
    code = f"""
import json, numpy as np
import llm4msr_tf, tensorflow as tf
from llm4msr_tf import serving as ex
from llm4msr_tf.data.spec import DatasetSpec
spec = DatasetSpec.load({spec.data_dir!r})
loaded = tf.saved_model.load({export_dir!r})
exs = ex.read_examples(spec, 'test', {N_TEST})
prob = np.load({str(root / 'expected_prob.npy')!r}); logit = np.load({str(root / 'expected_logit.npy')!r})
out = {{}}
a = loaded.signatures['serving_default'](examples=tf.constant(exs))
out['ex_prob'] = float(np.abs(a['probability'].numpy() - prob).max())
out['ex_logit'] = float(np.abs(a['logit'].numpy() - logit).max())
out['shape'] = a['probability'].shape.as_list()
one = loaded.signatures['serving_default'](examples=tf.constant(exs[:1]))
out['one'] = float(np.abs(one['probability'].numpy() - prob[:1]).max())
raw = tf.io.parse_example(tf.constant(exs), ex.serving_feature_spec(spec))
b = loaded.signatures['predict_raw'](**raw)
out['raw_prob'] = float(np.abs(b['probability'].numpy() - prob).max())
out['raw_logit'] = float(np.abs(b['logit'].numpy() - logit).max())
new = {{k: tf.concat([v[:1]] * 2, 0) for k, v in raw.items()}}
new['user_id'] = tf.constant({NEW_USERS!r})
n = loaded.signatures['predict_raw'](**new)['probability'].numpy()
out['new_users'] = n[:, 0].tolist()
out['new_vs_keras'] = float(np.abs(n - np.load({str(root / 'expected_new.npy')!r})).max())
logs = ex.read_warmup({export_dir!r})
res = ex.replay_warmup(loaded, logs)
out['warmup'] = [(l.predict_log.request.model_spec.signature_name, r['probability'].shape[0]) for l, r in zip(logs, res)]
print('RESULT', json.dumps(out))
"""
    p = run_py(code)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    assert out["shape"] == [len(test_examples), 1]
    for k in ("ex_prob", "ex_logit", "one", "raw_prob", "raw_logit", "new_vs_keras"):
        assert out[k] <= 1e-5, (k, out[k])
    # Two different unseen users get the same default knowledge (and OOV embedding): same score.
    a, b = out["new_users"]
    assert np.isfinite(a) and abs(a - b) <= 1e-6
    assert sorted(map(tuple, out["warmup"])) == sorted(
        [(s, b) for b in (1, 8, 64) for s in ("serving_default", "predict_raw")])


def test_saved_model_cli_lists_both_signatures(tiny):
    stdout, stderr = tiny[4].communicate(timeout=300)
    assert tiny[4].returncode == 0, stderr[-2000:]
    assert "signature_def['serving_default']" in stdout
    assert "signature_def['predict_raw']" in stdout
    assert "inputs['examples'] tensor_info:" in stdout
    for name in ("user_id", "item_id", "scenario_id", "gender", "occupation", "age"):
        assert f"inputs['{name}'] tensor_info:" in stdout
    assert "outputs['probability'] tensor_info:" in stdout
    assert "outputs['logit'] tensor_info:" in stdout


def test_bad_requests_give_clear_errors_and_keep_serving(tiny):
    spec, _, export_dir, _, _ = tiny
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures["serving_default"]
    good = ex.read_examples(spec, "test", 2)
    missing = tf.train.Example.FromString(good[0])
    del missing.features.feature["item_id"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="item_id"):
        fn(examples=tf.constant([good[1], missing.SerializeToString()]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not parse example input"):
        # (ASCII garbage: TF's Python wrapper fails to decode a non-UTF-8 echo of the value.)
        fn(examples=tf.constant([b"this is not a tf.Example"]))
    wrong_type = tf.train.Example.FromString(good[0])
    wrong_type.features.feature["scenario_id"].Clear()
    wrong_type.features.feature["scenario_id"].bytes_list.value.append(b"zero")
    with pytest.raises(tf.errors.InvalidArgumentError, match="scenario_id"):
        fn(examples=tf.constant([wrong_type.SerializeToString()]))
    # The loaded model still serves after the failed requests.
    assert fn(examples=tf.constant(good))["probability"].shape == (2, 1)


def test_models_config_and_batching_files(tmp_path):
    path = ex.write_models_config(str(tmp_path / "models.config"),
                                  [("llm4msr", "/models/llm4msr"), ("backbone", "/models/backbone")],
                                  version_policy="latest", num_versions=2)
    cfg = ex.parse_models_config(path)
    assert [m.name for m in cfg.model_config_list.config] == ["llm4msr", "backbone"]
    assert cfg.model_config_list.config[0].model_version_policy.latest.num_versions == 2
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'x' } }")
    with pytest.raises(UserInputError, match="base_path"):
        ex.parse_models_config(str(bad))
    bp = tmp_path / "batching_parameters.txt"
    bp.write_text(ex.batching_parameters_text())
    parsed = ex.parse_batching_parameters(str(bp))
    assert parsed["allowed_batch_sizes"] == [1, 8, 64, 256, 1024]
    bp.write_text("max_batch_size { value: 64 }\nmax_batch_sise { value: 3 }\n")
    with pytest.raises(UserInputError, match="line 2"):
        ex.parse_batching_parameters(str(bp))


def test_find_saved_model_and_next_version(tmp_path):
    for d in ("base/m/5", "base/m/12", "base/m/.12.tmp-x", "mdir/saved_model", "plain"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "saved_model.pb").write_bytes(b"")
    assert ex.find_saved_model(str(tmp_path / "plain")) == str(tmp_path / "plain")
    assert ex.find_saved_model(str(tmp_path / "base/m")) == str(tmp_path / "base/m/12")  # numeric max
    assert ex.find_saved_model(str(tmp_path / "mdir")) == str(tmp_path / "mdir/saved_model")
    assert ex.existing_versions(str(tmp_path / "base/m")) == [5, 12]  # temp dirs are not versions
    assert ex.next_version(str(tmp_path / "base/m")) > 12
    with pytest.raises(UserInputError, match="is not a SavedModel"):
        ex.find_saved_model(str(tmp_path))
    with pytest.raises(UserInputError, match="plain directory name"):
        ex.export_versioned(None, None, str(tmp_path), "a/b")
    # A serving dir with exactly one model resolves to that model's latest version.
    assert ex.find_saved_model(str(tmp_path / "base")) == str(tmp_path / "base/m/12")
