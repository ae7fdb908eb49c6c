"""The knowledge Beam job: prompts JSONL -> frozen LLM -> knowledge TFRecords + manifest.

Graph::

    ReadFromText(prompts/*.jsonl) -> parse -> key by prompt sha256 ----.
    ReadFromTFRecord(old KNOWLEDGE_DIR shards) -> key by sha256 -------+
    ReadFromTFRecord(checkpointed batches of a killed run) -> by sha --+-> CoGroupByKey
        -> reused records (hash already computed)      --------------------.
        -> to compute: one element per distinct prompt                      |
             -> RunInference(KeyedModelHandler(KnowledgeModelHandler))      |
             -> one record per key sharing the prompt  --------------------+-> Flatten
        -> WriteToTFRecord(ProtoCoder(tf.train.Example), gzip)   + per-run stats file

Every finished LLM batch is also written to a checkpoint beside KNOWLEDGE_DIR
(`llm4msr_tf.knowledge.checkpoint`), so a killed run's rerun encodes only the batches that had
not finished. Deduplication is the CoGroupByKey on the prompt hash (users with identical histories share
one LLM call). The output goes to a temp directory next to KNOWLEDGE_DIR, which replaces it
only after the pipeline and the manifest are complete. Any Beam runner executes the same
graph: DirectRunner (in-memory or multi-process) here, Dataflow / Flink / Spark with their
pipeline options (README, "Knowledge").
"""
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from llm4msr_tf.config import save_config, to_dict
from llm4msr_tf.knowledge import checkpoint
from llm4msr_tf.data.prompt_format import KEY_TYPES, parse_prompt_line, prompt_files, read_prompts
from llm4msr_tf.knowledge.config import EncoderConfig, KnowledgeConfig
from llm4msr_tf.knowledge.encoders import parse_spec, resolve_pooling, spec_dim
from llm4msr_tf.knowledge.store import (
    MANIFEST_FILENAME,
    SHARD_PREFIX,
    SHARD_SUFFIX,
    KnowledgeRecord,
    read_manifest,
    shard_files,
)
from llm4msr_tf.utils.io import UserInputError, atomic_dir, check_output_dir, write_json

log = logging.getLogger(__name__)

NAMESPACE = "llm4msr_knowledge"
STATS_FILE = "_stats.jsonl"
# Settings that change what a vector means: an old vector is reused only if all match.
REUSE_FIELDS = ("llm", "pooling", "max_length", "generate", "precision")
# Manifests written before a field existed had its default then.
LEGACY_DEFAULTS = {"precision": "auto"}
LOAD_LOG_ENV = "LLM4MSR_LLM_LOAD_LOG"


def record_model_load(llm: str, seconds: float) -> None:
    """Append ``{pid, host, llm, seconds}`` to the file named by $LLM4MSR_LLM_LOAD_LOG, if set.

    A diagnostic for distributed runs: a worker that loads the LLM more than once per process
    (e.g. a runner that tears DoFns down between bundles) pays the load time again and again.
    """
    path = os.environ.get(LOAD_LOG_ENV)
    if not path:
        return
    import socket

    line = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "llm": llm, "seconds": round(seconds, 3)})
    with open(path, "a") as f:  # one short line per write: appends from several processes do not interleave
        f.write(line + "\n")


def encoder_config(cfg: KnowledgeConfig) -> EncoderConfig:
    """The encoder part of a job config."""
    return EncoderConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(EncoderConfig)})


