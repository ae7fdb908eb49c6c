"""Serving side: `llm4msr export` on a trained model dir, `llm4msr predict --local`, and the
REST / gRPC request builders checked by running what they encode through the SavedModel
(there is no tensorflow_model_server here, so no live server)."""
import base64
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from conftest import PROJECT_ROOT, prepared_ml100k, run_cli
from llm4msr_tf import serving as ex
from llm4msr_tf.cli import main as cli_main
from llm4msr_tf.config import to_dict
from llm4msr_tf.data.spec import DatasetSpec
from llm4msr_tf.knowledge import load as load_knowledge
from llm4msr_tf.knowledge import write_knowledge
from llm4msr_tf.models import ModelConfig, build_model, save_model
from llm4msr_tf.serving.client import (GrpcClient, RestClient, ServingError, make_client,
                                       parse_host_port)
from llm4msr_tf.utils.io import UserInputError, write_json

N_PRED = 2000


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_dataset):
    """A model dir in `llm4msr train`'s layout, exported by the CLI, plus Keras predictions."""
    root = tmp_path_factory.mktemp("serving")
    data = prepared_ml100k(tmp_path_factory, shared_dataset)
    spec = DatasetSpec.load(data)
    rng = np.random.default_rng(1)
    users = spec.vocab("user_id")
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=24)} for s in range(3)]
    recs += [{"key_type": "user", "key": u, "vector": rng.normal(size=24)} for u in users[::2]]
    write_knowledge(str(root / "k"), recs, {"llm": "random-test"})
    cfg = ModelConfig(backbone="shared_bottom", embedding_dim=8, projection_dim=16,
                      meta_generator_units=16, scenario_tower_units=(16,), per_scenario_metrics=False)
    model = build_model(spec, cfg, knowledge=load_knowledge(str(root / "k")), compile=False)
    mdir = root / "mdir"
    # The layout `llm4msr train --out MDIR` writes: model.keras + config.json naming the data.
    save_model(model, str(mdir))
    write_json(str(mdir / "config.json"), {"train": {"data": data}, "model": to_dict(cfg)})
    examples = ex.read_examples(spec, "test", N_PRED)
    feats = tf.io.parse_example(tf.constant(examples), ex.serving_feature_spec(spec))
    keras_prob = model(feats, training=False)["probability"].numpy()
    labels = tf.io.parse_example(tf.constant(examples), spec.feature_spec())["label"].numpy()
    sdir = root / "sdir"
    p = run_cli("export", "--model", str(mdir), "--serving-dir", str(sdir), "--model-name", "llm4msr",
                "--version", "3", "--warmup-examples", "16")
    assert p.returncode == 0, p.stderr[-3000:]
    # Score the split through the CLI in a background process while the in-process tests run.
    preds = root / "preds.jsonl"
    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    predict = subprocess.Popen(
        [exe, "predict", "--local", str(sdir / "llm4msr"), "--data", data, "--split", "test",
         "--limit", str(N_PRED), "--batch-size", "500", "--output", str(preds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)
    yield dict(spec=spec, sdir=sdir, export_dir=str(sdir / "llm4msr" / "3"), examples=examples,
               feats=feats, keras_prob=keras_prob, labels=labels, export_stdout=p.stdout,
               predict=predict, preds=preds)
    if predict.poll() is None:
        predict.kill()
        predict.wait()


def test_export_cli_writes_pusher_layout_and_models_config(served):
    sdir = served["sdir"]
    assert sorted(os.listdir(sdir)) == ["llm4msr", "models.config"]
    assert os.listdir(sdir / "llm4msr") == ["3"]
    assert "replayed OK" in served["export_stdout"]
    cfg = ex.parse_models_config(str(sdir / "models.config"))
    (m,) = cfg.model_config_list.config
    assert (m.name, m.base_path, m.model_version_policy.latest.num_versions) == ("llm4msr", "/models/llm4msr", 1)
    meta = ex.load_export_metadata(served["export_dir"])
    assert meta["config"]["model_name"] == "llm4msr" and meta["config"]["version"] == 3
    assert meta["warmup_records"] == 6  # batch sizes 1, 8, 16 (capped by 16 examples) x 2 signatures
    logs = ex.read_warmup(served["export_dir"])
    assert sorted(len(l.predict_log.request.inputs["examples"].string_val) for l in logs
                  if l.predict_log.request.model_spec.signature_name == "serving_default") == [1, 8, 16]


def test_predict_local_cli_matches_keras_and_sklearn(served):
    from sklearn.metrics import roc_auc_score

    stdout, stderr = served["predict"].communicate(timeout=600)
    assert served["predict"].returncode == 0, stderr[-3000:]
    rows = [json.loads(line) for line in open(served["preds"])]
    assert len(rows) == N_PRED
    prob = np.array([r["probability"] for r in rows], np.float32)
    assert np.abs(prob - served["keras_prob"][:, 0]).max() <= 1e-5
    assert [r["label"] for r in rows] == served["labels"].tolist()
    auc = roc_auc_score(served["labels"], prob)
    overall = next(line for line in stdout.splitlines() if line.split()[:1] == ["all"])
    assert overall.split()[1] == str(N_PRED)
    assert abs(float(overall.split()[3]) - auc) < 1e-4, (overall, auc)


def test_local_client_both_signatures(served):
    client = make_client(local=str(served["sdir"] / "llm4msr"))  # BASE/<name> -> latest version
    assert client.path == served["export_dir"]
    raw = {k: v.numpy() for k, v in served["feats"].items()}
    out = client.predict_raw(raw)
    assert out["probability"].shape == (N_PRED, 1)
    assert np.abs(out["probability"] - served["keras_prob"]).max() <= 1e-5
    one = client.predict_examples(served["examples"][:1])
    assert np.abs(one["probability"] - served["keras_prob"][:1]).max() <= 1e-5
    with pytest.raises(ServingError, match="item_id"):
        bad = tf.train.Example.FromString(served["examples"][0])
        del bad.features.feature["item_id"]
        client.predict_examples([bad.SerializeToString()])
    with pytest.raises(UserInputError, match="needs features"):
        client.predict_raw({"user_id": raw["user_id"]})


def test_rest_request_body_runs_through_the_signature(served):
    client = RestClient("http://tfs.example:8601/", model_name="llm4msr", version=3)
    assert client.url == "http://tfs.example:8601/v1/models/llm4msr/versions/3:predict"
    assert RestClient("localhost", "m").url == "http://localhost:8501/v1/models/m:predict"
    n = 64
    body = json.loads(json.dumps(client.build_request(serialized=served["examples"][:n])))
    assert body["signature_name"] == "serving_default"
    decoded = [base64.b64decode(x["b64"]) for x in body["inputs"]["examples"]]
    assert decoded == served["examples"][:n]
    loaded = tf.saved_model.load(served["export_dir"])
    out = loaded.signatures[body["signature_name"]](examples=tf.constant(decoded))
    assert np.abs(out["probability"].numpy() - served["keras_prob"][:n]).max() <= 1e-5

    raw = {k: v.numpy()[:n] for k, v in served["feats"].items()}
    body = json.loads(json.dumps(client.build_request(features=raw)))
    assert body["signature_name"] == "predict_raw"
    assert body["inputs"]["user_id"][0] == raw["user_id"][0].decode()
    assert isinstance(body["inputs"]["scenario_id"][0], int)
    assert isinstance(body["inputs"]["age"][0], float)
    fn = loaded.signatures["predict_raw"]
    specs = fn.structured_input_signature[1]
    kwargs = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in body["inputs"].items()}
    out = fn(**kwargs)
    assert np.abs(out["probability"].numpy() - served["keras_prob"][:n]).max() <= 1e-5
    # Responses: columnar ("outputs") and row ("predictions") forms; server errors surface.
    cols = {"outputs": {"probability": [[0.25], [0.5]], "logit": [[-1.0], [0.0]]}}
    rows = {"predictions": [{"probability": [0.25], "logit": [-1.0]}, {"probability": [0.5], "logit": [0.0]}]}
    for resp in (cols, rows):
        parsed = RestClient.parse_response(resp)
        assert parsed["probability"].shape == (2, 1) and parsed["logit"][0, 0] == -1.0
    with pytest.raises(ServingError, match="item_id"):
        RestClient.parse_response({"error": "Feature: item_id (data type: string) is required"})
    with pytest.raises(UserInputError, match="different batch sizes"):
        client.build_request(features={"user_id": ["a"], "item_id": ["b", "c"]})


def test_grpc_predict_request_proto_runs_through_the_signature(served):
    from tensorflow_serving.apis import predict_pb2

    client = GrpcClient("tfs.example:8600", model_name="llm4msr", version=3)
    n = 32
    req = predict_pb2.PredictRequest.FromString(
        client.build_request(serialized=served["examples"][:n]).SerializeToString())
    assert (req.model_spec.name, req.model_spec.signature_name, req.model_spec.version.value) == (
        "llm4msr", "serving_default", 3)
    t = req.inputs["examples"]
    assert t.dtype == tf.string.as_datatype_enum and [d.size for d in t.tensor_shape.dim] == [n]
    loaded = tf.saved_model.load(served["export_dir"])

    def run(r):
        fn = loaded.signatures[r.model_spec.signature_name]
        return fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in r.inputs.items()})

    assert np.abs(run(req)["probability"].numpy() - served["keras_prob"][:n]).max() <= 1e-5
    raw = {k: v.numpy()[:n].tolist() for k, v in served["feats"].items()}  # plain Python lists
    raw["user_id"] = [u.decode() for u in raw["user_id"]]
    req = client.build_request(features=raw)
    assert req.model_spec.signature_name == "predict_raw"
    assert req.inputs["scenario_id"].dtype == tf.int64.as_datatype_enum
    assert req.inputs["age"].dtype == tf.float32.as_datatype_enum
    out = run(req)
    assert np.abs(out["probability"].numpy() - served["keras_prob"][:n]).max() <= 1e-5
    resp = predict_pb2.PredictResponse()
    for k, v in out.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
    assert np.array_equal(GrpcClient.parse_response(resp)["probability"], out["probability"].numpy())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_and_bad_targets_are_clear_errors(served, capsys):
    port = _free_port()
    with pytest.raises(UserInputError, match="cannot reach TF Serving"):
        RestClient(f"127.0.0.1:{port}", timeout=5).predict_examples(served["examples"][:1])
    with pytest.raises(UserInputError, match="cannot reach TF Serving gRPC"):
        GrpcClient(f"127.0.0.1:{port}", timeout=5).predict_examples(served["examples"][:1])
    with pytest.raises(UserInputError, match="port 'x' is not a number"):
        parse_host_port("localhost:x", 8501)
    data = served["spec"].data_dir
    assert cli_main(["predict", "--data", data]) == 2
    assert "exactly one of --local PATH, --rest HOST:PORT, --grpc HOST:PORT" in capsys.readouterr().err
    assert cli_main(["export", "--model", str(served["sdir"]), "--serving-dir", str(served["sdir"])]) == 2
    assert "holds no model.keras" in capsys.readouterr().err
