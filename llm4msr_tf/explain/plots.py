"""Headless matplotlib figures of the explain views (the numbers are also written beside them in Markdown)."""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from llm4msr_tf.report import pyplot, save_figure
from llm4msr_tf.explain.changes import LEVEL_LABELS
from llm4msr_tf.explain.scenario_map import RELATION_LABELS

LEVEL_COLOURS = {"user": "#1f77b4", "user_default": "#9467bd", "scenario_knowledge": "#2ca02c", "scenario": "#ff7f0e",
                 "knowledge": "#d62728"}


def _heatmap(ax: Any, mat: np.ndarray, names: Sequence[str], title: str, diverging: bool) -> None:
    """One annotated S x S heatmap; the diagonal is masked so the colours spread over the pairs."""
    plt = pyplot()
    m = np.array(mat, dtype=np.float64)
    S = m.shape[0]
    off = m[~np.eye(S, dtype=bool)]
    fin = off[np.isfinite(off)]
    shown = m.copy()
    np.fill_diagonal(shown, np.nan)
    if fin.size:
        lo, hi = float(fin.min()), float(fin.max())
        if diverging:
            r = max(abs(lo), abs(hi), 1e-6)
            lo, hi = -r, r
        elif hi - lo < 1e-9:
            # One value for every pair (e.g. genre families share no item): a 0..1 scale, not a
            # range centred on it that would show negative overlaps on the colour bar.
            lo, hi = min(0.0, lo), max(1.0, hi)
    else:
        lo, hi = 0.0, 1.0
    cmap = plt.get_cmap("RdBu_r" if diverging else "Blues").copy()
    cmap.set_bad("#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=lo, vmax=hi)
    for i in range(S):
        for j in range(S):
            v = m[i, j]
            if i == j:
                txt, colour = "—", "#777777"
            elif not np.isfinite(v):
                txt, colour = "n/a", "#777777"
            else:
                txt = f"{v:.2f}" if abs(v) >= 0.005 or v == 0 else f"{v:.1e}"
                frac = (v - lo) / (hi - lo) if hi > lo else 0.5
                colour = "white" if (diverging and abs(frac - 0.5) > 0.3) or (not diverging and frac > 0.6) \
                    else "black"
            ax.text(j, i, txt, ha="center", va="center", fontsize=10, color=colour)
    short = [n if len(n) <= 18 else n[:17] + "…" for n in names]
    ax.set_xticks(range(S))
    ax.set_yticks(range(S))
    ax.set_xticklabels(short, rotation=30, ha="right", fontsize=8)
    ax.set_yticklabels(short, fontsize=8)
    if not fin.size:
        # Nothing to colour: say why in the panel instead of a colour bar with no meaning.
        ax.set_title(title + "\n(undefined for every pair: too few shared keys)", fontsize=9)
        return
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_scenario_map(names: Sequence[str], relations: Mapping[str, Any], maps: Mapping[str, Mapping[str, Any]],
                      path: str) -> str:
    """Top row: the data's scenario relations; bottom row: each LLM's knowledge cosine with its rank correlations."""
    plt = pyplot()
    rel_names = list(relations)
    cols = max(len(rel_names), len(maps), 1)
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 7.4), squeeze=False)
    for c, r in enumerate(rel_names):
        _heatmap(axes[0, c], np.asarray(relations[r], dtype=np.float64), names,
                 f"data: {RELATION_LABELS.get(r, r)}", diverging=r.endswith("corr"))
    for c in range(len(rel_names), cols):
        axes[0, c].axis("off")
    for c, (llm, mp) in enumerate(maps.items()):
        rc = mp.get("rank_correlation", {})
        lines = [f"ρ vs {k.replace('_', ' ')}: " + ("n/a" if not np.isfinite(v["spearman"]) else f"{v['spearman']:+.2f}")
                 + f" ({v['pairs']} pairs)" for k, v in rc.items()]
        _heatmap(axes[1, c], np.asarray(mp["knowledge"], dtype=np.float64), names,
                 f"{llm}: knowledge cosine ({mp.get('normalize', 'center')})\n" + "\n".join(lines), diverging=True)
    for c in range(len(maps), cols):
        axes[1, c].axis("off")
    fig.suptitle("Scenario map: data relations (training split, top) vs LLM knowledge similarity (bottom); "
                 "colours spread over the off-diagonal pairs", fontsize=10)
    return save_figure(fig, path)


