"""The knowledge directory format: gzip TFRecords of tf.Example plus `manifest.json`.

Layout (docs/interfaces.md)::

    KNOWLEDGE_DIR/
      knowledge-00000-of-0000N.tfrecord.gz   key_type, key, vector, text, prompt_sha256
      manifest.json                          llm, dim, pooling, counts, reused, config

`load` is what the model stage calls; `write_knowledge` writes the same format from Python
(handy for test fixtures and for vectors computed elsewhere). TensorFlow is imported inside
the functions so that `import llm4msr_tf.knowledge` stays light.
"""
import dataclasses
import glob
import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from llm4msr_tf.data.prompt_format import KEY_TYPES
from llm4msr_tf.utils.io import UserInputError, atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

MANIFEST_FILENAME = "manifest.json"
SHARD_PREFIX = "knowledge"
SHARD_SUFFIX = ".tfrecord.gz"
POOLINGS = ("last", "mean")


@dataclasses.dataclass
class KnowledgeRecord:
    """One knowledge vector: what it is for (key_type, key), the vector, and its provenance."""

    key_type: str
    key: str
    vector: np.ndarray
    text: str = ""
    prompt_sha256: str = ""


@dataclasses.dataclass
class KeyedVectors:
    """Lookup-ready vectors of one key type: `keys[i]` owns row `vectors[i]` and `texts[i]`."""

    keys: List[str]
    vectors: np.ndarray  # float32 [n, dim]
    texts: List[str]

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._index

    def index(self, key: Union[str, int]) -> int:
        """Row of `key` (str or int); KeyError when absent."""
        return self._index[str(key)]

    def get(self, key: Union[str, int], default: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The vector of `key`, or `default` when the key is unknown."""
        i = self._index.get(str(key))
        return default if i is None else self.vectors[i]

    @property
    def dim(self) -> int:
        """Vector width."""
        return int(self.vectors.shape[1])


@dataclasses.dataclass
class KnowledgeBase:
    """A loaded knowledge directory: manifest facts plus one `KeyedVectors` per key type."""

    dim: int
    llm: str
    manifest: Dict[str, Any]
    tables: Dict[str, KeyedVectors]
    path: str = ""

    @property
    def pooling(self) -> str:
        """How token states were pooled into one vector (`last` or `mean`)."""
        return str(self.manifest.get("pooling", ""))


RANDOM_LLM = "random"


def random_like(kb: KnowledgeBase, seed: int = 0, dim: Optional[int] = None) -> KnowledgeBase:
    """The capacity control: same keys and tables as `kb`, vectors replaced by seeded N(0, 1) noise.

    LLM4MSR fed these vectors has exactly the parameters of LLM4MSR fed `kb` (for the same
    ``dim``), so "real minus random" measures what the LLM's knowledge adds beyond extra
    capacity. Each key's vector depends only on (seed, key type, key), not on table order.

    Args:
        kb: the real knowledge base.
        seed: the noise seed.
        dim: vector width (default: ``kb.dim``).

    Returns:
        A `KnowledgeBase` with ``llm == "random"``.
    """
    import hashlib

    dim = int(dim or kb.dim)
    if dim < 1:
        raise ValueError(f"random knowledge needs dim >= 1, got {dim}")
    tables = {}
    for key_type, kv in kb.tables.items():
        rows = []
        for key in kv.keys:
            h = hashlib.sha256(f"{seed}:{key_type}:{key}".encode("utf-8")).digest()
            rows.append(np.random.default_rng(int.from_bytes(h[:8], "little")).standard_normal(dim))
        vectors = np.asarray(rows, np.float32).reshape(len(kv.keys), dim)
        tables[key_type] = KeyedVectors(list(kv.keys), vectors, [""] * len(kv.keys))
    manifest = dict(kb.manifest, llm=RANDOM_LLM, dim=dim, random_seed=int(seed), random_of=kb.llm)
    return KnowledgeBase(dim=dim, llm=RANDOM_LLM, manifest=manifest, tables=tables, path=f"random({kb.path})")


def shard_name(index: int, num_shards: int) -> str:
    """File name of shard `index` of `num_shards` (the pattern Beam's WriteToTFRecord uses)."""
    return f"{SHARD_PREFIX}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def shard_files(knowledge_dir: str) -> List[str]:
    """The knowledge TFRecord shards in a directory, sorted."""
    return sorted(glob.glob(os.path.join(knowledge_dir, f"{SHARD_PREFIX}-*{SHARD_SUFFIX}")))


def record_to_example(rec: KnowledgeRecord):
    """Serialize-ready tf.train.Example for one record (the schema in docs/interfaces.md)."""
    import tensorflow as tf

    def _b(s: str) -> "tf.train.Feature":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode("utf-8")]))

    vec = np.asarray(rec.vector, dtype=np.float32).reshape(-1)
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "key_type": _b(rec.key_type),
                "key": _b(str(rec.key)),
                "vector": tf.train.Feature(float_list=tf.train.FloatList(value=vec.tolist())),
                "text": _b(rec.text or ""),
                "prompt_sha256": _b(rec.prompt_sha256 or ""),
            }
        )
    )


