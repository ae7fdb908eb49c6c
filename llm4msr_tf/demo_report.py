"""Builds the demo's report.md/report.html and PNGs from the artifacts the stages wrote.

Every metrics block it reads (a train run's ``metrics.json`` ``test``, a serving check) is in the
one schema of `llm4msr_tf.metrics.scenario_metrics`: ``overall`` and ``scenarios``.
"""
import logging
import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from llm4msr_tf import report
from llm4msr_tf.metrics import METRICS_FILENAME
from llm4msr_tf.utils.io import read_json, restore_nan

log = logging.getLogger(__name__)

VARIANTS = ("backbone", "llm4msr", "no_scenario_meta", "no_user_meta")
VARIANT_LABELS = {
    "backbone": "backbone alone",
    "llm4msr": "backbone + LLM4MSR",
    "no_scenario_meta": "LLM4MSR without scenario level",
    "no_user_meta": "LLM4MSR without user level",
}


def _metrics_of(run_dir: str) -> Dict[str, Any]:
    """The test metrics of a `llm4msr train` run: {'overall': {...}, 'scenarios': {id: {...}}}."""
    return restore_nan(read_json(os.path.join(run_dir, METRICS_FILENAME)))["test"]


def _scenario_name(spec_scenarios: List[Dict[str, Any]], key: str) -> str:
    for s in spec_scenarios:
        if str(s["id"]) == str(key) or s["name"] == key:
            return s["name"]
    return str(key)


def _history_of(run_dir: str) -> Dict[str, List[float]]:
    """Per-epoch Keras history saved in a train run's metrics.json."""
    p = os.path.join(run_dir, METRICS_FILENAME)
    return dict(restore_nan(read_json(p)).get("history", {})) if os.path.exists(p) else {}


def _user_main_scenario(data_dir: str, users: List[str]) -> List[int]:
    """Each user's most frequent scenario in the training split (colours the PCA plot)."""
    from llm4msr_tf.data.reader import read_split
    from llm4msr_tf.data.spec import DatasetSpec

    spec = DatasetSpec.load(data_dir)
    df = read_split(data_dir, "train")
    # Ties go to the lowest scenario id (argmax of the counts).
    main = df.groupby(spec.user_feature)[spec.scenario_feature].agg(
        lambda s: int(np.argmax(np.bincount(s, minlength=spec.num_scenarios))))
    return [int(main.get(u, 0)) for u in users]


