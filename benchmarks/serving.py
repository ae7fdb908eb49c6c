"""In-process serving latency and throughput: backbone-only vs LLM4MSR of the same backbone.

Both models are built for the same prepared dataset (ML-100K by default), exported with
`llm4msr_tf.serving.export.export_saved_model` (the exact SavedModel TF Serving would load), loaded
back with `tf.saved_model.load`, and called through their ``serving_default`` signature on
serialized real test tf.Examples at batch sizes 1, 64 and 1024. The two models are timed side
by side: every round times one call of each (order alternating), so machine contention hits
both alike and the LLM4MSR/backbone ratio is the signal.

Latency of LLM4MSR does not depend on the knowledge values, only on their width and the table
size, so the knowledge base holds seeded random vectors of the default LLM's width (640,
Gemma 3 270M) for every training user and scenario unless ``--knowledge`` points at a real one.
This measures the model graph (parse + lookups + network) in one process, not the network
hop or TF Serving's batching queue.

    python -m benchmarks.serving --dataset ml-100k --backbone mmoe
"""
import argparse
import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common

log = logging.getLogger("benchmarks.serving")

NAME = "serving"
BATCH_SIZES = (1, 64, 1024)


def random_knowledge(spec: Any, out_dir: str, dim: int, seed: int = 0) -> str:
    """A knowledge dir with seeded random vectors for every scenario and training user."""
    from llm4msr_tf.knowledge import write_knowledge

    rng = np.random.default_rng(seed)
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=dim).astype(np.float32)}
            for s in range(spec.num_scenarios)]
    recs += [{"key_type": "user", "key": u, "vector": rng.normal(size=dim).astype(np.float32)}
             for u in spec.vocab(spec.user_feature)]
    return write_knowledge(out_dir, recs, {"llm": f"random-{dim}d (latency benchmark)"}, overwrite=True)


def percentile_ms(samples: Sequence[float], q: float) -> float:
    """The q-th percentile of latencies given in seconds, in milliseconds."""
    return float(np.percentile(np.asarray(samples) * 1e3, q))


