"""Knowledge diagnostics: does a knowledge table say anything about its keys beyond their ids?

Run before spending a training run on a knowledge directory (`llm4msr knowledge-report`).
Two kinds of numbers, numpy only (no scikit-learn at run time), seconds on thousands of users:

- **Spread across keys**, per table (user, scenario): the mean pairwise cosine of the vectors
  before and after centring (subtracting the across-key mean vector); the fraction of the
  vectors' energy that varies across keys, ``1 - ||mean||^2 / mean ||v||^2`` (= the across-key
  variance over the mean squared norm); the effective dimensionality of what varies, the
  participation ratio ``(sum l)^2 / sum l^2`` of the PCA eigenvalues ``l``, and how many
  components hold 90% of the variance. Reported for the raw vectors and after a per-row
  LayerNorm (no gain/bias, epsilon 1e-3 as Keras), the first thing `KnowledgeProjection` does.
- **A linear probe** on the user table: ridge regression from a user's vector to held-out facts
  about that user computed from the **eval** split (positive rate overall and per scenario, the
  share of the user's eval interactions in each scenario and in the most common item
  categories, log activity), scored by out-of-fold R^2 over a seeded K-fold split of users. The
  ridge strength is chosen per target and per outer fold by exact leave-one-out on the outer
  training fold (closed form) over a grid relative to the features' scale,
  ``alpha = r * trace(Xc'Xc) / dim``, r in `ALPHA_GRID`; the chosen r are reported. The same
  protocol runs on baselines of the same users: seeded Gaussian vectors of the knowledge
  table's shape (what pure capacity gives: R^2 <= 0), a bag-of-liked-items vector (truncated
  SVD of the user x liked-item matrix of the *training* split: what item ids carry), and the
  user's training-split statistics (the same facts computed on train: what simple counts carry).
  Each feature set is probed raw, centred across keys, after the per-row LayerNorm and
  standardised per dimension. Ridge has an unpenalised intercept, so "centred" equals "raw" by
  construction; it is kept as a check. Facts from the training split ("reading" targets) tell
  whether the vector encodes what its prompt states at all.

A knowledge table worth training with beats random clearly on eval facts; one that also beats
the bag-of-items and train-statistics baselines carries something ids and counts do not.
"""
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from llm4msr_tf.utils.io import UserInputError, write_json, write_text

# Ridge strength relative to the mean per-feature sum of squares of the (fold-)centred features.
ALPHA_GRID: Tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
TRANSFORMS: Tuple[str, ...] = ("raw", "centred", "layernorm", "standardised")
LAYERNORM_EPSILON = 1e-3  # tf.keras.layers.LayerNormalization's default
MARKDOWN_HEADER = "## Knowledge diagnostics: "  # first line of every Markdown report


@dataclasses.dataclass
class DiagnosticsConfig:
    """Every flag of `llm4msr knowledge-report`."""

    knowledge: str = dataclasses.field(default="", metadata={"help": "KNOWLEDGE_DIR written by `llm4msr knowledge`"})
    data: str = dataclasses.field(default="", metadata={
        "help": "DATA_DIR written by `llm4msr prepare` (eval facts, training baselines)"})
    out: str = dataclasses.field(default="", metadata={
        "help": "write the report here: FILE.json, FILE.md, or a stem (both); empty = print only"})
    folds: int = dataclasses.field(default=5, metadata={"help": "outer cross-validation folds over users"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the folds and the random baseline"})
    min_rows: int = dataclasses.field(default=3, metadata={
        "help": "a user's fact from a split needs at least this many of their rows there (per scenario "
                "for per-scenario rates)"})
    bag_dim: int = dataclasses.field(default=64, metadata={
        "help": "width of the bag-of-liked-items baseline (truncated SVD)"})
    category_feature: str = dataclasses.field(default="auto", metadata={
        "help": "categorical feature whose top values' shares are facts (auto: item_genre, item_category "
                "or none)"})
    top_categories: int = dataclasses.field(default=5, metadata={"help": "how many category shares"})
    train_facts: bool = dataclasses.field(default=True, metadata={
        "help": "also probe facts of the training split (does the vector encode its own prompt?)"})


# ---- spread across keys ----------------------------------------------------------------------
def _as_matrix(vectors: Any, what: str = "vectors") -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [keys, dim], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} hold NaN or inf values; re-run `llm4msr knowledge`")
    return x


def mean_pairwise_cosine(vectors: Any) -> float:
    """Mean cosine similarity over all ordered pairs of distinct rows (a zero row counts as 0)."""
    x = _as_matrix(vectors)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"mean pairwise cosine needs at least 2 vectors, got {n}")
    norms = np.linalg.norm(x, axis=1)
    u = np.divide(x, norms[:, None], out=np.zeros_like(x), where=norms[:, None] > 0)
    # sum_{i != j} u_i.u_j = ||sum u||^2 - sum ||u_i||^2: exact in O(n d), no n x n matrix.
    s = u.sum(axis=0)
    off = float(s @ s) - float((u * u).sum())
    return off / (n * (n - 1))


