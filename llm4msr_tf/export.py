"""SavedModel export for TF Serving: two Predict signatures, warmup records, versioned layout.

`export_saved_model(model, spec, export_dir)` writes a SavedModel that TF Serving loads
unchanged:

- ``serving_default(examples: string [B])`` parses serialized tf.Examples with the dataset's
  feature spec (label dropped), optionally applies a TFX Transform graph, runs the Keras model
  and returns ``{"probability", "logit"}`` float32 ``[B, 1]``;
- ``predict_raw(<feature>: [B] ...)`` takes the raw named feature tensors (``user_id`` string,
  ``item_id`` string, ``scenario_id`` int64, extras), i.e. the REST ``"inputs"`` JSON form, and
  returns the same outputs.

Keras signatures are served by TF Serving's Predict API (REST ``:predict``, gRPC ``Predict``).
A request whose tf.Example lacks a feature fails with ``InvalidArgumentError`` whose message
names the feature (``Feature: item_id (data type: string) is required but could not be
found``); a malformed serialized example fails with ``InvalidArgumentError`` ("Could not
parse example input"). Both are per-request errors: the loaded model keeps serving.

Warmup: ``assets.extra/tf_serving_warmup_requests`` holds PredictionLog records (one per
signature and warmup batch size) built from real examples; TF Serving replays them at load
time so the first live request does not pay for graph initialisation.

`export_versioned` writes ``BASE/<model_name>/<version>/`` (the layout TF Serving's file
system source polls and the TFX Pusher writes); every export is atomic (temp dir + rename,
and TF Serving ignores the non-numeric temp names).
"""
import dataclasses
import glob
import json
import logging
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from llm4msr_tf.utils.io import UserInputError, atomic_dir, write_json, write_text

log = logging.getLogger(__name__)

SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "predict_raw"
EXAMPLES_INPUT = "examples"
OUTPUT_KEYS = ("probability", "logit")
WARMUP_DIRNAME = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
EXPORT_METADATA_FILENAME = "llm4msr_export.json"
DEFAULT_MODEL_NAME = "llm4msr"
# Batch sizes replayed at load time; they match the allowed batch sizes of
# serving/batching_parameters.txt so each padded batch shape is warmed once.
DEFAULT_WARMUP_BATCH_SIZES: Tuple[int, ...] = (1, 8, 64)


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


# ---------------------------------------------------------------------------------------
# Feature specs
# ---------------------------------------------------------------------------------------
def _tf():
    import tensorflow as tf

    return tf


def serving_feature_spec(spec: Any) -> Dict[str, Any]:
    """The parse spec of a serving request: the dataset's feature spec without the label.

    Every feature is a FixedLenFeature without a default, so a request that lacks one fails
    with an error naming it instead of silently scoring a default value.
    """
    tf = _tf()
    fs = dict(spec.feature_spec())
    fs.pop(spec.label, None)
    strict = {}
    for name, f in fs.items():
        if isinstance(f, tf.io.FixedLenFeature):
            strict[name] = tf.io.FixedLenFeature(f.shape, f.dtype)
        else:
            strict[name] = f
    return strict


def raw_input_signature(parse_spec: Dict[str, Any]) -> Dict[str, Any]:
    """TensorSpecs ``[None] + shape`` named after each feature: the inputs of `predict_raw`."""
    tf = _tf()
    return {
        name: tf.TensorSpec([None] + list(f.shape), f.dtype, name=name)
        for name, f in sorted(parse_spec.items())
    }


# ---------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------
def _as_outputs(out: Any) -> Dict[str, Any]:
    """Normalise the model's output to {"probability", "logit"} float32 [B, 1]."""
    tf = _tf()
    if not isinstance(out, dict) or not all(k in out for k in OUTPUT_KEYS):
        raise UserInputError(
            "the model must return a dict with keys 'probability' and 'logit' (float32 [B, 1]); "
            f"got {type(out).__name__}"
            + (f" with keys {sorted(out)}" if isinstance(out, dict) else "")
        )
    return {k: tf.reshape(tf.cast(out[k], tf.float32), [-1, 1]) for k in OUTPUT_KEYS}