def example_to_record(ex) -> KnowledgeRecord:
    """Inverse of `record_to_example` (missing optional features read as empty)."""
    f = ex.features.feature

    def _s(name: str) -> str:
        v = f[name].bytes_list.value if name in f else []
        return v[0].decode("utf-8") if v else ""

    vec = np.asarray(f["vector"].float_list.value, dtype=np.float32) if "vector" in f else np.zeros(0, np.float32)
    return KnowledgeRecord(_s("key_type"), _s("key"), vec, _s("text"), _s("prompt_sha256"))


def iter_records(knowledge_dir: str) -> Iterator[KnowledgeRecord]:
    """Every record in the directory's shards, in file order."""
    import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
    import tensorflow as tf

    for path in shard_files(knowledge_dir):
        try:
            for raw in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
                yield example_to_record(tf.train.Example.FromString(raw))
        except tf.errors.OpError as e:
            raise UserInputError(
                f"knowledge shard {path} is unreadable ({type(e).__name__}); "
                "it is not a gzip TFRecord of tf.Example: re-run `llm4msr knowledge`"
            ) from e


def read_manifest(knowledge_dir: str) -> Dict[str, Any]:
    """The manifest of a knowledge directory, with clear errors for a missing dir or file."""
    if not os.path.isdir(knowledge_dir):
        raise UserInputError(
            f"knowledge directory {knowledge_dir} does not exist; "
            "run `llm4msr knowledge --data DATA_DIR --out KNOWLEDGE_DIR` first"
        )
    path = os.path.join(knowledge_dir, MANIFEST_FILENAME)
    if not os.path.exists(path):
        raise UserInputError(
            f"{path} is missing, so {knowledge_dir} is not a complete knowledge directory; "
            "re-run `llm4msr knowledge` into it"
        )
    manifest = read_json(path)
    for field in ("llm", "dim"):
        if field not in manifest:
            raise UserInputError(f"{path} has no {field!r} field; re-run `llm4msr knowledge`")
    return manifest


def check_finite(rec: KnowledgeRecord, where: str) -> None:
    """Refuse a vector holding NaN or inf: it would turn every generated meta weight into NaN."""
    vec = np.asarray(rec.vector)
    finite = np.isfinite(vec)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise UserInputError(
            f"the {rec.key_type} vector of key {rec.key!r} in {where} is not finite ({int((~finite).sum())} of "
            f"{vec.size} values NaN/inf, first {vec[i]} at index {i}); recompute the knowledge "
            "with `llm4msr knowledge --no-reuse` into this directory")


def _natural_key(k: str):
    # Scenario ids are decimal strings: order 2 before 10.
    return (0, int(k), "") if k.isdigit() else (1, 0, k)


def load(
    knowledge_dir: str, expected_dim: Optional[int] = None, expected_llm: Optional[str] = None
) -> KnowledgeBase:
    """Read a knowledge directory into lookup-ready tables, checking it against expectations.

    Args:
        knowledge_dir: a KNOWLEDGE_DIR written by ``llm4msr knowledge`` or `write_knowledge`.
        expected_dim: fail unless the manifest's vector width is this (e.g. a model's config).
        expected_llm: fail unless the manifest's LLM spec is this.

    Returns:
        The `KnowledgeBase`: ``tables["scenario"]`` and ``tables["user"]`` (`KeyedVectors`),
        ``dim``, ``llm``, ``pooling`` and the manifest. Every vector has the manifest's
        dimension and the counts match it.
    """
    knowledge_dir = os.path.abspath(knowledge_dir)
    manifest = read_manifest(knowledge_dir)
    dim, llm = int(manifest["dim"]), str(manifest["llm"])
    mpath = os.path.join(knowledge_dir, MANIFEST_FILENAME)
    if expected_dim is not None and int(expected_dim) != dim:
        raise UserInputError(
            f"knowledge dimension mismatch: expected {int(expected_dim)}, found {dim} "
            f"(LLM {llm!r}) in {mpath}; regenerate the knowledge with the LLM the model was "
            "built for, or rebuild the model with this knowledge directory"
        )
    if expected_llm is not None and str(expected_llm) != llm:
        raise UserInputError(
            f"knowledge LLM mismatch: expected {expected_llm!r}, found {llm!r} in {mpath}; "
            f"run `llm4msr knowledge --llm {expected_llm}` or point to knowledge made by that LLM"
        )
    rows: Dict[str, Dict[str, KnowledgeRecord]] = {t: {} for t in KEY_TYPES}
    for rec in iter_records(knowledge_dir):
        if rec.key_type not in rows:
            raise UserInputError(
                f"record with key_type {rec.key_type!r} (key {rec.key!r}) in {knowledge_dir}; "
                f"valid key types are {list(KEY_TYPES)}: re-run `llm4msr knowledge`"
            )
        if rec.vector.shape[0] != dim:
            raise UserInputError(
                f"vector of {rec.key_type} {rec.key!r} in {knowledge_dir} has length "
                f"{rec.vector.shape[0]}, but the manifest says dim={dim}; the directory mixes "
                "outputs of different LLMs: re-run `llm4msr knowledge` into an empty directory"
            )
        check_finite(rec, knowledge_dir)
        if rec.key in rows[rec.key_type]:
            raise UserInputError(
                f"duplicate {rec.key_type} key {rec.key!r} in {knowledge_dir}; "
                "re-run `llm4msr knowledge` into an empty directory"
            )
        rows[rec.key_type][rec.key] = rec
    counts = manifest.get("counts") or {}
    for t in KEY_TYPES:
        if t in counts and int(counts[t]) != len(rows[t]):
            raise UserInputError(
                f"{mpath} promises {counts[t]} {t} vectors but the shards hold {len(rows[t])}; "
                "the directory is incomplete: re-run `llm4msr knowledge`"
            )
    tables = {}
    for t in KEY_TYPES:
        keys = sorted(rows[t], key=_natural_key)
        vecs = (
            np.stack([rows[t][k].vector for k in keys]).astype(np.float32)
            if keys
            else np.zeros((0, dim), np.float32)
        )
        tables[t] = KeyedVectors(keys, vecs, [rows[t][k].text for k in keys])
    log.info(
        "loaded knowledge %s: llm=%s dim=%d scenarios=%d users=%d",
        knowledge_dir, llm, dim, len(tables["scenario"]), len(tables["user"]),
    )
    return KnowledgeBase(dim=dim, llm=llm, manifest=manifest, tables=tables, path=knowledge_dir)