def build_report(
    out: str,
    cfg: Any,
    runs: Mapping[str, str],
    kdir: str,
    edir: Optional[str],
    serving_metrics: Mapping[str, Any],
    pushed: Mapping[str, Optional[str]],
) -> Dict[str, Any]:
    """Write report.md, report.html and the PNGs into `out`; return the headline summary."""
    data = os.path.join(out, "data")
    ds = read_json(os.path.join(data, "dataset.json"))
    scen = ds["scenarios"]
    names = [s["name"] for s in scen]
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    md: List[str] = [f"# LLM4MSR demo report — {ds.get('name', cfg.dataset)}, backbone `{cfg.backbone}`", ""]
    md.append(
        "LLM4MSR (Wang et al., CIKM 2024): a frozen LLM turns scenario- and user-level prompts "
        f"into knowledge vectors (here `{cfg.llm}`), and hierarchical meta layers generated from "
        f"them are trained with the `{cfg.backbone}` backbone. Everything below was produced by "
        "`llm4msr demo`; the configuration is in `config.json`."
    )

    # --- data summary
    md += ["", "## Data", ""]
    rows = []
    for sid, s in enumerate(scen):
        r = [s["name"], s.get("description", "")[:90]]
        for split in ("train", "eval", "test"):
            ps = ds.get("splits", {}).get(split, {}).get("per_scenario", {}).get(str(sid), {})
            n = ps.get("rows", 0)
            pos = ps.get("positives", 0)
            r.append(f"{n} ({(pos / n if n else 0):.0%} pos)")
        rows.append(r)
    md.append(report.markdown_table(["scenario", "description", "train", "eval", "test"], rows))
    md.append("")
    md.append(f"Split method: {ds.get('split_method', '?')}. Features: "
              + ", ".join(f"`{f['name']}`" for f in ds.get("features", [])) + ".")

    # --- main table: per-scenario AUC and log loss, backbone vs LLM4MSR
    fast = {v: _metrics_of(d) for v, d in runs.items() if os.path.exists(os.path.join(d, METRICS_FILENAME))}
    headline: List[str] = []
    md += ["", "## Backbone vs. LLM4MSR (test split)", ""]
    main_src = None
    if serving_metrics and all("overall" in serving_metrics.get(v, {}) for v in ("backbone", "llm4msr")):
        main = {v: serving_metrics[v] for v in ("backbone", "llm4msr")}
        main_src = ("TFX pipeline models, scored through the pushed SavedModels' `serving_default` "
                    "signature")
    else:
        main = {v: fast[v] for v in ("backbone", "llm4msr") if v in fast}
        main_src = "fast training path (`llm4msr train`)"
    if len(main) == 2:
        md.append(f"Source: {main_src}. Lift = LLM4MSR − backbone (AUC: higher is better; "
                  "log loss: lower is better).")
        md.append("")
        rows = []
        keys = [k for k in main["backbone"]["scenarios"]] + ["overall"]
        for k in keys:
            b = main["backbone"]["overall"] if k == "overall" else main["backbone"]["scenarios"].get(k, {})
            l = main["llm4msr"]["overall"] if k == "overall" else main["llm4msr"]["scenarios"].get(k, {})
            ba, la = b.get("auc", float("nan")), l.get("auc", float("nan"))
            bl, ll = b.get("log_loss", float("nan")), l.get("log_loss", float("nan"))
            nm = "overall" if k == "overall" else _scenario_name(scen, k)
            rows.append([nm, ba, la, f"{la - ba:+.4f}", bl, ll, f"{ll - bl:+.4f}"])
        md.append(report.markdown_table(
            ["scenario", "AUC backbone", "AUC LLM4MSR", "AUC lift", "logloss backbone",
             "logloss LLM4MSR", "logloss change"], rows))
        o_b, o_l = main["backbone"]["overall"].get("auc", np.nan), main["llm4msr"]["overall"].get("auc", np.nan)
        headline.append(f"overall test AUC: backbone {o_b:.4f} -> LLM4MSR {o_l:.4f} ({o_l - o_b:+.4f})")
    else:
        md.append("The backbone and LLM4MSR runs did not both finish; see `logs/`.")

    # --- ablations (fast path, one code path for all variants)
    if fast:
        md += ["", "## Ablations (fast training path, same split, epochs and early stopping)", ""]
        rows = []
        for v, m in fast.items():
            r = [VARIANT_LABELS.get(v, v)]
            for sid in range(len(scen)):
                r.append(_pick(m["scenarios"], sid, names).get("auc", float("nan")))
            r += [m["overall"].get("auc", float("nan")), m["overall"].get("log_loss", float("nan"))]
            rows.append(r)
        md.append(report.markdown_table(
            ["model"] + [f"AUC {n}" for n in names] + ["AUC overall", "logloss overall"], rows))
        auc_plot = {
            v: {**{n: _pick(m["scenarios"], i, names).get("auc", float("nan")) for i, n in enumerate(names)},
                "overall": m["overall"].get("auc", float("nan"))}
            for v, m in fast.items()
        }
        report.plot_scenario_auc(auc_plot, os.path.join(plots, "scenario_auc.png"),
                                 title=f"Test AUC per scenario ({cfg.backbone})", labels=VARIANT_LABELS)
        md += ["", "![per-scenario AUC](plots/scenario_auc.png)"]
        hist = {v: _history_of(d) for v, d in runs.items()}
        hist = {v: h for v, h in hist.items() if h}
        if hist:
            metric_keys = _curve_metrics(hist)
            report.plot_training_curves(
                hist, os.path.join(plots, "training_curves.png"), metrics=metric_keys,
                titles={k: _curve_title(k) for k in metric_keys}, labels=VARIANT_LABELS)
            md += ["", "## Training curves", "", "![training curves](plots/training_curves.png)"]

    # --- knowledge projection
    try:
        from llm4msr_tf.knowledge import load as load_knowledge

        kb = load_knowledge(kdir)
        users = kb.tables["user"]
        scen_kv = kb.tables["scenario"]
        order = [scen_kv.index(str(i)) for i in range(len(scen))]
        groups = _user_main_scenario(data, list(users.keys))
        report.plot_knowledge_projection(
            users.vectors, groups, scen_kv.vectors[order], names,
            os.path.join(plots, "knowledge_pca.png"),
            title=f"{kb.llm} knowledge vectors ({kb.dim}-d), PCA to 2-D")
        md += ["", "## Knowledge vectors", "",
               f"{len(users.keys)} user and {len(scen_kv.keys)} scenario vectors from `{kb.llm}` "
               f"({kb.dim}-d, pooling `{kb.pooling}`), projected together; users are coloured by "
               "the scenario they interact with most.", "",
               "![knowledge PCA](plots/knowledge_pca.png)"]
    except Exception as e:  # the report must still be written; say what is missing
        log.warning("knowledge projection skipped: %s", e)
        md += ["", "## Knowledge vectors", "", f"(projection not available: {e})"]

    # --- interpretability
    if edir and os.path.exists(os.path.join(edir, "manifest.json")):
        md += ["", "## What the LLM says (interpretability)", "",
               "Prompts built from the training split and the text the frozen LLM generated for "
               "them (greedy; the knowledge vectors above pool the same hidden states)."]
        md += _explanations(out, edir)

    # --- what the knowledge says and changes (llm4msr explain)
    if getattr(cfg, "explain_views", True) and "llm4msr" in runs:
        md += [""] + explain_sections(out, runs["llm4msr"], edir)

    # --- serving
    md += ["", "## Serving", ""]
    if pushed:
        for v, p in pushed.items():
            md.append(f"- {VARIANT_LABELS[v]}: `{p}`" if p else f"- {VARIANT_LABELS[v]}: not pushed")
            sm = serving_metrics.get(v, {})
            if "examples_per_second" in sm:
                md[-1] += (f" — serving check on {sm['examples']} test examples, "
                           f"{sm['examples_per_second']:.0f} examples/s in-process")
        base = os.path.dirname(next((p for p in pushed.values() if p), "") or "")
        md += ["", "Serve with TF Serving (see `serving/` and the README):", "", "```",
               f"docker run -p 8501:8501 -v {os.path.dirname(base) or '<serving dir>'}:/models "
               f"-e MODEL_NAME={os.path.basename(base) or '<name>'} tensorflow/serving",
               "```"]
    else:
        md.append("The TFX pipeline was skipped (`--no-tfx`); no SavedModel was pushed.")

    paths = report.write_report(out, "\n".join(md) + "\n", title="LLM4MSR demo report")
    return {"headline": headline, "report": paths, "plots": sorted(os.listdir(plots))}