class ServingModule:
    """Holds the model (and the optional Transform layer) and builds both signature functions."""

    def __init__(self, model: Any, spec: Any, transform_output_dir: Optional[str] = None):
        tf = _tf()
        self.model = model
        self.spec = spec
        self.tft_layer = None
        if transform_output_dir:
            import tensorflow_transform as tft

            tft_output = tft.TFTransformOutput(transform_output_dir)
            # Transform was fit on raw features; the request carries raw features.
            raw = dict(tft_output.raw_feature_spec())
            raw.pop(spec.label, None)
            self.parse_spec = {
                n: tf.io.FixedLenFeature(f.shape, f.dtype) if isinstance(f, tf.io.FixedLenFeature) else f
                for n, f in raw.items()
            }
            self.tft_layer = tft_output.transform_features_layer()
        else:
            self.parse_spec = serving_feature_spec(spec)
        self.parse_spec.update(model_extra_features(model))
        self.raw_signature = raw_input_signature(self.parse_spec)

    def predict_features(self, features: Dict[str, Any]) -> Dict[str, Any]:
        """Run (Transform then) the model on parsed raw features; outputs float32 [B, 1]."""
        if self.tft_layer is not None:
            features = dict(self.tft_layer(features))
            features.pop(self.spec.label, None)
        return _as_outputs(self.model(features, training=False))

    def signatures(self) -> Dict[str, Any]:
        """Concrete functions for `serving_default` and `predict_raw`."""
        tf = _tf()
        parse_spec = self.parse_spec

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def serve_examples(examples):
            """serving_default: serialized tf.Examples -> probability, logit."""
            features = tf.io.parse_example(examples, parse_spec)
            return self.predict_features(features)

        @tf.function(input_signature=[self.raw_signature])
        def serve_raw(features):
            """predict_raw: named raw feature tensors -> probability, logit."""
            return self.predict_features(dict(features))

        return {
            SERVING_SIGNATURE: serve_examples.get_concrete_function(),
            RAW_SIGNATURE: serve_raw.get_concrete_function(),
        }


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


def model_extra_features(model: Any) -> Dict[str, Any]:
    """Request features the model needs beyond the dataset spec.

    An LLM4MSR model in user-knowledge "feature" mode reads the user's knowledge vector from
    the request (float32 [dim]) instead of its in-model table.
    """
    tf = _tf()
    lookup = getattr(model, "user_knowledge", None)
    if lookup is not None and getattr(lookup, "mode", None) == "feature":
        name = getattr(model, "user_knowledge_feature", "user_knowledge")
        return {name: tf.io.FixedLenFeature([int(lookup.dim)], tf.float32)}
    return {}


# ---------------------------------------------------------------------------------------
# Warmup
# ---------------------------------------------------------------------------------------
def read_examples(spec: Any, split: str = "eval", limit: int = 64) -> List[bytes]:
    """The first `limit` serialized tf.Examples of a split (real data, for warmup and tests)."""
    tf = _tf()
    files = spec.tfrecord_files(split)
    if not files:
        raise UserInputError(
            f"no TFRecords match {spec.tfrecord_pattern(split)}; run `llm4msr prepare` first "
            "or pass another --warmup-split"
        )
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [bytes(x.numpy()) for x in ds]


def _default_warmup(spec: Any, n: int = 64) -> List[bytes]:
    """Warmup examples when the caller gave none: the first eval examples of the spec's data."""
    try:
        if getattr(spec, "data_dir", None) and spec.tfrecord_files("eval"):
            return read_examples(spec, "eval", n)
    except Exception as e:  # noqa: BLE001  (warmup is an optimisation; never fail the export)
        log.warning("could not read default warmup examples from %s: %s", spec.data_dir, e)
    return []


def _to_serialized(examples: Iterable[Any]) -> List[bytes]:
    out = []
    for e in examples:
        if hasattr(e, "SerializeToString"):
            out.append(e.SerializeToString())
        elif isinstance(e, (bytes, bytearray)):
            out.append(bytes(e))
        else:
            raise UserInputError(
                f"warmup_examples must be serialized tf.Examples (bytes) or tf.train.Example; "
                f"got {type(e).__name__}"
            )
    return out


