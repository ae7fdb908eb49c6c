"""Feature mode vs table mode: test AUC of LLM4MSR trained both ways on the same data, knowledge and seeds.

Prepares the dataset (ML-100K by default), runs the knowledge job (``--llm``, DirectRunner),
joins the user vectors into the examples with ``llm4msr join-knowledge``, then trains the same
LLM4MSR model with ``llm4msr train`` in table mode (user table in the model, on the prepared
data) and in feature mode (``--user-knowledge-mode feature``, on the joined data) for every seed.
Same weights give the same scores in both modes (tests/test_feature_mode.py); what can differ
here is the order of the training examples (the join groups them by user, the shuffle then
sees another order), so the paired difference measures that noise.

``--via tfx`` runs the same comparison through the TFX pipeline (``llm4msr pipeline``, LocalDagRunner):
table mode on the prepared data, feature mode on the same data with the pipeline's own
`JoinKnowledge` component joining the vectors after ImportExampleGen; test AUC and log loss
are the Evaluator's (TFMA, on the pushed model's serving signature). Writes feature_mode_tfx.*.

    python -m benchmarks.feature_mode --dataset ml-100k --llm minilm --seeds 0 1 2
    python -m benchmarks.feature_mode --via tfx --dataset ml-100k --llm minilm --seeds 0 1
"""
import argparse
import logging
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common

log = logging.getLogger("benchmarks.feature_mode")

NAME = "feature_mode"


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Prepare, knowledge, join, train both modes per seed; write benchmarks/results/feature_mode.json and .md."""
    common.setup(args.threads)
    data = common.ensure_prepared(args.dataset, args.work_dir)
    work = os.path.join(args.work_dir, "feature_mode")
    kdir = os.path.join(args.work_dir, "knowledge", f"{args.dataset}-{args.llm}")
    if not os.path.exists(os.path.join(kdir, "manifest.json")):
        common.run_cli(["knowledge", "--data", data, "--out", kdir, "--llm", args.llm], "knowledge job")
    shutil.rmtree(work, ignore_errors=True)
    rows: List[Dict[str, Any]] = []
    join_s = None
    if args.via == "cli":
        joined = os.path.join(work, "data_feature")
        t0 = time.monotonic()
        common.run_cli(["join-knowledge", "--data", data, "--knowledge", kdir, "--out", joined], "join-knowledge")
        join_s = time.monotonic() - t0
    for seed in args.seeds:
        for mode in ("table", "feature"):
            out = os.path.join(work, f"{mode}-{seed}")
            t0 = time.monotonic()
            common_args = ["--knowledge", kdir, "--backbone", args.backbone, "--user-knowledge-mode", mode,
                           "--epochs", str(args.epochs), "--patience", "1", "--batch-size", str(args.batch_size),
                           "--seed", str(seed), "--optimizer", "legacy_adam"]
            if args.via == "cli":
                common.run_cli(["train", "--data", joined if mode == "feature" else data, *common_args,
                                "--progress", "none", "--out", out], f"train {mode} seed {seed}")
                m = common.read_json(os.path.join(out, "metrics.json"))
                row = {"test_auc": m["test"]["overall"]["auc"], "test_log_loss": m["test"]["overall"]["log_loss"],
                       "best_epoch": m["best_epoch"]}
            else:
                row = _pipeline_run(data, out, common_args, f"pipeline {mode} seed {seed}")
            rows.append({"mode": mode, "seed": seed, **{k: round(v, 5) if isinstance(v, float) else v
                                                        for k, v in row.items()},
                         "wall_s": round(time.monotonic() - t0, 1)})
            log.info("%s", rows[-1])
    auc = {mode: np.array([r["test_auc"] for r in rows if r["mode"] == mode]) for mode in ("table", "feature")}
    diff = auc["feature"] - auc["table"]
    summary = {"table_auc_mean": round(float(auc["table"].mean()), 5),
               "feature_auc_mean": round(float(auc["feature"].mean()), 5),
               "paired_diff_mean": round(float(diff.mean()), 5),
               "paired_diff_sd": round(float(diff.std(ddof=1)), 5) if len(diff) > 1 else None,
               "table_seed_sd": round(float(auc["table"].std(ddof=1)), 5) if len(diff) > 1 else None}
    payload = {"dataset": args.dataset, "llm": args.llm, "backbone": args.backbone, "epochs": args.epochs,
               "batch_size": args.batch_size, "via": args.via,
               "join_s": round(join_s, 1) if join_s is not None else None, "results": rows, "summary": summary}
    name = NAME if args.via == "cli" else f"{NAME}_tfx"
    doc = common.save_result(name, payload, "benchmarks.feature_mode", args.out_dir, argv)
    common.write_text(os.path.join(args.out_dir, f"{name}.md"), markdown(doc))
    print(markdown(doc))
    shutil.rmtree(work, ignore_errors=True)
    return doc


def _pipeline_run(data: str, out: str, train_args: List[str], what: str) -> Dict[str, Any]:
    """One `llm4msr pipeline` run under OUT; the Evaluator's overall test AUC / log loss and the best epoch."""
    from llm4msr_tf.tfx import constants as C
    from llm4msr_tf.tfx.results import read_result
    from llm4msr_tf.tfx.runner import metadata_path

    common.run_cli(["pipeline", "--data", data, *train_args, "--pipeline-root", os.path.join(out, "root"),
                    "--serving-dir", os.path.join(out, "serving"), "--min-auc", "0.0"], what)
    res = read_result(metadata_path(os.path.join(out, "root")), C.PIPELINE_NAME, 0.0)
    overall = res.slice_metrics["overall"]
    m = common.read_json(os.path.join(res.model_run_dir, "metrics.json"))
    return {"test_auc": overall["auc"], "test_log_loss": overall["log_loss"], "best_epoch": m["best_epoch"],
            "components": sorted(res.component_states)}


def markdown(doc: Dict[str, Any]) -> str:
    """One row per (seed, mode) and the paired summary."""
    rows = [[r["seed"], r["mode"], r["test_auc"], r["test_log_loss"], r["best_epoch"], r["wall_s"]]
            for r in doc["results"]]
    s = doc["summary"]
    via = ("through the TFX pipeline, feature mode joined by its JoinKnowledge component"
           if doc.get("via") == "tfx" else "llm4msr train, feature mode on llm4msr join-knowledge output")
    join = f" join-knowledge took {doc['join_s']} s." if doc.get("join_s") is not None else ""
    return (f"### Feature mode vs table mode (LLM4MSR + {doc['backbone']}, {doc['llm']} knowledge, {doc['dataset']}; "
            f"{via})\n\n"
            + common.markdown_table(["seed", "mode", "test AUC", "test log loss", "best epoch", "wall s"],
                                    [[str(c) for c in row] for row in rows])
            + f"\nMean test AUC: table {s['table_auc_mean']}, feature {s['feature_auc_mean']}; paired feature - table "
              f"{s['paired_diff_mean']} (sd {s['paired_diff_sd']}; seed-to-seed sd of table mode {s['table_seed_sd']})."
              f"{join}\n\nCommand: `{doc.get('command', '')}`\n")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.feature_mode", description=__doc__.split("\n")[0])
    p.add_argument("--via", choices=["cli", "tfx"], default="cli",
                   help="train with `llm4msr train` (cli) or through the TFX pipeline (tfx)")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--llm", default="minilm")
    p.add_argument("--backbone", default="shared_bottom")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point."""
    run(parse_args(argv), argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
