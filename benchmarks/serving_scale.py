"""Serving at scale: SavedModel size, load time, peak RSS and latency for 10k to 1M users.

For each user count N the LLM4MSR model of one backbone is built on a prepared dataset (ML-100K
by default) with a knowledge base of N users of seeded synthetic vectors (640-d by default, the
width of Gemma 3 270M; the dataset's own users first, then synthetic ids), exported in two ways:

- ``table``: user knowledge inside the model, folded at export into the per-user rows the meta
  layer reads (`llm4msr_tf.models.folded`);
- ``feature``: no user table in the model; every request carries the user's knowledge vector
  (``user_knowledge`` float [dim]) that the client looks up in a key-value store.

Each export is loaded by a fresh child process, which reports its load time, its peak RSS and
the p50 latency of ``serving_default`` at batch 1 and 64 on real test examples (for ``feature``
requests the examples are extended with the users' vectors), so nothing of the parent is
counted. Sizes are bytes on disk of the whole SavedModel directory.

    python -m benchmarks.serving_scale --users 10000 100000 1000000
"""
import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common

log = logging.getLogger("benchmarks.serving_scale")

NAME = "serving_scale"
MODES = ("table", "feature")


def dir_bytes(path: str) -> int:
    """Total size of the files below `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def synthetic_knowledge(spec: Any, num_users: int, dim: int, seed: int = 0) -> Any:
    """A `KnowledgeBase` of `num_users` users (the dataset's first) and every scenario, seeded N(0, 1)."""
    from llm4msr_tf.knowledge import KeyedVectors, KnowledgeBase

    real = list(spec.vocab(spec.user_feature))[:num_users]
    keys = real + [f"synthetic-user-{i}" for i in range(num_users - len(real))]
    rng = np.random.default_rng(seed)
    users = KeyedVectors(keys, rng.standard_normal((num_users, dim), dtype=np.float32), [""] * num_users)
    scen_keys = [str(s) for s in range(spec.num_scenarios)]
    scen = KeyedVectors(scen_keys, rng.standard_normal((len(scen_keys), dim), dtype=np.float32), [""] * len(scen_keys))
    return KnowledgeBase(dim=dim, llm=f"synthetic-{dim}d", manifest={"llm": f"synthetic-{dim}d", "dim": dim},
                         tables={"user": users, "scenario": scen}, path="synthetic")


def with_vectors(examples: List[bytes], kb: Any, feature: str) -> List[bytes]:
    """The serialized examples with each user's knowledge vector added as `feature` (feature mode requests)."""
    import tensorflow as tf

    out = []
    table = kb.tables["user"]
    zero = np.zeros(kb.dim, np.float32)
    for s in examples:
        ex = tf.train.Example.FromString(s)
        user = ex.features.feature["user_id"].bytes_list.value[0].decode()
        ex.features.feature[feature].float_list.value.extend(table.get(user, zero).tolist())
        out.append(ex.SerializeToString())
    return out


def child_main(args: argparse.Namespace) -> int:
    """Child: load one SavedModel, time it, print JSON (load_s, peak_rss_mib, p50 per batch)."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    from benchmarks.serving import percentile_ms

    common.setup(args.threads)
    reqs = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(args.child_requests)]
    t = time.perf_counter()
    fn = tf.saved_model.load(args.child_model).signatures["serving_default"]
    load_s = time.perf_counter() - t
    out: Dict[str, Any] = {"load_s": round(load_s, 3), "p50_ms": {}}
    for bs in (1, 64):
        batch = tf.constant(reqs[:bs])
        for _ in range(5):
            fn(examples=batch)["probability"].numpy()
        lat = []
        for _ in range(200 if bs == 1 else 50):
            t = time.perf_counter()
            fn(examples=batch)["probability"].numpy()
            lat.append(time.perf_counter() - t)
        out["p50_ms"][str(bs)] = round(percentile_ms(lat, 50), 3)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(out))
    return 0


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Build, export and measure every (users, mode); write benchmarks/results/serving_scale.json."""
    common.setup(args.threads)
    import tensorflow as tf

    from llm4msr_tf import serving as ex
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.models import ModelConfig, build_model

    spec = DatasetSpec.load(common.ensure_prepared(args.dataset, args.work_dir))
    fusion = json.loads(args.fusion)
    test = ex.read_examples(spec, "test", 64)
    rows: List[Dict[str, Any]] = []
    for n in args.users:
        kb = synthetic_knowledge(spec, n, args.dim)
        for mode in MODES:
            tmp = tempfile.mkdtemp(prefix="serving-scale-", dir=args.work_dir)
            try:
                tf.keras.utils.set_random_seed(0)
                t = time.perf_counter()
                model = build_model(spec, ModelConfig(backbone=args.backbone, per_scenario_metrics=False,
                                                      user_knowledge_mode=mode, **fusion), knowledge=kb, compile=False)
                build_s = time.perf_counter() - t
                reqs = with_vectors(test, kb, model.user_knowledge_feature) if mode == "feature" else test
                t = time.perf_counter()
                path = ex.export_saved_model(model, spec, os.path.join(tmp, "1"), warmup_examples=[], verify=False)
                export_s = time.perf_counter() - t
                del model
                req_file = os.path.join(tmp, "requests.tfrecord")
                with tf.io.TFRecordWriter(req_file) as w:
                    for r in reqs:
                        w.write(r)
                proc = subprocess.run([sys.executable, "-m", "benchmarks.serving_scale", "--child-model", path,
                                       "--child-requests", req_file, "--threads", str(args.threads)],
                                      capture_output=True, text=True, cwd=common.PROJECT_ROOT)
                if proc.returncode != 0:
                    raise RuntimeError(f"serving child failed for {n} users, {mode}: {proc.stderr[-2000:]}")
                child = json.loads(proc.stdout.strip().splitlines()[-1])
                row = {"users": n, "mode": mode, "saved_model_mib": round(dir_bytes(path) / 2**20, 1),
                       "build_s": round(build_s, 2), "export_s": round(export_s, 2),
                       "request_bytes_per_example": int(np.mean([len(r) for r in reqs])), **child}
                log.info("%d users, %s: %.1f MiB, load %.2fs, RSS %.0f MiB, p50 %s", n, mode, row["saved_model_mib"],
                         row["load_s"], row["peak_rss_mib"], row["p50_ms"])
                rows.append(row)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        del kb
    payload = {"dataset": args.dataset, "backbone": args.backbone, "dim": args.dim, "fusion": fusion,
               "threads": args.threads, "results": rows,
               "method": "LLM4MSR exported as it ships (knowledge folded); each SavedModel loaded and timed by a "
                         "fresh child process (load time, peak RSS, p50 of serving_default at batch 1 and 64)"}
    doc = common.save_result(NAME, payload, "benchmarks.serving_scale", args.out_dir, argv)
    common.write_text(os.path.join(args.out_dir, f"{NAME}.md"), markdown(doc))
    print(markdown(doc))
    return doc


def markdown(doc: Dict[str, Any]) -> str:
    """One row per (users, mode)."""
    headers = ["users", "mode", "SavedModel MiB", "load s", "peak RSS MiB", "p50 ms batch 1", "p50 ms batch 64",
               "request bytes/example", "export s"]
    rows = [[f"{r['users']:,}", r["mode"], r["saved_model_mib"], r["load_s"], r["peak_rss_mib"], r["p50_ms"]["1"],
             r["p50_ms"]["64"], r["request_bytes_per_example"], r["export_s"]] for r in doc["results"]]
    return (common.markdown_table(headers, [[str(c) for c in row] for row in rows])
            + f"\n{doc['method']}; {doc['backbone']} on {doc['dataset']}; knowledge {doc['dim']}-d seeded "
              f"synthetic vectors; LLM4MSR config `{doc.get('fusion') or 'defaults'}`.\n\n"
              f"Command: `{doc.get('command', '')}`\n")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving_scale", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--backbone", default="mmoe")
    p.add_argument("--users", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--fusion", default="{}", help="ModelConfig overrides of the LLM4MSR model, as JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    p.add_argument("--child-model", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-requests", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(n < 1 for n in args.users) or args.dim < 1:
        p.error("--users and --dim must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.child_model:
        return child_main(args)
    run(args, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
