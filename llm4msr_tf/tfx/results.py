"""A pipeline run read back from ML Metadata and TFMA: states, blessing, push, metrics per slice.

The Pusher shows COMPLETE even when it pushed nothing, so the Evaluator's blessing is the
source of truth; `read_result` says whether the model was blessed, and if not which threshold
failed, and where the Pusher put it.
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional

from llm4msr_tf.tfx import constants as C
from llm4msr_tf.utils.io import UserInputError


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


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def format_summary(result: PipelineResult) -> str:
    """One screen of text: component states, per-slice metrics, blessing and push outcome."""
    lines = [f"pipeline run {result.run_id}: {result.wall_seconds:.1f}s"]
    lines += [f"  {name:<22} {state}" for name, state in result.component_states.items()]
    cols = ["example_count", "auc", "log_loss", "calibration", "mean_label", "mean_prediction"]
    if result.slice_metrics:
        lines.append(f"  {'slice':<16}" + "".join(f"{c:>16}" for c in cols))
        for name, m in sorted(result.slice_metrics.items(), key=lambda kv: (kv[0] != "overall", kv[0])):
            lower = {k.lower(): v for k, v in m.items()}
            lines.append(f"  {name:<16}" + "".join(f"{_fmt(lower.get(c)):>16}" for c in cols))
    if result.pushed:
        lines.append(f"model BLESSED and pushed to {result.pushed_dir}")
    elif result.blessed is False:
        lines.append("model NOT pushed: the Evaluator did not bless it:")
        lines += [f"  - {r}" for r in result.not_blessed_reasons or ["(no failure details recorded)"]]
    else:
        lines.append("model NOT pushed (see component states above)")
    return "\n".join(lines)