def layernorm_rows(vectors: Any, epsilon: float = LAYERNORM_EPSILON) -> np.ndarray:
    """Per-row LayerNorm without gain/bias (what `KnowledgeProjection` applies first)."""
    x = _as_matrix(vectors)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(var + epsilon)


def standardise_columns(vectors: Any) -> np.ndarray:
    """Per-dimension z-scores across keys (constant dimensions become 0)."""
    x = _as_matrix(vectors)
    sd = x.std(axis=0)
    return np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)


def transform(vectors: Any, name: str) -> np.ndarray:
    """One of `TRANSFORMS` applied to a [keys, dim] table."""
    x = _as_matrix(vectors)
    if name == "raw":
        return x
    if name == "centred":
        return x - x.mean(axis=0)
    if name == "layernorm":
        return layernorm_rows(x)
    if name == "standardised":
        return standardise_columns(x)
    raise ValueError(f"unknown transform {name!r}; use one of {TRANSFORMS}")


def spread(vectors: Any) -> Dict[str, float]:
    """How much a table varies across its keys (see the module docstring for each number)."""
    x = _as_matrix(vectors)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"spread statistics need at least 2 keys, got {n}")
    mean = x.mean(axis=0)
    c = x - mean
    energy = float((x * x).sum(axis=1).mean())
    across = float((c * c).sum(axis=1).mean())
    lam = np.linalg.svd(c, compute_uv=False) ** 2 / n  # PCA eigenvalues (population covariance)
    tot = float(lam.sum())
    if tot > 0:
        pr = tot ** 2 / float((lam ** 2).sum())
        dims90 = int(np.searchsorted(np.cumsum(lam) / tot, 0.9 - 1e-12) + 1)
    else:
        pr, dims90 = 0.0, 0
    return {
        "keys": int(n),
        "dim": int(d),
        "mean_norm": float(np.linalg.norm(x, axis=1).mean()),
        "mean_cosine": mean_pairwise_cosine(x),
        "mean_cosine_centred": mean_pairwise_cosine(c),
        "variance_fraction_across_keys": across / energy if energy > 0 else 0.0,
        "effective_dim": float(pr),
        "dims_for_90pct_variance": dims90,
    }