def _as_record(r: Union[KnowledgeRecord, Mapping[str, Any]]) -> KnowledgeRecord:
    if isinstance(r, KnowledgeRecord):
        return r
    return KnowledgeRecord(
        key_type=str(r["key_type"]),
        key=str(r["key"]),
        vector=np.asarray(r["vector"], dtype=np.float32),
        text=str(r.get("text", "") or ""),
        prompt_sha256=str(r.get("prompt_sha256", "") or ""),
    )


def write_shards(directory: str, records: Sequence[KnowledgeRecord], num_shards: int = 1) -> List[str]:
    """Write records round-robin into `num_shards` gzip TFRecord files; returns their paths."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    num_shards = max(1, int(num_shards))
    paths = [os.path.join(directory, shard_name(i, num_shards)) for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p, options="GZIP") for p in paths]
    try:
        for i, rec in enumerate(records):
            writers[i % num_shards].write(record_to_example(rec).SerializeToString())
    finally:
        for w in writers:
            w.close()
    return paths


def write_knowledge(
    knowledge_dir: str,
    records: Iterable[Union[KnowledgeRecord, Mapping[str, Any]]],
    manifest: Mapping[str, Any],
    num_shards: int = 1,
    overwrite: bool = False,
) -> str:
    """Write a knowledge directory atomically from in-memory records (no LLM needed).

    Args:
        knowledge_dir: the KNOWLEDGE_DIR to write.
        records: `KnowledgeRecord`s or dicts with key_type, key, vector[, text, prompt_sha256].
        manifest: at least ``llm``; ``dim`` is inferred when absent, ``counts`` is always
            recomputed, ``pooling`` defaults to ``last``, ``reused`` to 0, ``config`` to {}.
        num_shards: TFRecord files to spread the records over.
        overwrite: replace an existing directory.

    Returns:
        The directory written.
    """
    recs = [_as_record(r) for r in records]
    man = dict(manifest)
    if "llm" not in man:
        raise UserInputError("write_knowledge: manifest needs an 'llm' field (the LLM spec)")
    dims = {int(r.vector.reshape(-1).shape[0]) for r in recs}
    if "dim" not in man:
        if len(dims) != 1:
            raise UserInputError(f"write_knowledge: cannot infer dim from vector lengths {sorted(dims)}")
        man["dim"] = dims.pop()
    elif dims - {int(man["dim"])}:
        raise UserInputError(
            f"write_knowledge: vector lengths {sorted(dims)} differ from manifest dim {man['dim']}"
        )
    bad = sorted({r.key_type for r in recs} - set(KEY_TYPES))
    if bad:
        raise UserInputError(f"write_knowledge: unknown key_type(s) {bad}; use {list(KEY_TYPES)}")
    for r in recs:
        check_finite(r, "write_knowledge's records")
    man["counts"] = {t: sum(r.key_type == t for r in recs) for t in KEY_TYPES}
    man.setdefault("pooling", "last")
    man.setdefault("reused", 0)
    man.setdefault("config", {})
    with atomic_dir(knowledge_dir, overwrite=overwrite, kind="knowledge") as tmp:
        write_shards(tmp, recs, num_shards)
        write_json(os.path.join(tmp, MANIFEST_FILENAME), man)
    return knowledge_dir
