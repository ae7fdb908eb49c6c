"""Shared harness of the benchmarks: provenance, prepared data as arrays, timing, tables, plots.

Every result JSON carries the exact command, the machine (nproc, CPU model, memory, load),
library versions and, when the machine is shared, a note saying so; `save_result` adds them.
Data comes from `llm4msr prepare` output (TFRecords), so our side and the peer library read
exactly the same rows: `load_arrays` parses a split into numpy arrays once, `encode_indices`
turns them into the integer ids the peer needs (the same vocabularies our models use).
"""
import datetime
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from llm4msr_tf import report
from llm4msr_tf.utils.io import UserInputError, read_json, write_json, write_text  # noqa: F401  (write_text re-exported)

log = logging.getLogger(__name__)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(PROJECT_ROOT, "benchmarks", "results")
# Set by `llm4msr bench` so results record the command the user typed, not our subprocess.
COMMAND_ENV = "LLM4MSR_BENCH_COMMAND"
# Set to a sentence when the measuring machine is shared (contention makes timings noisy).
SHARED_NOTE_ENV = "LLM4MSR_BENCH_SHARED_NOTE"
DEFAULT_SHARED_NOTE = (
    "absolute timings depend on the machine and on what else runs on it (each JSON records the load "
    "average before the benchmark started); ratios measured in the same run are the signal"
)
# Load average when the benchmark process started (before its own work adds to it).
_START_LOAD: Optional[List[float]] = None


def default_work_dir() -> str:
    """Where prepared data, knowledge and models of the benchmarks are cached (not in git)."""
    return os.environ.get("LLM4MSR_BENCH_WORK", os.path.join("/tmp", "llm4msr_bench_work"))