def time_side_by_side(fns: Dict[str, Any], batch: Any, min_rounds: int, max_rounds: int,
                      budget_s: float, warmup: int = 3) -> Dict[str, List[float]]:
    """Per-call latencies (s) of each function on the same batch, interleaved round by round."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n](examples=batch)["probability"].numpy()
    lat: Dict[str, List[float]] = {n: [] for n in names}
    t_end = time.perf_counter() + budget_s
    r = 0
    while r < max_rounds and (r < min_rounds or time.perf_counter() < t_end):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t = time.perf_counter()
            fns[n](examples=batch)["probability"].numpy()
            lat[n].append(time.perf_counter() - t)
        r += 1
    return lat


def run(dataset: str, backbone: str, knowledge: Optional[str], dim: int, budget_s: float,
        work_dir: str, batch_sizes: Sequence[int] = BATCH_SIZES, threads: int = 2,
        argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Build, export, load and time both models; write benchmarks/results/serving.json."""
    common.setup(threads)
    import tensorflow as tf

    from llm4msr_tf import serving as ex
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.knowledge import load as load_knowledge
    from llm4msr_tf.models import ModelConfig, build_model

    data_dir = common.ensure_prepared(dataset, work_dir)
    spec = DatasetSpec.load(data_dir)
    kdir = knowledge or random_knowledge(spec, os.path.join(work_dir, f"knowledge-random-{dim}"), dim)
    kb = load_knowledge(kdir)
    test = ex.read_examples(spec, "test", max(batch_sizes))
    if len(test) < max(batch_sizes):
        raise SystemExit(f"test split has {len(test)} examples < batch size {max(batch_sizes)}")
    warm = ex.read_examples(spec, "eval", 64)
    exports: Dict[str, str] = {}
    params: Dict[str, int] = {}
    export_s: Dict[str, float] = {}
    tmp = tempfile.mkdtemp(prefix="serving-bench-", dir=work_dir)
    for name, use_k in (("backbone", False), ("llm4msr", True)):
        model = build_model(spec, ModelConfig(backbone=backbone, use_knowledge=use_k,
                                              per_scenario_metrics=False),
                            knowledge=kb if use_k else None, compile=False)
        params[name] = int(model.count_params())
        t = time.perf_counter()
        exports[name] = ex.export_saved_model(model, spec, os.path.join(tmp, name, "1"), warm,
                                              model_name=name)
        export_s[name] = round(time.perf_counter() - t, 2)
        del model
    fns = {n: tf.saved_model.load(p).signatures["serving_default"] for n, p in exports.items()}
    rows: List[Dict[str, Any]] = []
    for bs in batch_sizes:
        batch = tf.constant(test[:bs])
        rounds = (200, 2000) if bs == 1 else ((50, 500) if bs <= 64 else (10, 100))
        lat = time_side_by_side(fns, batch, rounds[0], rounds[1], budget_s)
        row: Dict[str, Any] = {"batch_size": bs}
        for n, xs in lat.items():
            mean = float(np.mean(xs))
            row[n] = {"p50_ms": round(percentile_ms(xs, 50), 3), "p99_ms": round(percentile_ms(xs, 99), 3),
                      "mean_ms": round(mean * 1e3, 3), "examples_per_s": round(bs / mean, 1),
                      "calls": len(xs)}
        row["llm4msr_overhead"] = {
            "p50_ratio": round(row["llm4msr"]["p50_ms"] / row["backbone"]["p50_ms"], 3),
            "p99_ratio": round(row["llm4msr"]["p99_ms"] / row["backbone"]["p99_ms"], 3),
            "throughput_ratio": round(row["backbone"]["examples_per_s"] / row["llm4msr"]["examples_per_s"], 3),
        }
        log.info("batch %d: backbone p50 %.2f ms, llm4msr p50 %.2f ms (x%.2f)", bs,
                 row["backbone"]["p50_ms"], row["llm4msr"]["p50_ms"], row["llm4msr_overhead"]["p50_ratio"])
        rows.append(row)
    payload = {
        "dataset": dataset, "backbone": backbone, "signature": "serving_default (serialized tf.Example)",
        "knowledge": kdir if knowledge else f"seeded random vectors, dim {dim}, {len(kb.tables['user'].keys)} users",
        "knowledge_dim": int(kb.dim), "params": params, "export_s": export_s, "threads": threads,
        "method": "in-process tf.saved_model.load; both models timed alternately on the same batch",
        "results": rows,
    }
    doc = common.save_result(NAME, payload, "benchmarks.serving", argv=argv)
    headers = ["batch", "backbone p50 ms", "backbone p99 ms", "backbone ex/s",
               "llm4msr p50 ms", "llm4msr p99 ms", "llm4msr ex/s", "p50 ratio"]
    table = [[str(v) for v in (r["batch_size"], r["backbone"]["p50_ms"], r["backbone"]["p99_ms"],
                               r["backbone"]["examples_per_s"], r["llm4msr"]["p50_ms"], r["llm4msr"]["p99_ms"],
                               r["llm4msr"]["examples_per_s"], r["llm4msr_overhead"]["p50_ratio"])]
             for r in rows]
    print(common.markdown_table(headers, table))
    return doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI of the serving benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k", help="ml-100k | ml-1m | synthetic")
    p.add_argument("--backbone", default="mmoe", help="backbone of both models")
    p.add_argument("--knowledge", default=None, help="real KNOWLEDGE_DIR (default: random vectors)")
    p.add_argument("--dim", type=int, default=640, help="width of the random knowledge vectors")
    p.add_argument("--budget-s", type=float, default=8.0, help="seconds of timing per batch size")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    p.add_argument("--work-dir", default=common.default_work_dir(), help="cache of prepared data")
    args = p.parse_args(argv)
    run(args.dataset, args.backbone, args.knowledge, args.dim, args.budget_s, args.work_dir,
        threads=args.threads, argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
