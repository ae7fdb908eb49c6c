"""The TFX pipeline: a real LocalDagRunner run on tiny synthetic data, caching, blessing, compile.

The end-to-end test runs `llm4msr pipeline` twice in fresh processes and reads the results
back independently: ML Metadata (executions and their states), TFMA (one slice per scenario,
counts equal to the prepared test split, AUC / log loss equal to sklearn on the pushed model's
predictions) and the pushed SavedModel loaded in a new process (predictions equal to the
Trainer's in-memory Keras model on the same raw examples).
"""
import importlib.util
import json
import os
import re

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401  (Keras 2 before TensorFlow)
from conftest import run_cli, run_py
from llm4msr_tf.tfx import constants as C

S = 3  # the synthetic world has three scenarios
NODES = (C.EXAMPLE_GEN, C.STATISTICS_GEN, C.SCHEMA_GEN, C.EXAMPLE_VALIDATOR, C.TRANSFORM, C.TRAINER,
         C.BASELINE_RESOLVER, C.EVALUATOR, C.PUSHER)
# Tiny model so one epoch traces and trains quickly on busy CPUs.
MODEL_OVERRIDES = json.dumps({"embedding_dim": 4, "per_scenario_metrics": False, "projection_dim": 8,
                              "meta_generator_units": 8})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny prepared synthetic dataset and a random-vector knowledge dir for it (no LLM)."""
    from llm4msr_tf.data.config import PrepareConfig
    from llm4msr_tf.data.prepare import prepare
    from llm4msr_tf.knowledge import write_knowledge

    root = tmp_path_factory.mktemp("pipeline_inputs")
    data = str(root / "data")
    spec = prepare(PrepareConfig(dataset="synthetic", out=data, num_users=40, num_items=30,
                                 interactions_per_user=15, progress=False))
    rng = np.random.default_rng(0)
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=8).astype("float32")}
            for s in range(spec.num_scenarios)]
    recs += [{"key_type": "user", "key": u, "vector": rng.normal(size=8).astype("float32")}
             for u in spec.vocab("user_id")]
    know = str(root / "knowledge")
    write_knowledge(know, recs, {"llm": "random-fixture"})
    return data, know, spec


def _latest_run_states(mpath: str, pipeline_name: str = C.PIPELINE_NAME):
    """{node id: (state name, execution)} of the latest pipeline run, read straight from MLMD."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = mpath
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    runs = store.get_contexts_by_type("pipeline_run")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    in_run = {e.id for e in store.get_executions_by_context(run.id)}
    out = {}
    for node in store.get_contexts_by_type("node"):
        execs = [e for e in store.get_executions_by_context(node.id) if e.id in in_run]
        if execs:
            e = max(execs, key=lambda x: x.id)
            out[node.name.split(".", 1)[1]] = (metadata_store_pb2.Execution.State.Name(e.last_known_state), e)
    return store, len(runs), out


def _output_uri(store, execution, key: str) -> str:
    from ml_metadata.proto import metadata_store_pb2

    ids = [ev.artifact_id for ev in store.get_events_by_execution_ids([execution.id])
           if ev.type == metadata_store_pb2.Event.OUTPUT and ev.path.steps[0].key == key]
    return store.get_artifacts_by_id(ids)[0].uri


def _versions(serving: str):
    base = os.path.join(serving, C.MODEL_NAME)
    return sorted(d for d in os.listdir(base) if re.fullmatch(r"\d+", d)) if os.path.isdir(base) else []


_NEW_PROCESS_CHECK = r"""
import json, sys
import llm4msr_tf
import numpy as np, tensorflow as tf
from llm4msr_tf.data.spec import DatasetSpec
model_dir, parity_dir, data_dir = sys.argv[1:4]
m = tf.saved_model.load(model_dir)
fn = m.signatures["serving_default"]
parity = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(parity_dir + "/examples.tfrecord")]
p_parity = fn(examples=tf.constant(parity))["probability"].numpy().reshape(-1)
spec = DatasetSpec.load(data_dir)
test = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(spec.tfrecord_files("test"), compression_type="GZIP")]
parsed = tf.io.parse_example(tf.constant(test), spec.feature_spec())
p_test = fn(examples=tf.constant(test))["probability"].numpy().reshape(-1)
ex = tf.train.Example.FromString(test[0])
for k in ("user_id", "item_id"):
    ex.features.feature[k].bytes_list.value[:] = [b"never-seen-" + k.encode()]
p_oov = fn(examples=tf.constant([ex.SerializeToString()]))["probability"].numpy().reshape(-1)
print("RESULT " + json.dumps({
    "parity": p_parity.tolist(), "test": p_test.tolist(), "oov": p_oov.tolist(),
    "labels": parsed["label"].numpy().tolist(), "scenarios": parsed["scenario_id"].numpy().tolist()}))
"""