def build_warmup_logs(
    serialized: Sequence[bytes],
    parse_spec: Dict[str, Any],
    model_name: str = DEFAULT_MODEL_NAME,
    batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCH_SIZES,
) -> List[Any]:
    """PredictionLog protos: for each batch size, one request per signature from real examples."""
    tf = _tf()
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    logs = []
    if not serialized:
        return logs
    sizes = sorted({min(int(b), len(serialized)) for b in batch_sizes if int(b) > 0})
    for bs in sizes:
        batch = list(serialized[:bs])
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        req.model_spec.signature_name = SERVING_SIGNATURE
        req.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req)))

        parsed = tf.io.parse_example(tf.constant(batch), parse_spec)
        raw = predict_pb2.PredictRequest()
        raw.model_spec.name = model_name
        raw.model_spec.signature_name = RAW_SIGNATURE
        for name, value in parsed.items():
            raw.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=raw)))
    return logs


def write_warmup(export_dir: str, logs: Sequence[Any]) -> str:
    """Write PredictionLog records to EXPORT_DIR/assets.extra/tf_serving_warmup_requests."""
    tf = _tf()
    d = os.path.join(export_dir, WARMUP_DIRNAME)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, WARMUP_FILENAME)
    with tf.io.TFRecordWriter(path) as w:
        for rec in logs:
            w.write(rec.SerializeToString())
    return path


def read_warmup(export_dir: str) -> List[Any]:
    """Parse every PredictionLog record of a SavedModel's warmup file."""
    tf = _tf()
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_DIRNAME, WARMUP_FILENAME)
    if not os.path.exists(path):
        raise UserInputError(f"{path} not found: {export_dir} was exported without warmup examples")
    out = []
    for rec in tf.data.TFRecordDataset(path):
        out.append(prediction_log_pb2.PredictionLog.FromString(rec.numpy()))
    return out


def replay_warmup(loaded: Any, logs: Sequence[Any]) -> List[Dict[str, Any]]:
    """Run each warmup request through the signature it names (what TF Serving does at load)."""
    tf = _tf()
    results = []
    for rec in logs:
        req = rec.predict_log.request
        fn = loaded.signatures[req.model_spec.signature_name or SERVING_SIGNATURE]
        kwargs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
        results.append({k: v.numpy() for k, v in fn(**kwargs).items()})
    return results


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------
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

    `model` follows the models contract (dict of parsed features -> {"logit", "probability"}).
    `warmup_examples`: serialized tf.Examples (or protos) used for the warmup records; None
    reads the first 64 eval examples of the spec's DATA_DIR, [] writes no warmup.
    `transform_output_dir`: a TFX Transform output; its graph runs between parsing and model.
    `verify`: reload the written SavedModel and replay the warmup before publishing it, so a
    broken export never reaches the serving directory.
    `extra_metadata` is merged into assets.extra/llm4msr_export.json (e.g. the export config).
    `fold_knowledge`: serve `llm4msr_tf.models.folded.fold(model)`, where everything that depends
    only on the frozen knowledge and the keys is precomputed into tables (same outputs, a
    fraction of the request-time work, no knowledge-width tables in the SavedModel).
    """
    tf = _tf()
    t0 = time.time()
    if fold_knowledge:
        from llm4msr_tf.models.folded import fold

        model = fold(model)
    module = ServingModule(model, spec, transform_output_dir)
    signatures = module.signatures()
    if warmup_examples is None:
        warmup_examples = _default_warmup(spec)
    serialized = _to_serialized(warmup_examples)
    if not serialized:
        log.warning("exporting %s without warmup requests: the first live request pays for graph "
                    "initialisation", export_dir)
    if os.path.isdir(export_dir) and not os.listdir(export_dir):
        # An empty directory made by the caller (e.g. TFX's serving_model_dir) holds nothing
        # to protect: replace it rather than refuse.
        os.rmdir(export_dir)
    with atomic_dir(export_dir, overwrite=overwrite) as tmp:
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


def existing_versions(base_dir: str) -> List[int]:
    """Numeric version subdirectories of BASE/<model_name> (what TF Serving would load)."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(d) for d in os.listdir(base_dir)
                  if d.isdigit() and os.path.isdir(os.path.join(base_dir, d)))


def next_version(base_dir: str) -> int:
    """Unix time (as the TFX Pusher uses), bumped above any existing version."""
    versions = existing_versions(base_dir)
    return max([int(time.time())] + [v + 1 for v in versions])


