"""TF Serving warmup: PredictionLog records built from real examples, written, read and replayed.

``assets.extra/tf_serving_warmup_requests`` holds PredictionLog records (one per signature and
warmup batch size) built from real examples; TF Serving replays them at load time so the
first live request does not pay for graph initialisation.
"""
import logging
import os
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from llm4msr_tf.serving.signatures import (
    DEFAULT_MODEL_NAME,
    EXAMPLES_INPUT,
    RAW_SIGNATURE,
    SERVING_SIGNATURE,
)
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

WARMUP_DIRNAME = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
# Batch sizes replayed at load time; they match the allowed batch sizes of
# serving/batching_parameters.txt so each padded batch shape is warmed once.
DEFAULT_WARMUP_BATCH_SIZES: Tuple[int, ...] = (1, 8, 64)


def read_examples(spec: Any, split: str = "eval", limit: int = 64) -> List[bytes]:
    """The first `limit` serialized tf.Examples of a split (real data, for warmup and tests)."""
    import tensorflow as tf

    files = spec.tfrecord_files(split)
    if not files:
        raise UserInputError(
            f"no TFRecords match {spec.tfrecord_pattern(split)}; run `llm4msr prepare` first "
            "or pass another --warmup-split"
        )
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [bytes(x.numpy()) for x in ds]


def default_warmup(spec: Any, n: int = 64) -> List[bytes]:
    """Warmup examples when the caller gave none: the first eval examples of the spec's data."""
    try:
        if getattr(spec, "data_dir", None) and spec.tfrecord_files("eval"):
            return read_examples(spec, "eval", n)
    except Exception as e:  # noqa: BLE001  (warmup is an optimisation; never fail the export)
        log.warning("could not read default warmup examples from %s: %s", spec.data_dir, e)
    return []


def to_serialized(examples: Iterable[Any]) -> List[bytes]:
    """Serialized bytes of tf.Examples given as bytes or `tf.train.Example` protos."""
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
    import tensorflow as tf
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
    import tensorflow as tf

    d = os.path.join(export_dir, WARMUP_DIRNAME)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, WARMUP_FILENAME)
    with tf.io.TFRecordWriter(path) as w:
        for rec in logs:
            w.write(rec.SerializeToString())
    return path


def read_warmup(export_dir: str) -> List[Any]:
    """Parse every PredictionLog record of a SavedModel's warmup file."""
    import tensorflow as tf
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
    import tensorflow as tf

    results = []
    for rec in logs:
        req = rec.predict_log.request
        fn = loaded.signatures[req.model_spec.signature_name or SERVING_SIGNATURE]
        kwargs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
        results.append({k: v.numpy() for k, v in fn(**kwargs).items()})
    return results
