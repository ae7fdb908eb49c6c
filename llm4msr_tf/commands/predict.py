"""`llm4msr predict`: score a prepared split through TF Serving (REST/gRPC) or in-process.

Reads ``DATA_DIR/<split>/*.tfrecord.gz``, sends batches to the chosen target through the
``serving_default`` (serialized tf.Example) or ``predict_raw`` (named raw tensors) signature,
and prints a summary (rows, throughput, mean probability, AUC and log loss per scenario when
labels are present). ``--output`` writes one JSON line per example.
"""
import argparse
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Optional

from llm4msr_tf.config import add_dataclass_args, dataclass_from_args

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PredictConfig:
    """Where to send requests and what to score."""

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


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `predict` subcommand."""
    p = sub.add_parser(
        "predict", help="score a prepared split via TF Serving REST/gRPC or the SavedModel in-process",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, PredictConfig)
    p.set_defaults(func=run)


def predict_split(cfg: PredictConfig) -> Dict[str, Any]:
    """Score the split; returns arrays (probability, logit, label, scenario) and a summary."""
    import numpy as np
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf
    from tqdm import tqdm

    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.serving_client import make_client
    from llm4msr_tf.utils.io import UserInputError

    if not cfg.data:
        raise UserInputError("--data DATA_DIR is required (a directory written by `llm4msr prepare`)")
    if cfg.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    spec = DatasetSpec.load(cfg.data)
    files = spec.tfrecord_files(cfg.split)
    if not files:
        raise UserInputError(f"no TFRecords match {spec.tfrecord_pattern(cfg.split)}")
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
    for batch in tqdm(ds, desc=f"predict {cfg.split}", unit="batch", leave=False):
        meta = tf.io.parse_example(batch, meta_spec)
        if cfg.signature == "serving_default":
            payload = [bytes(x) for x in batch.numpy()]
            t = time.perf_counter()
            out = client.predict_examples(payload)
        else:
            parsed = tf.io.parse_example(batch, raw_spec)
            raw = {k: v.numpy() for k, v in parsed.items()}
            t = time.perf_counter()
            out = client.predict_raw(raw)
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
               "mean_probability": float(prob.mean()), "per_scenario": {}}
    summary.update(_quality(prob, label))
    for s in sorted(set(scen.tolist())):
        m = scen == s
        summary["per_scenario"][str(s)] = {"rows": int(m.sum()), **_quality(prob[m], label[m])}
    return {"probability": prob, "logit": logit, "label": label, "scenario": scen, "summary": summary}


def _quality(prob: Any, label: Any) -> Dict[str, Any]:
    from llm4msr_tf.metrics import log_loss, roc_auc  # exact, equal to sklearn's (tested)

    out: Dict[str, Any] = {"positives": int(label.sum())}
    if 0 < label.sum() < len(label):
        out["auc"] = roc_auc(label, prob)
    out["logloss"] = log_loss(label, prob) if len(label) else None
    return out


def run(args: argparse.Namespace) -> int:
    """Score the split, write --output if asked, print a one-screen summary."""
    cfg = dataclass_from_args(PredictConfig, args)
    res = predict_split(cfg)
    if cfg.output:
        d = os.path.dirname(os.path.abspath(cfg.output))
        os.makedirs(d, exist_ok=True)
        tmp = cfg.output + ".tmp"
        with open(tmp, "w") as f:
            for p, lg, y, s in zip(res["probability"], res["logit"], res["label"], res["scenario"]):
                f.write(json.dumps({"probability": float(p), "logit": float(lg), "label": int(y),
                                    "scenario_id": int(s)}) + "\n")
        os.replace(tmp, cfg.output)
    s = res["summary"]
    target = cfg.local or cfg.rest or cfg.grpc
    print(f"scored {s['rows']} examples of {cfg.split!r} via {target} ({s['signature']}) "
          f"in {s['wall_s']}s; {s['examples_per_s_in_requests']} examples/s inside requests")
    print(f"{'scenario':>10} {'rows':>8} {'pos':>7} {'auc':>7} {'logloss':>8}")
    for name, q in [("all", s)] + sorted(s["per_scenario"].items()):
        auc = f"{q['auc']:.4f}" if "auc" in q else "-"
        print(f"{name:>10} {q['rows']:>8} {q['positives']:>7} {auc:>7} {q['logloss']:>8.4f}")
    if cfg.output:
        print(f"predictions: {cfg.output}")
    return 0
