"""Argument checks shared by the backbones: each failure names the parameter and the fix.

They raise `ValueError` / `TypeError` (library convention); `backbones.create` turns them
into the CLI's one-line error.
"""
import math
from typing import Any, List, Optional, Sequence


def units(owner: str, name: str, value: Any, allow_empty: bool = False) -> List[int]:
    """A list of positive layer widths, e.g. ``hidden_units=[128, 64]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{owner}: {name} must be a list of layer widths such as [128, 64], got {value!r}")
    out = []
    for u in value:
        if isinstance(u, bool) or not isinstance(u, (int, float)) or int(u) != u or int(u) < 1:
            raise ValueError(f"{owner}: every width in {name} must be a positive integer, got {list(value)!r}")
        out.append(int(u))
    if not out and not allow_empty:
        raise ValueError(f"{owner}: {name} needs at least one width, e.g. [64]; got an empty list")
    return out


def positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """An integer >= `minimum` (expert counts, embedding widths, ranks)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TypeError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def fraction(owner: str, name: str, value: Any) -> float:
    """A rate in [0, 1) (dropout)."""
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return v


def positive_float(owner: str, name: str, value: Any, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0 with `allow_zero`)."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{owner}: {name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """One of a fixed set of strings (case-insensitive)."""
    v = str(value).lower()
    if v not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")
    return v


def optional_positive_int(owner: str, name: str, value: Optional[Any]) -> Optional[int]:
    """None, or an integer >= 1."""
    return None if value is None else positive_int(owner, name, value)
