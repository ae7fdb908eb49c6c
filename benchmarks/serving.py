"""In-process serving latency and throughput: backbone-only vs LLM4MSR of the same backbone.

LLM4MSR is exported as it ships (knowledge folded into lookup tables,
`llm4msr_tf.models.folded`) and, for comparison in the same run, unfolded (the Keras model's
graph as trained: knowledge projected and meta weights generated per request).

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


VARIANTS = (("backbone", False, False), ("llm4msr", True, True), ("llm4msr_unfolded", True, False))


def run(dataset: str, backbones: Sequence[str], knowledge: Optional[str], dim: int, budget_s: float,
        work_dir: str, batch_sizes: Sequence[int] = BATCH_SIZES, threads: int = 2,
        fusion: Optional[Dict[str, Any]] = None, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Build, export, load and time the models of every backbone; write benchmarks/results/serving.json."""
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
    tmp = tempfile.mkdtemp(prefix="serving-bench-", dir=work_dir)
    rows: List[Dict[str, Any]] = []
    params: Dict[str, Dict[str, int]] = {}
    export_s: Dict[str, Dict[str, float]] = {}
    for backbone in backbones:
        exports: Dict[str, str] = {}
        params[backbone], export_s[backbone] = {}, {}
        for name, use_k, folded in VARIANTS:
            tf.keras.utils.set_random_seed(0)
            model = build_model(spec, ModelConfig(backbone=backbone, use_knowledge=use_k, per_scenario_metrics=False,
                                                  **((fusion or {}) if use_k else {})),
                                knowledge=kb if use_k else None, compile=False)
            params[backbone][name] = int(model.count_params())
            t = time.perf_counter()
            exports[name] = ex.export_saved_model(model, spec, os.path.join(tmp, backbone, name, "1"), warm,
                                                  model_name=name, fold_knowledge=folded)
            export_s[backbone][name] = round(time.perf_counter() - t, 2)
            del model
        fns = {n: tf.saved_model.load(p).signatures["serving_default"] for n, p in exports.items()}
        for bs in batch_sizes:
            batch = tf.constant(test[:bs])
            rounds = (200, 2000) if bs == 1 else ((50, 500) if bs <= 64 else (10, 100))
            lat = time_side_by_side(fns, batch, rounds[0], rounds[1], budget_s)
            row: Dict[str, Any] = {"model": backbone, "batch_size": bs}
            for n, xs in lat.items():
                mean = float(np.mean(xs))
                row[n] = {"p50_ms": round(percentile_ms(xs, 50), 3), "p99_ms": round(percentile_ms(xs, 99), 3),
                          "mean_ms": round(mean * 1e3, 3), "examples_per_s": round(bs / mean, 1),
                          "calls": len(xs)}
            for n in ("llm4msr", "llm4msr_unfolded"):
                key = "llm4msr_overhead" if n == "llm4msr" else "unfolded_overhead"
                row[key] = {
                    "p50_ratio": round(row[n]["p50_ms"] / row["backbone"]["p50_ms"], 3),
                    "p99_ratio": round(row[n]["p99_ms"] / row["backbone"]["p99_ms"], 3),
                    "throughput_ratio": round(row["backbone"]["examples_per_s"] / row[n]["examples_per_s"], 3),
                }
            log.info("%s batch %d: alone p50 %.2f ms, llm4msr p50 %.2f ms (x%.2f), unfolded %.2f ms (x%.2f)",
                     backbone, bs, row["backbone"]["p50_ms"], row["llm4msr"]["p50_ms"],
                     row["llm4msr_overhead"]["p50_ratio"], row["llm4msr_unfolded"]["p50_ms"],
                     row["unfolded_overhead"]["p50_ratio"])
            rows.append(row)
        del fns
    payload = {
        "dataset": dataset, "backbone": ", ".join(backbones), "backbones": list(backbones),
        "fusion": fusion or {}, "signature": "serving_default (serialized tf.Example)",
        "knowledge": kdir if knowledge else f"seeded random vectors, dim {dim}, {len(kb.tables['user'].keys)} users",
        "knowledge_dim": int(kb.dim), "params": params, "export_s": export_s, "threads": threads,
        "method": "in-process tf.saved_model.load; the models of a backbone timed in alternating order on the "
                  "same batch",
        "results": rows,
    }
    doc = common.save_result(NAME, payload, "benchmarks.serving", argv=argv)
    print(markdown(doc))
    return doc


def markdown(doc: Dict[str, Any]) -> str:
    """Latency per backbone and batch: alone, LLM4MSR as exported (folded) and unfolded, with ratios."""
    headers = ["backbone", "batch", "alone p50 ms", "alone p99 ms", "LLM4MSR p50 ms", "LLM4MSR p99 ms",
               "p50 ratio", "unfolded p50 ms", "unfolded p50 ratio", "alone ex/s", "LLM4MSR ex/s"]
    table = []
    for r in doc["results"]:
        unf = r.get("llm4msr_unfolded")
        table.append([r.get("model", doc.get("backbone", "")), r["batch_size"], r["backbone"]["p50_ms"],
                      r["backbone"]["p99_ms"], r["llm4msr"]["p50_ms"], r["llm4msr"]["p99_ms"],
                      f"{r['llm4msr_overhead']['p50_ratio']:.2f}", unf["p50_ms"] if unf else "-",
                      f"{r['unfolded_overhead']['p50_ratio']:.2f}" if unf else "-",
                      f"{r['backbone']['examples_per_s']:,.0f}", f"{r['llm4msr']['examples_per_s']:,.0f}"])
    return (common.markdown_table(headers, [[str(c) for c in row] for row in table])
            + f"\n{doc['method']}; {doc['dataset']}; knowledge: {doc['knowledge']}; LLM4MSR config "
            f"`{doc.get('fusion') or 'defaults'}`.\n\nCommand: `{doc.get('command', '')}`\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI of the serving benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k", help="ml-100k | ml-1m | synthetic")
    p.add_argument("--backbones", nargs="*", default=["mmoe", "star"], help="backbones to time (each alone and "
                                                                          "with LLM4MSR)")
    p.add_argument("--fusion", default="{}", help="ModelConfig overrides of the LLM4MSR models, as JSON")
    p.add_argument("--knowledge", default=None, help="real KNOWLEDGE_DIR (default: random vectors)")
    p.add_argument("--dim", type=int, default=640, help="width of the random knowledge vectors")
    p.add_argument("--budget-s", type=float, default=8.0, help="seconds of timing per batch size")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    p.add_argument("--work-dir", default=common.default_work_dir(), help="cache of prepared data")
    args = p.parse_args(argv)
    import json

    run(args.dataset, args.backbones, args.knowledge, args.dim, args.budget_s, args.work_dir,
        threads=args.threads, fusion=json.loads(args.fusion), argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
