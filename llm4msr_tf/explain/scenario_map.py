"""The scenario map: how the LLM's scenario knowledge relates the scenarios, beside the data's own relations.

Knowledge side: cosine similarity of the scenario knowledge vectors after the centring the model
applies (`llm4msr_tf.layers.knowledge.normalization_stats`; ``normalize="center"`` subtracts the
across-scenario mean, so the part every prompt shares does not make all scenarios look alike).
With S scenarios, centred vectors sum to zero: with S = 3 every pair is pushed towards -0.5 and
only the ranking of the pairs carries information, which is what `rank_correlation` compares.

Data side, from the training split (no eval/test row is read):

- ``user_overlap``: Jaccard overlap of the scenarios' user sets;
- ``item_overlap``: Jaccard overlap of their item sets;
- ``item_rate_corr``: Pearson correlation, over the items both scenarios hold (each with at least
  ``min_count`` interactions in both), of the items' positive rates in the two scenarios (NaN
  when fewer than ``min_pairs`` items are shared: scenarios that partition the items, like
  MovieLens by genre family, share none);
- ``user_rate_corr``: the same for users (the users' positive rates), defined whenever users
  span scenarios.

`rank_correlation` is Spearman's rho over the S(S-1)/2 scenario pairs (upper triangle), so with
3 scenarios it rests on 3 pairs and can only take the values -1, -0.5, 0.5 and 1: read it as a
check of the ordering, not as a significance test. `user_map` adds the same check where there are
many pairs: knowledge cosine between users vs the overlap of the items they liked.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from llm4msr_tf.metrics import _rankdata_average

RELATIONS = ("user_overlap", "item_overlap", "item_rate_corr", "user_rate_corr")
RELATION_LABELS = {
    "knowledge": "knowledge cosine (centred)",
    "user_overlap": "user overlap (Jaccard)",
    "item_overlap": "item overlap (Jaccard)",
    "item_rate_corr": "corr. of per-item positive rates",
    "user_rate_corr": "corr. of per-user positive rates",
}


def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the interactions table lacks column(s) {missing}; columns: {list(frame.columns)}")


def normalized_vectors(vectors: np.ndarray, normalize: str = "center") -> np.ndarray:
    """Vectors re-expressed as the model's `KnowledgeLookup` would (``(v - shift) @ transform``).

    Args:
        vectors: float [n, dim], one row per key.
        normalize: ``none``, ``center``, ``standardize`` or ``whiten``.

    Returns:
        float64 [n, dim].
    """
    from llm4msr_tf.layers.knowledge import normalization_stats

    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise ValueError(f"knowledge vectors must be a non-empty [n, dim] array, got shape {v.shape}")
    shift, transform = normalization_stats(v, normalize)
    return (v - shift.astype(np.float64)) @ transform.astype(np.float64)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity [n, n] of the rows (a zero row has similarity 0 to everything)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return unit @ unit.T


def knowledge_similarity(vectors: np.ndarray, normalize: str = "center") -> np.ndarray:
    """Cosine similarity [S, S] of scenario knowledge vectors after the model's normalisation."""
    return cosine_matrix(normalized_vectors(vectors, normalize))


