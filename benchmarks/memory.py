"""Peak resident memory (RSS) of a training process and of a serving process.

Each measurement runs in a fresh child interpreter that reports its own peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so nothing else in this process is counted:

- ``baseline``: import TensorFlow + llm4msr_tf only (the floor every process pays);
- ``train``: build a model (backbone alone and with LLM4MSR), stream the prepared TFRecords
  (batch -> parse_example -> cache -> prefetch) and train `--steps` steps;
- ``serving``: load an exported SavedModel with `tf.saved_model.load` and call its
  ``serving_default`` signature on serialized tf.Examples (what TF Serving runs), after the
  model was exported by a separate child (`llm4msr_tf.serving.export.export_saved_model`).

The LLM4MSR variants use a knowledge base of the default LLM's width (640): the real one when
`--knowledge` is given, else seeded random vectors for every training user (memory depends on
the table's size, not on its values).
"""
import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from benchmarks import common

log = logging.getLogger("benchmarks.memory")

NAME = "memory"


def _peak_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_baseline(args: argparse.Namespace) -> Dict[str, Any]:
    """Peak RSS of an interpreter that only imports TensorFlow and llm4msr_tf."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    tf.constant(1.0) + 1.0
    return {"peak_rss_mib": _peak_mib()}


def _knowledge(spec: Any, args: argparse.Namespace) -> Any:
    from llm4msr_tf import knowledge as kn

    if args.knowledge:
        return kn.load(args.knowledge)
    from benchmarks.train_throughput import random_knowledge

    return random_knowledge(spec, args.work_dir, 640, 0)


def child_train(args: argparse.Namespace) -> Dict[str, Any]:
    """Peak RSS of a process that trains `--steps` steps from the TFRecords."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    from benchmarks.train_throughput import _tfrecord_step, build_ours
    from llm4msr_tf.data.spec import DatasetSpec

    spec = DatasetSpec.load(args.data_dir)
    kb = _knowledge(spec, args) if args.use_knowledge else None
    tf.keras.utils.set_random_seed(0)
    model = build_ours(spec, args.backbone, args.use_knowledge, kb, 16)
    step = _tfrecord_step(model, spec, args.batch_size, False, None)
    t0 = time.time()
    for i in range(args.steps):
        loss = step(i)
    float(loss.numpy())
    if args.export_dir:
        from llm4msr_tf.serving.export import export_saved_model

        export_saved_model(model, spec, args.export_dir)
    return {"peak_rss_mib": _peak_mib(), "steps": args.steps, "seconds": round(time.time() - t0, 1),
            "params": int(model.count_params())}