@pytest.fixture(scope="module")
def pipeline_run(inputs, tmp_path_factory):
    """One real LocalDagRunner run of the whole pipeline (shared: a run costs ~1-2 min)."""
    data, know, _ = inputs
    base = tmp_path_factory.mktemp("pipeline_run")
    root, serving = str(base / "root"), str(base / "serving")
    args = ["pipeline", "--data", data, "--knowledge", know, "--backbone", "shared_bottom",
            "--pipeline-root", root, "--serving-dir", serving, "--epochs", "1", "--batch-size", "256",
            f"--model-overrides={MODEL_OVERRIDES}"]
    r = run_cli(*args, "--min-auc", "0.0", timeout=900)
    return root, serving, args, r


@pytest.mark.slow
def test_local_pipeline_end_to_end_cache_and_blessing(inputs, pipeline_run):
    """Whole pipeline on LocalDagRunner; then a cached re-run whose stricter threshold blocks the push."""
    from sklearn.metrics import log_loss, roc_auc_score

    data, know, spec = inputs
    root, serving, args, r = pipeline_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "BLESSED and pushed" in r.stdout, r.stdout

    # Every component succeeded, per the metadata store.
    mpath = os.path.join(root, C.METADATA_FILENAME)
    store, n_runs, states = _latest_run_states(mpath)
    assert n_runs == 1
    assert {k: s for k, (s, _) in states.items()} == {k: "COMPLETE" for k in NODES}

    # One evaluation slice per scenario, counting exactly the prepared test split.
    import tensorflow_model_analysis as tfma

    eval_uri = _output_uri(store, states[C.EVALUATOR][1], "evaluation")
    result = tfma.load_eval_result(eval_uri)
    by_slice = {}
    for key, out in result.slicing_metrics:
        by_slice[key] = {n: v["doubleValue"] for n, v in out[""][""].items() if "doubleValue" in v}
    assert set(by_slice) == {()} | {(("scenario_id", s),) for s in range(S)}
    test_split = spec.splits["test"]
    assert by_slice[()]["example_count"] == test_split["rows"]
    for s in range(S):
        m = by_slice[(("scenario_id", s),)]
        assert m["example_count"] == test_split["per_scenario"][str(s)]["rows"]
        assert {"auc", "log_loss", "calibration"} <= set(m)

    # A versioned SavedModel was pushed; in a NEW process it matches the Trainer's Keras model.
    versions = _versions(serving)
    assert len(versions) == 1, versions
    pushed = os.path.join(serving, C.MODEL_NAME, versions[0])
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))
    parity_dir = os.path.join(_output_uri(store, states[C.TRAINER][1], "model_run"), "parity")
    p = run_py(_NEW_PROCESS_CHECK.replace("sys.argv[1:4]", repr([pushed, parity_dir, data])))
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(p.stdout.split("RESULT ", 1)[1])
    expected = np.load(os.path.join(parity_dir, "probability.npy")).reshape(-1)
    assert len(expected) > 0
    np.testing.assert_allclose(res["parity"], expected, rtol=1e-5, atol=1e-6)
    # Unseen raw ids are handled by the Transform graph inside the SavedModel.
    assert np.isfinite(res["oov"]).all() and 0.0 < res["oov"][0] < 1.0

    # TFMA's numbers equal sklearn's on the pushed model's own predictions.
    y, pr, sc = np.array(res["labels"]), np.array(res["test"]), np.array(res["scenarios"])
    assert abs(by_slice[()]["auc"] - roc_auc_score(y, pr)) < 0.01
    assert abs(by_slice[()]["log_loss"] - log_loss(y, pr)) < 1e-3
    for s in range(S):
        ys, ps = y[sc == s], pr[sc == s]
        if len(set(ys)) == 2:
            # TFMA's AUC buckets predictions into 10k thresholds: allow one tied pair per slice.
            tol = 1.5 / (ys.sum() * (len(ys) - ys.sum()))
            assert abs(by_slice[(("scenario_id", s),)]["auc"] - roc_auc_score(ys, ps)) <= tol

    # Same inputs, stricter threshold: everything up to the Trainer comes from the cache, the
    # Evaluator runs again, refuses to bless, nothing new is pushed and the CLI says why.
    r2 = run_cli(*args, "--min-auc", "0.9999", timeout=900)  # a valid bound no toy model reaches
    assert r2.returncode == 3, r2.stdout[-3000:] + r2.stderr[-5000:]
    assert "NOT pushed" in r2.stdout and "auc" in r2.stdout.lower(), r2.stdout
    store, n_runs, states = _latest_run_states(mpath)
    assert n_runs == 2
    got = {k: s for k, (s, _) in states.items()}
    for node in (C.EXAMPLE_GEN, C.STATISTICS_GEN, C.SCHEMA_GEN, C.EXAMPLE_VALIDATOR, C.TRANSFORM, C.TRAINER):
        assert got[node] == "CACHED", got
    assert got[C.EVALUATOR] == "COMPLETE", got
    blessing = store.get_artifacts_by_id(
        [ev.artifact_id for ev in store.get_events_by_execution_ids([states[C.EVALUATOR][1].id])
         if ev.path.steps[0].key == "blessing"])[0]
    assert blessing.custom_properties["blessed"].int_value == 0
    assert _versions(serving) == versions


