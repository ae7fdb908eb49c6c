"""Train/eval/test assignment: by time where the source has timestamps, seeded random otherwise.

Methods (``--split``):
- ``user-time`` (default when timestamps exist): each user's interactions, sorted by time, are
  cut 8:1:1 (``--split-ratios``), so every active user has training history (which the
  user-level prompt needs) and eval/test are always that user's *later* interactions. Users
  with fewer than 3 interactions stay wholly in train. Ties in time keep source order.
- ``global-time``: global time quantiles; eval/test are the latest interactions overall
  (closest to production, but users first seen late have no training history).
- ``random``: seeded per-row 8:1:1 split (what Scenario-Wise-Rec does for ML-1M, which has no
  timestamps).
"""
import math
from typing import Sequence, Tuple

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import TIMESTAMP, USER
from llm4msr_tf.data.config import SPLIT_METHODS
from llm4msr_tf.utils.io import UserInputError

TRAIN, EVAL, TEST = 0, 1, 2


def _check_ratios(ratios: Sequence[float]) -> Tuple[float, float, float]:
    """Three proportions > 0 summing to 1 (a typo such as 0.5 0.7 0.3 is refused, not rescaled)."""
    r = [float(x) for x in ratios]
    if len(r) != 3 or not all(math.isfinite(x) and x > 0 for x in r) or abs(sum(r) - 1.0) > 1e-6:
        raise UserInputError(
            f"--split-ratios must be three numbers > 0 (train eval test) that sum to 1, got {list(ratios)}"
            + (f" (sum {sum(r):g})" if len(r) == 3 and all(math.isfinite(x) for x in r) else "")
            + "; e.g. --split-ratios 0.8 0.1 0.1")
    return r[0], r[1], r[2]


def check_ratios(ratios: Sequence[float]) -> None:
    """Refuse --split-ratios that are not three numbers > 0 summing to 1 (before any data is read)."""
    _check_ratios(ratios)


def resolve_method(method: str, has_timestamps: bool) -> str:
    """Turn `auto` into the concrete method; refuse a time split without timestamps."""
    if method not in SPLIT_METHODS:
        raise UserInputError(f"--split {method!r} is not one of {SPLIT_METHODS}")
    if method == "auto":
        return "user-time" if has_timestamps else "random"
    if method != "random" and not has_timestamps:
        raise UserInputError(
            f"--split {method} needs timestamps but this source has none; use --split random"
        )
    return method


def assign_splits(frame: pd.DataFrame, method: str, ratios: Sequence[float], seed: int) -> np.ndarray:
    """Return an int8 array (0 train, 1 eval, 2 test), one entry per row of `frame`."""
    r_train, r_eval, _ = _check_ratios(ratios)
    n = len(frame)
    out = np.zeros(n, dtype=np.int8)
    if method == "random":
        u = np.random.default_rng(seed).random(n)
        out[u >= r_train] = EVAL
        out[u >= r_train + r_eval] = TEST
        return out
    ts = frame[TIMESTAMP].to_numpy(dtype="float64")
    if method == "global-time":
        order = np.argsort(ts, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        frac = rank / max(n, 1)
        out[frac >= r_train] = EVAL
        out[frac >= r_train + r_eval] = TEST
        return out
    if method == "user-time":
        users = frame[USER].cat.codes.to_numpy() if hasattr(frame[USER], "cat") else pd.factorize(frame[USER])[0]
        order = np.lexsort((np.arange(n), ts, users))  # by user, then time, then source order
        su = users[order]
        starts = np.r_[0, np.flatnonzero(np.diff(su)) + 1]
        sizes = np.diff(np.r_[starts, n])
        pos = np.arange(n) - np.repeat(starts, sizes)  # position within the user's history
        size = np.repeat(sizes, sizes)
        n_test = np.where(size >= 3, np.maximum(1, np.round(size * (1 - r_train - r_eval))), 0)
        n_eval = np.where(size >= 3, np.maximum(1, np.round(size * r_eval)), 0)
        if r_eval == 0:
            n_eval[:] = 0
        if 1 - r_train - r_eval <= 1e-12:
            n_test[:] = 0
        sorted_split = np.zeros(n, dtype=np.int8)
        sorted_split[pos >= size - n_test - n_eval] = EVAL
        sorted_split[pos >= size - n_test] = TEST
        out[order] = sorted_split
        return out
    raise UserInputError(f"unknown split method {method!r}; use one of {SPLIT_METHODS}")


def keep_per_user(users: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Bool mask keeping a seeded `fraction` of each user's rows (rounded, at least one per user).

    The sparse-training regime (`--train-keep-fraction`): applied to the training rows only,
    so eval and test stay exactly the rows of the full split.
    """
    if not (0.0 < float(fraction) <= 1.0):
        raise UserInputError(f"--train-keep-fraction must be in (0, 1], got {fraction!r}")
    n = len(users)
    if n == 0 or fraction == 1.0:
        return np.ones(n, dtype=bool)
    codes = users.cat.codes.to_numpy() if hasattr(users, "cat") else pd.factorize(users)[0]
    r = np.random.default_rng(seed).random(n)
    order = np.lexsort((r, codes))  # by user, then a random key
    su = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(su)) + 1]
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)
    k = np.maximum(1, np.floor(sizes * float(fraction) + 0.5)).astype(np.int64)
    out = np.zeros(n, dtype=bool)
    out[order] = pos < np.repeat(k, sizes)
    return out
