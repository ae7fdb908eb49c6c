"""Scale-out on one machine: two-worker training beside one process, the knowledge job on a portable runner beside DirectRunner.

Two measurements of issue 19, both in one run so they share the machine's state:

- ``training``: ``llm4msr train`` on a prepared dataset (ML-100K by default) once as one
  process (``--strategy default``) and once as two worker processes on 127.0.0.1
  (``--strategy multi_worker``, one TF_CONFIG each, free loopback ports), same flags and the
  same GLOBAL batch. Reported: wall seconds of the whole command (start-up, training, eval,
  test, export; for two workers until both exited), the fit seconds and steady examples/s
  from metrics.json, and test AUC. Both workers share this machine's cores, so two workers
  cannot be faster here: the ratio is the price of the collectives and the coordination, not
  a speed-up (on two machines each worker has its own cores).
- ``knowledge``: ``llm4msr_tf.knowledge.job.run`` over the same prompts (the scenario prompts
  and the first ``--knowledge-users`` user prompts of the dataset) with the DirectRunner and
  with the PortableRunner on Beam's job service and worker pool (EXTERNAL environment: the SDK
  workers are separate processes, `llm4msr_tf.testing.LocalPortableCluster`) with 1 and 2
  workers. Reported: prompts/s of model time (summed over workers) and of wall time, and the
  largest absolute difference of any vector from the DirectRunner's.

    python -m benchmarks.scale --dataset ml-100k --llm minilm --knowledge-users 200
"""
import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common

log = logging.getLogger("benchmarks.scale")

NAME = "scale"


def _train_flags(args: argparse.Namespace, data: str, out: str) -> List[str]:
    flags = ["train", "--data", data, "--no-knowledge", "--backbone", args.backbone, "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--patience", str(args.epochs), "--optimizer", "legacy_adam",
             "--progress", "none", "--out", out, "--overwrite"]
    if args.steps_per_epoch:
        flags += ["--steps-per-epoch", str(args.steps_per_epoch)]
    return flags


def _worker_env(ports: Sequence[int], index: int) -> Dict[str, str]:
    env = dict(os.environ)
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                   "task": {"type": "worker", "index": index}})
    return env


def _train_row(mode: str, workers: int, wall: float, out: str) -> Dict[str, Any]:
    m = common.read_json(os.path.join(out, "metrics.json"))
    return {"mode": mode, "workers": workers, "wall_s": round(wall, 2), "fit_s": round(m["fit_seconds"], 2),
            "epochs_run": m["epochs_run"], "train_examples_per_s_steady": m.get("train_examples_per_second_steady"),
            "test_auc": round(m["test"]["overall"]["auc"], 4), "test_log_loss": round(m["test"]["overall"]["log_loss"], 4)}


def run_training(args: argparse.Namespace, data: str, work: str) -> List[Dict[str, Any]]:
    """Time one process, then two worker processes, on the same flags."""
    from llm4msr_tf.testing.beam_cluster import free_port

    rows = []
    out = os.path.join(work, "single")
    t0 = time.monotonic()
    common.run_cli(_train_flags(args, data, out), "single-process training")
    rows.append(_train_row("single process (--strategy default)", 1, time.monotonic() - t0, out))
    log.info("training: %s", rows[-1])

    out = os.path.join(work, "two_workers")
    ports = [free_port(), free_port()]
    cmd = common.llm4msr_cli() + _train_flags(args, data, out) + ["--strategy", "multi_worker"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, env=_worker_env(ports, i), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=common.PROJECT_ROOT) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=args.timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.monotonic() - t0
    if [p.returncode for p in procs] != [0, 0]:
        raise RuntimeError("two-worker training failed: " + "\n".join(o[-2000:] for o in outs))
    rows.append(_train_row("two workers on 127.0.0.1 (--strategy multi_worker)", 2, wall, out))
    log.info("training: %s", rows[-1])
    return rows


def _prompt_subset(data: str, users: int, dst: str) -> str:
    """DST/prompts/ with every scenario prompt and the first `users` user prompts of DATA."""
    from llm4msr_tf.data.prompt_format import read_prompts, write_prompts

    prompts = read_prompts(data)
    scen = [p for p in prompts if p.key_type == "scenario"]
    usr = [p for p in prompts if p.key_type == "user"][:users]
    write_prompts(dst, scen + usr)
    return dst


