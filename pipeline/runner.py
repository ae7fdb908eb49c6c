"""Runners for the LLM4MSR TFX pipeline: LocalDagRunner (here) and KubeflowV2 (compile only).

`run_local` executes the pipeline in this process with ML Metadata in SQLite under the
pipeline root and Beam's in-process DirectRunner, then reads the metadata store back into a
`PipelineResult`: each component's state (complete / cached / failed), the Evaluator's
metrics per scenario, whether the model was blessed (and if not, which threshold failed)
and where the Pusher put it. The Pusher shows COMPLETE even when it pushed nothing, so the
blessing is the source of truth. `compile_kubeflow` writes the same pipeline as a Kubeflow
Pipelines v2 / Vertex AI Pipelines JSON spec.
"""
import dataclasses
import json
import logging
import os
import shlex
import tempfile
import time
from typing import Any, Dict, List, Optional

import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from llm4msr_tf.data.spec import DATASET_FILENAME, DatasetSpec
from llm4msr_tf.utils.io import UserInputError
from pipeline import constants as C
from pipeline.trainer import MODULE_FILE

log = logging.getLogger("llm4msr_tf.pipeline")

_BEAM_MODES = ("in_memory", "multi_threading", "multi_processing")


@dataclasses.dataclass
class PipelineConfig:
    """Everything `llm4msr pipeline` needs; each field is a CLI flag."""

    data: str = dataclasses.field(default="", metadata={"help": "prepared DATA_DIR (llm4msr prepare)"})
    knowledge: str = dataclasses.field(
        default="", metadata={"help": "KNOWLEDGE_DIR (llm4msr knowledge); read, never recomputed"}
    )
    use_knowledge: bool = dataclasses.field(
        default=True, metadata={"cli": False, "help": "LLM4MSR on; --no-knowledge trains the bare backbone"}
    )
    backbone: str = dataclasses.field(default="mmoe", metadata={"help": "backbone name (registry)"})
    pipeline_root: str = dataclasses.field(
        default="pipeline_out/root", metadata={"help": "TFX pipeline root (artifacts, SQLite metadata)"}
    )
    serving_dir: str = dataclasses.field(
        default="pipeline_out/serving", metadata={"help": "Pusher target: SERVING_DIR/<model-name>/<version>/"}
    )
    pipeline_name: str = dataclasses.field(default=C.PIPELINE_NAME, metadata={"help": "TFX pipeline name"})
    model_name: str = dataclasses.field(default=C.MODEL_NAME, metadata={"help": "model name under SERVING_DIR"})
    epochs: int = dataclasses.field(default=3, metadata={"help": "maximum training epochs"})
    patience: int = dataclasses.field(default=2, metadata={"help": "early-stopping patience on eval loss"})
    batch_size: int = dataclasses.field(default=1024, metadata={"help": "training batch size"})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = dataclasses.field(default=0, metadata={"help": "random seed for the Trainer"})
    model_overrides: str = dataclasses.field(
        default="", metadata={"help": "JSON object of extra ModelConfig fields, e.g. '{\"embedding_dim\": 16}'"}
    )
    min_auc: float = dataclasses.field(
        default=0.5, metadata={"help": "bless only if overall AUC on the test split is at least this"}
    )
    max_auc_drop: float = dataclasses.field(
        default=0.01, metadata={"help": "bless only if AUC drops by at most this vs the latest blessed model"}
    )
    beam_mode: str = dataclasses.field(
        default="in_memory", metadata={"help": "DirectRunner running mode", "choices": list(_BEAM_MODES)}
    )
    beam_workers: int = dataclasses.field(default=1, metadata={"help": "DirectRunner workers"})
    beam_args: str = dataclasses.field(
        default="", metadata={"help": "extra Beam args as one string, e.g. --beam-args='--runner=DataflowRunner ...'"}
    )
    enable_cache: bool = dataclasses.field(
        default=True, metadata={"help": "reuse outputs of components whose inputs did not change"}
    )
    module_file: str = dataclasses.field(
        default=MODULE_FILE, metadata={"help": "TFX module file (preprocessing_fn, run_fn)"}
    )
    compile_only: str = dataclasses.field(
        default="", metadata={"help": "write a KubeflowV2 / Vertex JSON spec to this path instead of running"}
    )
    image: str = dataclasses.field(
        default="gcr.io/tfx-oss-public/tfx:1.16.0",
        metadata={"help": "container image for --compile-only (must have llm4msr_tf installed)"},
    )


