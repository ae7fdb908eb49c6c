"""The one metrics schema: AUC and log loss on predictions, overall and per scenario, sklearn-equal.

Keras' streaming AUC approximates with 200 thresholds (fine for early stopping); the numbers
we report come from here: the exact ROC AUC (Mann-Whitney U with tied scores given average
ranks, as sklearn's ``roc_auc_score``) and the log loss with sklearn's clipping
(``eps = finfo(dtype).eps``). NumPy only, so it runs anywhere.

`scenario_metrics` is the schema every stage writes (``llm4msr train``'s and the TFX Trainer's
``metrics.json``, ``llm4msr predict``, the demo's serving check)::

    {"overall": {"auc", "log_loss", "rows", "positives"},
     "scenarios": {"0": {..., "name"}, "1": {...}}, "mean_scenario_auc"}
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np

METRICS_FILENAME = "metrics.json"


def _rankdata_average(x: np.ndarray) -> np.ndarray:
    # Average ranks (1-based) for ties, like scipy.stats.rankdata(method="average").
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1..end
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(labels: Any, scores: Any) -> float:
    """Exact ROC AUC of binary labels vs scores; NaN when only one class is present."""
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    s = np.asarray(scores).reshape(-1).astype(np.float64)
    n_pos = float((y > 0.5).sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _rankdata_average(s)
    return float((r[y > 0.5].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: Any, probabilities: Any) -> float:
    """Mean binary cross-entropy of probabilities, clipped like sklearn's ``log_loss``."""
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    p = np.asarray(probabilities).reshape(-1)
    eps = np.finfo(p.dtype if p.dtype.kind == "f" else np.float64).eps
    p = np.clip(p.astype(np.float64), eps, 1 - eps)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _block(y: np.ndarray, p: np.ndarray) -> Dict[str, Any]:
    return {"auc": roc_auc(y, p), "log_loss": log_loss(y, p), "rows": int(len(y)),
            "positives": int((y > 0.5).sum())}


def scenario_metrics(labels: Any, probabilities: Any, scenario_ids: Any, num_scenarios: int,
                     scenario_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """AUC / log loss / rows / positives overall and per scenario id (keys "0".."S-1")."""
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(probabilities).reshape(-1)
    sid = np.asarray(scenario_ids).reshape(-1)
    if not (len(y) == len(p) == len(sid)):
        raise ValueError(f"lengths differ: labels {len(y)}, probabilities {len(p)}, scenario_ids {len(sid)}")
    out: Dict[str, Any] = {"overall": _block(y, p), "scenarios": {}}
    for s in range(int(num_scenarios)):
        m = sid == s
        b = _block(y[m], p[m])
        if scenario_names is not None:
            b["name"] = scenario_names[s]
        out["scenarios"][str(s)] = b
    aucs = [b["auc"] for b in out["scenarios"].values() if not np.isnan(b["auc"])]
    out["mean_scenario_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return out
