"""Join user knowledge vectors into the examples (feature mode): a Beam pipeline over a prepared DATA_DIR.

In table mode the model carries every user's vector (10M users x 640 floats = 25 GB, more than
a SavedModel can hold). In feature mode (``ModelConfig.user_knowledge_mode="feature"``) the
model reads the vector from an input feature instead, so the examples must carry it: this job
reads every split of a prepared DATA_DIR and a KNOWLEDGE_DIR and writes a new DATA_DIR whose
examples have one more feature, ``user_knowledge`` (float32 [dim], the raw vector as
``llm4msr knowledge`` wrote it; the model applies its own normalisation), and whose
``dataset.json`` lists it under ``knowledge_features``.

The join is a `CoGroupByKey` on the user id, so neither side has to fit in one worker's memory
(a side-input dict of 10M vectors would), followed by a shuffle on a hash of each example so the
written files carry no user order; it runs on any Beam runner (``--runner`` and Beam
options, as the knowledge job). Users without a vector get the same default as table mode
(``mean`` of the knowledge base's user vectors, or ``zeros``) and are counted per split. Vocabularies,
prompts and the rest of DATA_DIR are copied unchanged, so the new directory trains, evaluates and
exports like the old one; written to a temp directory and renamed on success.

    llm4msr join-knowledge --data DATA --knowledge KDIR --out DATA_FEATURE
    llm4msr train --data DATA_FEATURE --knowledge KDIR --user-knowledge-mode feature ...
"""
import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Any, Dict, Iterable, Sequence, Tuple

import numpy as np

from llm4msr_tf.utils.io import UserInputError, atomic_dir, check_output_dir

log = logging.getLogger(__name__)

DEFAULT_FEATURE = "user_knowledge"
_STATS_PREFIX = ".join-stats-"


