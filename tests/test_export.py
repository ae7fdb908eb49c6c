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

from conftest import run_py
from llm4msr_tf import export as ex
from llm4msr_tf.data.spec import DatasetSpec, FeatureSpec, ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

N_ROWS = 1200


def _write_tiny_ml100k(src: str, out: str) -> DatasetSpec:
    """A small prepared dataset (docs/interfaces.md layout) from the first real ml-100k rows."""
    users = {}
    with open(os.path.join(src, "u.user"), encoding="latin-1") as f:
        for line in f:
            uid, age, gender, _occ, _zip = line.rstrip("\n").split("|")
            users[uid] = (int(age), gender)
    rows = []
    with open(os.path.join(src, "u.data")) as f:
        for i, line in enumerate(f):
            if i >= N_ROWS:
                break
            u, it, r, _ = line.split("\t")
            age, gender = users[u]
            scen = 0 if age < 25 else (1 if age < 35 else 2)
            rows.append((u, it, scen, gender, int(int(r) > 3)))
    splits = {"train": rows[:800], "eval": rows[800:1000], "test": rows[1000:]}
    for split, part in splits.items():
        os.makedirs(os.path.join(out, split))
        path = os.path.join(out, split, "part-00000-of-00001.tfrecord.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for u, it, scen, g, y in part:
                feats = {
                    "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[u.encode()])),
                    "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[it.encode()])),
                    "scenario_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[scen])),
                    "gender": tf.train.Feature(bytes_list=tf.train.BytesList(value=[g.encode()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
                }
                w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    os.makedirs(os.path.join(out, "vocab"))
    vocab = {}
    for col, name in ((0, "user_id"), (1, "item_id"), (3, "gender")):
        vals = sorted({r[col] for r in splits["train"]})
        vocab[name] = len(vals)
        with open(os.path.join(out, "vocab", f"{name}.txt"), "w") as f:
            f.write("\n".join(vals) + "\n")
    spec = DatasetSpec(
        name="ml-100k-tiny", num_scenarios=3,
        scenarios=[ScenarioSpec(0, "age<25"), ScenarioSpec(1, "25-34"), ScenarioSpec(2, "35+")],
        features=[
            FeatureSpec("user_id", "categorical", "string", vocab["user_id"], "vocab/user_id.txt"),
            FeatureSpec("item_id", "categorical", "string", vocab["item_id"], "vocab/item_id.txt"),
            FeatureSpec("scenario_id", "categorical", "int64", 3),
            FeatureSpec("gender", "categorical", "string", vocab["gender"], "vocab/gender.txt"),
        ],
    )
    spec.save(out)
    return DatasetSpec.load(out)


class ToyModel(tf.keras.Model):
    """Follows the models contract: parsed features -> {"logit", "probability"} [B, 1]."""

    def __init__(self, spec):
        super().__init__()
        self.lookups = {f.name: tf.keras.layers.StringLookup(vocabulary=spec.vocab(f.name))
                        for f in spec.categorical if f.dtype == "string"}
        self.embs = {n: tf.keras.layers.Embedding(l.vocabulary_size(), 4) for n, l in self.lookups.items()}
        self.scen = tf.keras.layers.Embedding(spec.num_scenarios, 4)
        self.dense = tf.keras.layers.Dense(8, activation="relu")
        self.out = tf.keras.layers.Dense(1)

    def call(self, features, training=None):
        parts = [self.embs[n](self.lookups[n](features[n])) for n in sorted(self.lookups)]
        parts.append(self.scen(features["scenario_id"]))
        logit = self.out(self.dense(tf.concat(parts, axis=-1)))
        return {"logit": logit, "probability": tf.sigmoid(logit)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared_dataset):
    """(spec, keras model, exported SavedModel dir, eval examples) shared by the tests below."""
    root = tmp_path_factory.mktemp("export")
    spec = _write_tiny_ml100k(shared_dataset("ml-100k"), str(root / "data"))
    model = ToyModel(spec)
    warm = ex.read_examples(spec, "eval", 64)
    model(tf.io.parse_example(tf.constant(warm[:2]), ex.serving_feature_spec(spec)))
    export_dir = ex.export_versioned(model, spec, str(root / "serving"), "toy", version=7,
                                     warmup_examples=warm)
    return spec, model, export_dir, root


def test_versioned_layout_and_metadata(tiny):
    spec, _, export_dir, root = tiny
    assert export_dir == str(root / "serving" / "toy" / "7")
    assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
    # Only the numeric version dir remains: no temp dirs for TF Serving to trip over.
    assert os.listdir(root / "serving" / "toy") == ["7"]
    meta = ex.load_export_metadata(export_dir)
    assert meta["model_name"] == "toy" and meta["warmup_records"] == 6
    assert set(meta["signatures"]) == {"serving_default", "predict_raw"}
    with pytest.raises(UserInputError, match="already exists"):
        ex.export_versioned(tiny[1], spec, str(root / "serving"), "toy", version=7)


def test_parity_and_warmup_in_fresh_process(tiny):
    """Both signatures on real test examples match the Keras model (<= 1e-5), batch 1 and all."""
    spec, model, export_dir, root = tiny
    test_examples = ex.read_examples(spec, "test", 1000)
    assert len(test_examples) == N_ROWS - 1000
    feats = tf.io.parse_example(tf.constant(test_examples), ex.serving_feature_spec(spec))
    expected = model(feats, training=False)
    np.save(root / "expected_prob.npy", expected["probability"].numpy())
    np.save(root / "expected_logit.npy", expected["logit"].numpy())
    code = f"""
import json, numpy as np
import llm4msr_tf, tensorflow as tf
from llm4msr_tf import export as ex
from llm4msr_tf.data.spec import DatasetSpec
spec = DatasetSpec.load({str(root / 'data')!r})
loaded = tf.saved_model.load({export_dir!r})
exs = ex.read_examples(spec, 'test', 1000)
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
logs = ex.read_warmup({export_dir!r})
res = ex.replay_warmup(loaded, logs)
out['warmup'] = [(l.predict_log.request.model_spec.signature_name, r['probability'].shape[0]) for l, r in zip(logs, res)]
print('RESULT', json.dumps(out))
"""
    p = run_py(code)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    assert out["shape"] == [N_ROWS - 1000, 1]
    for k in ("ex_prob", "ex_logit", "one", "raw_prob", "raw_logit"):
        assert out[k] <= 1e-5, (k, out[k])
    assert sorted(map(tuple, out["warmup"])) == sorted(
        [(s, b) for b in (1, 8, 64) for s in ("serving_default", "predict_raw")])


def test_saved_model_cli_lists_both_signatures(tiny):
    export_dir = tiny[2]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    p = subprocess.run([cli, "show", "--dir", export_dir, "--all"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "signature_def['serving_default']" in p.stdout
    assert "signature_def['predict_raw']" in p.stdout
    assert "inputs['examples'] tensor_info:" in p.stdout
    for name in ("user_id", "item_id", "scenario_id", "gender"):
        assert f"inputs['{name}'] tensor_info:" in p.stdout
    assert "outputs['probability'] tensor_info:" in p.stdout
    assert "outputs['logit'] tensor_info:" in p.stdout


def test_bad_requests_give_clear_errors_and_keep_serving(tiny):
    spec, _, export_dir, _ = tiny
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
