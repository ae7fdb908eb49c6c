"""`csv`: any CSV/TSV interaction log, through a column mapping (``--columns``).

``--columns`` is a comma-separated list of ``role=column``; roles:
``user``, ``item``, ``label`` (required), ``scenario`` (default: one scenario), ``timestamp``
(numbers or dates; enables the time split), ``categorical`` and ``numeric`` (extra features,
several joined by ``+``), ``title`` (item title column) and ``categories`` (item category
columns, ``+``-joined) - the text of the prompts. Without text columns, prompts are built
from statistics and ids. A label column that is not already 0/1 is binarised with
``value > --label-threshold``. Scenario values map to ids 0..S-1 in sorted order.

With ``--columns`` empty, the Scenario-Wise-Rec sample layouts are detected from the header
(`PRESETS`: KuaiRand, Ali-CCP, MIND, Douban). ``--source`` is a file, a comma-separated list
of files with the same header (e.g. Ali-CCP's train/val/test samples), or a folder of them.
"""
import csv
import glob
import logging
import os
import re
from typing import Dict, List

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import (ITEM, LABEL, SCENARIO, TIMESTAMP, USER, ItemInfo, LoadedData,
                                  concat_categorical, numeric_column, scale_unit)
from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

ROLES_SINGLE = ("user", "item", "label", "scenario", "timestamp", "title")
ROLES_MULTI = ("categorical", "numeric", "categories")

# Scenario-Wise-Rec (Applied-Machine-Learning-Lab/Scenario-Wise-Rec) sample layouts; `detect`
# columns must all be in the header for the preset to apply.
PRESETS: Dict[str, Dict[str, object]] = {
    "kuairand": {
        "detect": ["user_id", "video_id", "is_click", "tab"],
        "columns": {"user": "user_id", "item": "video_id", "label": "is_click", "scenario": "tab",
                    "categorical": ["user_active_degree", "is_live_streamer", "is_video_author",
                                    "follow_user_num_range", "fans_user_num_range", "register_days_range",
                                    "video_type"]},
        "noun": "videos",
    },
    "ali-ccp": {
        "detect": ["click", "101", "205", "301"],
        "columns": {"user": "101", "item": "205", "label": "click", "scenario": "301",
                    "categorical": ["121", "122", "124", "125", "126", "127", "128", "129",
                                    "206", "207", "210", "216"]},
        "noun": "ads",
    },
    "mind": {
        "detect": ["User_ID", "News_ID", "label", "Category"],
        "columns": {"user": "User_ID", "item": "News_ID", "label": "label", "scenario": "Category",
                    "categorical": ["SubCategory"], "categories": ["SubCategory"]},
        "noun": "news articles",
    },
    "douban": {
        "detect": ["user_id", "item_id", "rating", "domain"],
        "columns": {"user": "user_id", "item": "item_id", "label": "rating", "scenario": "domain",
                    "categorical": ["living_place"]},
        "noun": "items",
    },
}


def parse_columns(spec: str) -> Dict[str, object]:
    """Parse ``role=column,...`` (multi roles take ``a+b``) into a mapping; clear errors on typos."""
    out: Dict[str, object] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise UserInputError(f"--columns entry {part!r} is not role=column (e.g. user=user_id)")
        role, col = (x.strip() for x in part.split("=", 1))
        if role in ROLES_SINGLE:
            out[role] = col
        elif role in ROLES_MULTI:
            out[role] = [c for c in re.split(r"[+|]", col) if c]
        else:
            raise UserInputError(
                f"--columns role {role!r} is unknown; roles are {list(ROLES_SINGLE + ROLES_MULTI)}"
            )
    return out


def _files(source: str) -> List[str]:
    if "," in source:
        files = [p.strip() for p in source.split(",") if p.strip()]
    elif os.path.isdir(source):
        files = sorted(p for ext in ("csv", "tsv", "txt") for p in glob.glob(os.path.join(source, f"*.{ext}")))
        if not files:
            raise UserInputError(f"{source} holds no .csv/.tsv files; point --source at a file")
    else:
        files = [source]
    for p in files:
        if not os.path.isfile(p):
            raise UserInputError(f"input file {p} does not exist; check --source")
    return files


