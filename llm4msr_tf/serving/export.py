"""Export a trained model as a TF Serving SavedModel: signatures + warmup + metadata, versioned, atomic.

`export_saved_model(model, spec, export_dir)` writes a SavedModel that TF Serving loads
unchanged (signatures in `llm4msr_tf.serving.signatures`, warmup records in
`llm4msr_tf.serving.warmup`); `export_versioned` writes ``BASE/<model_name>/<version>/`` (the
layout TF Serving's file system source polls and the TFX Pusher writes). Every export is atomic
(temp dir + rename, and TF Serving ignores the non-numeric temp names).
"""
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import llm4msr_tf
from llm4msr_tf.serving.signatures import (
    DEFAULT_MODEL_NAME,
    EXAMPLES_INPUT,
    OUTPUT_KEYS,
    RAW_SIGNATURE,
    SERVING_SIGNATURE,
    ServingModule,
)
from llm4msr_tf.serving.versions import check_new_version, next_version
from llm4msr_tf.serving.warmup import (
    DEFAULT_WARMUP_BATCH_SIZES,
    WARMUP_DIRNAME,
    build_warmup_logs,
    default_warmup,
    replay_warmup,
    to_serialized,
    write_warmup,
)
from llm4msr_tf.utils.io import UserInputError, atomic_dir, write_json

log = logging.getLogger(__name__)

EXPORT_METADATA_FILENAME = "llm4msr_export.json"


@dataclasses.dataclass
class ExportConfig:
    """`llm4msr export`: which trained model to publish, where, and how to warm it up."""

    model: str = dataclasses.field(
        default="", metadata={"help": "trained model directory (`llm4msr train` output, holds model.keras)"})
    serving_dir: str = dataclasses.field(
        default="serving_models", metadata={"help": "TF Serving base dir; writes <dir>/<model-name>/<version>/"})
    model_name: str = dataclasses.field(
        default=DEFAULT_MODEL_NAME, metadata={"help": "TF Serving model name"})
    version: Optional[int] = dataclasses.field(
        default=None, metadata={"help": "version number; default: unix time, above any existing"})
    data: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "prepared DATA_DIR (default: the one the model was trained on)"})
    transform_output: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "TFX Transform output dir to run before the model"})
    warmup_split: str = dataclasses.field(
        default="eval", metadata={"help": "split whose first examples become warmup requests",
                                  "choices": ["train", "eval", "test"]})
    warmup_examples: int = dataclasses.field(
        default=64, metadata={"help": "real examples read for warmup requests (0 = no warmup)"})
    warmup_batch_sizes: Tuple[int, ...] = dataclasses.field(
        default=DEFAULT_WARMUP_BATCH_SIZES, metadata={"help": "batch sizes of the warmup requests"})
    verify: bool = dataclasses.field(
        default=True, metadata={"help": "reload the SavedModel and replay the warmup before publishing"})
    models_config: bool = dataclasses.field(
        default=True, metadata={"help": "(re)write <serving-dir>/models.config listing every model there"})
    config_base_path: str = dataclasses.field(
        default="/models", metadata={"help": "where the server sees <serving-dir> (the compose mount)"})


def _no_keras_traces() -> Any:
    """Skip Keras' per-layer call traces when saving (Keras' public `save_traces=False`).

    The serving API is the two signatures; TF Serving and `tf.saved_model.load` never use the
    per-layer traces, which triple the save time and fail for some custom layers.
    """
    import contextlib

    try:
        from tf_keras.src.saving.legacy.saved_model import utils as keras_sm_utils

        return keras_sm_utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=True)
    except (ImportError, AttributeError):  # another Keras 2 layout: keep the default traces
        return contextlib.nullcontext()