def export_versioned(
    model: Any,
    spec: Any,
    serving_dir: str,
    model_name: str = DEFAULT_MODEL_NAME,
    version: Optional[int] = None,
    warmup_examples: Optional[Iterable[Any]] = None,
    **kwargs: Any,
) -> str:
    """Export into SERVING_DIR/<model_name>/<version>/ (TF Serving / Pusher layout); returns it."""
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise UserInputError(f"--model-name {model_name!r} must be a plain directory name")
    base = os.path.join(serving_dir, model_name)
    if version is None:
        version = next_version(base)
    if int(version) < 0:
        raise UserInputError(f"--version must be a non-negative integer, got {version}")
    export_dir = os.path.join(base, str(int(version)))
    if os.path.exists(export_dir):
        raise UserInputError(
            f"version {version} already exists at {export_dir}; TF Serving never reloads a "
            "version in place: pick a new --version (or leave it unset)"
        )
    return export_saved_model(model, spec, export_dir, warmup_examples, model_name=model_name,
                              **kwargs)


def latest_version_dir(base_dir: str) -> str:
    """The highest numeric version directory under BASE/<model_name>."""
    versions = existing_versions(base_dir)
    if not versions:
        raise UserInputError(f"no numeric version directories under {base_dir}; export a model first")
    return os.path.join(base_dir, str(versions[-1]))


# ---------------------------------------------------------------------------------------
# TF Serving configuration files
# ---------------------------------------------------------------------------------------
def models_config_text(
    models: Sequence[Tuple[str, str]],
    version_policy: str = "latest",
    num_versions: int = 1,
    versions: Sequence[int] = (),
) -> str:
    """A TF Serving `--model_config_file` (ModelServerConfig text proto) for (name, base_path)s.

    version_policy: "latest" (keep the newest `num_versions`), "all", or "specific" (`versions`).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models:
        m = cfg.model_config_list.config.add()
        m.name = name
        m.base_path = base_path
        m.model_platform = "tensorflow"
        policy = m.model_version_policy
        if version_policy == "latest":
            policy.latest.num_versions = int(num_versions)
        elif version_policy == "all":
            policy.all.SetInParent()
        elif version_policy == "specific":
            if not versions:
                raise UserInputError("version_policy 'specific' needs at least one version")
            policy.specific.versions.extend(int(v) for v in versions)
        else:
            raise UserInputError(
                f"unknown version policy {version_policy!r}; use latest, all or specific"
            )
    return text_format.MessageToString(cfg)


def parse_models_config(path: str) -> Any:
    """Read and validate a models.config file into a ModelServerConfig proto."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist")
    cfg = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        try:
            text_format.Parse(f.read(), cfg)
        except text_format.ParseError as e:
            raise UserInputError(f"{path} is not a valid ModelServerConfig text proto: {e}") from e
    names = [m.name for m in cfg.model_config_list.config]
    if not names:
        raise UserInputError(f"{path} lists no models (model_config_list.config is empty)")
    if len(set(names)) != len(names):
        raise UserInputError(f"{path} lists a model name twice: {names}")
    for m in cfg.model_config_list.config:
        if not m.base_path:
            raise UserInputError(f"{path}: model {m.name!r} has no base_path")
    return cfg


def write_models_config(path: str, models: Sequence[Tuple[str, str]], **kwargs: Any) -> str:
    """Write models.config atomically and validate it by parsing it back."""
    write_text(path, models_config_text(models, **kwargs))
    parse_models_config(path)
    return path


def batching_parameters_text(
    max_batch_size: int = 1024,
    batch_timeout_micros: int = 2000,
    num_batch_threads: int = 4,
    max_enqueued_batches: int = 100,
    allowed_batch_sizes: Sequence[int] = (1, 8, 64, 256, 1024),
    pad_variable_length_inputs: bool = True,
) -> str:
    """A TF Serving `--batching_parameters_file` (BatchingParameters text proto)."""
    if allowed_batch_sizes and int(allowed_batch_sizes[-1]) != int(max_batch_size):
        raise UserInputError("the last allowed batch size must equal max_batch_size")
    lines = [
        f"max_batch_size {{ value: {int(max_batch_size)} }}",
        f"batch_timeout_micros {{ value: {int(batch_timeout_micros)} }}",
        f"num_batch_threads {{ value: {int(num_batch_threads)} }}",
        f"max_enqueued_batches {{ value: {int(max_enqueued_batches)} }}",
    ]
    lines += [f"allowed_batch_sizes: {int(b)}" for b in allowed_batch_sizes]
    lines.append(f"pad_variable_length_inputs: {'true' if pad_variable_length_inputs else 'false'}")
    return "\n".join(lines) + "\n"