def explain_sections(out: str, model_dir: str, edir: Optional[str] = None) -> List[str]:
    """The `llm4msr explain` views of the LLM4MSR run as report sections (files in ``out/explain``).

    Never fails the report: a view that cannot be computed is replaced by a line saying why.
    """
    try:
        from llm4msr_tf.explain import ExplainConfig
        from llm4msr_tf.explain.run import markdown_sections, run_explain

        res = run_explain(ExplainConfig(model=model_dir, out=os.path.join(out, "explain"), name="explain",
                                        texts=edir or "", user_pairs=5000))
        return markdown_sections(res, image_prefix="explain/")
    except Exception as e:  # the report must still be written; say what is missing
        log.warning("explain views skipped: %s", e)
        return ["## What the knowledge says and changes", "", f"(explain views not available: {e})"]


def _pick(scenarios: Mapping[str, Any], sid: int, names: List[str]) -> Mapping[str, Any]:
    for k in (str(sid), names[sid]):
        if k in scenarios:
            return scenarios[k]
    return {}


def _curve_metrics(hist: Mapping[str, Mapping[str, List[float]]]) -> List[str]:
    keys = set().union(*[set(h) for h in hist.values()])
    picks = [k for k in ("loss", "val_loss", "val_auc") if k in keys]
    return picks or sorted(keys)[:2]


def _curve_title(k: str) -> str:
    return {"loss": "training loss", "val_loss": "validation loss",
            "val_auc": "validation AUC"}.get(k, k)


def _explanations(out: str, edir: str) -> List[str]:
    from llm4msr_tf.data.prompt_format import read_prompts
    from llm4msr_tf.knowledge.store import iter_records

    prompts = {(p.key_type, p.key): p.prompt for p in read_prompts(os.path.join(out, "data"))}
    md: List[str] = []
    for rec in sorted(iter_records(edir), key=lambda r: (r.key_type != "scenario", r.key)):
        md += ["", f"### {rec.key_type} `{rec.key}`", "", "Prompt:", "", "```",
               prompts.get((rec.key_type, rec.key), "(prompt not found)"), "```", "",
               "Generated:", "", "> " + (rec.text.strip().replace("\n", "\n> ") or "(empty)")]
    return md
