"""`llm4msr bench [NAME ...]`: run the benchmark scripts of `benchmarks/` and refresh the report.

Each benchmark runs as `python -m benchmarks.NAME` in a fresh interpreter from the repository
root (so one benchmark's threads and memory never leak into the next) and writes JSON, PNG and
Markdown to `benchmarks/results/` (or `--out-dir`); the command as typed here is recorded in
every JSON. `report` (always run last unless `--no-report`) rewrites the README section.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

from llm4msr_tf.utils.io import UserInputError

# Owned here: throughput, quality, memory; knowledge/serving scripts belong to their stages.
BENCHMARKS = ("train_throughput", "quality", "memory", "knowledge", "serving")
# --quick: tiny settings on the synthetic dataset (smoke test; numbers mean nothing).
QUICK_ARGS = {
    "train_throughput": ["--dataset", "synthetic", "--backbones", "mmoe", "--modes", "memory", "--peer-threads", "2",
                         "--warmup", "2", "--steps", "4", "--batch-size", "256"],
    "quality": ["--dataset", "synthetic", "--backbones", "mmoe", "--llms", "--seeds", "0", "1", "--lrs", "0.001",
                "--epochs", "1", "--batch-size", "512"],
    "memory": ["--dataset", "synthetic", "--backbones", "shared_bottom", "--steps", "3", "--requests", "2",
               "--serving-batch", "64"],
}


def project_root() -> str:
    """The repository root holding `benchmarks/` (benchmarks run from a source checkout)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `bench` subcommand."""
    p = sub.add_parser(
        "bench", help="run benchmarks (throughput vs torch-rechub, quality, memory) and refresh the report",
        description="Run benchmark scripts from benchmarks/ and write JSON/PNG/Markdown results plus "
                    "README's Performance section. Default: train_throughput quality memory.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run: {', '.join(BENCHMARKS)}, or report (default: "
                        "train_throughput quality memory)")
    p.add_argument("--out-dir", default="", help="results folder (default: benchmarks/results)")
    p.add_argument("--work-dir", default="", help="cache of prepared data/knowledge (default: "
                   "$LLM4MSR_BENCH_WORK or /tmp/llm4msr_bench_work)")
    p.add_argument("--quick", action="store_true", help="tiny synthetic settings (smoke test)")
    p.add_argument("--args", dest="script_args", default="",
                   help="extra flags passed to every benchmark script, e.g. --args '--seeds 0'")
    p.add_argument("--no-report", action="store_true", help="do not refresh the report / README section")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks one by one, then the report; print a one-line summary each."""
    root = project_root()
    if not os.path.isdir(os.path.join(root, "benchmarks")):
        raise UserInputError(f"benchmarks/ not found under {root}: run `llm4msr bench` from a source checkout")
    names = list(args.names) or ["train_throughput", "quality", "memory"]
    unknown = [n for n in names if n not in BENCHMARKS + ("report",)]
    if unknown:
        raise UserInputError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS) + ['report']}")
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["LLM4MSR_BENCH_COMMAND"] = "llm4msr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.work_dir:
        env["LLM4MSR_BENCH_WORK"] = args.work_dir
    out_flags = ["--out-dir", args.out_dir] if args.out_dir else []
    summary = []
    for name in [n for n in names if n != "report"]:
        if not os.path.exists(os.path.join(root, "benchmarks", f"{name}.py")):
            raise UserInputError(f"benchmarks/{name}.py does not exist (yet) in {root}")
        cmd = [sys.executable, "-m", f"benchmarks.{name}"] + out_flags
        cmd += QUICK_ARGS.get(name, []) if args.quick else []
        cmd += shlex.split(args.script_args)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=root, env=env)
        summary.append((name, rc, time.time() - t0))
        if rc != 0:
            print(f"bench {name}: failed with exit code {rc}", file=sys.stderr)
    if not args.no_report:
        rcmd = [sys.executable, "-m", "benchmarks.report"]
        if args.out_dir:
            rcmd += ["--results-dir", args.out_dir, "--no-readme"]
        summary.append(("report", subprocess.call(rcmd, cwd=root, env=env, stdout=subprocess.DEVNULL), 0.0))
    print(f"{'benchmark':<18}{'status':>8}{'seconds':>10}")
    for name, rc, sec in summary:
        print(f"{name:<18}{'ok' if rc == 0 else 'FAILED':>8}{sec:>10.0f}")
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1