def _rate_corr(frame: pd.DataFrame, key: str, scenario: str, label: str, s: int, t: int,
               min_count: int, min_pairs: int) -> float:
    grp = frame[frame[scenario].isin((s, t))].groupby([key, scenario])[label].agg(["mean", "size"])
    grp = grp[grp["size"] >= min_count]["mean"].unstack(scenario)
    if s not in grp.columns or t not in grp.columns:
        return float("nan")
    both = grp[[s, t]].dropna()
    if len(both) < min_pairs:
        return float("nan")
    a, b = both[s].to_numpy(float), both[t].to_numpy(float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def data_relations(frame: pd.DataFrame, num_scenarios: int, user: str = "user_id", item: str = "item_id",
                   scenario: str = "scenario_id", label: str = "label", min_count: int = 3,
                   min_pairs: int = 10) -> Dict[str, np.ndarray]:
    """The data's own scenario relations: one [S, S] matrix per name in `RELATIONS`.

    Args:
        frame: interactions (the training split), one row each.
        num_scenarios: S; scenario ids are 0..S-1.
        user, item, scenario, label: column names.
        min_count: interactions a user/item needs in each of two scenarios to enter their
            positive-rate correlation.
        min_pairs: fewest shared users/items for a correlation (else NaN).

    Returns:
        ``{relation: float [S, S]}``; the diagonal is 1 (NaN for a scenario without rows).
    """
    _check_columns(frame, (user, item, scenario, label))
    S = int(num_scenarios)
    if S < 1:
        raise ValueError(f"num_scenarios must be >= 1, got {num_scenarios}")
    if len(frame) == 0:
        raise ValueError("the interactions table is empty: no scenario relations can be measured")
    sid = frame[scenario].to_numpy()
    users = [set(frame[user].to_numpy()[sid == s]) for s in range(S)]
    items = [set(frame[item].to_numpy()[sid == s]) for s in range(S)]
    out = {r: np.full((S, S), np.nan) for r in RELATIONS}
    for s in range(S):
        for t in range(S):
            if not users[s] or not users[t]:
                continue
            if s == t:
                for r in RELATIONS:
                    out[r][s, t] = 1.0
                continue
            if t < s:
                for r in RELATIONS:
                    out[r][s, t] = out[r][t, s]
                continue
            out["user_overlap"][s, t] = len(users[s] & users[t]) / len(users[s] | users[t])
            out["item_overlap"][s, t] = len(items[s] & items[t]) / len(items[s] | items[t])
            out["item_rate_corr"][s, t] = _rate_corr(frame, item, scenario, label, s, t, min_count, min_pairs)
            out["user_rate_corr"][s, t] = _rate_corr(frame, user, scenario, label, s, t, min_count, min_pairs)
    return out


def upper_pairs(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle (i < j) of an [n, n] matrix."""
    return np.triu_indices(int(n), k=1)


def spearman(a: Sequence[float], b: Sequence[float]) -> Tuple[float, int]:
    """Spearman's rho of two sequences over the positions where both are finite, and that count.

    Ties get average ranks; fewer than 3 finite pairs, or a constant side, give NaN.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs two sequences of one length, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3:
        return float("nan"), n
    ra, rb = _rankdata_average(a[ok]), _rankdata_average(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return float("nan"), n
    return float(np.corrcoef(ra, rb)[0, 1]), n


def rank_correlation(knowledge: np.ndarray, relation: np.ndarray) -> Tuple[float, int]:
    """Spearman's rho between two [S, S] matrices over the scenario pairs (upper triangle)."""
    knowledge, relation = np.asarray(knowledge), np.asarray(relation)
    if knowledge.shape != relation.shape or knowledge.ndim != 2 or knowledge.shape[0] != knowledge.shape[1]:
        raise ValueError(f"rank_correlation needs two square matrices of one shape, got {knowledge.shape} "
                         f"and {relation.shape}")
    i, j = upper_pairs(knowledge.shape[0])
    return spearman(knowledge[i, j], relation[i, j])


def scenario_vectors(kb: Any, num_scenarios: int) -> np.ndarray:
    """The scenario knowledge vectors [S, dim] of a `KnowledgeBase`, in scenario-id order."""
    table = kb.tables.get("scenario")
    missing = [s for s in range(num_scenarios) if table is None or str(s) not in table]
    if missing:
        raise ValueError(f"knowledge {getattr(kb, 'path', '')!r} has no vector for scenario(s) {missing}; "
                         "recompute it with `llm4msr knowledge` on this DATA_DIR")
    return np.stack([table.get(str(s)) for s in range(num_scenarios)])


def scenario_map(kb: Any, relations: Mapping[str, np.ndarray], num_scenarios: int,
                 normalize: str = "center") -> Dict[str, Any]:
    """Knowledge similarity of the scenarios and its rank correlation with each data relation.

    Args:
        kb: a loaded `llm4msr_tf.knowledge.KnowledgeBase`.
        relations: `data_relations` of the training split.
        num_scenarios: S.
        normalize: the normalisation applied before the cosine (the model's ``knowledge_normalize``).

    Returns:
        ``{"llm", "dim", "normalize", "knowledge": [S, S] list, "rank_correlation": {relation:
        {"spearman", "pairs"}}}``.
    """
    sim = knowledge_similarity(scenario_vectors(kb, num_scenarios), normalize)
    corr = {}
    for name, rel in relations.items():
        rho, n = rank_correlation(sim, rel)
        corr[name] = {"spearman": rho, "pairs": n}
    return {"llm": getattr(kb, "llm", "?"), "dim": int(getattr(kb, "dim", sim.shape[0])), "normalize": normalize,
            "knowledge": sim.tolist(), "rank_correlation": corr}


def liked_items(frame: pd.DataFrame, user: str = "user_id", item: str = "item_id",
                label: str = "label") -> Dict[str, set]:
    """Each user's set of positively labelled items (training split)."""
    _check_columns(frame, (user, item, label))
    pos = frame[frame[label] > 0]
    return {str(u): set(g) for u, g in pos.groupby(user)[item]}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def user_map(kb: Any, liked: Mapping[str, set], normalize: str = "center", pairs: int = 20000,
             neighbours: int = 10, seed: int = 0, max_users: int = 20000) -> Dict[str, Any]:
    """Does the user knowledge put users who like the same items close together?

    Args:
        kb: a `KnowledgeBase` with user vectors.
        liked: `liked_items` of the training split.
        normalize: the normalisation applied before the cosine.
        pairs: random user pairs for the rank correlation.
        neighbours: how many knowledge-nearest neighbours per user for the neighbour overlap.
        seed: seed of the pair sample.
        max_users: users sampled for the neighbour check (the cosine matrix is users^2).

    Returns:
        ``{"users", "pairs", "spearman"}`` (knowledge cosine vs Jaccard overlap of liked items over
        random pairs), ``"by_cosine_decile"`` (mean cosine and overlap per cosine decile),
        ``"neighbour_jaccard"`` (mean overlap with each user's `neighbours`
        knowledge-nearest users) and ``"random_jaccard"`` (mean overlap of random pairs).
    """
    table = kb.tables.get("user")
    keys = [k for k in (table.keys if table is not None else []) if k in liked]
    if len(keys) < 3:
        return {"users": len(keys), "pairs": 0, "spearman": float("nan"), "neighbour_jaccard": float("nan"),
                "random_jaccard": float("nan"), "neighbours": neighbours, "by_cosine_decile": []}
    rng = np.random.default_rng(seed)
    if len(keys) > max_users:
        keys = [keys[i] for i in sorted(rng.choice(len(keys), max_users, replace=False))]
    vec = normalized_vectors(np.stack([table.get(k) for k in keys]), normalize)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    n = len(keys)
    a = rng.integers(0, n, pairs)
    b = rng.integers(0, n, pairs)
    keep = a != b
    a, b = a[keep], b[keep]
    cos = np.einsum("ij,ij->i", unit[a], unit[b])
    jac = np.array([jaccard(liked[keys[i]], liked[keys[j]]) for i, j in zip(a, b)])
    rho, m = spearman(cos, jac)
    k = int(min(neighbours, n - 1))
    nb_jac: List[float] = []
    for start in range(0, n, 1024):
        sims = unit[start:start + 1024] @ unit.T
        for r in range(sims.shape[0]):
            sims[r, start + r] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, row in enumerate(top):
            mine = liked[keys[start + r]]
            nb_jac.append(float(np.mean([jaccard(mine, liked[keys[j]]) for j in row])))
    # Mean overlap per decile of knowledge cosine: the curve behind the rank correlation.
    edges = np.quantile(cos, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, cos, side="right") - 1, 0, 9)
    deciles = [{"cosine_mean": float(cos[which == d].mean()), "jaccard_mean": float(jac[which == d].mean()),
                "pairs": int((which == d).sum())} for d in range(10) if (which == d).any()]
    return {"users": n, "pairs": m, "spearman": rho, "neighbours": k, "by_cosine_decile": deciles,
            "neighbour_jaccard": float(np.mean(nb_jac)), "random_jaccard": float(np.mean(jac))}


def nearest_users(kb: Any, user_id: str, k: int = 5, normalize: str = "center") -> List[Tuple[str, float]]:
    """The `k` users whose knowledge vectors are closest (cosine after `normalize`) to `user_id`'s.

    Returns:
        ``[(user key, cosine), ...]``, most similar first; empty when the user has no vector.
    """
    table = kb.tables.get("user")
    if table is None or str(user_id) not in table or len(table) < 2:
        return []
    vec = normalized_vectors(table.vectors, normalize)
    norms = np.linalg.norm(vec, axis=1)
    norms[norms == 0] = 1.0
    i = table.index(str(user_id))
    sims = (vec @ vec[i]) / (norms * norms[i])
    sims[i] = -np.inf
    k = int(min(k, len(table) - 1))
    order = np.argsort(-sims, kind="stable")[:k]
    return [(table.keys[j], float(sims[j])) for j in order]

