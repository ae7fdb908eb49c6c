"""What every adapter returns: one interaction table plus the item text prompts are built from.

An adapter turns a source format into a `LoadedData`: a pandas DataFrame with the standard
columns (`user_id`, `item_id` as strings, `scenario_id` 0..S-1, `label` 0/1, optional
`timestamp`) and the adapter's extra feature columns, the scenario names/descriptions and an
item catalogue (title, categories). Everything after that (split, vocabularies, TFRecords,
prompts, summary) is shared code in `llm4msr_tf.data.prepare`.
"""
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

USER = "user_id"
ITEM = "item_id"
SCENARIO = "scenario_id"
LABEL = "label"
TIMESTAMP = "timestamp"  # not written to TFRecords; orders histories and drives the time split
RATING = "_rating"  # optional raw rating, not written; orders prompt histories when there is no time


@dataclasses.dataclass
class ItemInfo:
    """Prompt text of one item: a title (may be empty) and its categories (may be empty)."""

    title: str = ""
    categories: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LoadedData:
    """An adapter's output: the interaction table and everything prompts need about it."""

    name: str
    frame: pd.DataFrame
    scenarios: List[ScenarioSpec]
    categorical: List[str] = dataclasses.field(default_factory=list)  # extra string features
    numeric: List[str] = dataclasses.field(default_factory=list)  # extra float features
    items: Dict[str, ItemInfo] = dataclasses.field(default_factory=dict)
    source_rows: int = 0  # rows read from the source before filtering
    dropped: Dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> rows dropped
    item_noun: str = "items"  # how prompts call the items ("movies", "products", "videos")
    source_files: List[str] = dataclasses.field(default_factory=list)
    # Optional per-interaction text column (not a feature): names untitled items in prompts.
    text_column: Optional[str] = None

    @property
    def has_timestamps(self) -> bool:
        """True when the table has a usable timestamp column (drives the time split)."""
        return TIMESTAMP in self.frame.columns and bool(self.frame[TIMESTAMP].notna().all())

    def validate(self) -> None:
        """Check the table is usable: standard columns, labels 0/1, every scenario non-empty."""
        f = self.frame
        for col in (USER, ITEM, SCENARIO, LABEL, *self.categorical, *self.numeric):
            if col not in f.columns:
                raise UserInputError(f"adapter for {self.name!r} produced no column {col!r}")
        if len(f) == 0:
            raise UserInputError(
                f"no interactions left in {self.source_desc()} after filtering "
                f"(dropped: {self.dropped or 'none'}); check --source and the filter flags"
            )
        bad = ~f[LABEL].isin([0, 1])
        if bad.any():
            raise UserInputError(f"labels must be 0/1; found {sorted(f.loc[bad, LABEL].unique())[:5]}")
        counts = np.bincount(f[SCENARIO].to_numpy(), minlength=len(self.scenarios))
        empty = [self.scenarios[i].name for i, c in enumerate(counts) if c == 0]
        if empty:
            raise UserInputError(
                f"scenario(s) {empty} of {self.source_desc()} have no interactions; "
                "drop them from the scenario definition (e.g. --scenario-by or --columns scenario=...) "
                "or supply data for them"
            )
        if len(counts) > len(self.scenarios):
            raise UserInputError(
                f"scenario ids up to {len(counts) - 1} found but only {len(self.scenarios)} scenarios defined"
            )

    def source_desc(self) -> str:
        """The source files for messages."""
        return ", ".join(self.source_files) if self.source_files else self.name


def require_file(path: str, what: str, fix: str = "") -> str:
    """Return `path` if it is a file, else a UserInputError naming it and the fix."""
    if not os.path.isfile(path):
        raise UserInputError(
            f"{what} not found: {path} does not exist. "
            + (fix or "Point --source at the folder that holds it.")
        )
    return path


def require_columns(columns: Sequence[str], needed: Sequence[str], path: str, fix: str = "") -> None:
    """Raise one clear error when a table lacks columns it needs."""
    missing = [c for c in needed if c not in columns]
    if missing:
        raise UserInputError(
            f"{path}: missing column(s) {missing}; found columns {list(columns)}. "
            + (fix or "Fix the header or the column mapping.")
        )


def numeric_column(values: pd.Series, path: str, column: str, header_lines: int = 1,
                   row_offset: int = 0, line_of: Optional[Callable[[int], int]] = None) -> pd.Series:
    """Parse a column as numbers; on failure name the file, line and column of the first bad value.

    `line_of` maps a record index to its physical line (for files with blank or multi-line rows).
    """
    out = pd.to_numeric(values, errors="coerce")
    bad = out.isna() & values.notna() | values.isna() | ~np.isfinite(out.fillna(0.0))
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        line = line_of(row_offset + pos) if line_of else row_offset + pos + header_lines + 1
        v = values.iloc[pos]
        what = ("has no value (an empty field, or a row with fewer fields than the header)"
                if v is None or (isinstance(v, float) and np.isnan(v)) else f"value {v!r} is not a number")
        raise UserInputError(f"{path}, line {line}, column {column!r}: {what}; fix or remove that row")
    return out


def as_id_strings(values: pd.Series) -> pd.Series:
    """Source ids as strings (ints stay '12', not '12.0'), stored as a categorical to save memory."""
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.dropna(), 1) == 0):
        values = values.astype("Int64")
    return values.astype(str).astype("category")


def concat_categorical(parts: Sequence) -> pd.Categorical:
    """Join per-chunk string columns as one categorical (ids stay compact while reading in chunks)."""
    from pandas.api.types import union_categoricals

    cats = [p if isinstance(p, pd.Categorical) else pd.Categorical(p) for p in parts]
    if not cats:
        return pd.Categorical([])
    return union_categoricals(cats)


def map_categorical(ids: pd.Series, mapping: Dict[str, str], default: str = "unknown") -> pd.Categorical:
    """Look up a value per distinct id (not per row), e.g. an item's category for every interaction."""
    ids = ids if isinstance(ids.dtype, pd.CategoricalDtype) else ids.astype(str).astype("category")
    values = np.array([mapping.get(str(c), default) for c in ids.cat.categories] + [default], dtype=object)
    codes = ids.cat.codes.to_numpy()
    return pd.Categorical(values[np.where(codes < 0, len(values) - 1, codes)])


def scale_unit(values: pd.Series) -> pd.Series:
    """Min-max scale a numeric column to [0, 1] (a constant column becomes 0)."""
    v = values.astype("float64")
    lo, hi = float(v.min()), float(v.max())
    if not np.isfinite(lo) or hi <= lo:
        return pd.Series(np.zeros(len(v), dtype="float32"), index=values.index)
    return ((v - lo) / (hi - lo)).astype("float32")