def child_serving(args: argparse.Namespace) -> Dict[str, Any]:
    """Peak RSS of a process that loads a SavedModel and predicts `--requests` batches."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    from llm4msr_tf.data.spec import DatasetSpec

    spec = DatasetSpec.load(args.data_dir)
    files = spec.tfrecord_files("test")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(args.serving_batch).take(args.requests)
    path = args.export_dir
    # export_saved_model may write a versioned layout (DIR/<version>/saved_model.pb).
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        subs = sorted(d for d in os.listdir(path) if os.path.exists(os.path.join(path, d, "saved_model.pb")))
        path = os.path.join(path, subs[-1])
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    arg = list(fn.structured_input_signature[1].keys())[0]
    n = 0
    t0 = time.time()
    for batch in ds:
        out = fn(**{arg: batch})
        n += int(batch.shape[0])
    assert "probability" in out
    return {"peak_rss_mib": _peak_mib(), "predicted_examples": n, "seconds": round(time.time() - t0, 2),
            "saved_model": path}


CHILDREN = {"baseline": child_baseline, "train": child_train, "serving": child_serving}


def spawn(kind: str, extra: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON line."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", kind, "--data-dir", args.data_dir,
           "--work-dir", args.work_dir, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--requests", str(args.requests), "--serving-batch", str(args.serving_batch)] + extra
    if args.knowledge:
        cmd += ["--knowledge", args.knowledge]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.PROJECT_ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of the memory benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--data-dir", default="")
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--backbones", nargs="*", default=["mmoe"])
    p.add_argument("--knowledge", default="", help="KNOWLEDGE_DIR (default: random vectors of width 640)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=100, help="training steps in the train child")
    p.add_argument("--requests", type=int, default=50, help="predict calls in the serving child")
    p.add_argument("--serving-batch", type=int, default=256, help="examples per predict call")
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    p.add_argument("--name", default=NAME)
    # child-only flags
    p.add_argument("--child", default="", choices=["", *CHILDREN], help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="mmoe", help=argparse.SUPPRESS)
    p.add_argument("--use-knowledge", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export-dir", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Baseline, then train (+export) and serve each model; write JSON/PNG/Markdown."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from llm4msr_tf.data.spec import DatasetSpec

    args.data_dir = args.data_dir or common.ensure_prepared(args.dataset, args.work_dir)
    spec = DatasetSpec.load(args.data_dir)
    rows = [dict(spawn("baseline", [], args), process="baseline", model="import tensorflow + llm4msr_tf")]
    log.info("baseline %.0f MiB", rows[0]["peak_rss_mib"])
    for b in args.backbones:
        for k in (False, True):
            name = ("llm4msr+" if k else "") + b
            export_dir = os.path.join(args.work_dir, "memory-export", f"{spec.name}-{name}")
            extra = ["--backbone", b, "--export-dir", export_dir] + (["--use-knowledge"] if k else [])
            if os.path.exists(export_dir):
                import shutil

                shutil.rmtree(export_dir)
            r = spawn("train", extra, args)
            rows.append(dict(r, process="train", model=name))
            log.info("train %s %.0f MiB", name, r["peak_rss_mib"])
            r = spawn("serving", ["--export-dir", export_dir], args)
            rows.append(dict(r, process="serving", model=name))
            log.info("serving %s %.0f MiB", name, r["peak_rss_mib"])
    doc = {"dataset": spec.name, "data_dir": args.data_dir, "batch_size": args.batch_size,
           "train_steps": args.steps, "serving_requests": args.requests, "serving_batch": args.serving_batch,
           "knowledge": args.knowledge or "seeded random vectors, dim 640, every training user",
           "users": len(spec.vocab(spec.user_feature)), "results": rows}
    doc = common.save_result(args.name, doc, "benchmarks.memory", args.out_dir, argv)
    common.write_text(os.path.join(args.out_dir, f"{args.name}.md"), markdown(doc))
    plot(doc, os.path.join(args.out_dir, f"{args.name}.png"))
    return doc


def markdown(doc: Dict[str, Any]) -> str:
    """Peak RSS per process and model."""
    rows = [[r["process"], r["model"], f"{r['peak_rss_mib']:,.0f}"] for r in doc["results"]]
    head = (f"Peak RSS on {doc['dataset']} ({doc['users']:,} users): training = {doc['train_steps']} steps at "
            f"batch {doc['batch_size']} from TFRecords; serving = SavedModel `serving_default` on "
            f"{doc['serving_requests']} batches of {doc['serving_batch']} serialized examples. "
            f"Knowledge: {doc['knowledge']}.\n\n")
    return head + common.markdown_table(["process", "model", "peak RSS (MiB)"], rows) + \
        f"\nCommand: `{doc.get('command', '')}`\n"


def plot(doc: Dict[str, Any], path: str) -> str:
    """Horizontal bars of peak RSS per (process, model)."""
    from llm4msr_tf.report import pyplot, save_figure

    plt = pyplot()

    rows = doc["results"]
    labels = [f"{r['process']}: {r['model']}" for r in rows]
    vals = [r["peak_rss_mib"] for r in rows]
    colors = {"baseline": "#999999", "train": "#1f77b4", "serving": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    ax.barh(range(len(rows)), vals, color=[colors[r["process"]] for r in rows])
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak resident memory (MiB)")
    ax.set_title(f"Peak RSS per process, {doc['dataset']}\n(lower is better)", fontsize=10)
    return save_figure(fig, path, dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: `python -m benchmarks.memory [flags]` (or a child measurement)."""
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    doc = run(args, argv)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