def _delimiter(path: str, flag: str, encoding: str = "utf-8") -> str:
    if flag and flag != "auto":
        return "\t" if flag in ("\\t", "tab") else flag
    if path.endswith((".tsv", ".tab")):
        return "\t"
    with open(path, encoding=encoding, errors="replace") as fh:
        first = fh.readline()
    try:
        return csv.Sniffer().sniff(first, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def _header(path: str, sep: str, encoding: str) -> List[str]:
    """The header's column names, with one clear error for an empty, undecodable or odd file."""
    if os.path.getsize(path) == 0:
        raise UserInputError(f"{path} is empty (no header line); point --source at the interaction log")
    try:
        cols = list(pd.read_csv(path, sep=sep, nrows=0, dtype=str, encoding=encoding).columns)
    except UnicodeDecodeError:
        raise _decode_error(path, encoding) from None
    except pd.errors.EmptyDataError:
        raise UserInputError(f"{path} has no header line; the first line must name the columns") from None
    except pd.errors.ParserError as e:
        raise UserInputError(f"{path}: cannot parse the header ({e}); check --delimiter") from None
    return cols


def _decode_error(path: str, encoding: str) -> UserInputError:
    """Name the first line that is not valid `encoding` text and the flag that fixes it."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as e:
                return UserInputError(
                    f"{path}, line {lineno}: byte {raw[e.start:e.start + 1]!r} is not {encoding} text; "
                    "pass --encoding with the file's encoding (e.g. --encoding latin-1) or re-save it as UTF-8")
    return UserInputError(f"{path} is not {encoding} text; pass --encoding with the file's encoding")


class _Lines:
    """Physical line numbers of data records, computed only when an error needs one.

    pandas skips blank lines and quoted fields may span lines, so "record index + 2" can
    blame the wrong line; this re-reads the file with the csv module on the error path.
    """

    def __init__(self, path: str, sep: str, encoding: str):
        self.path, self.sep, self.encoding = path, sep, encoding

    def __call__(self, record: int) -> int:
        with open(self.path, encoding=self.encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=self.sep)
            next(reader, None)  # header
            k = -1
            for row in reader:
                if not row:
                    continue  # pandas skips blank lines
                k += 1
                if k == record:
                    return reader.line_num
        return record + 2


def _feature_name(col: str, taken: set) -> str:
    """A safe feature name for a source column (digits-first or odd characters get fixed)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", col)
    if not name or name[0].isdigit():
        name = "f_" + name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def load(cfg) -> LoadedData:
    """Adapter entry point: read CSV/TSV file(s) through the column mapping."""
    files = _files(cfg.source)
    enc = getattr(cfg, "encoding", "") or "utf-8"
    seps = [_delimiter(p, cfg.delimiter, enc) for p in files]
    headers = [_header(p, s, enc) for p, s in zip(files, seps)]
    for p, h in zip(files[1:], headers[1:]):
        if h != headers[0]:
            raise UserInputError(f"{p} has a different header from {files[0]}; concatenated files must match")
    header = headers[0]
    noun = "items"
    if cfg.columns:
        mapping = parse_columns(cfg.columns)
        preset = None
    else:
        preset = next((k for k, v in PRESETS.items() if all(c in header for c in v["detect"])), None)  # type: ignore
        if preset is None:
            raise UserInputError(
                f"{files[0]}: no --columns given and the header {header[:12]} matches no known layout "
                f"({list(PRESETS)}); pass e.g. --columns scenario=domain,user=user_id,item=item_id,label=click"
            )
        mapping = dict(PRESETS[preset]["columns"])  # type: ignore
        mapping["categorical"] = [c for c in mapping.get("categorical", []) if c in header]  # type: ignore
        noun = str(PRESETS[preset]["noun"])
        log.info("detected the Scenario-Wise-Rec %s layout", preset)
    for role in ("user", "item", "label"):
        if role not in mapping:
            raise UserInputError(f"--columns lacks the {role}= role (required: user, item, label)")
    named = [mapping[r] for r in ROLES_SINGLE if r in mapping] + [
        c for r in ROLES_MULTI for c in mapping.get(r, [])]  # type: ignore
    unknown = [c for c in named if c not in header]
    if unknown:
        raise UserInputError(
            f"--columns names column(s) {unknown} that {files[0]} does not have; its columns are {header}"
        )
    usecols = list(dict.fromkeys(named))
    parts = []
    for path, sep in zip(files, seps):
        offset = 0
        line_of = _Lines(path, sep, enc)
        try:
            # No `usecols`: with it pandas silently drops the extra fields of a row that has more
            # than the header (often a shifted row: an unquoted separator inside a value).
            chunks = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                                 chunksize=cfg.chunk_size, encoding=enc)
            for chunk in chunks:
                chunk = chunk[usecols]
                part = _read_chunk(chunk, mapping, path, offset, line_of)
                part["_file"] = np.full(len(chunk), files.index(path), np.int64)
                parts.append(part)
                offset += len(chunk)
        except UnicodeDecodeError:
            raise _decode_error(path, enc) from None
        except pd.errors.ParserError as e:
            raise UserInputError(f"{path}: {str(e).strip()}; fix that row (a field count that differs from the "
                                 "header, or a stray quote)") from None
    if not parts:
        raise UserInputError(f"{files[0]} has a header but no rows")
    raw = pd.DataFrame({k: (concat_categorical([p[k] for p in parts]) if isinstance(parts[0][k], pd.Categorical)
                            else np.concatenate([p[k] for p in parts])) for k in parts[0]})

    label = _labels(raw, cfg, files, seps, enc, str(mapping["label"]))
    scol = str(mapping.get("scenario", ""))
    if scol:
        values = pd.Series(raw["scenario"]).astype(str)
        uniq = sorted(values.unique(), key=lambda v: (0, float(v), v) if _isnum(v) else (1, 0.0, v))
        sid = values.map({v: k for k, v in enumerate(uniq)}).to_numpy(np.int64)
        scenarios = [ScenarioSpec(k, (f"{scol}={v}" if _isnum(v) else v),
                                  f"Interactions whose {scol!r} column is {v!r} in {os.path.basename(files[0])}")
                     for k, v in enumerate(uniq)]
    else:
        sid = np.zeros(len(raw), np.int64)
        scenarios = [ScenarioSpec(0, "all", f"All interactions of {os.path.basename(files[0])}")]
    frame = pd.DataFrame({USER: pd.Categorical(raw["user"]), ITEM: pd.Categorical(raw["item"]),
                          SCENARIO: sid, LABEL: label})
    if "timestamp" in raw:
        frame[TIMESTAMP] = raw["timestamp"].to_numpy(np.float64)
    taken = {USER, ITEM, SCENARIO, LABEL, TIMESTAMP}
    categorical, numeric = [], []
    for c in mapping.get("categorical", []):  # type: ignore
        name = _feature_name(c, taken)
        frame[name] = pd.Categorical(raw["str:" + c])
        categorical.append(name)
    for c in mapping.get("numeric", []):  # type: ignore
        name = _feature_name(c, taken)
        frame[name] = scale_unit(raw["num:" + c]).to_numpy()
        numeric.append(name)
    items: Dict[str, ItemInfo] = {}
    text_cols = list(mapping.get("categories", []))  # type: ignore
    if text_cols or "title" in mapping:
        cols = (["str:" + str(mapping["title"])] if "title" in mapping else []) + ["str:" + c for c in text_cols]
        first = raw.assign(item=raw["item"]).drop_duplicates("item")
        for row in first[["item", *cols]].itertuples(index=False):
            vals = list(row[1:])
            title = str(vals.pop(0)) if "title" in mapping else ""
            cats = [str(v) for v in vals if str(v).strip()]
            items[str(row[0])] = ItemInfo(title=title, categories=list(dict.fromkeys(cats)))
    name = "csv-" + (preset or re.sub(r"\.(csv|tsv|txt)$", "", os.path.basename(files[0])))
    return LoadedData(name=name, frame=frame, scenarios=scenarios, categorical=categorical, numeric=numeric,
                      items=items, source_rows=len(frame), item_noun=noun, source_files=files)