# ---- ridge probe ---------------------------------------------------------------------------
def kfold_indices(n: int, folds: int, seed: int) -> List[np.ndarray]:
    """Test-row indices of a seeded K-fold split of n rows (sizes differ by at most one)."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if n < folds:
        raise ValueError(f"{n} rows cannot be split into {folds} folds")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, folds)]


def _ridge_fit_loo(x: np.ndarray, y: np.ndarray, grid: Sequence[float]):
    """Fit ridge for each target at its leave-one-out-best alpha; returns (coef, intercept, r_idx).

    Exact LOO for ridge with an unpenalised intercept: on centred data the hat matrix is
    11'/n + Xc (Xc'Xc + a I)^-1 Xc', and the LOO residual is r_i / (1 - h_ii). One symmetric
    eigendecomposition serves every alpha: of Xc'Xc (d x d) when d <= n, else of Xc Xc' (n x n).
    """
    n, d = x.shape
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - xm, y - ym
    primal = d <= n
    lam, vec = np.linalg.eigh(xc.T @ xc if primal else xc @ xc.T)
    lam = np.clip(lam, 0.0, None)
    scale = float(lam.sum()) / max(d, 1)  # = trace(Xc'Xc) / d
    # p: the n x k "scores" whose columns carry eigenvalue lam (p = Xc V, or U for the dual).
    p = xc @ vec if primal else vec
    pty = p.T @ yc  # [k, t]
    p2 = p * p
    best = np.full(y.shape[1], np.inf)
    best_r = np.zeros(y.shape[1], dtype=np.int64)
    for r, rel in enumerate(grid):
        a = rel * scale if scale > 0 else rel
        f = 1.0 / (lam + a) if primal else lam / (lam + a)
        fit = p @ (f[:, None] * pty)
        h = 1.0 / n + p2 @ f
        loo = (yc - fit) / np.maximum(1.0 - h, 1e-12)[:, None]
        err = (loo * loo).sum(axis=0)
        better = err < best  # ties keep the smaller alpha
        best = np.where(better, err, best)
        best_r = np.where(better, r, best_r)
    a = np.array([grid[r] for r in best_r]) * (scale if scale > 0 else 1.0)
    w = pty / (lam[:, None] + a[None, :])  # [k, t]
    coef = vec @ w if primal else xc.T @ (vec @ w)  # [d, t]
    return coef, ym - xm @ coef, best_r


def ridge_cv(features: Any, targets: Any, folds: int = 5, seed: int = 0,
             grid: Sequence[float] = ALPHA_GRID) -> Dict[str, Any]:
    """Out-of-fold R^2 of ridge from `features` [n, d] to each column of `targets` [n, t].

    NaN in a target column means "no fact for this row": each target uses its own rows (targets
    with the same rows share the fits). Returns per target: r2 (pooled out-of-fold predictions,
    total sum of squares around the mean of those rows; a constant predictor scores about 0),
    r2_folds (R^2 of each outer fold's rows, for paired differences between feature sets on the
    same folds), n (rows), the relative alpha chosen in each fold, and whether any choice hit the
    grid's edge.
    """
    x = _as_matrix(features, "features")
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"features have {x.shape[0]} rows but targets {y.shape[0]}")
    t = y.shape[1]
    r2 = np.full(t, np.nan)
    n_rows = np.zeros(t, dtype=np.int64)
    alphas: List[List[float]] = [[] for _ in range(t)]
    r2_folds: List[List[float]] = [[] for _ in range(t)]
    masks: Dict[bytes, List[int]] = {}
    for j in range(t):
        masks.setdefault(np.isfinite(y[:, j]).tobytes(), []).append(j)
    for key, cols in masks.items():
        m = np.frombuffer(key, dtype=bool)
        rows = np.flatnonzero(m)
        n_rows[cols] = len(rows)
        if len(rows) < 2 * folds:
            continue  # too few users with this fact for a K-fold estimate
        xs, ys = x[rows], y[np.ix_(rows, cols)]
        pred = np.zeros_like(ys)
        test_folds = kfold_indices(len(rows), folds, seed)
        for test in test_folds:
            train = np.setdiff1d(np.arange(len(rows)), test, assume_unique=True)
            coef, b, ridx = _ridge_fit_loo(xs[train], ys[train], grid)
            pred[test] = xs[test] @ coef + b
            for k, c in enumerate(cols):
                alphas[c].append(float(grid[ridx[k]]))
        ybar = ys.mean(axis=0)
        for test in test_folds:  # per-fold R^2 (same folds for every feature set: paired)
            tot = ((ys[test] - ybar) ** 2).sum(axis=0)
            res = ((ys[test] - pred[test]) ** 2).sum(axis=0)
            for k, c in enumerate(cols):
                r2_folds[c].append(float(1.0 - res[k] / tot[k]) if tot[k] > 0 else float("nan"))
        ss_tot = ((ys - ybar) ** 2).sum(axis=0)
        ss_res = ((ys - pred) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2[cols] = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    return {
        "r2": [None if not np.isfinite(v) else float(v) for v in r2],
        "r2_folds": [[v if math.isfinite(v) else None for v in f] for f in r2_folds],
        "n": [int(v) for v in n_rows],
        "alpha_rel": alphas,
        "alpha_at_grid_edge": [bool(a) and (min(a) == grid[0] or max(a) == grid[-1]) for a in alphas],
    }


# ---- facts and baselines from a prepared DATA_DIR ------------------------------------------------
def _read(data_dir: str, split: str):
    from llm4msr_tf.data.reader import read_split

    return read_split(data_dir, split)


def _category_feature(spec, name: str) -> Optional[str]:
    names = [f.name for f in spec.categorical]
    if name == "auto":
        for cand in ("item_genre", "item_category", "category"):
            if cand in names:
                return cand
        return None
    if name in ("", "none"):
        return None
    if name not in names:
        raise UserInputError(f"--category-feature {name!r} is not a categorical feature of the dataset; "
                             f"use one of {names} or none")
    return name


def user_facts(frame, users: Sequence[str], scenario_names: Sequence[str], min_rows: int = 3,
               category: Optional[str] = None, categories: Sequence[str] = ()) -> Tuple[List[str], np.ndarray]:
    """Per-user facts of one split's rows as (names, [len(users), n_facts] with NaN = no fact).

    Facts: positive rate; positive rate per scenario (users with >= min_rows rows there); share
    of the user's rows per scenario and per listed category value; log(1 + rows).
    """
    import pandas as pd

    index = {str(u): i for i, u in enumerate(users)}
    ui = frame["user_id"].astype(str).map(index)
    ok = ui.notna().to_numpy()
    ui = ui.to_numpy()[ok].astype(np.int64)
    sc = frame["scenario_id"].to_numpy()[ok].astype(np.int64)
    lab = frame["label"].to_numpy()[ok].astype(np.float64)
    n, S = len(users), len(scenario_names)
    rows = np.bincount(ui, minlength=n).astype(np.float64)
    pos = np.bincount(ui, weights=lab, minlength=n)
    enough = rows >= max(1, min_rows)
    names, cols = [], []

    def add(name, values, mask):
        names.append(name)
        cols.append(np.where(mask, values, np.nan))

    with np.errstate(divide="ignore", invalid="ignore"):
        add("pos_rate", pos / rows, enough)
        rs = np.zeros((n, S))
        ps = np.zeros((n, S))
        np.add.at(rs, (ui, sc), 1.0)
        np.add.at(ps, (ui, sc), lab)
        for s, sname in enumerate(scenario_names):
            add(f"pos_rate[{sname}]", ps[:, s] / rs[:, s], rs[:, s] >= max(1, min_rows))
        for s, sname in enumerate(scenario_names):
            add(f"share[{sname}]", rs[:, s] / rows, enough)
        if category and categories:
            cat = pd.Series(frame[category].to_numpy()[ok]).astype(str).to_numpy()
            for c in categories:
                cnt = np.bincount(ui, weights=(cat == c).astype(np.float64), minlength=n)
                add(f"share[{category}={c}]", cnt / rows, enough)
        add("log_rows", np.log1p(rows), rows > 0)
    return names, np.stack(cols, axis=1)


def _randomized_svd(m: np.ndarray, k: int, seed: int, iters: int = 4) -> np.ndarray:
    """Left singular vectors times singular values (the row embedding) of m, rank k."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, min(m.shape) - 1 if min(m.shape) > 1 else 1))
    q = np.linalg.qr(m @ rng.standard_normal((m.shape[1], k + 10)))[0]
    for _ in range(iters):  # power iterations sharpen the spectrum of sparse count matrices
        q = np.linalg.qr(m @ (m.T @ q))[0]
    ub, s, _ = np.linalg.svd(q.T @ m, full_matrices=False)
    return (q @ ub[:, :k]) * s[:k]