def export_saved_model(
    model: Any,
    spec: Any,
    export_dir: str,
    warmup_examples: Optional[Iterable[Any]] = None,
    *,
    transform_output_dir: Optional[str] = None,
    model_name: str = DEFAULT_MODEL_NAME,
    warmup_batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCH_SIZES,
    overwrite: bool = False,
    verify: bool = True,
    extra_metadata: Optional[Dict[str, Any]] = None,
    fold_knowledge: bool = True,
) -> str:
    """Write a TF Serving SavedModel with `serving_default` + `predict_raw` and warmup; atomic.

    Args:
        model: follows the models contract (dict of parsed features -> {"logit", "probability"}).
        spec: the `DatasetSpec` whose features the requests carry (label dropped).
        export_dir: the SavedModel directory to write (an empty existing one is replaced).
        warmup_examples: serialized tf.Examples (or protos) for the warmup records; None reads
            the first 64 eval examples of the spec's DATA_DIR, [] writes no warmup.
        transform_output_dir: a TFX Transform output; its graph runs between parsing and model.
        model_name: the served name written into the warmup requests.
        warmup_batch_sizes: one warmup request per signature and batch size.
        overwrite: replace an existing non-empty `export_dir`.
        verify: reload the written SavedModel and replay the warmup before publishing it, so
            a broken export never reaches the serving directory.
        extra_metadata: merged into assets.extra/llm4msr_export.json (e.g. the export config).
        fold_knowledge: serve `llm4msr_tf.models.folded.fold(model)`: everything that depends
            only on the frozen knowledge and the keys precomputed into tables (same outputs, a
            fraction of the request-time work, no knowledge-width tables in the SavedModel).

    Returns:
        `export_dir`.
    """
    import tensorflow as tf

    t0 = time.time()
    if fold_knowledge:
        from llm4msr_tf.models.folded import fold

        model = fold(model)
    module = ServingModule(model, spec, transform_output_dir)
    signatures = module.signatures()
    if warmup_examples is None:
        warmup_examples = default_warmup(spec)
    serialized = to_serialized(warmup_examples)
    if not serialized:
        log.warning("exporting %s without warmup requests: the first live request pays for graph "
                    "initialisation", export_dir)
    if os.path.isdir(export_dir) and not os.listdir(export_dir):
        # An empty directory made by the caller (e.g. TFX's serving_model_dir) holds nothing
        # to protect: replace it rather than refuse.
        os.rmdir(export_dir)
    with atomic_dir(export_dir, overwrite=overwrite, kind="saved_model") as tmp:
        # Save a plain tf.Module that tracks the model: the signatures are the serving API,
        # and loading needs no Python class of ours (TF Serving is C++ only).
        root = tf.Module()
        root.model = model
        if module.tft_layer is not None:
            root.tft_layer = module.tft_layer
        with _no_keras_traces():
            tf.saved_model.save(root, tmp, signatures=signatures)
        logs = build_warmup_logs(serialized, module.parse_spec, model_name, warmup_batch_sizes)
        if logs:
            write_warmup(tmp, logs)
        metadata = {
            "model_name": model_name,
            "dataset": getattr(spec, "name", None),
            "label": spec.label,
            "transform_output_dir": transform_output_dir,
            "signatures": {
                SERVING_SIGNATURE: {"inputs": {EXAMPLES_INPUT: "string [B] serialized tf.Example"}},
                RAW_SIGNATURE: {
                    "inputs": {n: f"{s.dtype.name} {[None] + list(s.shape[1:])}"
                               for n, s in module.raw_signature.items()}
                },
            },
            "outputs": {k: "float32 [B, 1]" for k in OUTPUT_KEYS},
            "warmup_records": len(logs),
            "knowledge_folded": type(model).__name__ == "FoldedLLM4MSR",
            "llm4msr_tf": llm4msr_tf.__version__,
            "tensorflow": tf.__version__,
            "created_unix": int(time.time()),
        }
        metadata.update(extra_metadata or {})
        write_json(os.path.join(tmp, WARMUP_DIRNAME, EXPORT_METADATA_FILENAME), metadata)
        if verify and logs:
            loaded = tf.saved_model.load(tmp)
            replay_warmup(loaded, logs)
            del loaded
    log.info("exported SavedModel to %s (%d warmup records, %.1fs)", export_dir, len(logs),
             time.time() - t0)
    return export_dir


def export_versioned(
    model: Any,
    spec: Any,
    serving_dir: str,
    model_name: str = DEFAULT_MODEL_NAME,
    version: Optional[int] = None,
    warmup_examples: Optional[Iterable[Any]] = None,
    **kwargs: Any,
) -> str:
    """Export into SERVING_DIR/<model_name>/<version>/ (the TF Serving / Pusher layout).

    Args:
        model, spec, warmup_examples, **kwargs: as in `export_saved_model`.
        serving_dir: the TF Serving base directory.
        model_name: the served model's directory name.
        version: the version number (default: unix time, above any existing version).

    Returns:
        The version directory written.
    """
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise UserInputError(f"model name {model_name!r} must be a plain directory name")
    base = os.path.join(serving_dir, model_name)
    if version is None:
        version = next_version(base)
    if int(version) < 0:
        raise UserInputError(f"version must be a non-negative integer, got {version}")
    check_new_version(base, int(version))
    export_dir = os.path.join(base, str(int(version)))
    if os.path.exists(export_dir):
        raise UserInputError(
            f"version {version} already exists at {export_dir}; TF Serving never reloads a "
            "version in place: pick a new version (or leave it unset)"
        )
    return export_saved_model(model, spec, export_dir, warmup_examples, model_name=model_name,
                              **kwargs)


def saved_model_signatures(export_dir: str) -> Dict[str, Dict[str, Any]]:
    """Input/output names, dtypes and shapes of each signature of a SavedModel (no execution)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    out = {}
    for name, fn in loaded.signatures.items():
        ins = fn.structured_input_signature[1]
        out[name] = {
            "inputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in ins.items()},
            "outputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_outputs.items()},
        }
    return out


def load_export_metadata(export_dir: str) -> Dict[str, Any]:
    """The llm4msr_export.json written next to the warmup file (empty dict if absent)."""
    path = os.path.join(export_dir, WARMUP_DIRNAME, EXPORT_METADATA_FILENAME)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