class _LazyEncoder:
    """A `TextEncoder` built on the first `encode_batch` call (thread-safe; one per process via Shared)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        import threading

        self._cfg, self._encoder, self._lock = cfg, None, threading.Lock()

    def encoder(self):
        """The loaded encoder (loads it once)."""
        with self._lock:
            if self._encoder is None:
                from llm4msr_tf.knowledge.encoders import TextEncoder

                t = time.perf_counter()
                self._encoder = TextEncoder(self._cfg)
                seconds = time.perf_counter() - t
                log.info("loaded %s in process %d (%.1fs)", self._cfg.llm, os.getpid(), seconds)
                record_model_load(self._cfg.llm, seconds)
            return self._encoder

    def encode_batch(self, prompts: Sequence[str], batch_size: Optional[int] = None, progress: Any = None):
        """`TextEncoder.encode_batch`, loading the LLM first if needed."""
        return self.encoder().encode_batch(prompts, batch_size, progress)


class KnowledgeModelHandler(ModelHandler[str, Any, Any]):
    """RunInference handler for our `TextEncoder` (Beam's HF handlers do not import with transformers 5).

    The model is loaded once per worker process and shared by its threads (Beam's `Shared`),
    or once per machine with `share_model_across_processes`. Beam batches up to
    batch_size * sort_window prompts; the encoder sorts them by token length and runs
    forward passes of batch_size, so little compute goes to padding.
    """

    def __init__(self, cfg: EncoderConfig, sort_window: int = 16, share_across_processes: bool = False,
                 expected_total: int = 0, checkpoint_dir: Optional[str] = None):
        self._cfg = cfg
        self._checkpoint_dir = checkpoint_dir
        self._sort_window = max(1, int(sort_window))
        self._share = bool(share_across_processes)
        self._expected_total = int(expected_total)
        self._done = 0
        self._t0 = None
        self._last_log = 0.0
        self._bar = None

    def load_model(self):
        """The frozen LLM, loaded on its first batch (local files only).

        RunInference calls this in every worker's DoFn setup, also in workers (or whole
        incremental runs) that get nothing to encode because every vector is reused: loading
        on first use spares them the LLM's load time and memory.
        """
        return _LazyEncoder(self._cfg)

    def run_inference(self, batch: Sequence[str], model, inference_args: Optional[Dict[str, Any]] = None):
        """Encode one Beam batch of prompt texts; returns one `Encoded` per prompt, in order."""
        # Load first (once), so encode_ms and prompts/s count model time only.
        model = model.encoder() if isinstance(model, _LazyEncoder) else model
        if self._t0 is None:
            self._t0 = time.time()
        t = time.perf_counter()
        if self._bar is None:
            # A progress bar per worker: Beam batches hold hundreds of prompts (sorted by
            # length), so per-Beam-batch logging alone would stay silent for minutes.
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._expected_total or None, desc="encode prompts",
                             unit="prompt", mininterval=2.0, dynamic_ncols=True)
        outs, num_batches = model.encode_batch(list(batch), self._cfg.batch_size, self._bar.update)
        if self._checkpoint_dir:
            checkpoint.write_batch(self._checkpoint_dir, list(batch), outs)
        Metrics.counter(NAMESPACE, "encode_ms").inc(int(1000 * (time.perf_counter() - t)))
        Metrics.counter(NAMESPACE, "prompts_encoded").inc(len(outs))
        Metrics.counter(NAMESPACE, "forward_batches").inc(num_batches)
        Metrics.counter(NAMESPACE, "tokens").inc(sum(o.num_tokens for o in outs))
        Metrics.counter(NAMESPACE, "truncated").inc(sum(bool(o.truncated) for o in outs))
        self._done += len(outs)
        if self._expected_total and self._done >= self._expected_total:
            self._bar.close()
        now = time.time()
        if now - self._last_log > 10 or (self._expected_total and self._done >= self._expected_total):
            self._last_log = now
            rate = self._done / max(now - self._t0, 1e-9)
            total = f"/{self._expected_total}" if self._expected_total else ""
            log.info("encoded %d%s prompts in this worker (%.1f prompts/s)", self._done, total, rate)
        return outs

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Beam batches large enough to sort by length, small enough to stream."""
        bs = max(1, int(self._cfg.batch_size))
        n = bs * self._sort_window
        # Fixed-size batches (not Beam's adaptive 1, 2, 4, ...): the encoder needs many prompts
        # at once to sort them by length; the last partial batch is flushed at bundle end.
        return {"min_batch_size": n, "max_batch_size": n}

    def share_model_across_processes(self) -> bool:
        """One model per machine (MultiProcessShared) when asked; else one per worker process."""
        return self._share

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        """Prompt bytes in a batch (Beam's byte metric)."""
        return sum(len(p.encode("utf-8")) for p in batch)

    def get_metrics_namespace(self) -> str:
        """Namespace of RunInference's own metrics."""
        return NAMESPACE


def _parse(line):
    p = parse_prompt_line(line)
    if p is not None:
        Metrics.counter(NAMESPACE, "prompt_lines").inc()
        yield p.sha256, (p.key_type, p.key, p.prompt)


def _old_record(serialized_example):
    from llm4msr_tf.knowledge.store import example_to_record

    rec = example_to_record(serialized_example)
    return rec.prompt_sha256, (rec.vector, rec.text)


class _SplitReused(beam.DoFn):
    """Per prompt hash: reuse an old vector if there is one, else send the prompt to the LLM."""

    COMPUTE = "compute"

    def process(self, element):
        sha, grouped = element
        new, old = list(grouped["new"]), list(grouped["old"])
        done = list(grouped.get("checkpoint", ()))
        if not new:
            Metrics.counter(NAMESPACE, "stale_dropped").inc(len(old))
            return
        keys = tuple(sorted({(kt, k) for kt, k, _ in new}))
        if old or done:
            vector, text = (old or done)[0]
            Metrics.counter(NAMESPACE, "reused" if old else "resumed_from_checkpoint").inc(len(keys))
            if not old:
                Metrics.counter(NAMESPACE, "distinct_prompts_resumed").inc()
            for kt, k in keys:
                yield KnowledgeRecord(kt, k, vector, text, sha)
        else:
            Metrics.counter(NAMESPACE, "distinct_prompts_to_encode").inc()
            yield beam.pvalue.TaggedOutput(self.COMPUTE, ((sha, keys), new[0][2]))


def _fan_out(element):
    (sha, keys), enc = element
    for kt, k in keys:
        yield KnowledgeRecord(kt, k, enc.vector, enc.text, sha)


def _to_example(rec):
    from llm4msr_tf.knowledge.store import record_to_example

    Metrics.counter(NAMESPACE, f"written_{rec.key_type}").inc()
    return record_to_example(rec)


def _stats(rec):
    yield f"count/{rec.key_type}", 1
    yield "dim", int(len(rec.vector))


def build_pipeline(p: beam.Pipeline, cfg: KnowledgeConfig, files: Sequence[str], old_pattern: Optional[str],
                   out_dir: str, expected_total: int = 0, checkpoint_dir: Optional[str] = None,
                   checkpoint_pattern: Optional[str] = None) -> None:
    """Add the knowledge graph to pipeline `p` (reads `files`, writes shards + stats to `out_dir`).

    `checkpoint_dir` receives every finished LLM batch; `checkpoint_pattern` names the batch files
    of a killed earlier run, whose vectors are used instead of encoding those prompts again.
    """
    import tensorflow as tf

    lines = [p | f"Read{i}" >> beam.io.ReadFromText(f) for i, f in enumerate(files)]
    new = lines | "FlattenLines" >> beam.Flatten() | "Parse" >> beam.FlatMap(_parse)
    if old_pattern:
        old = (
            p
            | "ReadOld" >> beam.io.ReadFromTFRecord(old_pattern, coder=beam.coders.ProtoCoder(tf.train.Example))
            | "KeyOld" >> beam.Map(_old_record)
        )
    else:
        old = p | "NoOld" >> beam.Create([])
    inputs = {"new": new, "old": old}
    if checkpoint_pattern:
        inputs["checkpoint"] = (
            p
            | "ReadCheckpoint" >> beam.io.ReadFromTFRecord(checkpoint_pattern,
                                                         coder=beam.coders.ProtoCoder(tf.train.Example))
            | "KeyCheckpoint" >> beam.Map(_old_record)
        )
    split = (
        inputs
        | "GroupByPrompt" >> beam.CoGroupByKey()
        | "SplitReused" >> beam.ParDo(_SplitReused()).with_outputs(_SplitReused.COMPUTE, main="reused")
    )
    handler = KeyedModelHandler(
        KnowledgeModelHandler(encoder_config(cfg), cfg.sort_window, cfg.share_model_across_processes, expected_total,
                              checkpoint_dir)
    )
    computed = (
        split[_SplitReused.COMPUTE]
        | "Encode" >> RunInference(handler)
        | "FanOut" >> beam.FlatMap(_fan_out)
    )
    records = (split["reused"], computed) | "AllRecords" >> beam.Flatten()
    _ = (
        records
        | "ToExample" >> beam.Map(_to_example)
        | "Write" >> beam.io.WriteToTFRecord(
            os.path.join(out_dir, SHARD_PREFIX),
            coder=beam.coders.ProtoCoder(tf.train.Example),
            file_name_suffix=SHARD_SUFFIX,
            num_shards=int(cfg.num_shards),
        )
    )
    # Counts for the manifest come from the data itself (runner-independent, unlike metrics).
    counts = records | "StatPairs" >> beam.FlatMap(_stats)
    _ = (
        (
            counts | "OnlyCounts" >> beam.Filter(lambda kv: kv[0] != "dim") | "Sum" >> beam.CombinePerKey(sum),
            counts | "OnlyDim" >> beam.Filter(lambda kv: kv[0] == "dim") | "Dim" >> beam.CombinePerKey(max),
        )
        | "FlattenStats" >> beam.Flatten()
        | "StatsJson" >> beam.Map(lambda kv: json.dumps({kv[0]: kv[1]}))
        | "WriteStats" >> beam.io.WriteToText(os.path.join(out_dir, STATS_FILE), shard_name_template="")
    )


def _identity(cfg: KnowledgeConfig, pooling: str) -> Dict[str, Any]:
    """The settings that decide what a vector means (an old vector is reused only if all match)."""
    return {"llm": cfg.llm, "pooling": pooling, "max_length": cfg.max_length, "generate": cfg.generate,
            "precision": cfg.precision}


def _reusable(out: str, cfg: KnowledgeConfig, pooling: str) -> Tuple[Optional[str], str]:
    """(shard pattern of an existing compatible KNOWLEDGE_DIR or None, reason)."""
    if not os.path.exists(out):
        return None, "new output directory"
    if not os.path.isdir(out) or (os.listdir(out) and not os.path.exists(os.path.join(out, MANIFEST_FILENAME))):
        raise UserInputError(
            f"--out {out} exists but is not a knowledge directory (no {MANIFEST_FILENAME}); "
            "choose another --out or delete it"
        )
    if not os.listdir(out):
        return None, "empty output directory"
    if not cfg.reuse:
        return None, "--no-reuse"
    man = read_manifest(out)
    want = _identity(cfg, pooling)
    have = {k: man.get(k, (man.get("config") or {}).get(k, LEGACY_DEFAULTS.get(k))) for k in REUSE_FIELDS}
    diff = {k: (have[k], want[k]) for k in REUSE_FIELDS if have[k] != want[k]}
    if diff:
        return None, f"existing knowledge was made with different settings {diff}; recomputing everything"
    if not shard_files(out):
        return None, "existing knowledge directory has no shards"
    return os.path.join(out, f"{SHARD_PREFIX}-*{SHARD_SUFFIX}"), "reusing vectors with matching prompt hashes"


# Beam 2.59's PortableRunner (and FlinkRunner / SparkRunner, which submit through it) puts
# --job_server_timeout (default 60 s) on the job's state and message streams as well, so any job
# running longer than a minute fails in the submitter with DEADLINE_EXCEEDED while the workers
# go on. Unless the user sets a timeout, the streams get a week.
LONG_JOB_SERVER_TIMEOUT_S = 7 * 24 * 3600


def beam_options(runner: str, beam_args: Sequence[str] = (), **extra: Any) -> PipelineOptions:
    """Beam options for `runner` plus the user's extras, with a job-service timeout long enough for batch jobs."""
    args = list(beam_args)
    if not any(a.startswith(("--job_server_timeout", "--job-server-timeout")) for a in args):
        args.append(f"--job_server_timeout={LONG_JOB_SERVER_TIMEOUT_S}")
    return PipelineOptions(args, runner=runner, **extra)


def pipeline_options(cfg: KnowledgeConfig, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options: --runner from the config, DirectRunner mode from direct_num_workers, + extras."""
    extra: Dict[str, Any] = {}
    if cfg.runner in ("DirectRunner", "direct"):
        workers = max(1, int(cfg.direct_num_workers))
        extra["direct_num_workers"] = workers
        extra["direct_running_mode"] = "multi_processing" if workers > 1 else "in_memory"
    return beam_options(cfg.runner, beam_args, **extra)


def _metrics(result) -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        res = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    except Exception as e:  # some runners do not report metrics; the manifest counts stay exact
        log.warning("could not query Beam metrics (%s)", e)
        return out
    for c in res["counters"]:
        val = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(val or 0)
    return out


def run(cfg: KnowledgeConfig, beam_args: Sequence[str] = ()) -> Dict[str, Any]:
    """Run the knowledge job end to end; returns the manifest it wrote."""
    from llm4msr_tf.checks import check_knowledge_config

    if not cfg.data or not cfg.out:
        raise UserInputError("both --data DATA_DIR and --out KNOWLEDGE_DIR are required")
    check_knowledge_config(cfg)
    protected = {"--data": cfg.data}
    check_output_dir(cfg.out, "knowledge", True, protected)
    spec = parse_spec(cfg.llm)
    if spec.kind == "gguf" and spec.path:
        from llm4msr_tf.knowledge.gguf_cache import check_gguf

        check_gguf(spec.path)  # here, not in a worker minutes later
    pooling = resolve_pooling(spec, cfg.pooling)
    if cfg.generate and not spec.causal:
        raise UserInputError(f"--generate needs a causal LM; --llm {cfg.llm} is a sentence encoder")
    files = prompt_files(cfg.data)
    prompts = read_prompts(cfg.data)  # validates every line with file:line errors
    distinct = len({p.sha256 for p in prompts})
    out = os.path.abspath(cfg.out)
    old_pattern, reason = _reusable(out, cfg, pooling)
    log.info("knowledge job: %d prompts (%d distinct texts) from %s; --out %s: %s",
             len(prompts), distinct, cfg.data, out, reason)
    t0 = time.time()
    ckpt_dir, ckpt_pattern = checkpoint.open_checkpoint(out, _identity(cfg, pooling))
    with atomic_dir(out, overwrite=True, kind="knowledge", protected=protected) as tmp:
        with beam.Pipeline(options=pipeline_options(cfg, beam_args)) as p:
            build_pipeline(p, cfg, files, old_pattern, tmp, expected_total=distinct, checkpoint_dir=ckpt_dir,
                           checkpoint_pattern=ckpt_pattern)
        result = p.result
        metrics = _metrics(result)
        stats: Dict[str, int] = {}
        stats_path = os.path.join(tmp, STATS_FILE)
        if os.path.exists(stats_path):
            with open(stats_path) as f:
                for line in f:
                    stats.update(json.loads(line))
            os.remove(stats_path)
        counts = {t: int(stats.get(f"count/{t}", 0)) for t in KEY_TYPES}
        dim = stats.get("dim") or spec_dim(cfg.llm, cfg.cache_dir)
        seconds = time.time() - t0
        reused = int(metrics.get("reused", 0))
        encoded = int(metrics.get("prompts_encoded", 0))
        manifest = {
            "llm": cfg.llm,
            "dim": int(dim or 0),
            "pooling": pooling,
            "max_length": cfg.max_length,
            "generate": cfg.generate,
            "precision": cfg.precision,
            "compiled": bool(cfg.compile),
            "counts": counts,
            "reused": reused,
            "resumed_from_checkpoint": int(metrics.get("resumed_from_checkpoint", 0)),
            "encoded_prompts": encoded,
            "truncated": int(metrics.get("truncated", 0)),
            "truncated_in_prepare": int(sum(p.truncated for p in prompts)),
            "stale_dropped": int(metrics.get("stale_dropped", 0)),
            "forward_batches": int(metrics.get("forward_batches", 0)),
            "tokens": int(metrics.get("tokens", 0)),
            "seconds": round(seconds, 3),
            # Model time only (summed over workers), so it excludes model loading and Beam setup.
            "encode_seconds": round(metrics.get("encode_ms", 0) / 1000.0, 3),
            "encoded_prompts_per_second": (
                round(encoded / (metrics["encode_ms"] / 1000.0), 3) if metrics.get("encode_ms") else None
            ),
            "runner": cfg.runner,
            "metrics": metrics,
            "config": to_dict(cfg),
        }
        if sum(counts.values()) != len(prompts):
            raise RuntimeError(
                f"knowledge job wrote {sum(counts.values())} records for {len(prompts)} prompts; "
                "nothing was committed (this is a bug, please report it)"
            )
        write_json(os.path.join(tmp, MANIFEST_FILENAME), manifest)
        save_config(cfg, tmp)
    checkpoint.clear(out)  # committed: the finished batches live in KNOWLEDGE_DIR now
    log.info(
        "knowledge written to %s: %d scenario + %d user vectors (dim %s, %s pooling); "
        "%d reused, %d prompts encoded, %d truncated, %.1fs",
        out, counts["scenario"], counts["user"], dim, pooling, reused, encoded,
        manifest["truncated"], seconds,
    )
    return manifest