def bag_of_liked_items(train, users: Sequence[str], dim: int = 64, seed: int = 0) -> np.ndarray:
    """[len(users), dim] truncated-SVD embedding of the training user x liked-item 0/1 matrix."""
    index = {str(u): i for i, u in enumerate(users)}
    liked = train[train["label"].to_numpy() == 1]
    ui = liked["user_id"].astype(str).map(index)
    ok = ui.notna().to_numpy()
    items = liked["item_id"].astype(str).to_numpy()[ok]
    ui = ui.to_numpy()[ok].astype(np.int64)
    distinct, col = np.unique(items, return_inverse=True)
    m = np.zeros((len(users), max(1, len(distinct))), dtype=np.float64)
    m[ui, col] = 1.0
    return _randomized_svd(m, dim, seed)


def _fill_nan_columns(x: np.ndarray) -> np.ndarray:
    """Missing per-scenario statistics -> the column mean, plus nothing else (ridge needs numbers)."""
    x = x.copy()
    for j in range(x.shape[1]):
        bad = ~np.isfinite(x[:, j])
        if bad.all():
            x[:, j] = 0.0
        elif bad.any():
            x[bad, j] = float(np.nanmean(x[:, j]))
    return x


# ---- the report ------------------------------------------------------------------------------
# Which transforms each feature set is probed with: all four for the knowledge (centred is the
# intercept check), raw only for Gaussian noise (no transform changes it), the ones that make
# sense for the baselines (their best is what the knowledge is compared with: conservative).
PROBE_TRANSFORMS: Dict[str, Tuple[str, ...]] = {
    "knowledge": TRANSFORMS,
    "random": ("raw",),
    "bag_of_liked_items": ("raw", "layernorm", "standardised"),
    "train_stats": ("raw", "standardised"),
    "ids_counts": ("blocks",),
    "ids_counts+knowledge": ("blocks",),
}


