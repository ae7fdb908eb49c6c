"""Runners for the LLM4MSR TFX pipeline: LocalDagRunner (here) and KubeflowV2 (compile only).

`run_local` executes the pipeline in this process with ML Metadata in SQLite under the
pipeline root and Beam's in-process DirectRunner, then reads the metadata store back into a
`PipelineResult` (`llm4msr_tf.tfx.results`). `compile_kubeflow` writes the same pipeline as a
Kubeflow Pipelines v2 / Vertex AI Pipelines JSON spec. Both take one `PipelineConfig`; the
project folder ``pipeline/`` calls them from its runner scripts.
"""
import dataclasses
import json
import logging
import os
import shlex
import tempfile
import time
from typing import Any, Dict, List, Optional

from llm4msr_tf.config import to_dict
from llm4msr_tf.data.spec import DATASET_FILENAME, DatasetSpec
from llm4msr_tf.tfx import constants as C
from llm4msr_tf.tfx.config import BEAM_MODES, PipelineConfig
from llm4msr_tf.tfx.results import PipelineResult, read_result
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger("llm4msr_tf.tfx")


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


def _check_common(cfg: PipelineConfig) -> None:
    """Checks every runner needs, before TensorFlow loads: data given, overrides and backbone valid."""
    if not cfg.train.data:
        raise UserInputError("--data is required: the DATA_DIR written by `llm4msr prepare`")
    from llm4msr_tf import backbones

    backbones.get(cfg.resolved_model().backbone)  # unknown name -> clear error listing the registered ones


def _validate_local(cfg: PipelineConfig) -> None:
    """Fail fast, before TensorFlow loads, on inputs a user can fix."""
    data = cfg.train.data
    if not data:
        raise UserInputError("--data is required: the DATA_DIR written by `llm4msr prepare`")
    if "://" not in data and not os.path.exists(os.path.join(data, DATASET_FILENAME)):
        raise UserInputError(
            f"--data {data}: no {DATASET_FILENAME} there; run "
            f"`llm4msr prepare --dataset NAME --out {data}` first"
        )
    if cfg.model.use_knowledge:
        if not cfg.train.knowledge:
            raise UserInputError(
                "--knowledge is required (the KNOWLEDGE_DIR of `llm4msr knowledge`); "
                "or pass --no-knowledge to train the bare backbone"
            )
        from llm4msr_tf.knowledge import read_manifest

        read_manifest(cfg.train.knowledge)  # clear error when it is not a knowledge directory
        if "://" not in data:
            with open(os.path.join(data, DATASET_FILENAME)) as f:
                # feature mode: refuse knowledge without user vectors before anything is written
                join_plan(json.load(f), cfg.resolved_model(), _abs(cfg.train.knowledge))
    if cfg.beam_mode not in BEAM_MODES:
        raise UserInputError(f"--beam-mode {cfg.beam_mode!r}: use one of {BEAM_MODES}")
    _check_common(cfg)


def _abs(p: Optional[str]) -> str:
    """An absolute local path; remote URIs (``gs://``...) and empty values are kept as given."""
    return p if not p or "://" in p else os.path.abspath(p)


def join_plan(spec_dict: Dict[str, Any], model: Any, knowledge: Optional[str]) -> Optional[Dict[str, Any]]:
    """The `JoinKnowledge` parameters when the pipeline must join user vectors itself, else None.

    Feature mode reads the user vector from every example. Examples that already carry it
    (a DATA_DIR written by `llm4msr join-knowledge`) are used as they are; otherwise the
    pipeline joins it right after ImportExampleGen, and `spec_dict` (the dataset spec the
    Transform and Trainer get) gains the feature's ``knowledge_features`` entry.

    Args:
        spec_dict: the prepared ``dataset.json`` as a dict; updated in place when a join is planned.
        model: the resolved `ModelConfig`.
        knowledge: the KNOWLEDGE_DIR (absolute path or URI).
    """
    if not model.use_knowledge or model.user_knowledge_mode != "feature":
        return None
    spec = DatasetSpec.from_dict(spec_dict)
    if model.user_knowledge_feature in spec.knowledge_features:
        return None
    from llm4msr_tf.knowledge.join import check_join_inputs, feature_entry

    dim, manifest = check_join_inputs(spec, knowledge, model.user_knowledge_feature)
    spec_dict.setdefault("knowledge_features", {})[model.user_knowledge_feature] = feature_entry(
        spec, knowledge, model.knowledge_default, dim, manifest)
    return {"knowledge_dir": knowledge, "user_feature": spec.user_feature, "dim": dim,
            "feature": model.user_knowledge_feature, "default": model.knowledge_default}