@dataclasses.dataclass
class PipelineResult:
    """What a local run did, read back from ML Metadata."""

    run_id: str
    wall_seconds: float
    component_states: Dict[str, str]
    blessed: Optional[bool]
    not_blessed_reasons: List[str]
    pushed: bool
    pushed_dir: Optional[str]
    model_dir: Optional[str]
    model_run_dir: Optional[str]
    evaluation_dir: Optional[str]
    slice_metrics: Dict[str, Dict[str, float]]

    @property
    def succeeded(self) -> bool:
        """True when every component completed or was served from cache."""
        return bool(self.component_states) and all(
            s in ("COMPLETE", "CACHED") for s in self.component_states.values()
        )


def _read_spec(data_dir: str) -> Dict[str, Any]:
    """dataset.json of DATA_DIR as a dict (local or remote path), validated by DatasetSpec."""
    import tensorflow as tf

    path = f"{data_dir.rstrip('/')}/{DATASET_FILENAME}"
    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"--data {data_dir}: {path} not found; run `llm4msr prepare --dataset NAME --out {data_dir}` first"
        )
    with tf.io.gfile.GFile(path) as f:
        d = json.load(f)
    DatasetSpec.from_dict(d)  # raises a clear error on a malformed spec
    return d


def _trainer_config(cfg: PipelineConfig, knowledge_dir: str) -> Dict[str, Any]:
    try:
        overrides = json.loads(cfg.model_overrides) if cfg.model_overrides else {}
    except json.JSONDecodeError as e:
        raise UserInputError(f"--model-overrides is not valid JSON ({e}); pass a JSON object") from e
    if not isinstance(overrides, dict):
        raise UserInputError("--model-overrides must be a JSON object, e.g. '{\"embedding_dim\": 16}'")
    return {
        "backbone": cfg.backbone,
        "use_knowledge": cfg.use_knowledge,
        "knowledge_dir": knowledge_dir,
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "seed": cfg.seed,
        "model": overrides,
    }


def _validate_local(cfg: PipelineConfig) -> None:
    """Fail fast, before TensorFlow loads, on inputs a user can fix."""
    if not cfg.data:
        raise UserInputError("--data is required: the DATA_DIR written by `llm4msr prepare`")
    if "://" not in cfg.data and not os.path.exists(os.path.join(cfg.data, DATASET_FILENAME)):
        raise UserInputError(
            f"--data {cfg.data}: no {DATASET_FILENAME} there; run "
            f"`llm4msr prepare --dataset NAME --out {cfg.data}` first"
        )
    if cfg.use_knowledge:
        if not cfg.knowledge:
            raise UserInputError(
                "--knowledge is required (the KNOWLEDGE_DIR of `llm4msr knowledge`); "
                "or pass --no-knowledge to train the bare backbone"
            )
        from llm4msr_tf.knowledge import read_manifest

        read_manifest(cfg.knowledge)  # clear error when it is not a knowledge directory
    _trainer_config(cfg, cfg.knowledge)  # checks --model-overrides
    if cfg.beam_mode not in _BEAM_MODES:
        raise UserInputError(f"--beam-mode {cfg.beam_mode!r}: use one of {_BEAM_MODES}")
    from llm4msr_tf import backbones

    backbones.get(cfg.backbone)  # unknown name -> clear error listing the registered ones


def build(cfg: PipelineConfig, metadata_path: Optional[str], beam_args: List[str]):
    """The pipeline object for `cfg` (absolute local paths; remote URIs are kept as given)."""
    from pipeline.tfx_pipeline import create_pipeline
    from tfx import v1 as tfx

    def _abs(p: str) -> str:
        return p if "://" in p or not p else os.path.abspath(p)

    data, root, serving = _abs(cfg.data), _abs(cfg.pipeline_root), _abs(cfg.serving_dir)
    knowledge = _abs(cfg.knowledge) if cfg.use_knowledge else ""
    return create_pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=root,
        data_dir=data,
        module_file=_abs(cfg.module_file),
        serving_dir=serving,
        dataset_spec=_read_spec(data),
        trainer_config=_trainer_config(cfg, knowledge),
        model_name=cfg.model_name,
        min_auc=cfg.min_auc,
        max_auc_drop=cfg.max_auc_drop,
        beam_pipeline_args=beam_args,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
            if metadata_path else None
        ),
        enable_cache=cfg.enable_cache,
    )


