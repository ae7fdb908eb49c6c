"""What the knowledge changes: per example, the prediction with and without each knowledge level.

`decompose_dataset` runs `LLM4MSR.decompose` over a split and keeps, per example, the model's
logit and the logits with a level switched off:

- ``user``: the user meta layer replaced by its static part (`LLM4MSR.static_user_meta`);
- ``scenario``: the scenario tower removed (the backbone's logit alone);
- ``knowledge``: both off;
- ``scenario_knowledge``: every layer kept, but each example reads the mean scenario vector instead
  of its own scenario's (the tower's capacity stays; only what the scenario knowledge tells the
  scenarios apart is taken out);
- ``user_default``: every layer kept, the user's knowledge replaced by the unknown-user default
  vector (what a new user gets; the same definition for every ``user_meta_form``).

`knowledge_changes` aggregates, for each level, overall, per scenario, per history-length bucket
and per number of scenarios the user used in training: the share of predictions the level moves
by more than ``threshold`` in probability, the mean move, how many of the moved predictions moved
towards their label, and the AUC / log loss of the moved subset with and without the level (are
the moves right?).
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from llm4msr_tf.metrics import log_loss, roc_auc

# level -> the decompose() entry that has that level switched off
LEVELS = {"knowledge": "logit_without_knowledge", "user": "logit_without_user", "scenario": "backbone_logit",
          "scenario_knowledge": "logit_mean_scenario_knowledge", "user_default": "logit_default_user"}
LEVEL_LABELS = {"knowledge": "both levels", "user": "user level", "scenario": "scenario level",
                "scenario_knowledge": "own scenario knowledge (mean vector instead)",
                "user_default": "own user knowledge (unknown-user vector instead)"}
DEFAULT_HISTORY_BUCKETS = (25, 50, 100, 200, 400)
UNSEEN = "unseen"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def user_vector_adder(model: Any, kb: Any) -> Any:
    """For a model whose user knowledge comes in the request (feature mode): a batch map adding it.

    Returns ``None`` for table mode (the model looks the vector up itself). Unknown users get the
    mean of the knowledge base's user vectors (the table-mode default).
    """
    lookup = getattr(model, "user_knowledge", None)
    if lookup is None or lookup.mode != "feature":
        return None
    import tensorflow as tf

    table = kb.tables["user"] if kb is not None else None
    if table is None or not len(table):
        raise ValueError("the model takes user knowledge as an input feature (feature mode): pass the "
                         "knowledge directory whose user vectors it was trained with")
    vecs = np.concatenate([table.vectors.mean(axis=0, keepdims=True), table.vectors]).astype(np.float32)
    ht = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(table.keys)), tf.range(1, len(table) + 1, dtype=tf.int64)), default_value=0)
    vectors = tf.constant(vecs)

    def add(batch: Dict[str, Any]) -> Dict[str, Any]:
        batch = dict(batch)
        keys = tf.reshape(batch[model.user_feature], [-1])
        if keys.dtype != tf.string:
            keys = tf.strings.as_string(keys)
        batch[model.user_knowledge_feature] = tf.gather(vectors, ht.lookup(keys))
        return batch

    return add


def decompose_dataset(model: Any, ds: Any, kb: Any = None) -> pd.DataFrame:
    """Run `LLM4MSR.decompose` over a labelled dataset of feature dicts.

    Args:
        model: an `LLM4MSR`.
        ds: batches of parsed features that include the user id, scenario id and label.
        kb: the knowledge base, needed only when the model takes user vectors as a feature.

    Returns:
        One row per example: ``user`` (str), ``scenario``, ``label``, ``logit``, ``backbone_logit``,
        ``scenario_logit``, ``logit_without_user``, ``logit_without_knowledge``,
        ``logit_mean_scenario_knowledge``, ``logit_default_user``.
    """
    import tensorflow as tf

    add = user_vector_adder(model, kb)

    @tf.function
    def step(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        feats = add(batch) if add is not None else batch
        out = {k: tf.reshape(v, [-1]) for k, v in model.decompose(feats).items()}
        out["label"] = tf.reshape(batch[model.label_key], [-1])
        out["scenario"] = tf.reshape(batch[model.scenario_feature], [-1])
        out["user"] = tf.reshape(batch[model.user_feature], [-1])
        return out

    cols: Dict[str, List[np.ndarray]] = {}
    for batch in ds:
        for k, v in step(batch).items():
            cols.setdefault(k, []).append(v.numpy())
    if not cols:
        raise ValueError("the split to explain is empty: nothing to decompose")
    out = {k: np.concatenate(v) for k, v in cols.items()}
    if out["user"].dtype == object:
        out["user"] = np.array([u.decode("utf-8") if isinstance(u, bytes) else str(u) for u in out["user"]],
                               dtype=object)
    else:
        out["user"] = out["user"].astype(str).astype(object)
    if model.use_knowledge:
        model.reset_knowledge_stats()  # decompose's lookups are not serving traffic
    return pd.DataFrame(out)


def decompose_split(model: Any, spec: Any, split: str = "test", batch_size: int = 4096,
                    limit: Optional[int] = None, kb: Any = None) -> pd.DataFrame:
    """`decompose_dataset` over a prepared split (``limit``: first rows only)."""
    from llm4msr_tf.training import make_dataset

    ds = make_dataset(spec, split, batch_size, cache=False)
    if limit:
        ds = ds.unbatch().take(int(limit)).batch(batch_size)
    return decompose_dataset(model, ds, kb=kb)


def bucket_labels(edges: Sequence[int]) -> List[str]:
    """Names of the history buckets cut at `edges` (inclusive upper bounds), e.g. ``1-25``, ``>400``."""
    edges = [int(e) for e in edges]
    if any(b <= a for a, b in zip(edges, edges[1:])) or (edges and edges[0] < 1):
        raise ValueError(f"history buckets must be increasing positive interaction counts, got {edges}")
    lows = [1] + [e + 1 for e in edges]
    labels = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in zip(lows, edges)]
    return labels + [f">{edges[-1]}" if edges else ">=1"]


def user_segments(frame: pd.DataFrame, user: str = "user_id", scenario: str = "scenario_id",
                  history_buckets: Sequence[int] = DEFAULT_HISTORY_BUCKETS) -> pd.DataFrame:
    """Per user of the training split: ``history`` (interactions), its ``history_bucket`` and ``scenarios_used``."""
    for c in (user, scenario):
        if c not in frame.columns:
            raise ValueError(f"the interactions table lacks column {c!r}; columns: {list(frame.columns)}")
    g = frame.groupby(frame[user].astype(str))[scenario]
    out = pd.DataFrame({"history": g.size(), "scenarios_used": g.nunique()})
    labels = bucket_labels(history_buckets)
    idx = np.searchsorted(np.asarray(list(history_buckets), dtype=np.int64), out["history"].to_numpy(), side="left")
    out["history_bucket"] = [labels[i] for i in idx]
    return out


def summarize(dec: pd.DataFrame, without: str, threshold: float = 0.05) -> Dict[str, Any]:
    """Moves of one level on a set of decomposed examples.

    Args:
        dec: rows of `decompose_dataset`.
        without: the column with the level switched off (a value of `LEVELS`).
        threshold: a prediction is moved when ``|p - p_without| > threshold``.

    Returns:
        ``rows``, ``moved``, ``share_moved``, ``mean_abs_dp``, ``mean_dp`` (signed, with minus
        without), ``toward_label`` (share of moved rows whose move goes towards their label),
        ``auc_with``/``auc_without`` and ``log_loss_with``/``log_loss_without`` on all rows and
        ``auc_moved_with``/``auc_moved_without``/``log_loss_moved_with``/``log_loss_moved_without``
        on the moved ones (NaN where undefined).
    """
    y = dec["label"].to_numpy(np.float64)
    p = _sigmoid(dec["logit"].to_numpy())
    q = _sigmoid(dec[without].to_numpy())
    dp = p - q
    moved = np.abs(dp) > threshold
    n, m = int(len(y)), int(moved.sum())
    right = np.sign(dp[moved]) == np.where(y[moved] > 0.5, 1.0, -1.0)
    nan = float("nan")
    return {
        "rows": n, "moved": m, "share_moved": m / n if n else nan,
        "mean_abs_dp": float(np.abs(dp).mean()) if n else nan, "mean_dp": float(dp.mean()) if n else nan,
        "toward_label": float(right.mean()) if m else nan,
        "auc_with": roc_auc(y, p) if n else nan, "auc_without": roc_auc(y, q) if n else nan,
        "log_loss_with": log_loss(y, p) if n else nan, "log_loss_without": log_loss(y, q) if n else nan,
        "auc_moved_with": roc_auc(y[moved], p[moved]) if m else nan,
        "auc_moved_without": roc_auc(y[moved], q[moved]) if m else nan,
        "log_loss_moved_with": log_loss(y[moved], p[moved]) if m else nan,
        "log_loss_moved_without": log_loss(y[moved], q[moved]) if m else nan,
    }


def knowledge_changes(dec: pd.DataFrame, segments: Optional[pd.DataFrame] = None,
                      scenario_names: Optional[Sequence[str]] = None, threshold: float = 0.05,
                      history_buckets: Sequence[int] = DEFAULT_HISTORY_BUCKETS) -> Dict[str, Any]:
    """The "what the knowledge changes" table: `summarize` per level and group.

    Args:
        dec: `decompose_dataset` rows.
        segments: `user_segments` of the training split (users absent from it are ``unseen``).
        scenario_names: names by scenario id (default ``"0"``, ``"1"``, ...).
        threshold: the probability move that counts as moved.
        history_buckets: the bucket edges `segments` was cut with (to order the buckets).

    Returns:
        ``{"threshold", "rows", "levels": {level: {"overall": summary, "scenario": {name: summary},
        "history": {bucket: summary}, "scenarios_used": {n: summary}}}, "order": {group kind: [group
        names in display order]}}``.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"the move threshold is a probability difference in [0, 1), got {threshold}")
    missing = [c for c in ("label", "scenario", "user", "logit", *LEVELS.values()) if c not in dec.columns]
    if missing:
        raise ValueError(f"decomposed rows lack column(s) {missing}; build them with decompose_dataset")
    sids = sorted(int(s) for s in pd.unique(dec["scenario"]))
    names = list(scenario_names) if scenario_names is not None else [str(s) for s in range(max(sids, default=-1) + 1)]
    groups: Dict[str, Dict[str, np.ndarray]] = {"scenario": {}, "history": {}, "scenarios_used": {}}
    for s in sids:
        groups["scenario"][names[s] if s < len(names) else str(s)] = (dec["scenario"] == s).to_numpy()
    if segments is not None:
        seg = segments.reindex(dec["user"].astype(str))
        hist = seg["history_bucket"].fillna(UNSEEN).to_numpy()
        used = seg["scenarios_used"].to_numpy()
        for b in bucket_labels(history_buckets) + [UNSEEN]:
            if (hist == b).any():
                groups["history"][b] = hist == b
        for k in sorted(int(u) for u in pd.unique(used[np.isfinite(used.astype(float))])):
            groups["scenarios_used"][str(k)] = used == k
    # Group order (scenario id, bucket edge) survives a JSON round trip only as a list.
    out: Dict[str, Any] = {"threshold": float(threshold), "rows": int(len(dec)), "levels": {},
                           "order": {g: list(masks) for g, masks in groups.items()}}
    for level, without in LEVELS.items():
        block: Dict[str, Any] = {"overall": summarize(dec, without, threshold)}
        for gname, masks in groups.items():
            block[gname] = {k: summarize(dec[m], without, threshold) for k, m in masks.items()}
        out["levels"][level] = block
    return out