# One worker of a multi-worker TFX Trainer, as Vertex AI runs it: TF_CONFIG in the environment,
# TFX's FnArgs (here rebuilt from the pipeline run's Transform outputs and the Trainer's
# custom_config), the module file's run_fn.
TRAINER_WORKER = r"""
import json, sys
import llm4msr_tf
from tfx.components.trainer.fn_args_utils import FnArgs
from llm4msr_tf.tfx.trainer.llm4msr_module import run_fn
a = json.loads(sys.argv[1])
run_fn(FnArgs(train_files=a["train"], eval_files=a["eval"], transform_output=a["transform"],
              serving_model_dir=a["serving"], model_run_dir=a["run"], custom_config=a["custom_config"]))
print("DONE")
"""


@pytest.mark.slow
def test_tfx_trainer_run_fn_trains_on_two_workers_from_tf_config(inputs, pipeline_run, tmp_path):
    """The Trainer's run_fn in two processes with a two-worker TF_CONFIG on 127.0.0.1 (and the
    pipeline's custom_config, strategy left at "default"): they train one model together
    (MultiWorkerMirroredStrategy), only the chief writes the SavedModel and metrics, which
    load and score in a fresh process; a bad strategy name fails naming the choices."""
    import subprocess
    import sys

    from llm4msr_tf.testing.beam_cluster import free_port

    data, _, spec = inputs
    root, _, _, r = pipeline_run
    assert r.returncode == 0, r.stderr[-3000:]
    store, _, states = _latest_run_states(os.path.join(root, C.METADATA_FILENAME))
    trainer = states[C.TRAINER][1]
    custom = json.loads(trainer.custom_properties["custom_config"].string_value)
    assert custom["distribute"]["strategy"] == "default"  # what `llm4msr pipeline` passes by default
    examples = _output_uri(store, states[C.TRANSFORM][1], "transformed_examples")
    args = {"train": [os.path.join(examples, "Split-train", "*")], "eval": [os.path.join(examples, "Split-eval", "*")],
            "transform": _output_uri(store, states[C.TRANSFORM][1], "transform_graph"),
            "serving": str(tmp_path / "serving_model"), "run": str(tmp_path / "model_run"), "custom_config": custom}
    ports = [free_port(), free_port()]
    procs = []
    for i in range(2):
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                       "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([sys.executable, "-c", TRAINER_WORKER, json.dumps(args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and "DONE" in out, out[-4000:]
    metrics = json.load(open(tmp_path / "model_run" / "metrics.json"))
    assert metrics["distribute"]["num_workers"] == 2 and metrics["distribute"]["is_chief"]
    assert metrics["config"]["distribute"]["strategy"] == "multi_worker"  # resolved from TF_CONFIG
    assert metrics["eval"]["overall"]["rows"] == spec.splits["eval"]["rows"]  # the whole split, not a shard
    parity_dir = str(tmp_path / "model_run" / "parity")
    p = run_py(_NEW_PROCESS_CHECK.replace("sys.argv[1:4]", repr([str(tmp_path / "serving_model"), parity_dir, data])))
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(p.stdout.split("RESULT ", 1)[1])
    np.testing.assert_allclose(res["parity"], np.load(os.path.join(parity_dir, "probability.npy")).reshape(-1),
                               rtol=1e-5, atol=1e-6)
    # A strategy name that does not exist fails before any training, naming the choices.
    bad = dict(args, custom_config={**custom, "distribute": {"strategy": "tpu_pod"}}, run=str(tmp_path / "bad"))
    q = subprocess.run([sys.executable, "-c", TRAINER_WORKER, json.dumps(bad)], capture_output=True, text=True,
                       timeout=300, env={k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_CONFIG")})
    assert q.returncode != 0 and "strategy must be one of" in q.stderr, q.stderr[-2000:]


_FEATURE_MODE_CHECK = r"""
import glob, json, sys
import llm4msr_tf
import numpy as np, tensorflow as tf
model_dir, parity_dir, test_glob = sys.argv[1:4]
fn = tf.saved_model.load(model_dir).signatures["serving_default"]
parity = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(parity_dir + "/examples.tfrecord")]
test = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(sorted(glob.glob(test_glob)), compression_type="GZIP")]
p_test = fn(examples=tf.constant(test))["probability"].numpy().reshape(-1)
ex = tf.train.Example.FromString(test[0])
vec = np.asarray(ex.features.feature["user_knowledge"].float_list.value, np.float32)
# another vector (reversed; a constant shift would vanish in the projection's LayerNorm)
ex.features.feature["user_knowledge"].float_list.value[:] = vec[::-1].tolist()
moved = float(fn(examples=tf.constant([ex.SerializeToString()]))["probability"].numpy()[0, 0])
del ex.features.feature["user_knowledge"]
try:
    fn(examples=tf.constant([ex.SerializeToString()]))
    missing = "no error"
except tf.errors.InvalidArgumentError as e:
    missing = str(e)
print("RESULT " + json.dumps({"parity": fn(examples=tf.constant(parity))["probability"].numpy().reshape(-1).tolist(),
                              "test0": float(p_test[0]), "moved": moved, "n": len(test), "missing": missing[:500]}))
"""


def _joined_rows(files, user_feature="user_id", feature="user_knowledge"):
    """Every joined example as a sortable row: (user, item, label, scenario, vector)."""
    import tensorflow as tf

    rows = []
    for rec in tf.data.TFRecordDataset(sorted(files), compression_type="GZIP"):
        f = tf.train.Example.FromString(bytes(rec.numpy())).features.feature
        rows.append((f[user_feature].bytes_list.value[0], f["item_id"].bytes_list.value[0],
                     f["label"].int64_list.value[0], f["scenario_id"].int64_list.value[0],
                     tuple(np.round(f[feature].float_list.value, 6))))
    return sorted(rows)


@pytest.mark.slow
def test_pipeline_in_feature_mode_joins_in_tfx_and_serves_the_vector_from_the_request(inputs, tmp_path):
    """The whole TFX pipeline with --user-knowledge-mode feature on data without the vector: its
    JoinKnowledge component (after ImportExampleGen) writes the same examples as `llm4msr
    join-knowledge`; Transform passes the vector through; the pushed SavedModel reads it from each
    request (its score follows the vector; a request without it fails naming it) and matches the
    Trainer's model on warmup examples the Trainer filled from the knowledge base."""
    import glob

    data, know, spec = inputs
    joined = str(tmp_path / "joined")
    r = run_cli("join-knowledge", "--data", data, "--knowledge", know, "--out", joined, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    root, serving = str(tmp_path / "root"), str(tmp_path / "serving")
    # Every knowledge path on from the start (zero_init would leave a one-epoch model near it).
    overrides = json.dumps({**json.loads(MODEL_OVERRIDES), "zero_init": False})
    r = run_cli("pipeline", "--data", data, "--knowledge", know, "--backbone", "shared_bottom",
                "--user-knowledge-mode", "feature", "--pipeline-root", root, "--serving-dir", serving,
                "--epochs", "1", "--batch-size", "256", "--min-auc", "0.0", f"--model-overrides={overrides}",
                timeout=900)
    assert r.returncode == 0 and "BLESSED and pushed" in r.stdout, r.stdout[-3000:] + r.stderr[-5000:]
    store, _, states = _latest_run_states(os.path.join(root, C.METADATA_FILENAME))
    assert {k: s for k, (s, _) in states.items()} == {k: "COMPLETE" for k in NODES + (C.JOIN_KNOWLEDGE,)}
    join_uri = _output_uri(store, states[C.JOIN_KNOWLEDGE][1], "joined_examples")
    stats = json.load(open(os.path.join(join_uri, "join_stats.json")))
    for split in C.SPLITS:
        files = glob.glob(os.path.join(join_uri, f"Split-{split}", "*.gz"))
        assert _joined_rows(files) == _joined_rows(glob.glob(os.path.join(joined, split, "*.tfrecord.gz"))), split
        assert stats["splits"][split]["rows"] == spec.splits[split]["rows"]
    run_dir = _output_uri(store, states[C.TRAINER][1], "model_run")
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["config"]["model"]["user_knowledge_mode"] == "feature"
    assert metrics["transformed_spec"]["knowledge_features"]["user_knowledge"]["dim"] == 8
    pushed = os.path.join(serving, C.MODEL_NAME, _versions(serving)[0])
    parity_dir = os.path.join(run_dir, "parity")
    p = run_py(_FEATURE_MODE_CHECK.replace("sys.argv[1:4]", repr([pushed, parity_dir,
                                                                 os.path.join(join_uri, "Split-test", "*.gz")])))
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(p.stdout.split("RESULT ", 1)[1])
    np.testing.assert_allclose(res["parity"], np.load(os.path.join(parity_dir, "probability.npy")).reshape(-1),
                               rtol=1e-5, atol=1e-6)
    assert res["n"] == spec.splits["test"]["rows"]
    assert abs(res["moved"] - res["test0"]) > 1e-6  # the vector in the request is what the model reads
    assert "user_knowledge" in res["missing"], res["missing"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["table", "feature"])
def test_compile_only_writes_kubeflow_v2_spec_naming_every_component(inputs, tmp_path, mode):
    """--compile-only writes a Vertex/KFP v2 JSON spec with one task per component (feature mode
    on data without the vector: JoinKnowledge too, fed by ImportExampleGen); nothing runs."""
    if importlib.util.find_spec("kfp") is None or importlib.util.find_spec("kfp.pipeline_spec") is None:
        pytest.skip("KubeflowV2DagRunner needs kfp-pipeline-spec (TFX's [kfp] extra), not installed")
    data, know, _ = inputs
    out = str(tmp_path / "spec" / "llm4msr_pipeline.json")
    r = run_cli("pipeline", "--data", data, "--knowledge", know, "--backbone", "mmoe",
                "--user-knowledge-mode", mode,
                "--pipeline-root", str(tmp_path / "root"), "--serving-dir", str(tmp_path / "serving"),
                "--compile-only", out, "--image", "example.com/llm4msr:1", timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    with open(out) as f:
        job = json.load(f)
    ps = job["pipelineSpec"]
    tasks = set(ps["root"]["dag"]["tasks"])
    for node in NODES + ((C.JOIN_KNOWLEDGE,) if mode == "feature" else ()):
        assert any(t == node or t.startswith(node + "-") for t in tasks), (node, tasks)
    join = [t for t in tasks if t.startswith(C.JOIN_KNOWLEDGE)]
    assert len(join) == (mode == "feature"), tasks
    if join:
        deps = ps["root"]["dag"]["tasks"][join[0]].get("dependentTasks", [])
        assert any(d.startswith(C.EXAMPLE_GEN) for d in deps), deps
    images = {e["container"]["image"] for e in ps["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {"example.com/llm4msr:1"}
    assert not os.path.exists(os.path.join(str(tmp_path / "root"), C.METADATA_FILENAME))  # nothing ran


def test_eval_config_thresholds_only_on_overall_slice():
    """AUC thresholds sit on the overall slice only; per-scenario slices are reported, not gated."""
    from llm4msr_tf.tfx.components import eval_config

    cfg = eval_config("label", "scenario_id", min_auc=0.6, max_auc_drop=0.02)
    assert [list(s.feature_keys) for s in cfg.slicing_specs] == [[], ["scenario_id"]]
    assert not cfg.options.include_default_metrics.value
    metrics = {m.class_name: m for m in cfg.metrics_specs[0].metrics}
    assert {"AUC", "BinaryCrossEntropy", "Calibration", "ExampleCount"} <= set(metrics)
    assert not cfg.metrics_specs[0].thresholds
    (pst,) = metrics["AUC"].per_slice_thresholds
    assert [list(s.feature_keys) for s in pst.slicing_specs] == [[]]
    assert pst.threshold.value_threshold.lower_bound.value == pytest.approx(0.6)
    assert pst.threshold.change_threshold.absolute.value == pytest.approx(-0.02)


def test_cli_rejects_missing_inputs_with_clear_errors(inputs, tmp_path, capsys):
    """Missing knowledge, an unprepared data dir or bad overrides fail fast with one clear line."""
    from llm4msr_tf.cli import main

    from llm4msr_tf.knowledge import write_knowledge

    data, _, spec = inputs
    root = str(tmp_path / "r")
    scen_only = str(tmp_path / "scenario_only_knowledge")
    write_knowledge(scen_only, [{"key_type": "scenario", "key": str(s), "vector": np.ones(8, np.float32)}
                                for s in range(spec.num_scenarios)], {"llm": "fixture"})
    cases = [
        (["--data", data], ["pass --knowledge KNOWLEDGE_DIR", "--no-knowledge"]),
        # feature mode must join user vectors (JoinKnowledge) and this knowledge has none
        (["--data", data, "--knowledge", scen_only, "--user-knowledge-mode", "feature"],
         [scen_only, "no user vectors"]),
        (["--data", str(tmp_path / "nope"), "--no-knowledge"], ["dataset.json", "llm4msr prepare"]),
        (["--data", data, "--no-knowledge", "--model-overrides", "{bad"], ["--model-overrides", "JSON"]),
    ]
    for extra, needles in cases:
        assert main(["pipeline", *extra, "--pipeline-root", root]) == 2
        err = capsys.readouterr().err
        assert all(n in err for n in needles), (extra, err)
    assert not os.path.exists(root)  # nothing was started


def test_pipeline_takes_a_zoo_backbone_and_its_params(inputs, tmp_path, capsys):
    """`--backbone NAME` with params in --model-overrides passes validation and reaches the Trainer
    module's model builder (checked without a TFX run: a full run costs ~70 s per backbone)."""
    import dataclasses

    from llm4msr_tf.cli import main
    from llm4msr_tf.config import from_dict, to_dict
    from llm4msr_tf.knowledge import load
    from llm4msr_tf.models import ModelConfig, TrainConfig, build_model
    from llm4msr_tf.tfx.config import PipelineConfig
    from llm4msr_tf.tfx.runner import _validate_local

    data, know, spec = inputs
    overrides = {"embedding_dim": 4, "projection_dim": 8, "meta_generator_units": 8, "per_scenario_metrics": False,
                 "backbone_params": {"hidden_units": [8], "scenario_embedding_dim": 4}}
    cfg = PipelineConfig(train=TrainConfig(data=data, knowledge=know), model=ModelConfig(backbone="pepnet"),
                         pipeline_root=str(tmp_path / "root"), model_overrides=json.dumps(overrides))
    _validate_local(cfg)
    # What the Trainer module builds from its custom_config (the resolved model config, as a dict).
    model = build_model(spec, from_dict(ModelConfig, to_dict(cfg.resolved_model())), knowledge=load(know))
    assert type(model.backbone).__name__ == "PEPNet" and model.backbone.hidden_units == [8]
    assert model(model.dummy_inputs(4))["logit"].shape == (4, 1)
    with pytest.raises(Exception, match="unknown backbone 'nope'.*pepnet"):
        _validate_local(dataclasses.replace(cfg, model=ModelConfig(backbone="nope")))
    assert main(["pipeline", "--data", data, "--no-knowledge", "--backbone", "nope",
                 "--pipeline-root", str(tmp_path / "r2")]) == 2
    assert "hinet" in capsys.readouterr().err and not os.path.exists(tmp_path / "r2")
