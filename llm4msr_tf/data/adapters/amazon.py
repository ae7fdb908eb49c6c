"""`amazon`: Amazon review files (2014 5-core JSON lines), one category file per scenario.

``--source`` is a folder (every ``*.json``/``*.json.gz`` review file in it that is not a
``meta_*`` file) or a comma-separated list of review files. Each file is one scenario, named
after the file (``reviews_Musical_Instruments_5.json`` -> "Musical Instruments"); users are
joined across scenarios by ``reviewerID``. Label: ``overall`` > ``--label-threshold``.
``unixReviewTime`` orders histories and drives the time split.

Item text comes from optional metadata files (``--meta``, default: ``meta_*.json[.gz]`` next to
the reviews) in the published format: one object a line, JSON or a Python literal (the 2014
dumps use single quotes), with ``asin``, ``title`` and ``categories`` (a list of category paths).
Without metadata, a user prompt names each reviewed product by the user's own review
``summary`` (training reviews only), else by asin.
"""
import ast
import glob
import gzip
import json
import logging
import os
import re
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import (ITEM, LABEL, RATING, SCENARIO, TIMESTAMP, USER, ItemInfo, LoadedData,
                                  map_categorical)
from llm4msr_tf.data.config import rating_threshold
from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

REQUIRED = ("reviewerID", "asin", "overall")


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _records(path: str) -> Iterator[Tuple[int, dict]]:
    """(line number, object) per non-empty line; JSON first, Python literal as the fallback."""
    with _open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                try:
                    obj = ast.literal_eval(line)
                except (ValueError, SyntaxError) as e:
                    raise UserInputError(
                        f"{path}, line {n}: not a JSON object ({e.__class__.__name__}); "
                        "each line must be one review object - fix or remove that line"
                    ) from None
            if not isinstance(obj, dict):
                raise UserInputError(f"{path}, line {n}: expected an object, got {type(obj).__name__}")
            yield n, obj


def scenario_name(path: str) -> str:
    """Category name from a review file name: reviews_Musical_Instruments_5.json -> Musical Instruments."""
    base = os.path.basename(path)
    base = re.sub(r"\.json(\.gz)?$", "", base)
    base = re.sub(r"^(reviews_)", "", base)
    base = re.sub(r"_5$", "", base)
    return base.replace("_", " ").strip() or base


def _review_files(source: str) -> List[str]:
    if "," in source:
        files = [p.strip() for p in source.split(",") if p.strip()]
    elif os.path.isdir(source):
        files = sorted(p for p in glob.glob(os.path.join(source, "*.json*"))
                       if re.search(r"\.json(\.gz)?$", p) and not os.path.basename(p).startswith("meta_"))
        if not files:
            raise UserInputError(f"{source} holds no review files (*.json or *.json.gz other than meta_*)")
    else:
        files = [source]
    for p in files:
        if not os.path.isfile(p):
            raise UserInputError(f"review file {p} does not exist; check --source")
    return files


def _meta_files(cfg, review_files: List[str]) -> List[str]:
    if cfg.meta:
        files = [p.strip() for p in cfg.meta.split(",") if p.strip()]
        for p in files:
            if not os.path.isfile(p):
                raise UserInputError(f"metadata file {p} (from --meta) does not exist")
        return files
    dirs = sorted({os.path.dirname(os.path.abspath(p)) for p in review_files})
    return sorted(p for d in dirs for p in glob.glob(os.path.join(d, "meta_*.json*"))
                  if re.search(r"\.json(\.gz)?$", p))


def _leaf_categories(cats) -> List[str]:
    """Distinct category names below the top level, from a list of category paths."""
    out: List[str] = []
    if isinstance(cats, list):
        for path in cats:
            names = path if isinstance(path, list) else [path]
            for c in names[1:] if len(names) > 1 else names:
                if isinstance(c, str) and c and c not in out:
                    out.append(c)
    return out[:4]


def load(cfg) -> LoadedData:
    """Adapter entry point: read review files (+ metadata) into the interaction table."""
    files = _review_files(cfg.source)
    names = [scenario_name(p) for p in files]
    if len(set(names)) != len(names):
        raise UserInputError(f"two review files map to the same category name: {files}; rename one")
    users, items, scen, rating, ts, summary = [], [], [], [], [], []
    for sid, path in enumerate(files):
        for n, obj in _records(path):
            missing = [k for k in REQUIRED if k not in obj]
            if missing:
                raise UserInputError(
                    f"{path}, line {n}: review lacks field(s) {missing}; each review needs "
                    f"{list(REQUIRED)} (and ideally unixReviewTime)"
                )
            try:
                r = float(obj["overall"])
            except (TypeError, ValueError):
                raise UserInputError(
                    f"{path}, line {n}, field 'overall': {obj['overall']!r} is not a number; fix or remove that review"
                ) from None
            users.append(str(obj["reviewerID"]))
            items.append(str(obj["asin"]))
            scen.append(sid)
            rating.append(r)
            t = obj.get("unixReviewTime")
            summary.append(str(obj.get("summary", "") or "").replace("\n", " "))
            ts.append(float(t) if isinstance(t, (int, float)) or (isinstance(t, str) and t.isdigit()) else np.nan)
    frame = pd.DataFrame({
        USER: pd.Categorical(users), ITEM: pd.Categorical(items),
        SCENARIO: np.asarray(scen, dtype=np.int64),
        LABEL: (np.asarray(rating) > rating_threshold(cfg)).astype(np.int64),
        "review_summary": summary,
        RATING: np.asarray(rating, dtype=np.float32),
    })
    ts_arr = np.asarray(ts, dtype=np.float64)
    if len(ts_arr) and np.isfinite(ts_arr).all():
        frame[TIMESTAMP] = ts_arr
    else:
        log.warning("some reviews lack unixReviewTime: using a random split")
    source_rows = len(frame)
    # Keep one review per (user, item, scenario): the 5-core files hold a few duplicates.
    dup = frame.duplicated([USER, ITEM, SCENARIO], keep="last").to_numpy()
    frame = frame.loc[~dup].reset_index(drop=True)

    info: Dict[str, ItemInfo] = {}
    meta_files = _meta_files(cfg, files)
    wanted = set(frame[ITEM].astype(str))
    for mpath in meta_files:
        for n, obj in _records(mpath):
            asin = obj.get("asin")
            if asin is None:
                raise UserInputError(f"{mpath}, line {n}: metadata object lacks 'asin'")
            if asin in wanted:
                info[str(asin)] = ItemInfo(title=str(obj.get("title", "") or ""),
                                           categories=_leaf_categories(obj.get("categories")))
    categorical = []
    if meta_files:
        frame["item_category"] = map_categorical(
            frame[ITEM], {i: v.categories[0] for i, v in info.items() if v.categories})
        categorical.append("item_category")
    scenarios = [ScenarioSpec(k, nm, f"Amazon reviews of {nm} products; a review rated above "
                                     f"{rating_threshold(cfg):g} stars counts as a positive")
                 for k, nm in enumerate(names)]
    log.info("amazon: %d reviews in %d categories, %d items with metadata", source_rows, len(files), len(info))
    return LoadedData(
        name="amazon-" + "+".join(n.lower().replace(" ", "-") for n in names),
        frame=frame, scenarios=scenarios, categorical=categorical, items=info,
        source_rows=source_rows, dropped={"duplicate reviews": int(dup.sum())},
        item_noun="products", source_files=files + meta_files, text_column="review_summary",
    )
