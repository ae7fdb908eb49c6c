"""Write interactions as gzip TFRecords of tf.Example and the training-split vocabularies."""
import logging
import math
import os
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, USER
from llm4msr_tf.data.spec import CATEGORICAL, NUMERIC, FeatureSpec

log = logging.getLogger(__name__)


def shard_name(index: int, count: int) -> str:
    """File name of one shard: part-00000-of-00002.tfrecord.gz."""
    return f"part-{index:05d}-of-{count:05d}.tfrecord.gz"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _entry(name: bytes, feature: bytes) -> bytes:
    """One `Features.feature` map entry (key field 1, value field 2), wire-encoded."""
    body = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(body)) + body


def _bytes_feature(v: bytes) -> bytes:
    inner = b"\x0a" + _varint(len(v)) + v  # BytesList.value
    return b"\x0a" + _varint(len(inner)) + inner  # Feature.bytes_list


def _int64_feature(v: int) -> bytes:
    packed = _varint(v & 0xFFFFFFFFFFFFFFFF)  # int64 varints are two's complement on 64 bits
    inner = b"\x0a" + _varint(len(packed)) + packed  # Int64List.value (packed)
    return b"\x1a" + _varint(len(inner)) + inner  # Feature.int64_list


def _float_entries(name: bytes, values: np.ndarray) -> List[bytes]:
    # FloatList.value packed: 0x0a 0x04 <4 bytes>; Feature.float_list: 0x12 0x06 <6 bytes>.
    prefix = _entry(name, b"\x12\x06\x0a\x04" + b"\0\0\0\0")[:-4]
    raw = values.astype("<f4").tobytes()
    return [prefix + raw[4 * i:4 * i + 4] for i in range(len(values))]


def _coded_entries(name: bytes, series: pd.Series, encode) -> List[bytes]:
    """Entries of a low-cardinality or repeated column: encode each distinct value once."""
    codes, uniques = pd.factorize(series, sort=False)
    table = [_entry(name, encode(u)) for u in uniques]
    return [table[c] for c in codes]


def serialize_examples(frame: pd.DataFrame, features: Sequence[FeatureSpec]) -> List[bytes]:
    """Serialized tf.Example protos of every row (label included), encoded directly.

    Building protos through the protobuf API costs ~100 us a row here; ids repeat a lot, so
    each distinct (feature, value) entry is wire-encoded once and rows are concatenations.
    `tests/test_data_prepare.py` checks the bytes parse to the same Example as the API builds.
    """
    cols = []
    for f in features:
        name = f.name.encode("utf-8")
        s = frame[f.name]
        if f.dtype == "string":
            cols.append(_coded_entries(name, s.astype(str), lambda u: _bytes_feature(str(u).encode("utf-8"))))
        elif f.dtype == "int64":
            cols.append(_coded_entries(name, s.astype(np.int64), lambda u: _int64_feature(int(u))))
        else:
            cols.append(_float_entries(name, s.to_numpy(dtype=np.float32)))
    cols.append(_coded_entries(LABEL.encode(), frame[LABEL].astype(np.int64), lambda u: _int64_feature(int(u))))
    out = []
    for parts in zip(*cols):
        body = b"".join(parts)
        out.append(b"\x0a" + _varint(len(body)) + body)
    return out


def write_examples(frame: pd.DataFrame, features: Sequence[FeatureSpec], out_dir: str,
                   rows_per_shard: int = 500_000, progress: bool = True, desc: str = "") -> List[str]:
    """Write every row of `frame` as a tf.Example into gzip shards under `out_dir`."""
    import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
    import tensorflow as tf
    from tqdm.auto import tqdm

    os.makedirs(out_dir, exist_ok=True)
    n = len(frame)
    num_shards = max(1, math.ceil(n / max(1, rows_per_shard)))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    paths = []
    bar = tqdm(total=n, desc=desc or f"write {os.path.basename(out_dir)}", unit="ex",
               disable=not progress, mininterval=1.0)
    per = math.ceil(n / num_shards) if n else 0
    step = 100_000  # serialize in slices so memory stays bounded on large splits
    for s in range(num_shards):
        path = os.path.join(out_dir, shard_name(s, num_shards))
        paths.append(path)
        lo, hi = s * per, min(n, (s + 1) * per)
        with tf.io.TFRecordWriter(path, options) as w:
            for a in range(lo, hi, step):
                b = min(hi, a + step)
                for rec in serialize_examples(frame.iloc[a:b], features):
                    w.write(rec)
                bar.update(b - a)
    bar.close()
    return paths


def vocabulary(values: pd.Series) -> List[str]:
    """Distinct values, most frequent first (ties broken by value, so the order is stable)."""
    counts = values.astype(str).value_counts()
    df = pd.DataFrame({"v": counts.index.astype(str), "c": counts.to_numpy()})
    df = df.sort_values(["c", "v"], ascending=[False, True], kind="stable")
    return df["v"].tolist()


def write_vocab(path: str, values: List[str]) -> None:
    """One value per line (prepare has already replaced newlines inside values)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for v in values:
            fh.write(v.replace("\n", " ").replace("\r", " ") + "\n")


def build_features(train: pd.DataFrame, num_scenarios: int, categorical: Sequence[str],
                   numeric: Sequence[str], vocab_dir: Optional[str]) -> List[FeatureSpec]:
    """FeatureSpecs of every written feature; writes vocab/<name>.txt for string categoricals."""
    feats = []
    for name in (USER, ITEM, *categorical):
        vocab = vocabulary(train[name])
        rel = f"vocab/{name}.txt"
        if vocab_dir is not None:
            write_vocab(os.path.join(vocab_dir, f"{name}.txt"), vocab)
        feats.append(FeatureSpec(name, CATEGORICAL, "string", len(vocab), rel))
    feats.append(FeatureSpec(SCENARIO, CATEGORICAL, "int64", int(num_scenarios)))
    for name in numeric:
        feats.append(FeatureSpec(name, NUMERIC, "float32"))
    return feats
