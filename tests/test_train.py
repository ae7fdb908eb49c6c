"""Training path: metrics equal sklearn's, the tf.data input, and `llm4msr train` end to end."""
import json
import os

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf import cli
from llm4msr_tf.data.spec import DatasetSpec
from llm4msr_tf.metrics import log_loss, roc_auc, scenario_metrics
from llm4msr_tf.models import load_model
from llm4msr_tf.testing import toy
from llm4msr_tf.training import make_dataset, predict


def test_metrics_equal_sklearn_overall_and_per_scenario():
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    p = np.round(rng.random(n), 2).astype(np.float32)  # rounding makes many ties
    p[:3] = [0.0, 1.0, 0.5]  # extremes exercise the clipping
    sid = rng.integers(0, 3, n)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-6)
    m = scenario_metrics(y, p, sid, 3, ["a", "b", "c"])
    for s in range(3):
        k = sid == s
        b = m["scenarios"][str(s)]
        assert b["auc"] == pytest.approx(roc_auc_score(y[k], p[k]), abs=1e-12)
        assert b["log_loss"] == pytest.approx(sk_log_loss(y[k], p[k]), rel=1e-6)
        assert b["rows"] == int(k.sum()) and b["positives"] == int(y[k].sum()) and b["name"] == "abc"[s]
    assert m["overall"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))  # one class: undefined, not a crash


def test_make_dataset_reads_every_row_parsed_per_batch(tmp_path):
    spec = toy.write_toy_dataset(str(tmp_path / "d"), rows={"train": 300, "eval": 50, "test": 50})
    ds = make_dataset(spec, "train", 64, training=True, shuffle_buffer=1000, seed=1)
    epochs = [[b for b in ds] for _ in range(2)]
    assert [b["label"].shape[0] for b in epochs[0]] == [64, 64, 64, 64, 44]
    assert set(epochs[0][0]) == set(spec.feature_spec())
    assert epochs[0][0]["user_id"].dtype == tf.string and epochs[0][0]["age"].dtype == tf.float32
    users = [np.concatenate([b["user_id"].numpy() for b in e]) for e in epochs]
    assert sorted(users[0]) == sorted(users[1]) and not np.array_equal(users[0], users[1])  # reshuffled
    ev = np.concatenate([b["user_id"].numpy() for b in make_dataset(spec, "eval", 16)])
    ev2 = np.concatenate([b["user_id"].numpy() for b in make_dataset(spec, "eval", 16)])
    np.testing.assert_array_equal(ev, ev2)  # eval order is deterministic


def _cli(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_train_cli_errors(tmp_path, capsys):
    spec = toy.write_toy_dataset(str(tmp_path / "d"), rows={"train": 20, "eval": 10, "test": 10})
    rc, _, err = _cli(capsys, "train", "--data", spec.data_dir, "--out", str(tmp_path / "m"), "--backbone", "bogus",
                      "--no-knowledge")
    assert rc == 2 and "unknown backbone 'bogus'" in err and "mmoe" in err
    rc, _, err = _cli(capsys, "train", "--data", spec.data_dir, "--out", str(tmp_path / "m"))
    assert rc == 2 and "--knowledge" in err and "--no-knowledge" in err
    rc, _, err = _cli(capsys, "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m"), "--no-knowledge")
    assert rc == 2 and "dataset.json" in err
    assert not os.path.exists(tmp_path / "m")  # nothing half-written


@pytest.mark.slow
def test_train_cli_end_to_end_on_prepared_data(tmp_path, capsys):
    data = str(tmp_path / "data")
    rc, _, err = _cli(capsys, "prepare", "--dataset", "synthetic", "--out", data, "--num-users", "40",
                      "--num-items", "30", "--interactions-per-user", "20", "--no-progress")
    assert rc == 0, err
    spec = DatasetSpec.load(data)
    toy.write_random_knowledge(str(tmp_path / "k"), spec, dim=16, drop_users=2)
    out = str(tmp_path / "model")
    # A zoo backbone from a ready config (AdaptDHM: routing centres are non-trainable state that
    # must reach the SavedModel), with typed flags overriding the file's params and embedding_dim.
    rc, stdout, err = _cli(capsys, "train", "--data", data, "--knowledge", str(tmp_path / "k"),
                           "--model-config", "synthetic/adaptdhm",
                           "--backbone-params", '{"hidden_units": [16], "num_clusters": 2}', "--out", out,
                           "--epochs", "2", "--batch-size", "128", "--embedding-dim", "4", "--projection-dim", "8",
                           "--progress", "none", "--seed", "1")
    assert rc == 0, err
    assert "overall" in stdout
    assert {"metrics.json", "config.json", "model.keras"} <= set(os.listdir(out))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"]["backbone"] == "adaptdhm" and config["train"]["epochs"] == 2
    assert config["model"]["backbone_params"] == {"hidden_units": [16], "num_clusters": 2}
    assert config["model"]["embedding_dim"] == 4 and config["model"]["learning_rate"] == 3e-3  # flag; file
    assert metrics["epochs_run"] == 2 and 1 <= metrics["best_epoch"] <= 2
    assert set(metrics["test"]["scenarios"]) == {str(s) for s in range(spec.num_scenarios)}
    assert "val_auc_s0" in metrics["history"] and "val_auc" in metrics["history"]
    assert metrics["knowledge_dim"] == 16 and metrics["use_knowledge"] is True
    # The reported test metrics are sklearn's on the saved model's test predictions.
    model = load_model(out)
    y, p, sid = predict(model, make_dataset(spec, "test", 256, cache=False))
    assert metrics["test"]["overall"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    for s, b in metrics["test"]["scenarios"].items():
        k = sid == int(s)
        assert b["auc"] == pytest.approx(roc_auc_score(y[k], p[k]), abs=1e-6)
        assert b["log_loss"] == pytest.approx(sk_log_loss(y[k], p[k]), rel=1e-5)
    # The exported serving SavedModel gives the Keras model's probabilities.
    if metrics.get("saved_model"):
        served = tf.saved_model.load(os.path.join(out, metrics["saved_model"]))
        raw = [r.numpy() for r in tf.data.TFRecordDataset(spec.tfrecord_files("test"), compression_type="GZIP").take(32)]
        got = served.signatures["serving_default"](examples=tf.constant(raw))["probability"].numpy()
        want = model(tf.io.parse_example(tf.constant(raw), spec.feature_spec()))["probability"].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        pytest.fail("no SavedModel exported although llm4msr_tf.serving.export exists")
