"""A user's card: what the LLM was told about one user, what it made of it, and what the model does with it.

`user_card` gathers, for one user id: the user prompt, the generated text (when the knowledge job
ran with ``--generate``, or from a separate explanations directory), the nearest users by
knowledge vector (cosine after the model's normalisation) with their prompts and the overlap of
the items they liked, the per-scenario effect of each knowledge level on the user's rows of the
explained split, and the top items the model scores for the user in each scenario with and
without knowledge. A user the data and the knowledge base do not know gets a card that says so.

Scoring candidates: each scenario's candidates are the items with training rows in it, minus the
items the user already has in training. A candidate row takes the user's own values for features
that are constant per user in training (e.g. gender, age), the item's values for features
constant per item (genre, year), and for any other feature the value of the item's first
training row in that scenario.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from llm4msr_tf.explain.changes import LEVELS, _sigmoid, per_scenario_effect, user_vector_adder
from llm4msr_tf.explain.scenario_map import jaccard, nearest_users


def side_columns(frame: pd.DataFrame, key: str, columns: Sequence[str]) -> List[str]:
    """The `columns` whose value is constant for every value of `key` in `frame` (e.g. user-side features)."""
    if key not in frame.columns or frame.empty:
        return []
    cols = [c for c in columns if c in frame.columns and c != key]
    if not cols:
        return []
    nunique = frame.groupby(key)[cols].nunique()
    return [c for c in cols if int(nunique[c].max()) <= 1]


def _as_tensors(rows: pd.DataFrame, spec: Any) -> Dict[str, Any]:
    import tensorflow as tf

    dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
    out = {}
    for f in spec.features:
        vals = rows[f.name].tolist()
        out[f.name] = tf.constant([str(v) for v in vals] if f.dtype == "string" else vals, dtypes[f.dtype])
    return out


def score_candidates(model: Any, spec: Any, rows: pd.DataFrame, kb: Any = None,
                     batch_size: int = 4096) -> pd.DataFrame:
    """`LLM4MSR.decompose` on candidate rows (every feature of the spec); returns the logits as columns."""
    add = user_vector_adder(model, kb)
    parts: Dict[str, List[np.ndarray]] = {}
    for start in range(0, len(rows), batch_size):
        feats = _as_tensors(rows.iloc[start:start + batch_size], spec)
        if add is not None:
            feats = add(feats)
        for k, v in model.decompose(feats).items():
            parts.setdefault(k, []).append(v.numpy().reshape(-1))
    if model.use_knowledge:
        model.reset_knowledge_stats()
    return pd.DataFrame({k: np.concatenate(v) for k, v in parts.items()}, index=rows.index)


def top_items(model: Any, spec: Any, train: pd.DataFrame, user_id: str, k: int = 5,
              kb: Any = None) -> List[Dict[str, Any]]:
    """Per scenario: the user's `k` best-scored unseen items with knowledge and without (module docstring).

    Returns:
        One entry per scenario: ``scenario``, ``candidates``, ``with`` and ``without`` (lists of
        ``{item, p_with, p_without, **item features}``, best first) and ``shared`` (items in both).
    """
    user_col, item_col, scen_col = spec.user_feature, spec.item_feature, spec.scenario_feature
    names = spec.scenario_names()
    feature_names = [f.name for f in spec.features]
    users = train[user_col].astype(str)
    mine = train[users == str(user_id)]
    if mine.empty:
        raise ValueError(f"user {user_id!r} has no training rows: there is nothing to score them with")
    user_side = side_columns(train, user_col, feature_names)
    item_side = side_columns(train, item_col, feature_names)
    seen = set(mine[item_col])
    out = []
    for s, name in enumerate(names):
        cand = train[(train[scen_col] == s) & ~train[item_col].isin(seen)].drop_duplicates(item_col)
        entry: Dict[str, Any] = {"scenario": name, "candidates": int(len(cand)), "with": [], "without": [],
                                 "shared": 0}
        if cand.empty:
            out.append(entry)
            continue
        rows = cand[feature_names].copy()
        first = mine.iloc[0]
        for c in user_side:
            rows[c] = first[c]
        rows[user_col] = first[user_col]
        rows[scen_col] = s
        scores = score_candidates(model, spec, rows, kb=kb)
        p_with = _sigmoid(scores["logit"].to_numpy())
        p_without = _sigmoid(scores[LEVELS["knowledge"]].to_numpy())

        def listing(order: np.ndarray) -> List[Dict[str, Any]]:
            picked = []
            for i in order[:k]:
                r = {"item": str(cand[item_col].iloc[i]), "p_with": float(p_with[i]), "p_without": float(p_without[i])}
                for c in item_side:
                    if c not in (item_col, scen_col):
                        v = cand[c].iloc[i]
                        r[c] = v.item() if hasattr(v, "item") else v
                picked.append(r)
            return picked

        entry["with"] = listing(np.argsort(-p_with, kind="stable"))
        entry["without"] = listing(np.argsort(-p_without, kind="stable"))
        entry["shared"] = len({r["item"] for r in entry["with"]} & {r["item"] for r in entry["without"]})
        out.append(entry)
    return out


def user_card(user_id: str, spec: Any, train: pd.DataFrame, prompts: Mapping[str, str], kb: Any = None,
              model: Any = None, dec: Optional[pd.DataFrame] = None, texts: Optional[Mapping[str, str]] = None,
              nearest: int = 5, top_k: int = 5, normalize: str = "center", threshold: float = 0.05,
              liked: Optional[Mapping[str, set]] = None) -> Dict[str, Any]:
    """Everything the explain views know about one user (module docstring); never fails on an unknown id.

    Args:
        user_id: the raw user id.
        spec: the `DatasetSpec`.
        train: the training split as a table (`llm4msr_tf.data.reader.read_split`).
        prompts: user key -> prompt text.
        kb: the knowledge base (nearest users, generated text).
        model: an `LLM4MSR` for the per-scenario effect's fallback and the top items (optional).
        dec: `decompose_dataset` rows of the explained split (the per-scenario effect).
        texts: user key -> generated text from another directory (wins over ``kb``'s texts).
        nearest: how many nearest users.
        top_k: items per scenario and list.
        normalize: normalisation before the knowledge cosine.
        threshold: the probability move that counts as moved.
        liked: `liked_items` of the training split (overlap with the nearest users).

    Returns:
        ``{"user", "known", "in_training", "has_knowledge", "has_prompt", "message", "prompt",
        "generated", "history", "nearest", "effect", "top_items"}``.
    """
    uid = str(user_id)
    user_col = spec.user_feature
    table = kb.tables.get("user") if kb is not None else None
    in_train = bool((train[user_col].astype(str) == uid).any())
    has_knowledge = table is not None and uid in table
    has_prompt = uid in prompts
    card: Dict[str, Any] = {"user": uid, "in_training": in_train, "has_knowledge": has_knowledge,
                            "has_prompt": has_prompt, "known": in_train or has_knowledge or has_prompt,
                            "prompt": prompts.get(uid), "generated": None, "history": {}, "nearest": [],
                            "effect": [], "top_items": [], "message": ""}
    if not card["known"]:
        card["message"] = (f"user {uid!r} is unknown: no training rows, no prompt and no knowledge vector. "
                           "The model would score them with the default (unknown-user) knowledge vector, "
                           "so there is nothing user-specific to explain.")
        return card
    notes = []
    if not has_knowledge:
        notes.append("no knowledge vector: the model uses the default (unknown-user) vector for this user")
    if not in_train:
        notes.append("no training rows: no history, no top items")
    card["message"] = "; ".join(notes)
    gen = (texts or {}).get(uid)
    if not gen and has_knowledge:
        gen = table.texts[table.index(uid)] or None
    card["generated"] = gen
    if in_train:
        mine = train[train[user_col].astype(str) == uid]
        names = spec.scenario_names()
        per = mine.groupby(spec.scenario_feature)[spec.label].agg(["size", "sum"])
        card["history"] = {names[int(s)]: {"rows": int(r["size"]), "positives": int(r["sum"])}
                           for s, r in per.iterrows()}
    if has_knowledge:
        mine_liked = (liked or {}).get(uid, set())
        for key, cos in nearest_users(kb, uid, nearest, normalize):
            card["nearest"].append({"user": key, "cosine": cos, "prompt": prompts.get(key),
                                    "liked_overlap": jaccard(mine_liked, (liked or {}).get(key, set()))
                                    if liked is not None else None})
    if dec is not None:
        card["effect"] = [e for e in per_scenario_effect(dec, uid, spec.scenario_names(), threshold)]
    if model is not None and in_train:
        card["top_items"] = top_items(model, spec, train, uid, top_k, kb=kb)
    return card
