"""Score a prepared split through an exported model (TF Serving REST/gRPC or in-process).

Reads ``DATA_DIR/<split>/*.tfrecord.gz``, sends batches through the ``serving_default``
(serialized tf.Example) or ``predict_raw`` (named raw tensors) signature of one of the clients
in `llm4msr_tf.serving.client`, and returns the predictions with their metrics in the one
metrics schema of `llm4msr_tf.metrics` (``overall`` / ``scenarios``, each with ``auc``,
``log_loss``, ``rows``, ``positives``).
"""
import dataclasses
import time
from typing import Any, Dict, Optional

from llm4msr_tf.utils.io import UserInputError


@dataclasses.dataclass
class PredictConfig:
    """Where to send requests and what to score (the flags of `llm4msr predict`)."""

    local: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "SavedModel dir (or BASE/<model_name>) to run in-process"})
    rest: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "TF Serving REST address HOST:PORT (e.g. localhost:8501)"})
    grpc: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "TF Serving gRPC address HOST:PORT (e.g. localhost:8500)"})
    model_name: str = dataclasses.field(default="llm4msr", metadata={"help": "served model name"})
    model_version: Optional[int] = dataclasses.field(
        default=None, metadata={"help": "pin a served version (default: the server's latest)"})
    data: str = dataclasses.field(default="", metadata={"help": "prepared DATA_DIR (llm4msr prepare)"})
    split: str = dataclasses.field(default="test", metadata={"help": "split to score",
                                                              "choices": ["train", "eval", "test"]})
    signature: str = dataclasses.field(
        default="serving_default",
        metadata={"help": "signature to call", "choices": ["serving_default", "predict_raw"]})
    batch_size: int = dataclasses.field(default=256, metadata={"help": "examples per request"})
    limit: int = dataclasses.field(default=0, metadata={"help": "score at most N examples (0 = all)"})
    timeout: float = dataclasses.field(default=30.0, metadata={"help": "per-request timeout (s)"})
    output: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "write predictions as JSON lines to this file"})


def predict_split(cfg: PredictConfig) -> Dict[str, Any]:
    """Score one split of a prepared dataset through the chosen client.

    Args:
        cfg: the target (exactly one of ``local``, ``rest``, ``grpc``), the data and split,
            the signature and the request batch size.

    Returns:
        ``{"probability", "logit", "label", "scenario"}`` numpy arrays in split order and
        ``"summary"``: rows, signature, wall seconds, examples/s inside requests, mean
        probability, and the metrics (`llm4msr_tf.metrics.scenario_metrics`: ``overall``,
        ``scenarios``, ``mean_scenario_auc``).
    """
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.metrics import scenario_metrics
    from llm4msr_tf.serving.client import make_client

    if not cfg.data:
        raise UserInputError("--data DATA_DIR is required (a directory written by `llm4msr prepare`)")
    if cfg.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.limit < 0:
        raise UserInputError(f"--limit must be >= 0 (0 = every example), got {cfg.limit}")
    if not cfg.timeout > 0:
        raise UserInputError(f"--timeout must be > 0 seconds, got {cfg.timeout}")
    if cfg.output:
        from llm4msr_tf.utils.io import check_output_file

        check_output_file(cfg.output, "--output", protected={"--data": cfg.data, "--local": cfg.local})
    spec = DatasetSpec.load(cfg.data)
    files = spec.tfrecord_files(cfg.split)
    if not files:
        raise UserInputError(f"no TFRecords match {spec.tfrecord_pattern(cfg.split)}")
    target = cfg.local or cfg.rest or cfg.grpc
    client = make_client(cfg.local, cfg.rest, cfg.grpc, cfg.model_name, cfg.model_version, cfg.timeout)
    full_spec = spec.feature_spec()
    meta_spec = {k: full_spec[k] for k in (spec.label, spec.scenario_feature) if k in full_spec}
    raw_spec = {k: v for k, v in full_spec.items() if k != spec.label}

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if cfg.limit > 0:
        ds = ds.take(cfg.limit)
    ds = ds.batch(cfg.batch_size)
    probs, logits, labels, scenarios = [], [], [], []
    t0 = time.perf_counter()
    busy = 0.0
    for batch in _checked(tqdm(ds, desc=f"predict {cfg.split}", unit="batch", leave=False), files):
        meta = tf.io.parse_example(batch, meta_spec)
        if cfg.signature == "serving_default":
            payload = [bytes(x) for x in batch.numpy()]
            t = time.perf_counter()
            out = _call(client.predict_examples, payload, target, cfg.data)
        else:
            parsed = tf.io.parse_example(batch, raw_spec)
            raw = {k: v.numpy() for k, v in parsed.items()}
            t = time.perf_counter()
            out = _call(client.predict_raw, raw, target, cfg.data)
        busy += time.perf_counter() - t
        probs.append(out["probability"][:, 0])
        logits.append(out["logit"][:, 0])
        labels.append(meta[spec.label].numpy())
        scenarios.append(meta[spec.scenario_feature].numpy())
    wall = time.perf_counter() - t0
    if not probs:
        raise UserInputError(f"split {cfg.split!r} of {cfg.data} has no examples")
    prob, logit = np.concatenate(probs), np.concatenate(logits)
    label, scen = np.concatenate(labels), np.concatenate(scenarios)
    summary = {"rows": int(len(prob)), "signature": cfg.signature, "wall_s": round(wall, 3),
               "examples_per_s_in_requests": round(len(prob) / max(busy, 1e-9), 1),
               "mean_probability": float(prob.mean())}
    summary.update(scenario_metrics(label, prob, scen, spec.num_scenarios, spec.scenario_names()))
    return {"probability": prob, "logit": logit, "label": label, "scenario": scen, "summary": summary}


def _call(fn: Any, payload: Any, target: Any, data: str) -> Any:
    """One request; a model that rejects the examples is a user error naming both sides."""
    from llm4msr_tf.serving.client import ServingError

    try:
        return fn(payload)
    except ServingError as e:
        raise UserInputError(
            f"the model at {target} rejected examples of {data} ({' '.join(str(e).split())[:300]}); "
            "score data prepared the way the model's training data was (same features)") from None


def _checked(batches: Any, files: Any) -> Any:
    """Iterate dataset batches; a corrupt TFRecord file becomes one error naming the file."""
    import tensorflow as tf

    it = iter(batches)
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            bad = _first_unreadable(files)
            raise UserInputError(f"{bad or ', '.join(files)} is not a readable gzip TFRecord file "
                                 f"({type(e).__name__}); re-run `llm4msr prepare`") from None


def _first_unreadable(files: Any) -> Optional[str]:
    import tensorflow as tf

    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                pass
        except tf.errors.OpError:
            return path
    return None