def _read_chunk(chunk: pd.DataFrame, mapping: Dict[str, object], path: str, offset: int,
                line_of: "_Lines") -> Dict[str, object]:
    """One chunk of the source as role -> column arrays, with file:line errors."""
    d: Dict[str, object] = {}
    for role, kind in (("user", "id"), ("item", "id"), ("label", "num"), ("scenario", "id"),
                       ("timestamp", "time")):
        if role not in mapping:
            continue
        col = chunk[mapping[role]]
        if kind == "num":
            d[role] = numeric_column(col.replace("", np.nan), path, str(mapping[role]), row_offset=offset,
                                     line_of=line_of).to_numpy()
        elif kind == "time":
            d[role] = _times(col, path, str(mapping[role]), offset, line_of)
        else:
            empty = (col.str.strip() == "").to_numpy()
            if empty.any():
                line = line_of(offset + int(np.flatnonzero(empty)[0]))
                raise UserInputError(
                    f"{path}, line {line}, column {mapping[role]!r}: empty {role} value (an empty field, or a "
                    "row with fewer fields than the header); fill or remove that row"
                )
            d[role] = pd.Categorical(col.to_numpy())  # compact while the rest is read
    for c in mapping.get("numeric", []):  # type: ignore
        d["num:" + c] = numeric_column(chunk[c].replace("", np.nan), path, c, row_offset=offset,
                                       line_of=line_of).to_numpy()
    for c in set(mapping.get("categorical", [])) | set(mapping.get("categories", [])) | (  # type: ignore
            {mapping["title"]} if "title" in mapping else set()):
        d["str:" + c] = pd.Categorical(chunk[c].to_numpy())
    if "label" in d:
        d["_label_line"] = np.arange(offset, offset + len(chunk))  # record index, for label errors
    return d