def command_line(module: str, argv: Optional[Sequence[str]] = None) -> str:
    """The command that produced a result: `llm4msr bench ...` when run through the CLI."""
    if os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module] + [shlex.quote(a) for a in args])


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> Dict[str, Any]:
    """nproc, CPU model, total memory, load average and host of this machine."""
    info: Dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        info["sched_affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (non-Linux)
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    try:
        info["loadavg_1_5_15"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    if _START_LOAD is not None:
        info["loadavg_at_start_1_5_15"] = list(_START_LOAD)
    return info


def versions() -> Dict[str, Optional[str]]:
    """Versions of the packages a benchmark depends on (None when not installed)."""
    import importlib.metadata as md

    out: Dict[str, Optional[str]] = {}
    for pkg in ("llm4msr-tf", "tensorflow", "tf-keras", "torch", "torch-rechub", "numpy",
                "scikit-learn", "transformers", "sentence-transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def save_result(name: str, payload: Dict[str, Any], module: str, out_dir: str = RESULTS_DIR,
                argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Write `out_dir/<name>.json` (payload + command, machine, versions, note); returns the document."""
    doc = {
        "benchmark": name,
        "command": command_line(module, argv),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "versions": versions(),
        "note": os.environ.get(SHARED_NOTE_ENV, DEFAULT_SHARED_NOTE),
    }
    doc.update(payload)
    path = os.path.join(out_dir, f"{name}.json")
    write_json(path, doc)
    log.info("wrote %s", path)
    return doc


def load_result(name: str, out_dir: str = RESULTS_DIR) -> Optional[Dict[str, Any]]:
    """Read a result JSON written by `save_result`, or None when that benchmark has not run."""
    path = os.path.join(out_dir, f"{name}.json")
    return read_json(path) if os.path.exists(path) else None


# ---- data --------------------------------------------------------------------------------
def llm4msr_cli() -> List[str]:
    """argv prefix that runs this venv's `llm4msr` command line."""
    return [sys.executable, "-m", "llm4msr_tf.cli"]


def run_cli(args: Sequence[str], what: str) -> None:
    """Run an `llm4msr` subcommand; a failure raises with its stderr tail."""
    cmd = llm4msr_cli() + list(args)
    log.info("running: %s", " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise UserInputError(f"{what} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


# Benchmark dataset names: a MovieLens source, then optional "-genre" (genre-family scenarios,
# users span scenarios; default: Scenario-Wise-Rec's 3 age groups, every user in one) and
# "-sparseNN" (a seeded NN% of each user's training interactions kept; eval/test unchanged).
MOVIELENS_SOURCES = ("ml-1m", "ml-100k")


def dataset_prepare_args(dataset: str) -> Optional[List[str]]:
    """`llm4msr prepare` flags of a MovieLens benchmark dataset name (None when it is not one).

    ``ml-1m``, ``ml-100k``, ``ml-1m-genre``, ``ml-1m-genre-sparse20``, ...: label rating > 3 and
    a seeded random 8:1:1 split (Scenario-Wise-Rec's protocol) for every variant.
    """
    base = next((b for b in MOVIELENS_SOURCES if dataset == b or dataset.startswith(b + "-")), None)
    if base is None:
        return None
    rest = dataset[len(base):].split("-")[1:]
    by = "age"
    args: List[str] = []
    for part in rest:
        if part == "genre":
            by = "genre"
        elif part.startswith("sparse") and part[6:].isdigit() and 0 < int(part[6:]) <= 100:
            args += ["--train-keep-fraction", str(int(part[6:]) / 100.0), "--train-keep-seed", "0"]
        else:
            raise UserInputError(f"unknown benchmark dataset {dataset!r}: {part!r} is not 'genre' or 'sparseNN'")
    return ["--dataset", "movielens", "--scenario-by", by, "--label-threshold", "3", "--split", "random"] + args


def ensure_prepared(dataset: str, work_dir: str, data_root: Optional[str] = None,
                    seed: int = 42, extra_args: Sequence[str] = ()) -> str:
    """DATA_DIR of `dataset` (see `dataset_prepare_args`, or synthetic), running `llm4msr prepare` once."""
    from llm4msr_tf.config import default_data_root

    out = os.path.join(work_dir, "data", dataset if not extra_args else dataset + "-custom")
    if os.path.exists(os.path.join(out, "dataset.json")):
        return out
    movielens = dataset_prepare_args(dataset)
    if dataset == "synthetic":
        args = ["prepare", "--dataset", "synthetic"]
    elif movielens is not None:
        src_name = next(b for b in MOVIELENS_SOURCES if dataset == b or dataset.startswith(b + "-"))
        src = os.path.join(data_root or default_data_root(PROJECT_ROOT), src_name)
        if not os.path.isdir(src):
            raise UserInputError(f"dataset folder {src} not found; set LLM4MSR_DATA_ROOT")
        args = ["prepare", "--source", src] + movielens
    else:
        raise UserInputError(f"unknown benchmark dataset {dataset!r}; use ml-1m, ml-100k (optionally with "
                             "-genre and/or -sparseNN) or synthetic")
    args += ["--out", out, "--seed", str(seed), "--overwrite", "--no-progress", *extra_args]
    run_cli(args, f"prepare {dataset}")
    return out


def load_arrays(data_dir: str, split: str, limit: Optional[int] = None,
                batch_size: int = 8192) -> Dict[str, np.ndarray]:
    """Every feature and the label of one split as numpy arrays (strings stay bytes)."""
    import llm4msr_tf  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from llm4msr_tf.data.spec import DatasetSpec

    spec = DatasetSpec.load(data_dir)
    files = spec.tfrecord_files(split)
    if not files:
        raise UserInputError(f"no TFRecords for split {split!r} under {data_dir}; re-run prepare")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit:
        ds = ds.take(limit)
    fspec = spec.feature_spec()
    ds = ds.batch(batch_size).map(lambda s: tf.io.parse_example(s, fspec))
    parts: Dict[str, List[np.ndarray]] = {k: [] for k in fspec}
    for batch in ds.as_numpy_iterator():
        for k, v in batch.items():
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def encode_indices(spec: Any, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Categoricals -> int64 ids (vocabulary index + 1, unknown -> 0), numerics -> float32.

    The same vocabularies as our in-model StringLookup (OOV -> 0), so both libraries see the
    same id space; the label and scenario id are passed through as int64.
    """
    out: Dict[str, np.ndarray] = {}
    for f in spec.features:
        col = arrays[f.name]
        if f.kind == "numeric":
            out[f.name] = col.astype(np.float32)
        elif f.name == spec.scenario_feature:
            out[f.name] = col.astype(np.int64)
        else:
            vocab = spec.vocab(f.name)
            keys = [v.encode("utf-8") for v in vocab] if col.dtype.kind in "SO" else [int(v) for v in vocab]
            index = {k: i + 1 for i, k in enumerate(keys)}
            out[f.name] = np.fromiter((index.get(v, 0) for v in col), dtype=np.int64, count=len(col))
    out[spec.label] = arrays[spec.label].astype(np.int64)
    return out


def vocab_sizes(spec: Any) -> Dict[str, int]:
    """Embedding table sizes per categorical feature (vocabulary + 1 OOV row)."""
    sizes = {}
    for f in spec.categorical:
        n = f.vocab_size if f.vocab_size is not None else len(spec.vocab(f.name))
        sizes[f.name] = int(n) + 1
    return sizes


# ---- timing --------------------------------------------------------------------------------
def steady_rate(step: Callable[[int], Any], warmup: int, steps: int, batch_size: int,
                sync: Callable[[Any], Any] = lambda x: x) -> Dict[str, float]:
    """Examples/second of `step(i)` over `steps` calls after `warmup` untimed ones.

    `sync` forces a step's result (e.g. `.numpy()`), so asynchronous work is not left out.
    Also reports the spread of per-window rates (5 windows) as a noise estimate.
    """
    out = None
    t0 = time.perf_counter()
    for i in range(warmup):
        out = step(i)
    sync(out)
    warm_s = time.perf_counter() - t0
    windows = 5 if steps >= 10 else 1
    per = max(1, steps // windows)
    rates = []
    t_all = time.perf_counter()
    done = 0
    for w in range(windows):
        tw = time.perf_counter()
        for i in range(per):
            out = step(warmup + done + i)
        sync(out)
        done += per
        rates.append(per * batch_size / (time.perf_counter() - tw))
    total = time.perf_counter() - t_all
    return {
        "examples_per_s": done * batch_size / total,
        "steps_per_s": done / total,
        "window_rates": [round(r, 1) for r in rates],
        "window_rate_std": float(np.std(rates)),
        "timed_steps": done,
        "warmup_steps": warmup,
        "warmup_s": round(warm_s, 3),
    }


# ---- reporting -------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """`llm4msr_tf.report.markdown_table` plus a closing newline, so a paragraph can follow."""
    return report.markdown_table(headers, rows) + "\n"


def setup(threads: int = 2) -> None:
    """Logging plus a fixed thread budget for TensorFlow and torch (same for both sides)."""
    global _START_LOAD
    if _START_LOAD is None and hasattr(os, "getloadavg"):
        _START_LOAD = [round(x, 2) for x in os.getloadavg()]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process
        pass