@dataclasses.dataclass
class JoinConfig:
    """Config of `llm4msr join-knowledge`: inputs, output, the feature and the Beam runner."""

    data: str = dataclasses.field(default="", metadata={"help": "DATA_DIR written by `llm4msr prepare`"})
    knowledge: str = dataclasses.field(default="", metadata={"help": "KNOWLEDGE_DIR written by `llm4msr knowledge`"})
    out: str = dataclasses.field(default="", metadata={"help": "new DATA_DIR: the examples with the user vector added"})
    feature: str = dataclasses.field(
        default=DEFAULT_FEATURE, metadata={"help": "name of the added float feature (ModelConfig.user_knowledge_feature)"})
    default: str = dataclasses.field(
        default="mean", metadata={"help": "vector of users without knowledge: mean of the user vectors, or zeros "
                                          "(same meaning as --knowledge-default in table mode)",
                                  "choices": ["mean", "zeros"]})
    num_shards: int = dataclasses.field(
        default=0, metadata={"help": "output files per split (0 = as many as the input split has)"})
    runner: str = dataclasses.field(
        default="DirectRunner", metadata={"help": "Beam runner (DirectRunner, DataflowRunner, FlinkRunner, "
                                                  "SparkRunner, PortableRunner, ...); more Beam options after `--`"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace an existing --out"})


def present_splits(spec: Any) -> Tuple[str, ...]:
    """The splits of a DATA_DIR that have TFRecord files."""
    from llm4msr_tf.data.spec import SPLITS

    return tuple(s for s in SPLITS if spec.tfrecord_files(s))


def _key(value: Any) -> str:
    """A user id as the knowledge base spells it (the table-mode lookup's ``as_string`` too)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(int(value))


def _user_key(serialized: bytes, user_feature: str) -> Tuple[str, bytes]:
    import tensorflow as tf

    f = tf.train.Example.FromString(serialized).features.feature[user_feature]
    vals = f.bytes_list.value or f.int64_list.value
    if len(vals) != 1:
        raise ValueError(f"an example has {len(vals)} values of user feature {user_feature!r}, expected 1")
    return _key(vals[0]), serialized


def _add_vector(grouped: Tuple[str, Dict[str, Iterable[Any]]], feature: str, default: Any, dim: int):
    """Yield (is_unknown, serialized example with `feature`) for every example of one user."""
    import apache_beam as beam
    import tensorflow as tf

    _, g = grouped
    vecs = list(g["vector"])
    known = bool(vecs)
    if known:
        vec = vecs[0]
    else:
        vec = default if isinstance(default, np.ndarray) and default.shape == (dim,) else np.zeros(dim, np.float32)
    values = np.asarray(vec, np.float32).tolist()
    for raw in g["examples"]:
        ex = tf.train.Example.FromString(raw)
        ex.features.feature[feature].float_list.value[:] = values
        beam.metrics.Metrics.counter("join_knowledge", "unknown_user" if not known else "joined").inc()
        yield (not known), ex.SerializeToString()


MIX_BUCKET_ROWS = 256


def _mix_hash(serialized: bytes) -> int:
    """A stable 63-bit hash of an example's bytes (blake2b): the same files on every rerun."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(serialized, digest_size=8).digest(), "little") >> 1  # fits int64


def _mixed(joined: Any, split: str) -> Any:
    """`joined` ((is_unknown, serialized) pairs) with no user order left.

    The join emits each user's examples together, so a training shuffle buffer smaller than the
    split would see a few users at a time. The examples go to ~rows/`MIX_BUCKET_ROWS` buckets by a
    hash of their bytes (one more Beam shuffle; the bucket count comes from a `Count` of the
    split, so it scales with the data); each bucket is a pseudo-random sample of all users and is
    emitted in hash order. However the runner orders the buckets, every run of a few hundred
    written examples then spans the whole user range (tested: adjacent examples share a user
    about as often as in a random order).
    """
    import apache_beam as beam

    rows = joined | f"Rows[{split}]" >> beam.combiners.Count.Globally()

    def key(fe: Tuple[bool, bytes], n: int) -> Tuple[int, Tuple[int, Tuple[bool, bytes]]]:
        h = _mix_hash(fe[1])
        return h % max(1, n // MIX_BUCKET_ROWS), (h, fe)

    return (joined | f"MixKey[{split}]" >> beam.Map(key, beam.pvalue.AsSingleton(rows))
            | f"Mix[{split}]" >> beam.GroupByKey()
            | f"Unmix[{split}]" >> beam.FlatMap(lambda kv: [fe for _, fe in sorted(kv[1], key=lambda x: x[0])]))


def _mean_vector_fn() -> Any:
    """A Beam CombineFn: the mean of float vectors (float64 sums; None when there are none)."""
    import apache_beam as beam

    class MeanVector(beam.CombineFn):
        def create_accumulator(self):
            return None, 0

        def add_input(self, acc, v):
            s, n = acc
            v = np.asarray(v, np.float64)
            return (v if s is None else s + v), n + 1

        def merge_accumulators(self, accs):
            s, n = None, 0
            for a, m in accs:
                if a is not None:
                    s, n = (a if s is None else s + a), n + m
            return s, n

        def extract_output(self, acc):
            s, n = acc
            return None if s is None else (s / n).astype(np.float32)

    return MeanVector()


def _knowledge_vectors(path_pattern: str):
    """(user key, vector) of every user record of the knowledge shards."""
    import apache_beam as beam
    import tensorflow as tf

    from llm4msr_tf.knowledge.store import example_to_record

    def parse(raw: bytes):
        rec = example_to_record(tf.train.Example.FromString(raw))
        if rec.key_type == "user":
            yield rec.key, np.asarray(rec.vector, np.float32)

    return beam.io.ReadFromTFRecord(path_pattern, compression_type=beam.io.filesystem.CompressionTypes.GZIP) \
        | "ParseKnowledge" >> beam.FlatMap(parse)


def knowledge_side(p: Any, knowledge_dir: str, default: str, dim: int) -> Tuple[Any, Any]:
    """The user vectors of KNOWLEDGE_DIR as a keyed PCollection, and the default vector as a side input.

    Args:
        p: the Beam pipeline.
        knowledge_dir: a KNOWLEDGE_DIR written by `llm4msr knowledge` (local or remote).
        default: ``mean`` (of the user vectors) or ``zeros``: the vector of users without one.
        dim: the vector width.
    """
    import apache_beam as beam

    from llm4msr_tf.knowledge.store import SHARD_PREFIX, SHARD_SUFFIX

    root = knowledge_dir if "://" in knowledge_dir else os.path.abspath(knowledge_dir)
    vectors = p | "ReadKnowledge" >> _knowledge_vectors(f"{root.rstrip('/')}/{SHARD_PREFIX}-*{SHARD_SUFFIX}")
    if default == "mean":
        side = beam.pvalue.AsSingleton(
            vectors | "Vectors" >> beam.Values() | "MeanVector" >> beam.CombineGlobally(_mean_vector_fn()))
    else:
        side = beam.pvalue.AsSingleton(p | "Zeros" >> beam.Create([np.zeros(dim, np.float32)]))
    return vectors, side


def join_split(p: Any, split: str, in_pattern: str, out_prefix: str, num_shards: int, stats_path: str,
               vectors: Any, default: Any, user_feature: str, feature: str, dim: int,
               out_suffix: str = "") -> None:
    """Join one split: read gzipped tf.Examples at `in_pattern`, add `feature`, write `out_prefix` shards.

    Writes one JSON line ``{"split", "unknown", "rows"}`` to `stats_path` (no shard suffix). Used
    by `llm4msr join-knowledge` and by the TFX pipeline's `JoinKnowledge` component alike.
    """
    import apache_beam as beam

    gz = beam.io.filesystem.CompressionTypes.GZIP
    examples = (p | f"Read[{split}]" >> beam.io.ReadFromTFRecord(in_pattern, compression_type=gz)
                | f"KeyByUser[{split}]" >> beam.Map(_user_key, user_feature))
    joined = ({"examples": examples, "vector": vectors} | f"Join[{split}]" >> beam.CoGroupByKey()
              | f"AddVector[{split}]" >> beam.FlatMap(_add_vector, feature, default, dim))
    joined = _mixed(joined, split)  # no user order left for the training shuffle to undo
    (joined | f"Serialized[{split}]" >> beam.Values()
     | f"Write[{split}]" >> beam.io.WriteToTFRecord(out_prefix, file_name_suffix=out_suffix,
                                                    num_shards=num_shards, compression_type=gz))
    (joined | f"Flags[{split}]" >> beam.Map(lambda kv: (int(kv[0]), 1))
     | f"Count[{split}]" >> beam.CombineGlobally(lambda rows: tuple(map(sum, zip(*rows))) if rows else (0, 0)
                                                 ).without_defaults()
     | f"StatsJson[{split}]" >> beam.Map(lambda c, s=split: json.dumps({"split": s, "unknown": c[0], "rows": c[1]}))
     | f"WriteStats[{split}]" >> beam.io.WriteToText(stats_path, shard_name_template=""))


def read_stats(path: str) -> Dict[str, int]:
    """``{"rows", "unknown"}`` from a stats file `join_split` wrote (zeros for an empty split)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        st = json.loads(f.read().strip() or "{}")
    return {"rows": int(st.get("rows", 0)), "unknown": int(st.get("unknown", 0))}


def build_pipeline(p: Any, cfg: JoinConfig, spec: Any, dim: int, tmp: str) -> None:
    """Add one join per split to Beam pipeline `p`, writing ``tmp/SPLIT/part-*.tfrecord.gz`` and stats."""
    from llm4msr_tf.data.spec import TFRECORD_SUFFIX

    vectors, default = knowledge_side(p, cfg.knowledge, cfg.default, dim)
    for split in present_splits(spec):
        shards = int(cfg.num_shards) or len(spec.tfrecord_files(split))
        join_split(p, split, spec.tfrecord_pattern(split), os.path.join(tmp, split, "part"), shards,
                   os.path.join(tmp, _STATS_PREFIX + split), vectors, default, spec.user_feature, cfg.feature, dim,
                   out_suffix=TFRECORD_SUFFIX)


def check_join_inputs(spec: Any, knowledge: str, feature: str) -> Tuple[int, Dict[str, Any]]:
    """Refuse a knowledge directory without user vectors, or a feature name the data already has.

    Returns:
        ``(dim, manifest)`` of the knowledge directory.
    """
    from llm4msr_tf.knowledge.store import read_manifest, shard_files

    manifest = read_manifest(knowledge)
    dim = int(manifest.get("dim") or 0)
    if dim < 1 or not shard_files(knowledge):
        raise UserInputError(f"--knowledge {knowledge}: no vectors there (dim {dim}); re-run `llm4msr knowledge`")
    if int((manifest.get("counts") or {}).get("user", 0)) < 1:
        raise UserInputError(f"--knowledge {knowledge} has no user vectors to join")
    names = {f.name for f in spec.features} | {spec.label} | set(spec.knowledge_features)
    if feature in names:
        raise UserInputError(f"--feature {feature!r} is already a feature of {spec.data_dir or 'the data'}; "
                             "choose another name")
    return dim, manifest


def feature_entry(spec: Any, knowledge: str, default: str, dim: int, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The ``dataset.json`` ``knowledge_features`` entry of a joined user vector."""
    return {"dim": dim, "key_type": "user", "key_feature": spec.user_feature, "default": default,
            "knowledge_dir": knowledge if "://" in knowledge else os.path.abspath(knowledge),
            "llm": manifest.get("llm")}


def run(cfg: JoinConfig, beam_args: Sequence[str] = ()) -> Dict[str, Any]:
    """Join; returns ``{"out", "feature", "dim", "splits": {split: {"rows", "unknown"}}, "seconds"}``."""
    import apache_beam as beam

    import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
    from llm4msr_tf.data.spec import SPLITS, DatasetSpec
    from llm4msr_tf.knowledge.job import beam_options

    if not cfg.data or not cfg.knowledge or not cfg.out:
        raise UserInputError("--data DATA_DIR, --knowledge KNOWLEDGE_DIR and --out NEW_DATA_DIR are required")
    spec = DatasetSpec.load(cfg.data)
    dim, manifest = check_join_inputs(spec, cfg.knowledge, cfg.feature)
    if os.path.abspath(cfg.out) == os.path.abspath(cfg.data):
        raise UserInputError("--out must differ from --data (the input is read while the output is written)")
    # The joined folder is a DATA_DIR: --overwrite replaces only a data folder this tool wrote,
    # never the inputs (checked before the job runs).
    protected = {"--data": cfg.data, "--knowledge": cfg.knowledge}
    check_output_dir(cfg.out, "data", cfg.overwrite, protected)
    t0 = time.time()
    with atomic_dir(cfg.out, overwrite=cfg.overwrite, kind="data", protected=protected) as tmp:
        for entry in os.listdir(spec.data_dir):
            if entry in SPLITS:
                continue
            src = os.path.join(spec.data_dir, entry)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, entry))
        with beam.Pipeline(options=beam_options(cfg.runner, beam_args)) as p:
            build_pipeline(p, cfg, spec, dim, tmp)
        splits: Dict[str, Dict[str, int]] = {}
        for split in present_splits(spec):
            path = os.path.join(tmp, _STATS_PREFIX + split)
            splits[split] = read_stats(path)
            os.remove(path)
            want = int((spec.splits.get(split) or {}).get("rows") or splits[split]["rows"])
            if splits[split]["rows"] != want:
                raise RuntimeError(f"join wrote {splits[split]['rows']} {split} examples, the input has {want}; "
                                   "nothing was committed (this is a bug, please report it)")
        out_spec = DatasetSpec.load(tmp)
        out_spec.knowledge_features[cfg.feature] = {
            **feature_entry(spec, cfg.knowledge, cfg.default, dim, manifest),
            "unknown": {s: v["unknown"] for s, v in splits.items()}}
        out_spec.save(tmp)
    result = {"out": os.path.abspath(cfg.out), "feature": cfg.feature, "dim": dim, "splits": splits,
              "seconds": round(time.time() - t0, 3)}
    log.info("joined %s-d user knowledge into %s as %r: %s (%.1fs)", dim, cfg.out, cfg.feature, splits,
             result["seconds"])
    return result


def join_knowledge(data: str, knowledge: str, out: str, beam_args: Sequence[str] = (), **kwargs: Any) -> Dict[str, Any]:
    """`run` with keyword arguments (the Python entry point: ``join_knowledge(DATA, KDIR, OUT)``)."""
    return run(JoinConfig(data=data, knowledge=knowledge, out=out, **kwargs), beam_args)