def _labels(raw: pd.DataFrame, cfg, files: List[str], seps: List[str], enc: str, label_col: str) -> np.ndarray:
    """0/1 labels: a 0/1 column as is; other values only with an explicit --label-threshold."""
    lab = raw["label"].to_numpy(dtype=np.float64)
    bad = ~np.isin(lab, (0.0, 1.0))
    if not bad.any():
        return lab.astype(np.int64)
    if cfg.label_threshold is not None:
        return (lab > cfg.label_threshold).astype(np.int64)
    first = int(np.flatnonzero(bad)[0])
    # Which file and record: rows were concatenated file after file.
    sizes = raw["_file"].to_numpy()
    fidx = int(sizes[first])
    record = int(raw["_label_line"].to_numpy()[first])
    line = _Lines(files[fidx], seps[fidx], enc)(record)
    values = sorted(set(lab[bad].tolist()))[:5]
    raise UserInputError(
        f"{files[fidx]}, line {line}, column {label_col!r}: label {lab[first]:g} is not 0 or 1 "
        f"({int(bad.sum())} such value(s), e.g. {[f'{v:g}' for v in values]}); fix those rows, or pass "
        "--label-threshold T to binarise a rating column (label = value > T)")


def _isnum(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _times(col: pd.Series, path: str, name: str, offset: int, line_of=None) -> np.ndarray:
    """Timestamps as float seconds: numbers as they are, else parsed dates."""
    line_of = line_of or (lambda record: record + 2)
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        return num.to_numpy(np.float64)
    if num.notna().any():
        # Mostly numbers: the odd value out is the bad one (not the first number, which no
        # date parser reads).
        pos = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise UserInputError(
            f"{path}, line {line_of(offset + pos)}, column {name!r}: {col.iloc[pos]!r} is not a number "
            "like the other timestamps; fix or remove that row")
    dt = pd.to_datetime(col, errors="coerce")
    if dt.isna().any():
        pos = int(np.flatnonzero(dt.isna().to_numpy())[0])
        raise UserInputError(
            f"{path}, line {line_of(offset + pos)}, column {name!r}: {col.iloc[pos]!r} is neither a number nor a date"
        )
    return (dt.astype("int64") / 1e9).to_numpy(np.float64)