def metadata_path(pipeline_root: str) -> str:
    """Where the local run keeps its ML Metadata SQLite file."""
    return os.path.join(os.path.abspath(pipeline_root), C.METADATA_FILENAME)


def run_local(cfg: PipelineConfig) -> PipelineResult:
    """Run the pipeline with LocalDagRunner here and return what happened (from MLMD)."""
    _validate_local(cfg)
    from tfx import v1 as tfx

    root = os.path.abspath(cfg.pipeline_root)
    # TFX and Beam leave temporary folders behind: keep them under the pipeline root.
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None
    beam_args = [
        "--runner=DirectRunner",
        f"--direct_running_mode={cfg.beam_mode}",
        f"--direct_num_workers={cfg.beam_workers}",
        f"--temp_location={tmp}",
    ] + shlex.split(cfg.beam_args)
    mpath = metadata_path(root)
    pipe = build(cfg, mpath, beam_args)
    log.info("running pipeline %s at %s (cache %s)", cfg.pipeline_name, root,
             "on" if cfg.enable_cache else "off")
    t0 = time.time()
    tfx.orchestration.LocalDagRunner().run(pipe)
    wall = time.time() - t0
    return read_result(mpath, cfg.pipeline_name, wall)


def compile_kubeflow(cfg: PipelineConfig, output_path: str) -> str:
    """Write the pipeline as a KubeflowV2 / Vertex AI Pipelines JSON spec (nothing runs)."""
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2
    except ImportError as e:
        raise UserInputError(
            f"--compile-only needs the Kubeflow pipeline spec protos ({e}); "
            "install `kfp-pipeline-spec>=0.2.2` (TFX's [kfp] extra)"
        ) from e
    if not cfg.data:
        raise UserInputError("--data is required: the DATA_DIR written by `llm4msr prepare`")
    from llm4msr_tf import backbones

    backbones.get(cfg.backbone)
    beam_args = shlex.split(cfg.beam_args)
    if "://" not in cfg.pipeline_root:
        # Compiling packages the module file into a wheel under the root; keep temp files there.
        tmp = os.path.join(os.path.abspath(cfg.pipeline_root), "tmp")
        os.makedirs(tmp, exist_ok=True)
        os.environ["TMPDIR"] = tmp
        tempfile.tempdir = None
    pipe = build(cfg, None, beam_args)
    out = os.path.abspath(output_path)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    runner = kv2.KubeflowV2DagRunner(
        config=kv2.KubeflowV2DagRunnerConfig(default_image=cfg.image),
        output_dir=os.path.dirname(out),
        output_filename=os.path.basename(out),
    )
    runner.run(pipe, write_out=True)
    log.info("wrote KubeflowV2 pipeline spec %s", out)
    return out


# ---- reading a run back from ML Metadata ------------------------------------------------

_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}


def _store(mpath: str):
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    if not os.path.exists(mpath):
        raise UserInputError(f"{mpath} not found: the pipeline has not run under this root")
    return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(mpath))


def _output_artifacts(store, execution_id: int) -> Dict[str, List[Any]]:
    """Output artifacts of an execution keyed by output name."""
    from ml_metadata.proto import metadata_store_pb2

    events = store.get_events_by_execution_ids([execution_id])
    out_ids = {}
    for e in events:
        if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT):
            name = e.path.steps[0].key if e.path.steps else ""
            out_ids.setdefault(name, []).append(e.artifact_id)
    arts = {a.id: a for a in store.get_artifacts_by_id([i for ids in out_ids.values() for i in ids])}
    return {k: [arts[i] for i in ids if i in arts] for k, ids in out_ids.items()}


def _prop(artifact, name: str) -> Any:
    if name in artifact.custom_properties:
        v = artifact.custom_properties[name]
        return v.int_value if v.HasField("int_value") else v.string_value
    return None


