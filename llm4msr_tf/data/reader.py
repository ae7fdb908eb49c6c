"""Read a prepared DATA_DIR back: a split as a pandas table (checks, reports, small sets).

The prompts are read with `llm4msr_tf.data.prompt_format.read_prompts`.
"""
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from llm4msr_tf.data.spec import DatasetSpec


def read_split(data_dir: str, split: str, batch_size: int = 8192, limit: Optional[int] = None) -> pd.DataFrame:
    """Every tf.Example of one split as a DataFrame (strings decoded); for checks and small sets."""
    import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
    import tensorflow as tf

    spec = DatasetSpec.load(data_dir)
    files = spec.tfrecord_files(split)
    fs = spec.feature_spec(with_knowledge=False)  # one column per scalar feature
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit is not None:
        ds = ds.take(limit)
    ds = ds.batch(batch_size).map(lambda x: tf.io.parse_example(x, fs))
    cols: Dict[str, List[np.ndarray]] = {k: [] for k in fs}
    for batch in ds.as_numpy_iterator():
        for k, v in batch.items():
            cols[k].append(v)
    out = {}
    for k, parts in cols.items():
        arr = np.concatenate(parts) if parts else np.array([])
        if arr.dtype == object:
            arr = np.array([b.decode("utf-8") for b in arr], dtype=object)
        out[k] = arr
    return pd.DataFrame(out)