def run_knowledge(args: argparse.Namespace, data: str, work: str) -> List[Dict[str, Any]]:
    """The same prompts through DirectRunner and the portable runner with 1 and 2 SDK workers."""
    from llm4msr_tf.knowledge.config import KnowledgeConfig
    from llm4msr_tf.knowledge.job import run
    from llm4msr_tf.knowledge.store import iter_records
    from llm4msr_tf.testing import LocalPortableCluster

    pdata = _prompt_subset(data, args.knowledge_users, os.path.join(work, "prompts_data"))
    base = dict(data=pdata, llm=args.llm, batch_size=args.knowledge_batch_size, num_shards=2,
                threads=args.knowledge_threads)

    def vectors(kdir: str) -> Dict[Any, np.ndarray]:
        return {(r.key_type, r.key): r.vector for r in iter_records(kdir)}

    def row(runner: str, workers: int, m: Dict[str, Any], want: Optional[Dict[Any, np.ndarray]], kdir: str):
        got = vectors(kdir)
        diff = None
        if want is not None:
            if set(got) != set(want):
                raise RuntimeError(f"{runner} x{workers}: keys differ from the DirectRunner's")
            diff = float(max(np.max(np.abs(got[k] - want[k])) for k in want))
        return {"runner": runner, "sdk_workers": workers, "prompts": sum(m["counts"].values()),
                "encoded_prompts": m["encoded_prompts"], "wall_s": m["seconds"], "encode_s": m["encode_seconds"],
                "prompts_per_s_model": m["encoded_prompts_per_second"],
                "prompts_per_s_wall": round(m["encoded_prompts"] / m["seconds"], 2) if m["seconds"] else None,
                "max_abs_diff_vs_direct": diff}, got

    rows = []
    kd = os.path.join(work, "k_direct")
    m = run(KnowledgeConfig(out=kd, **base))
    r, want = row("DirectRunner", 1, m, None, kd)
    rows.append(r)
    log.info("knowledge: %s", r)
    with LocalPortableCluster(os.path.join(work, "cluster")) as cluster:
        for workers in (1, 2):
            kd = os.path.join(work, f"k_portable{workers}")
            m = run(KnowledgeConfig(out=kd, runner="PortableRunner", **base), cluster.beam_args(workers=workers))
            r, _ = row("PortableRunner (EXTERNAL worker pool)", workers, m, want, kd)
            rows.append(r)
            log.info("knowledge: %s", r)
    return rows


def markdown(doc: Dict[str, Any]) -> str:
    """Two tables: training, knowledge job."""
    t = doc["training"]
    th = ["mode", "workers", "wall s", "fit s", "epochs", "steady train ex/s", "test AUC", "test log loss"]
    tr = [[r["mode"], r["workers"], r["wall_s"], r["fit_s"], r["epochs_run"],
           round(r["train_examples_per_s_steady"]) if r["train_examples_per_s_steady"] else "-",
           r["test_auc"], r["test_log_loss"]] for r in t["results"]]
    k = doc["knowledge"]
    kh = ["runner", "SDK workers", "prompts", "encoded", "wall s", "prompts/s (model time)", "prompts/s (wall)",
          "max |diff| vs DirectRunner"]
    kr = [[r["runner"], r["sdk_workers"], r["prompts"], r["encoded_prompts"], r["wall_s"], r["prompts_per_s_model"],
           r["prompts_per_s_wall"], "-" if r["max_abs_diff_vs_direct"] is None else f"{r['max_abs_diff_vs_direct']:.2g}"]
          for r in k["results"]]
    return (f"### Training: one process vs two workers ({t['backbone']} on {doc['dataset']}, global batch "
            f"{t['batch_size']}, {t['epochs']} epochs)\n\n"
            + common.markdown_table(th, [[str(c) for c in row] for row in tr])
            + f"\n{t['note']}\n\n### Knowledge job: DirectRunner vs portable runner ({k['llm']}, "
              f"{k['prompts']} prompts)\n\n"
            + common.markdown_table(kh, [[str(c) for c in row] for row in kr])
            + f"\n{k['note']}\n\nCommand: `{doc.get('command', '')}`\n")


def run_all(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Both measurements; write benchmarks/results/scale.json and .md."""
    common.setup(args.threads)
    data = common.ensure_prepared(args.dataset, args.work_dir)
    work = os.path.join(args.work_dir, "scale")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    payload: Dict[str, Any] = {"dataset": args.dataset}
    if not args.skip_training:
        payload["training"] = {
            "backbone": args.backbone, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size, "results": run_training(args, data, os.path.join(work, "train")),
            "note": "both workers share this machine's cores (and whatever else runs on it), so the two-worker "
                    "wall time is the cost of MultiWorkerMirroredStrategy's collectives and coordination, "
                    "not a speed-up; batch size is global (each worker takes half)"}
    if not args.skip_knowledge:
        res = run_knowledge(args, data, os.path.join(work, "knowledge"))
        payload["knowledge"] = {
            "llm": args.llm, "prompts": res[0]["prompts"], "batch_size": args.knowledge_batch_size,
            "threads_per_process": args.knowledge_threads, "results": res,
            "note": "model-time prompts/s sums the encode time of every worker (excludes model loading and Beam "
                    "start-up); wall prompts/s includes them; the SDK workers are separate processes started "
                    "by Beam's worker pool and share this machine's cores"}
    doc = common.save_result(NAME, payload, "benchmarks.scale", args.out_dir, argv)
    if "training" in doc and "knowledge" in doc:
        common.write_text(os.path.join(args.out_dir, f"{NAME}.md"), markdown(doc))
        print(markdown(doc))
    shutil.rmtree(work, ignore_errors=True)
    return doc


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--backbone", default="shared_bottom")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps-per-epoch", type=int, default=0, help="0 = whole epochs")
    p.add_argument("--batch-size", type=int, default=1024, help="global batch")
    p.add_argument("--llm", default="minilm")
    p.add_argument("--knowledge-users", type=int, default=200)
    p.add_argument("--knowledge-batch-size", type=int, default=16)
    p.add_argument("--knowledge-threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds for the two-worker run")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-knowledge", action="store_true")
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 2 or args.knowledge_users < 0:
        p.error("--epochs >= 1, --batch-size >= 2 and --knowledge-users >= 0 please")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point."""
    run_all(parse_args(argv), argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