def component_executions(mpath: str, pipeline_name: str, run_id: Optional[str] = None) -> Dict[str, Any]:
    """{component id: its execution in the run} for a run (default: the latest run)."""
    store = _store(mpath)
    runs = [c for c in store.get_contexts_by_type("pipeline_run")]
    if not runs:
        raise UserInputError(f"{mpath} holds no pipeline run")
    run = (
        next(c for c in runs if c.name == run_id) if run_id
        else max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    )
    run_exec_ids = {e.id for e in store.get_executions_by_context(run.id)}
    result: Dict[str, Any] = {"_run_id": run.name, "_store": store}
    prefix = f"{pipeline_name}."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        execs = [e for e in store.get_executions_by_context(node.id) if e.id in run_exec_ids]
        if execs:
            result[node.name[len(prefix):]] = max(execs, key=lambda e: e.id)
    return result


def read_result(mpath: str, pipeline_name: str, wall_seconds: float = 0.0,
                run_id: Optional[str] = None) -> PipelineResult:
    """Summarise a run from ML Metadata: states, blessing (and why not), push, metrics."""
    execs = component_executions(mpath, pipeline_name, run_id)
    store = execs.pop("_store")
    rid = execs.pop("_run_id")
    states = {k: _STATES.get(e.last_known_state, str(e.last_known_state)) for k, e in execs.items()}

    def outputs(component: str) -> Dict[str, List[Any]]:
        return _output_artifacts(store, execs[component].id) if component in execs else {}

    blessed, reasons, evaluation_dir, slices = None, [], None, {}
    ev = outputs(C.EVALUATOR)
    if ev.get("blessing"):
        blessed = bool(_prop(ev["blessing"][0], "blessed"))
    if ev.get("evaluation"):
        evaluation_dir = ev["evaluation"][0].uri
        slices = slice_metrics(evaluation_dir)
        if blessed is False:
            reasons = validation_failures(evaluation_dir)
    pushed, pushed_dir = False, None
    pu = outputs(C.PUSHER)
    if pu.get("pushed_model"):
        art = pu["pushed_model"][0]
        pushed = bool(_prop(art, "pushed"))
        pushed_dir = _prop(art, "pushed_destination") if pushed else None
    tr = outputs(C.TRAINER)
    model_dir = tr["model"][0].uri if tr.get("model") else None
    model_run_dir = tr["model_run"][0].uri if tr.get("model_run") else None
    return PipelineResult(
        run_id=rid, wall_seconds=wall_seconds, component_states=states, blessed=blessed,
        not_blessed_reasons=reasons, pushed=pushed, pushed_dir=pushed_dir, model_dir=model_dir,
        model_run_dir=model_run_dir, evaluation_dir=evaluation_dir, slice_metrics=slices,
    )


def _slice_name(slice_key) -> str:
    return "overall" if not slice_key else ",".join(f"{k}={v}" for k, v in slice_key)


def slice_metrics(evaluation_dir: str) -> Dict[str, Dict[str, float]]:
    """{slice name: {metric: value}} from the Evaluator's output ("overall", "scenario_id=0"...)."""
    import tensorflow_model_analysis as tfma

    res = tfma.load_eval_result(evaluation_dir)
    out: Dict[str, Dict[str, float]] = {}
    for slice_key, by_output in res.slicing_metrics:
        metrics: Dict[str, float] = {}
        for _, by_class in by_output.items():
            for _, values in by_class.items():
                for name, v in values.items():
                    if isinstance(v, dict) and "doubleValue" in v:
                        metrics[name] = float(v["doubleValue"])
        out[_slice_name(slice_key)] = metrics
    return out


def validation_failures(evaluation_dir: str) -> List[str]:
    """Human-readable reasons a candidate was not blessed (failed thresholds)."""
    import tensorflow_model_analysis as tfma

    vr = tfma.load_validation_result(evaluation_dir)
    reasons = []
    for per_slice in vr.metric_validations_per_slice:
        for f in per_slice.failures:
            reasons.append(
                f"{f.metric_key.name}={f.metric_value.double_value.value:.4f} "
                f"failed {str(f.metric_threshold).strip().replace(chr(10), ' ')}"
                + (f" ({f.message})" if f.message else "")
            )
    for m in getattr(vr, "missing_slices", []):
        reasons.append(f"slice missing from evaluation: {m}")
    if not reasons and not vr.validation_ok:
        reasons.append("TFMA validation not OK (see validations in %s)" % evaluation_dir)
    return reasons