def blocks(*parts: np.ndarray) -> np.ndarray:
    """Concatenate feature blocks, each standardised per column and scaled to equal total variance.

    So one ridge alpha treats a 10-column block of statistics and a 640-column knowledge block
    alike, and the gain of adding the knowledge block is its value beyond the other blocks.
    """
    return np.concatenate([standardise_columns(p) / math.sqrt(max(1, p.shape[1])) for p in parts], axis=1)


def _probe_block(feature_sets: Dict[str, np.ndarray], names: List[str], y: np.ndarray,
                 cfg: DiagnosticsConfig, transforms: Optional[Dict[str, Tuple[str, ...]]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"targets": names, "n_users": [int(v) for v in np.isfinite(y).sum(axis=0)],
                           "features": {}}
    for fname, x in feature_sets.items():
        out["features"][fname] = {}
        for tname in (transforms or {}).get(fname, PROBE_TRANSFORMS.get(fname, ("raw",))):
            res = ridge_cv(x if tname == "blocks" else transform(x, tname), y, folds=cfg.folds, seed=cfg.seed)
            vals = [v for v in res["r2"] if v is not None]
            res["mean_r2"] = float(np.mean(vals)) if vals else None
            out["features"][fname][tname] = res
    return out


def knowledge_report(knowledge_dir: str, data_dir: str, cfg: Optional[DiagnosticsConfig] = None) -> Dict[str, Any]:
    """Spread statistics of both tables and the user-table probe with its baselines, as a dict."""
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.knowledge.store import load

    cfg = cfg or DiagnosticsConfig(knowledge=knowledge_dir, data=data_dir)
    if cfg.folds < 2:
        raise UserInputError(f"--folds must be >= 2, got {cfg.folds}")
    if cfg.bag_dim < 1:
        raise UserInputError(f"--bag-dim must be >= 1, got {cfg.bag_dim}")
    if cfg.min_rows < 1:
        raise UserInputError(f"--min-rows must be >= 1 (rows of a user a fact is computed from), got {cfg.min_rows}")
    if cfg.top_categories < 0:
        raise UserInputError(f"--top-categories must be >= 0, got {cfg.top_categories}")
    if not os.path.isdir(data_dir):
        raise UserInputError(f"--data {data_dir} does not exist; run `llm4msr prepare` first")
    kb = load(knowledge_dir)
    spec = DatasetSpec.load(data_dir)
    report: Dict[str, Any] = {
        "knowledge": kb.path, "data": os.path.abspath(data_dir), "llm": kb.llm, "dim": kb.dim,
        "pooling": kb.pooling, "dataset": spec.name, "config": dataclasses.asdict(cfg),
        "alpha_grid_relative": list(ALPHA_GRID), "spread": {}, "probe": {},
    }
    rng = np.random.default_rng(cfg.seed)
    for t, table in kb.tables.items():
        if len(table) < 2:
            report["spread"][t] = {"skipped": f"{len(table)} key(s)"}
            continue
        report["spread"][t] = {
            "knowledge": {"raw": spread(table.vectors), "layernorm": spread(layernorm_rows(table.vectors))},
            "random": {"raw": spread(rng.standard_normal(table.vectors.shape))},
        }
    users = kb.tables["user"].keys
    if len(users):
        # Knowledge of another dataset would give a report of blanks and exit 0 (issue 21).
        train_users = set(str(u) for u in spec.vocab(spec.user_feature))
        shared = sum(1 for u in users if u in train_users)
        report["user_keys_in_train"] = shared
        if shared == 0:
            raise UserInputError(
                f"none of the {len(users)} user keys of --knowledge {knowledge_dir} is a training user of --data "
                f"{data_dir} ({len(train_users)} users): knowledge of another dataset? run `llm4msr knowledge` "
                "on this DATA_DIR's prompts")
    if len(users) < 2 * cfg.folds:
        report["probe"] = {"skipped": f"{len(users)} users: too few for a {cfg.folds}-fold probe"}
        return report
    train, evals = _read(data_dir, "train"), _read(data_dir, "eval")
    if len(evals) == 0:
        raise UserInputError(f"{data_dir} has an empty eval split; the probe needs eval interactions")
    snames = spec.scenario_names()
    cat = _category_feature(spec, cfg.category_feature)
    cats: List[str] = []
    if cat:
        counts = evals[cat].astype(str).value_counts()
        cats = sorted(counts.index[: cfg.top_categories], key=lambda c: (-counts[c], c))
    facts = {split: user_facts(frame, users, snames, cfg.min_rows, cat, cats)
             for split, frame in (("eval", evals), ("train", train))}
    x_know = kb.tables["user"].vectors.astype(np.float64)
    bag = bag_of_liked_items(train, users, cfg.bag_dim, cfg.seed)
    stats = _fill_nan_columns(facts["train"][1])
    feats = {
        "knowledge": x_know,
        "random": np.random.default_rng(cfg.seed + 1).standard_normal(x_know.shape),
        "bag_of_liked_items": bag,
        "train_stats": stats,
        # What ids and counts carry together, and whether the knowledge adds to it.
        "ids_counts": blocks(layernorm_rows(bag), stats),
        "ids_counts+knowledge": blocks(layernorm_rows(bag), stats, x_know),
    }
    report["probe"]["eval"] = _probe_block(feats, *facts["eval"], cfg)
    if cfg.train_facts:
        # Train-split facts are the train_stats features themselves: leave those baselines out.
        # Fewer variants here (each costs one eigendecomposition per fold and fact subset).
        report["probe"]["train"] = _probe_block(
            {k: feats[k] for k in ("knowledge", "bag_of_liked_items")}, *facts["train"], cfg,
            transforms={"knowledge": ("raw", "standardised"), "bag_of_liked_items": ("layernorm",)})
    report["users_in_eval"] = int(len(set(evals["user_id"].astype(str)) & set(users)))
    report["summary"] = summarise(report)
    return report


def summarise(report: Dict[str, Any]) -> Dict[str, Any]:
    """The few numbers a screen compares: user-table spread and mean eval-fact R^2 per feature set."""
    out: Dict[str, Any] = {}
    sp = report.get("spread", {}).get("user", {}).get("knowledge")
    if sp:
        out["user_mean_cosine"] = sp["raw"]["mean_cosine"]
        out["user_mean_cosine_layernorm"] = sp["layernorm"]["mean_cosine"]
        out["user_mean_cosine_centred"] = sp["raw"]["mean_cosine_centred"]
        out["user_variance_fraction_across_keys"] = sp["raw"]["variance_fraction_across_keys"]
        out["user_effective_dim"] = sp["raw"]["effective_dim"]
    for split in ("eval", "train"):
        block = report.get("probe", {}).get(split)
        if not block:
            continue
        for fname, per in block["features"].items():
            for tname, res in per.items():
                out[f"{split}_mean_r2/{fname}/{tname}"] = res["mean_r2"]
            vals = [(res["mean_r2"], t) for t, res in per.items() if t != "centred" and res["mean_r2"] is not None]
            if vals:
                best = max(vals)
                out[f"{split}_best_r2/{fname}"] = best[0]
                out[f"{split}_best_transform/{fname}"] = best[1]
                # The same fit split into kinds of fact: taste (positive rates), mix (shares), activity.
                for group, vals_g in target_groups(block["targets"], per[best[1]]["r2"]).items():
                    out[f"{split}_{group}_r2/{fname}"] = vals_g
        a = out.get(f"{split}_best_r2/ids_counts")
        b = out.get(f"{split}_best_r2/ids_counts+knowledge")
        if a is not None and b is not None:
            out[f"{split}_r2_gain_beyond_ids_counts"] = b - a
            se = paired_fold_se(block["features"]["ids_counts+knowledge"]["blocks"],
                                block["features"]["ids_counts"]["blocks"])
            if se is not None:
                out[f"{split}_r2_gain_beyond_ids_counts_se"] = se
        for base in ("random", "bag_of_liked_items"):
            kt, bt = out.get(f"{split}_best_transform/knowledge"), out.get(f"{split}_best_transform/{base}")
            if kt and bt:
                se = paired_fold_se(block["features"]["knowledge"][kt], block["features"][base][bt])
                if se is not None:
                    out[f"{split}_r2_knowledge_minus_{base}_se"] = se
    return out


def paired_fold_se(a: Dict[str, Any], b: Dict[str, Any]) -> Optional[float]:
    """Standard error of the mean-over-facts R^2 difference a - b from its per-fold values.

    Both results come from the same folds (same rows, same seed), so the per-fold differences are
    paired; SE = std over folds / sqrt(folds). None when per-fold values are missing (old reports).
    """
    fa, fb = a.get("r2_folds"), b.get("r2_folds")
    if not fa or not fb:
        return None
    diffs = []
    for ta, tb in zip(fa, fb):
        if ta and tb and all(v is not None for v in ta + tb):
            diffs.append(np.asarray(ta) - np.asarray(tb))
    if not diffs:
        return None
    per_fold = np.mean(diffs, axis=0)  # mean over facts, one value per fold
    if len(per_fold) < 2:
        return None
    return float(np.std(per_fold, ddof=1) / math.sqrt(len(per_fold)))


def target_groups(names: Sequence[str], r2: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """Mean R^2 per kind of fact: `rate` (pos_rate*), `mix` (share*), `activity` (log_rows)."""
    groups: Dict[str, List[float]] = {"rate": [], "mix": [], "activity": []}
    for name, v in zip(names, r2):
        g = "rate" if name.startswith("pos_rate") else "mix" if name.startswith("share") else "activity"
        if v is not None:
            groups[g].append(v)
    return {g: (float(np.mean(v)) if v else None) for g, v in groups.items()}


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def to_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown tables (spread, then probe R^2 per target and feature set)."""
    from llm4msr_tf.report import markdown_table

    lines = [f"{MARKDOWN_HEADER}{report['llm']} ({report['pooling']} pooling, dim {report['dim']}) "
             f"on {report['dataset']}", "",
             f"Knowledge `{report['knowledge']}`, data `{report['data']}`.", ""]
    rows = []
    for t, block in report["spread"].items():
        if "skipped" in block:
            rows.append([t, "-", block["skipped"], "-", "-", "-", "-", "-", "-"])
            continue
        for fname, per in block.items():
            for tname, s in per.items():
                rows.append([t, fname, tname, s["keys"], _fmt(s["mean_cosine"]), _fmt(s["mean_cosine_centred"]),
                             _fmt(s["variance_fraction_across_keys"], 4), _fmt(s["effective_dim"], 1),
                             s["dims_for_90pct_variance"]])
    lines += ["### Spread across keys", "",
              markdown_table(["table", "vectors", "transform", "keys", "mean cos", "mean cos centred",
                              "var. fraction across keys", "eff. dim (PR)", "dims 90% var"], rows), ""]
    for split, block in report.get("probe", {}).items():
        if not isinstance(block, dict) or "features" not in block:
            continue
        cols = [(f, t) for f, per in block["features"].items() for t in per if t != "centred"]
        head = ["target", "users"] + [f"{f} {t}" for f, t in cols]
        rows = []
        for j, name in enumerate(block["targets"]):
            rows.append([name, block["n_users"][j]] + [_fmt(block["features"][f][t]["r2"][j]) for f, t in cols])
        rows.append(["**mean**", ""] + [_fmt(block["features"][f][t]["mean_r2"]) for f, t in cols])
        lines += [f"### Linear probe on {split}-split facts (cross-validated R^2, {report['config']['folds']} folds "
                  "over users)", "", markdown_table(head, rows), ""]
        per = block["features"]["knowledge"]
        if "centred" not in per:
            lines.append("")
            continue
        same = np.allclose([v or 0 for v in per["raw"]["r2"]], [v or 0 for v in per["centred"]["r2"]], atol=1e-6)
        lines.append("knowledge centred is left out: ridge with an intercept gives the same R^2 as raw "
                     f"({'checked: identical' if same else 'NOT identical: numerical trouble'}). "
                     "ids_counts = bag_of_liked_items (layernorm) + train_stats as standardised blocks of equal "
                     "weight; ids_counts+knowledge adds the knowledge block: its gain is what the knowledge "
                     "carries beyond ids and counts.")
        lines.append("")
    lines.append(f"Ridge alpha = r x trace(Xc'Xc)/dim, r chosen per target and fold by exact leave-one-out "
                 f"from {list(report['alpha_grid_relative'])}.")
    return "\n".join(lines) + "\n"


def report_paths(out: str) -> List[str]:
    """The files `write_report` writes for `out`: FILE.json, FILE.md, or both for a stem."""
    stem, ext = os.path.splitext(out)
    if ext not in (".json", ".md"):
        stem, ext = out, ""
    return [stem + e for e in (".json", ".md") if ext in ("", e)]


def _is_report(path: str) -> bool:
    """Whether the existing file `path` is a report this command wrote (safe to replace)."""
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".md"):
                return f.readline().startswith(MARKDOWN_HEADER)
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"spread", "probe", "alpha_grid_relative"} <= set(doc)


def check_report_out(out: str, protected: Optional[Dict[str, str]] = None) -> List[str]:
    """Refuse a --out whose files would land in an input or replace a file that is not a report.

    Checked before the (minutes-long) probe runs. A report written earlier is replaced; any
    other existing file (a README, a manifest.json) is never overwritten.

    Raises:
        UserInputError: naming the path and the fix.
    """
    from llm4msr_tf.utils.io import check_output_file

    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        # A stem "DIR/" would write the hidden files DIR/.json and DIR/.md.
        raise UserInputError(f"--out {out} is a directory; give FILE.json, FILE.md or a stem such as "
                             f"{os.path.join(out.rstrip('/' + os.sep) or '.', 'report')}")
    paths = report_paths(out)
    for path in paths:
        check_output_file(path, "--out", protected=protected)
        if os.path.lexists(path) and not _is_report(path):
            raise UserInputError(f"--out {out}: {os.path.abspath(path)} exists and is not a knowledge report; "
                                 "it is never overwritten: choose another --out or remove it yourself")
    return paths


def write_report(report: Dict[str, Any], out: str) -> List[str]:
    """Write FILE.json, FILE.md, or both for a stem (each atomically); returns the paths written."""
    paths = report_paths(out)
    for path in paths:
        if path.endswith(".json"):
            write_json(path, report)
        else:
            write_text(path, to_markdown(report))
    return paths


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """A one-screen summary for the CLI."""
    s = report.get("summary", {})
    lines = [f"{report['llm']} ({report['pooling']}, dim {report['dim']}) on {report['dataset']}"]
    for t, block in report["spread"].items():
        if "skipped" in block:
            lines.append(f"  {t}: {block['skipped']}")
            continue
        r, ln = block["knowledge"]["raw"], block["knowledge"]["layernorm"]
        lines.append(f"  {t:<8} keys {r['keys']:>6}  cos {r['mean_cosine']:.3f} (layernorm {ln['mean_cosine']:.3f}, "
                     f"centred {r['mean_cosine_centred']:.3f})  var across keys {r['variance_fraction_across_keys']:.4f}"
                     f"  eff. dim {r['effective_dim']:.1f}")
    block = report.get("probe", {}).get("eval")
    if block:
        lines.append("  probe on eval facts, mean cross-validated R^2:")
        for fname, per in block["features"].items():
            lines.append(f"    {fname:<22} " + ", ".join(f"{t} {_fmt(res['mean_r2'])}" for t, res in per.items()
                                                         if t != "centred"))
    elif "skipped" in report.get("probe", {}):
        lines.append(f"  probe skipped: {report['probe']['skipped']}")
    return lines


def dumps(report: Dict[str, Any]) -> str:
    """The report as JSON text."""
    return json.dumps(report, indent=1)