def _bars(ax: Any, groups: Sequence[str], series: Mapping[str, Sequence[float]], colours: Mapping[str, str],
          labels: Mapping[str, str], fmt: str, ylabel: str, title: str, ylim: Optional[Sequence[float]] = None) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    xs = np.arange(len(groups))
    for i, (key, vals) in enumerate(series.items()):
        pos = xs + (i - (n - 1) / 2) * width
        bars = ax.bar(pos, vals, width, color=colours.get(key), label=labels.get(key, key))
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.text(b.get_x() + b.get_width() / 2, v, fmt.format(v), ha="center", va="bottom",
                        fontsize=6.5, rotation=90)
    ax.set_xticks(xs)
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    # The legend sits in one row between the title and the axes: inside, it covers the tallest bars.
    ax.set_title(title, fontsize=9, pad=20)
    ax.grid(axis="y", alpha=0.3)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=n, frameon=False)


def _group_keys(block: Mapping[str, Any], order: Optional[Mapping[str, Sequence[str]]] = None) -> List[tuple]:
    keys = [("overall", "all", "all")]
    for g, prefix in (("scenario", ""), ("history", "hist "), ("scenarios_used", "used ")):
        for k in (order or {}).get(g) or block.get(g, {}):
            keys.append((g, k, prefix + k))
    return keys


def plot_knowledge_changes(changes: Mapping[str, Any], path: str) -> str:
    """Share of predictions moved per group and level; AUC of the moved subset with vs without knowledge."""
    plt = pyplot()
    levels = changes["levels"]
    keys = _group_keys(levels["knowledge"], changes.get("order"))
    labels = [k[2] for k in keys]

    def get(level: str, g: str, k: str, field: str) -> float:
        blk = levels[level]["overall"] if g == "overall" else levels[level][g].get(k, {})
        return float(blk.get(field, float("nan")))

    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.7 * len(keys) + 3), 8.2))
    share = {lv: [get(lv, g, k, "share_moved") for g, k, _ in keys] for lv in LEVEL_COLOURS if lv in levels}
    top = max([v for vals in share.values() for v in vals if np.isfinite(v)] + [0.01])
    _bars(axes[0], labels, share, LEVEL_COLOURS, {lv: f"without {LEVEL_LABELS[lv]}" for lv in share}, "{:.1%}",
          f"share of predictions moved > {changes['threshold']:.2f}",
          "How often each knowledge level moves a prediction by more than "
          f"{changes['threshold']:.2f} in probability", ylim=(0, top * 1.3))
    auc = {"with": [get("knowledge", g, k, "auc_moved_with") for g, k, _ in keys],
           "without": [get("knowledge", g, k, "auc_moved_without") for g, k, _ in keys]}
    fin = [v for vals in auc.values() for v in vals if np.isfinite(v)]
    lo, hi = (min(fin), max(fin)) if fin else (0.4, 1.0)
    _bars(axes[1], labels, auc, {"with": "#d62728", "without": "#7f7f7f"},
          {"with": "with knowledge", "without": "without knowledge (both levels off)"}, "{:.3f}",
          "AUC of the moved subset (y zoomed)", "Are the moves right? AUC on the predictions the knowledge moves",
          ylim=(max(0.0, lo - 0.04), min(1.0, hi + 0.05)))
    return save_figure(fig, path)


def plot_dp_histogram(dp: Mapping[str, np.ndarray], threshold: float, path: str) -> str:
    """Distribution of the probability move (with minus without knowledge) per scenario, log counts."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    allv = np.concatenate([np.asarray(v) for v in dp.values()]) if dp else np.zeros(1)
    r = max(float(np.quantile(np.abs(allv), 0.999)) if allv.size else 0.1, threshold * 1.5)
    bins = np.linspace(-r, r, 61)
    cmap = plt.get_cmap("tab10")
    for i, (name, v) in enumerate(dp.items()):
        ax.hist(np.clip(v, -r, r), bins=bins, histtype="step", linewidth=1.4, color=cmap(i % 10),
                label=f"{name} ({len(v)} rows)")
    for t in (-threshold, threshold):
        ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("p(with knowledge) − p(without knowledge)  (clipped at the 99.9% quantile)")
    ax.set_ylabel("test predictions (log)")
    ax.set_title(f"How far the knowledge moves each prediction (dashed: ±{threshold:.2f})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_user_map(user_maps: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """Mean overlap of liked items per decile of user knowledge cosine, one line per LLM."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for llm, um in user_maps.items():
        d = um.get("by_cosine_decile") or []
        if not d:
            continue
        xs = [r["cosine_mean"] for r in d]
        ys = [r["jaccard_mean"] for r in d]
        rho = um.get("spearman", float("nan"))
        ax.plot(xs, ys, marker="o", label=f"{llm}: ρ = {rho:+.3f} over {um.get('pairs', 0)} pairs")
        ax.axhline(um.get("random_jaccard", float("nan")), linestyle=":", linewidth=0.8, color="grey")
    ax.set_xlabel("knowledge cosine of a random user pair (centred), decile mean")
    ax.set_ylabel("overlap of liked items (Jaccard)")
    ax.set_title("Do users close in knowledge like the same items? (dotted: random-pair mean)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