def per_scenario_effect(dec: pd.DataFrame, user_id: str, scenario_names: Sequence[str],
                        threshold: float = 0.05) -> List[Dict[str, Any]]:
    """One user's rows of a decomposed split, per scenario: rows and mean move of each level."""
    mine = dec[dec["user"].astype(str) == str(user_id)]
    rows = []
    for s, name in enumerate(scenario_names):
        sub = mine[mine["scenario"] == s]
        r: Dict[str, Any] = {"scenario": name, "rows": int(len(sub)),
                             "positives": int(sub["label"].sum()) if len(sub) else 0}
        p = _sigmoid(sub["logit"].to_numpy())
        r["mean_p"] = float(p.mean()) if len(sub) else float("nan")
        for level, without in LEVELS.items():
            dp = p - _sigmoid(sub[without].to_numpy())
            r[f"mean_dp_{level}"] = float(dp.mean()) if len(sub) else float("nan")
            r[f"moved_{level}"] = int((np.abs(dp) > threshold).sum())
        rows.append(r)
    return rows


def table_rows(changes: Mapping[str, Any], level: str = "knowledge") -> List[Dict[str, Any]]:
    """Flat rows (group kind, group, summary) of one level of `knowledge_changes`, overall first."""
    block = changes["levels"][level]
    rows = [{"group": "overall", "value": "all", **block["overall"]}]
    for gname in ("scenario", "history", "scenarios_used"):
        for k, v in block.get(gname, {}).items():
            rows.append({"group": gname, "value": k, **v})
    return rows
