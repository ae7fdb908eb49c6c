"""Human-readable results: PNG plots and a Markdown/HTML report of a demo or benchmark run."""
import html
import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from llm4msr_tf.utils.io import write_text

log = logging.getLogger(__name__)

# Colour per model variant, fixed so every plot of a report agrees.
VARIANT_COLOURS = {
    "backbone": "#7f7f7f",
    "llm4msr": "#d62728",
    "no_scenario_meta": "#ff9896",
    "no_user_meta": "#1f77b4",
}


def pyplot():
    """Import matplotlib with a headless backend (reports are written on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: object, path: str, dpi: int = 120) -> str:
    """Lay out, write and close a matplotlib figure (PNG by the path's suffix); returns the path."""
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=dpi)  # type: ignore[attr-defined]
    pyplot().close(fig)
    return path


def plot_scenario_auc(
    results: Mapping[str, Mapping[str, float]],
    path: str,
    title: str = "Test AUC per scenario",
    labels: Optional[Mapping[str, str]] = None,
) -> str:
    """Grouped bars: one group per scenario (plus 'overall'), one bar per model variant."""
    plt = pyplot()
    variants = list(results)
    groups = list(next(iter(results.values())).keys())
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2))
    all_vals: List[float] = []
    for i, v in enumerate(variants):
        vals = [results[v].get(g, float("nan")) for g in groups]
        all_vals += [x for x in vals if np.isfinite(x)]
        xs = np.arange(len(groups)) + (i - (len(variants) - 1) / 2) * width
        bars = ax.bar(
            xs, vals, width, label=(labels or {}).get(v, v), color=VARIANT_COLOURS.get(v)
        )
        for b, val in zip(bars, vals):
            if np.isfinite(val):
                ax.text(b.get_x() + b.get_width() / 2, val, f"{val:.3f}", ha="center",
                        va="bottom", fontsize=7, rotation=90)
    lo = min(all_vals) if all_vals else 0.5
    hi = max(all_vals) if all_vals else 1.0
    # AUC differences are small: zoom the y axis so they are visible, and say so in the label.
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, hi + 0.06))
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlabel("scenario")
    ax.set_ylabel("test AUC (y axis zoomed)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_training_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    path: str,
    metrics: Sequence[str] = ("loss", "val_auc"),
    titles: Optional[Mapping[str, str]] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> str:
    """One panel per metric (e.g. training loss, validation AUC) with a line per variant."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8))
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, metrics):
        plotted = False
        for v, h in histories.items():
            ys = list(h.get(m, []))
            if not ys:
                continue
            ax.plot(range(1, len(ys) + 1), ys, marker="o", label=(labels or {}).get(v, v),
                    color=VARIANT_COLOURS.get(v))
            plotted = True
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title((titles or {}).get(m, m))
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no '{m}' recorded", ha="center", va="center",
                    transform=ax.transAxes)
    return save_figure(fig, path)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows of `x` onto their first two principal components (centred SVD)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    out = x @ comps.T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def plot_knowledge_projection(
    user_vectors: np.ndarray,
    user_groups: Sequence[int],
    scenario_vectors: np.ndarray,
    scenario_names: Sequence[str],
    path: str,
    title: str = "Knowledge vectors (PCA)",
) -> str:
    """Users coloured by their main scenario and scenarios as stars, in one shared 2-D PCA."""
    plt = pyplot()
    both = np.concatenate([user_vectors, scenario_vectors], axis=0)
    proj = pca_2d(both)
    pu, ps = proj[: len(user_vectors)], proj[len(user_vectors):]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    groups = np.asarray(user_groups)
    for s, name in enumerate(scenario_names):
        m = groups == s
        if m.any():
            ax.scatter(pu[m, 0], pu[m, 1], s=10, alpha=0.55, color=cmap(s % 10),
                       label=f"users, mostly in {name} ({int(m.sum())})")
    for s, name in enumerate(scenario_names):
        ax.scatter(ps[s, 0], ps[s, 1], s=260, marker="*", color=cmap(s % 10),
                   edgecolor="black", linewidth=1.0, label=f"scenario {name}")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; floats are shown with 4 decimals."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if not np.isfinite(v) else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_to_html(md_text: str, title: str) -> str:
    """Render Markdown to a standalone HTML page (images stay relative links)."""
    try:
        import markdown

        body = markdown.markdown(md_text, extensions=["tables", "fenced_code"])
    except ImportError:  # pragma: no cover - markdown ships with tensorboard
        body = "<pre>" + html.escape(md_text) + "</pre>"
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em;}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;}"
        "img{max-width:100%}pre{background:#f5f5f5;padding:8px;overflow-x:auto;"
        "white-space:pre-wrap}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>"
    )


def write_report(out_dir: str, md_text: str, title: str, name: str = "report") -> Dict[str, str]:
    """Write `name.md` and `name.html` into out_dir (atomically); returns their paths."""
    return {ext: write_text(os.path.join(out_dir, f"{name}.{ext}"), text)
            for ext, text in (("md", md_text), ("html", markdown_to_html(md_text, title)))}
