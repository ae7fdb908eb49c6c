"""`kuaisar`: the published KuaiSAR layout (unified search and recommendation, Kuaishou).

``--source`` holds ``rec_inter.csv`` and ``src_inter.csv`` (required) and, optionally,
``user_features.csv`` and ``item_features.csv``. Two scenarios: 0 = recommendation
(``rec_inter.csv``, label ``click``, time ``timestamp`` in ms) and 1 = search
(``src_inter.csv``, label ``click_cnt`` > 0, time ``search_session_timestamp`` in ms).
The English category names of ``item_features.csv`` (first to third level) are the item
text of the prompts; ``first_level_category_name_en`` is also the ``item_category`` feature.
User feature columns (``search_active_level``, ``rec_active_level``, ``onehot_feat*``) become
string features. Files are read in chunks of ``--chunk-size`` rows with only the needed columns.
"""
import logging
import os
from typing import Dict, List

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import (ITEM, LABEL, SCENARIO, TIMESTAMP, USER, ItemInfo, LoadedData,
                                  concat_categorical, map_categorical, numeric_column, require_columns, require_file)
from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

SCENARIOS = [
    ScenarioSpec(0, "recommendation",
                 "Kuaishou's short-video recommendation feed: videos are pushed to the user while "
                 "scrolling, without a query; a click means the user opened the video"),
    ScenarioSpec(1, "search",
                 "Kuaishou's search service: the user types or picks a query and clicks among the "
                 "returned videos, so clicks express an explicit, current intent"),
]
_EMPTY = {"", "empty", "unknown", "nan", "none", "null"}


def _read(path: str, cols: Dict[str, str], chunk_size: int) -> pd.DataFrame:
    """Read the needed columns in chunks; `cols` maps source column -> kind (id|num)."""
    head = pd.read_csv(path, nrows=0)
    require_columns(list(head.columns), list(cols), path,
                    "KuaiSAR files must keep their published headers (see kuaisar.github.io).")
    parts, offset = [], 0
    for chunk in pd.read_csv(path, usecols=list(cols), dtype=str, chunksize=chunk_size, keep_default_na=False):
        d = {}
        for c, kind in cols.items():
            if kind == "num":
                d[c] = numeric_column(chunk[c].replace("", np.nan), path, c, row_offset=offset).to_numpy(np.float64)
            else:
                d[c] = pd.Categorical(chunk[c].to_numpy())  # compact while the rest is read
        parts.append(d)
        offset += len(chunk)
    if not parts:
        raise UserInputError(f"{path} has a header but no rows; KuaiSAR needs interactions in both services")
    out = {}
    for c, kind in cols.items():
        out[c] = (concat_categorical([p[c] for p in parts]) if kind == "id"
                  else np.concatenate([p[c] for p in parts]))
    return pd.DataFrame(out)


def load(cfg) -> LoadedData:
    """Adapter entry point: read the KuaiSAR folder into a two-scenario interaction table."""
    src = cfg.source
    if not os.path.isdir(src):
        raise UserInputError(f"--source {src} is not a folder; point it at the KuaiSAR folder (rec_inter.csv, ...)")
    rec_path = require_file(os.path.join(src, "rec_inter.csv"), "KuaiSAR recommendation log rec_inter.csv")
    src_path = require_file(os.path.join(src, "src_inter.csv"), "KuaiSAR search log src_inter.csv")
    rec = _read(rec_path, {"user_id": "id", "item_id": "id", "timestamp": "num", "click": "num"}, cfg.chunk_size)
    srch = _read(src_path, {"user_id": "id", "item_id": "id", "search_session_timestamp": "num",
                            "click_cnt": "num"}, cfg.chunk_size)
    frame = pd.DataFrame({
        USER: concat_categorical([rec["user_id"].array, srch["user_id"].array]),
        ITEM: concat_categorical([rec["item_id"].array, srch["item_id"].array]),
        SCENARIO: np.r_[np.zeros(len(rec), np.int64), np.ones(len(srch), np.int64)],
        LABEL: np.r_[(rec["click"].to_numpy() > 0), (srch["click_cnt"].to_numpy() > 0)].astype(np.int64),
        TIMESTAMP: np.r_[rec["timestamp"].to_numpy(), srch["search_session_timestamp"].to_numpy()],
    })
    files = [rec_path, src_path]
    categorical: List[str] = []
    dropped: Dict[str, int] = {}

    uf_path = os.path.join(src, "user_features.csv")
    if os.path.isfile(uf_path):
        uf = pd.read_csv(uf_path, dtype=str, keep_default_na=False)
        require_columns(list(uf.columns), ["user_id"], uf_path)
        uf = uf.drop_duplicates("user_id").set_index("user_id")
        for c in uf.columns:
            frame[c] = map_categorical(frame[USER], uf[c].to_dict())
            categorical.append(c)
        files.append(uf_path)
    else:
        log.warning("%s not found: no user features", uf_path)

    items: Dict[str, ItemInfo] = {}
    if_path = os.path.join(src, "item_features.csv")
    if os.path.isfile(if_path):
        cols = [f"{lvl}_level_category_name_en" for lvl in ("first", "second", "third")]
        itf = pd.read_csv(if_path, dtype=str, keep_default_na=False)
        require_columns(list(itf.columns), ["item_id", cols[0]], if_path)
        cols = [c for c in cols if c in itf.columns]
        for row in itf[["item_id", *cols]].itertuples(index=False):
            cats = [c for c in row[1:] if isinstance(c, str) and c.strip().lower() not in _EMPTY]
            items[str(row[0])] = ItemInfo(title="", categories=cats)
        frame["item_category"] = map_categorical(
            frame[ITEM], {i: info.categories[0] for i, info in items.items() if info.categories})
        categorical.append("item_category")
        files.append(if_path)
    else:
        log.warning("%s not found: prompts will name videos by id", if_path)
    return LoadedData(
        name="kuaisar", frame=frame, scenarios=[ScenarioSpec(s.id, s.name, s.description) for s in SCENARIOS],
        categorical=categorical, items=items, source_rows=len(frame), dropped=dropped,
        item_noun="videos", source_files=files,
    )