def parse_batching_parameters(path: str) -> Dict[str, Any]:
    """Validate a batching parameters file; returns its fields (proto when TF Serving's is installed)."""
    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist")
    text = open(path).read()
    try:
        from google.protobuf import text_format
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        msg = session_bundle_config_pb2.BatchingParameters()
        text_format.Parse(text, msg)
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(msg, preserving_proto_field_name=True)
    except ImportError:
        # tensorflow-serving-api does not ship session_bundle_config_pb2: check the fields
        # ourselves against the BatchingParameters schema.
        return _parse_batching_fallback(path, text)


_BATCHING_WRAPPED = ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
                     "max_enqueued_batches", "thread_pool_name")
_BATCHING_SCALAR = ("allowed_batch_sizes", "pad_variable_length_inputs",
                    "enable_large_batch_splitting")


def _parse_batching_fallback(path: str, text: str) -> Dict[str, Any]:
    import re

    out: Dict[str, Any] = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(\w+)\s*\{\s*value\s*:\s*(\S+?)\s*\}", line)
        if m and m.group(1) in _BATCHING_WRAPPED:
            v = m.group(2).strip('"')
            out[m.group(1)] = int(v) if v.isdigit() else v
            continue
        m = re.fullmatch(r"(\w+)\s*:\s*(\S+)", line)
        if m and m.group(1) in _BATCHING_SCALAR:
            v = m.group(2)
            if m.group(1) == "allowed_batch_sizes":
                out.setdefault("allowed_batch_sizes", []).append(int(v))
            else:
                out[m.group(1)] = v == "true"
            continue
        raise UserInputError(f"{path} line {i}: {line!r} is not a BatchingParameters field")
    sizes = out.get("allowed_batch_sizes", [])
    if sizes and sizes != sorted(sizes):
        raise UserInputError(f"{path}: allowed_batch_sizes must increase")
    if sizes and "max_batch_size" in out and sizes[-1] != int(out["max_batch_size"]):
        raise UserInputError(f"{path}: the last allowed_batch_sizes must equal max_batch_size")
    return out


def saved_model_signatures(export_dir: str) -> Dict[str, Dict[str, Any]]:
    """Input/output names, dtypes and shapes of each signature of a SavedModel (no execution)."""
    tf = _tf()
    loaded = tf.saved_model.load(export_dir)
    out = {}
    for name, fn in loaded.signatures.items():
        ins = fn.structured_input_signature[1]
        out[name] = {
            "inputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in ins.items()},
            "outputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_outputs.items()},
        }
    return out


def find_saved_model(path: str) -> str:
    """A SavedModel dir from a path that is one, BASE/<name> with version subdirs, or MDIR."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    if existing_versions(path):
        return latest_version_dir(path)
    # A `llm4msr train` output dir keeps its export in MDIR/saved_model/.
    if os.path.exists(os.path.join(path, "saved_model", "saved_model.pb")):
        return os.path.join(path, "saved_model")
    # A SERVING_DIR holding exactly one model: use its latest version.
    models = sorted({os.path.dirname(os.path.dirname(h))
                     for h in glob.glob(os.path.join(path, "*", "*", "saved_model.pb"))
                     if os.path.basename(os.path.dirname(h)).isdigit()})
    if len(models) == 1:
        return latest_version_dir(models[0])
    raise UserInputError(
        f"{path} is not a SavedModel (no saved_model.pb) nor a BASE/<model_name> directory with "
        "numeric versions; pass the directory `llm4msr export` wrote"
    )


def load_export_metadata(export_dir: str) -> Dict[str, Any]:
    """The llm4msr_export.json written next to the warmup file (empty dict if absent)."""
    path = os.path.join(export_dir, WARMUP_DIRNAME, EXPORT_METADATA_FILENAME)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_serving_dir_config(serving_dir: str, base_path: str = "/models") -> str:
    """Write SERVING_DIR/models.config listing every model with numeric versions there.

    `base_path` is where the server sees SERVING_DIR (the container mount), so the file can
    be used as is with serving/docker-compose.yml.
    """
    names = sorted(d for d in os.listdir(serving_dir)
                   if not d.startswith(".") and existing_versions(os.path.join(serving_dir, d)))
    if not names:
        raise UserInputError(f"{serving_dir} holds no BASE/<model_name>/<version>/ models to list")
    models = [(n, base_path.rstrip("/") + "/" + n) for n in names]
    return write_models_config(os.path.join(serving_dir, "models.config"), models)
