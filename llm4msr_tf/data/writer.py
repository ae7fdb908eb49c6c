"""Write interactions as gzip TFRecords of tf.Example and the training-split vocabularies."""
import logging
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, USER
from llm4msr_tf.data.spec import CATEGORICAL, NUMERIC, FeatureSpec

log = logging.getLogger(__name__)


def shard_name(index: int, count: int) -> str:
    """File name of one shard: part-00000-of-00002.tfrecord.gz."""
    return f"part-{index:05d}-of-{count:05d}.tfrecord.gz"


def _bytes_column(series: pd.Series) -> List[bytes]:
    """A string column as a list of UTF-8 bytes, encoding each distinct value once."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(str).astype("category")
    cats = [str(c).encode("utf-8") for c in series.cat.categories]
    codes = series.cat.codes.to_numpy()
    return [cats[c] for c in codes]


def write_examples(frame: pd.DataFrame, features: Sequence[FeatureSpec], out_dir: str,
                   rows_per_shard: int = 500_000, progress: bool = True, desc: str = "") -> List[str]:
    """Write every row of `frame` as a tf.Example into gzip shards under `out_dir`.

    Columns are converted to Python lists once (ids encoded per distinct value), so the
    per-row loop only assembles protos.
    """
    import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
    import tensorflow as tf
    from tqdm.auto import tqdm

    os.makedirs(out_dir, exist_ok=True)
    n = len(frame)
    num_shards = max(1, math.ceil(n / max(1, rows_per_shard)))
    cols: Dict[str, list] = {}
    kinds: Dict[str, str] = {}
    for f in features:
        s = frame[f.name]
        if f.dtype == "string":
            cols[f.name], kinds[f.name] = _bytes_column(s), "b"
        elif f.dtype == "int64":
            cols[f.name], kinds[f.name] = s.to_numpy(dtype=np.int64).tolist(), "i"
        else:
            cols[f.name], kinds[f.name] = s.to_numpy(dtype=np.float32).tolist(), "f"
    cols[LABEL], kinds[LABEL] = frame[LABEL].to_numpy(dtype=np.int64).tolist(), "i"
    names = list(cols)
    BytesList, Int64List, FloatList = tf.train.BytesList, tf.train.Int64List, tf.train.FloatList
    Feature = tf.train.Feature
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    paths = []
    bar = tqdm(total=n, desc=desc or f"write {os.path.basename(out_dir)}", unit="ex",
               disable=not progress, mininterval=1.0)
    per = math.ceil(n / num_shards) if n else 0
    for s in range(num_shards):
        path = os.path.join(out_dir, shard_name(s, num_shards))
        paths.append(path)
        lo, hi = s * per, min(n, (s + 1) * per)
        with tf.io.TFRecordWriter(path, options) as w:
            for i in range(lo, hi):
                feat = {}
                for name in names:
                    k = kinds[name]
                    v = cols[name][i]
                    if k == "b":
                        feat[name] = Feature(bytes_list=BytesList(value=[v]))
                    elif k == "i":
                        feat[name] = Feature(int64_list=Int64List(value=[v]))
                    else:
                        feat[name] = Feature(float_list=FloatList(value=[v]))
                w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
                if (i - lo) % 10000 == 9999:
                    bar.update(10000)
        bar.update((hi - lo) % 10000)
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