def build(cfg: PipelineConfig, metadata_path: Optional[str], beam_args: List[str]) -> Any:
    """The `tfx.dsl.Pipeline` for `cfg` (absolute local paths; remote URIs are kept as given).

    Args:
        cfg: the pipeline config.
        metadata_path: the local MLMD SQLite file, or None (KubeflowV2 brings its own).
        beam_args: Beam options of the Beam-based components.

    Returns:
        The pipeline, its Trainer configured with ``cfg.train`` and the resolved ``cfg.model``.
    """
    from tfx import v1 as tfx

    from llm4msr_tf.tfx.components import create_pipeline

    model = cfg.resolved_model()
    train = dataclasses.replace(cfg.train, data=_abs(cfg.train.data),
                                knowledge=_abs(cfg.train.knowledge) if model.use_knowledge else None)
    spec = _read_spec(train.data)
    join = join_plan(spec, model, train.knowledge)
    return create_pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=_abs(cfg.pipeline_root),
        data_dir=train.data,
        module_file=_abs(cfg.module_file),
        serving_dir=_abs(cfg.serving_dir),
        dataset_spec=spec,
        trainer_config={"train": to_dict(train), "model": to_dict(model), "distribute": to_dict(cfg.distribute)},
        model_name=cfg.model_name,
        min_auc=cfg.min_auc,
        max_auc_drop=cfg.max_auc_drop,
        beam_pipeline_args=beam_args,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
            if metadata_path else None
        ),
        enable_cache=cfg.enable_cache,
        join_knowledge=join,
    )


def metadata_path(pipeline_root: str) -> str:
    """Where the local run keeps its ML Metadata SQLite file."""
    return os.path.join(os.path.abspath(pipeline_root), C.METADATA_FILENAME)


def _temp_under(root: str) -> str:
    """Point TMPDIR at ROOT/tmp: TFX and Beam leave temporary folders behind."""
    tmp = os.path.join(os.path.abspath(root), "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None
    return tmp


def run_local(cfg: PipelineConfig) -> PipelineResult:
    """Run the pipeline with LocalDagRunner in this process.

    Args:
        cfg: the pipeline config (local or remote paths; Beam runs in-process).

    Returns:
        What happened, read back from ML Metadata: component states, blessing (and why not),
        the pushed directory and the Evaluator's metrics per slice.
    """
    _validate_local(cfg)
    from tfx import v1 as tfx

    root = os.path.abspath(cfg.pipeline_root)
    tmp = _temp_under(root)
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
    """Write the pipeline as a KubeflowV2 / Vertex AI Pipelines JSON spec (nothing runs).

    Args:
        cfg: the pipeline config (``image`` is the container every component runs in).
        output_path: the JSON file to write.

    Returns:
        The absolute path written.
    """
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2
    except ImportError as e:
        raise UserInputError(
            f"--compile-only needs the Kubeflow pipeline spec protos ({e}); "
            "install `kfp-pipeline-spec>=0.2.2` (TFX's [kfp] extra)"
        ) from e
    _check_common(cfg)
    if "://" not in cfg.pipeline_root:
        # Compiling packages the module file into a wheel under the root; keep temp files there.
        _temp_under(cfg.pipeline_root)
    pipe = build(cfg, None, shlex.split(cfg.beam_args))
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
