"""`llm4msr predict`: score a prepared split through TF Serving (REST/gRPC) or in-process.

Reads ``DATA_DIR/<split>/*.tfrecord.gz``, sends batches to the chosen target through the
``serving_default`` (serialized tf.Example) or ``predict_raw`` (named raw tensors) signature,
and prints a summary (rows, throughput, mean probability, AUC and log loss per scenario when
labels are present). ``--output`` writes one JSON line per example.
"""
import argparse
import json
import math

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args
from llm4msr_tf.serving.scoring import PredictConfig
from llm4msr_tf.utils.io import write_text


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `predict` subcommand."""
    add_command(sub, "predict", [PredictConfig], run,
                help="score a prepared split via TF Serving REST/gRPC or the SavedModel in-process",
                description=__doc__, raw_description=True)


def run(args: argparse.Namespace) -> int:
    """Score the split, write --output if asked, print a one-screen summary."""
    from llm4msr_tf.serving.scoring import predict_split

    cfg = dataclass_from_args(PredictConfig, args)
    res = predict_split(cfg)
    if cfg.output:
        write_text(cfg.output, "".join(
            json.dumps({"probability": float(p), "logit": float(lg), "label": int(y), "scenario_id": int(sid)}) + "\n"
            for p, lg, y, sid in zip(res["probability"], res["logit"], res["label"], res["scenario"])))
    s = res["summary"]
    target = cfg.local or cfg.rest or cfg.grpc
    print(f"scored {s['rows']} examples of {cfg.split!r} via {target} ({s['signature']}) "
          f"in {s['wall_s']}s; {s['examples_per_s_in_requests']} examples/s inside requests")
    print(f"{'scenario':>10} {'rows':>8} {'pos':>7} {'auc':>7} {'logloss':>8}")
    rows = [("all", s["overall"])] + [(k, q) for k, q in s["scenarios"].items() if q["rows"]]
    for name, q in rows:
        auc = "-" if math.isnan(q["auc"]) else f"{q['auc']:.4f}"
        print(f"{name:>10} {q['rows']:>8} {q['positives']:>7} {auc:>7} {q['log_loss']:>8.4f}")
    if cfg.output:
        print(f"predictions: {cfg.output}")
    return 0
