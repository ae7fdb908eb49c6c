"""`run_explain`: the scenario map, what the knowledge changes and user cards, written as JSON + Markdown/HTML + PNGs.

This is what ``llm4msr explain`` runs and what the demo's report embeds (`markdown_sections`).
"""
import logging
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from llm4msr_tf import report
from llm4msr_tf.config import to_dict
from llm4msr_tf.explain.config import ExplainConfig
from llm4msr_tf.utils.io import UserInputError, read_json, write_json

log = logging.getLogger(__name__)

FORM_STATIC = {
    "lowrank": "each user meta layer without its generated weights (act(x·W0 + b0) + x; with zero_init "
               "x + α·act(x·W0 + b0))",
    "gate": "the gate set to 1 (the embeddings pass unchanged)",
    "feature": "the appended user knowledge replaced by the default (unknown-user) vector, the scenario half "
               "of the appended condition kept",
}


def _model_config(model_dir: str) -> Dict[str, Any]:
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise UserInputError(f"{model_dir} holds no config.json: pass a MODEL_DIR written by `llm4msr train`")
    return read_json(path)


def _label(kb: Any, seen: Dict[str, int]) -> str:
    name = str(kb.llm)
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} ({seen[name]})"


def _auto_users(dec: Any, segments: Any, n: int) -> List[str]:
    """The user the knowledge moves most (mean |dp| over >= 5 rows) and one with the median history."""
    if n <= 0 or dec is None or dec.empty:
        return []
    from llm4msr_tf.explain.changes import LEVELS, _sigmoid

    dp = np.abs(_sigmoid(dec["logit"].to_numpy()) - _sigmoid(dec[LEVELS["knowledge"]].to_numpy()))
    per = dec.assign(dp=dp).groupby("user")["dp"].agg(["mean", "size"])
    per = per[per["size"] >= 5] if (per["size"] >= 5).any() else per
    picks = [str(per["mean"].idxmax())]
    if segments is not None and n > 1:
        hist = segments.reindex(per.index)["history"].dropna()
        if len(hist):
            med = float(hist.median())
            order = (hist - med).abs().sort_values(kind="stable")
            picks += [str(u) for u in order.index if str(u) not in picks][: n - 1]
    return picks[:n]


def run_explain(cfg: ExplainConfig) -> Dict[str, Any]:
    """Compute every explain view and write ``OUT/NAME.{json,md,html}`` and ``OUT/NAME_*.png``.

    Args:
        cfg: what to explain (`ExplainConfig`).

    Returns:
        The dict written to ``NAME.json``: ``config``, ``dataset``, ``scenario_names``,
        ``relations``, ``scenario_map`` and ``user_map`` per LLM, ``model``, ``changes``, ``cards``,
        ``plots``, ``seconds``.
    """
    from llm4msr_tf.data.prompt_format import read_prompts
    from llm4msr_tf.data.reader import read_split
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.explain import plots
    from llm4msr_tf.explain.card import user_card
    from llm4msr_tf.explain.changes import (LEVELS, _sigmoid, bucket_labels, decompose_split, knowledge_changes,
                                            user_segments)
    from llm4msr_tf.explain.scenario_map import data_relations, liked_items, scenario_map, user_map
    from llm4msr_tf.knowledge import load as load_knowledge

    t0 = time.time()
    if cfg.threshold < 0 or cfg.threshold >= 1:
        raise UserInputError(f"--threshold is a probability difference in [0, 1), got {cfg.threshold}")
    bucket_labels(cfg.history_buckets)  # checks the edges
    if not cfg.name or os.sep in cfg.name:
        raise UserInputError(f"--name must be a plain file stem, got {cfg.name!r}")
    mcfg = _model_config(cfg.model) if cfg.model else {}
    data = cfg.data or mcfg.get("train", {}).get("data") or ""
    if not data:
        raise UserInputError("pass --data DATA_DIR (or --model MODEL_DIR, whose training data is used)")
    model_kdir = mcfg.get("train", {}).get("knowledge") if mcfg.get("model", {}).get("use_knowledge", True) else None
    kdirs = list(cfg.knowledge) or ([model_kdir] if model_kdir else [])
    if not kdirs:
        raise UserInputError("pass --knowledge KNOWLEDGE_DIR (or --model MODEL_DIR trained with knowledge)")
    for k in kdirs:
        if not os.path.isdir(k):
            raise UserInputError(f"--knowledge {k}: no such directory (a KNOWLEDGE_DIR from `llm4msr knowledge`)")
    if cfg.labels and len(cfg.labels) != len(kdirs):
        raise UserInputError(f"--labels names {len(cfg.labels)} knowledge dir(s) but --knowledge has {len(kdirs)}: "
                             "give one label per --knowledge dir")
    if len(set(cfg.labels)) != len(cfg.labels):
        raise UserInputError(f"--labels must be distinct, got {list(cfg.labels)}")
    spec = DatasetSpec.load(data)
    names = spec.scenario_names()
    S = spec.num_scenarios
    log.info("reading the training split of %s", data)
    train = read_split(data, "train")
    kbs = [load_knowledge(k) for k in kdirs]
    model = None
    if cfg.model:
        from llm4msr_tf.models import load_model

        model = load_model(cfg.model)
    normalize = cfg.normalize or (getattr(model.scenario_knowledge, "normalize", "") if model is not None
                                  and model.scenario_knowledge is not None else "") or "center"
    plots_written: List[str] = []
    out_dir = os.path.abspath(cfg.out)
    os.makedirs(out_dir, exist_ok=True)

    def png(suffix: str) -> str:
        return os.path.join(out_dir, f"{cfg.name}_{suffix}.png")

    # --- scenario map and user map
    relations = data_relations(train, S, spec.user_feature, spec.item_feature, spec.scenario_feature, spec.label)
    seen: Dict[str, int] = {}
    labels = [_label(kb, seen) for kb in kbs] if not cfg.labels else [str(x) for x in cfg.labels]
    maps = {lab: scenario_map(kb, relations, S, normalize) for lab, kb in zip(labels, kbs)}
    liked = liked_items(train, spec.user_feature, spec.item_feature, spec.label)
    umaps = {lab: user_map(kb, liked, normalize, pairs=cfg.user_pairs, seed=cfg.seed) for lab, kb in zip(labels, kbs)}
    plots_written.append(plots.plot_scenario_map(names, relations, maps, png("scenario_map")))
    if any(u.get("by_cosine_decile") for u in umaps.values()):
        plots_written.append(plots.plot_user_map(umaps, png("user_map")))

    # --- what the knowledge changes
    segments = user_segments(train, spec.user_feature, spec.scenario_feature, cfg.history_buckets)
    card_kb = kbs[0]
    if model_kdir:
        for k, kb in zip(kdirs, kbs):
            if os.path.abspath(k) == os.path.abspath(model_kdir):
                card_kb = kb
                break
        else:
            card_kb = load_knowledge(model_kdir)
    dec = changes = model_info = None
    if model is not None:
        log.info("decomposing the %s split", cfg.split)
        dec = decompose_split(model, spec, cfg.split, cfg.batch_size, limit=cfg.limit or None, kb=card_kb)
        changes = knowledge_changes(dec, segments, names, cfg.threshold, cfg.history_buckets)
        sum_err = float(np.abs(dec["logit"] - (dec["backbone_logit"] + dec["scenario_logit"])).max())
        m = mcfg.get("model", {})
        model_info = {"dir": os.path.abspath(cfg.model), "backbone": m.get("backbone"),
                      "use_knowledge": bool(model.use_knowledge), "user_meta_form": model.user_meta_form,
                      "zero_init": bool(model.zero_init), "use_user_meta": bool(model.use_user_meta),
                      "use_scenario_meta": bool(model.use_scenario_meta),
                      "knowledge_normalize": m.get("knowledge_normalize"), "knowledge": model_kdir,
                      "knowledge_llm": getattr(card_kb, "llm", None), "split": cfg.split, "rows": int(len(dec)),
                      "max_abs_sum_error": sum_err}
        metrics_path = os.path.join(cfg.model, "metrics.json")
        if os.path.exists(metrics_path):
            model_info["test_auc"] = read_json(metrics_path).get("test", {}).get("overall", {}).get("auc")
        plots_written.append(plots.plot_knowledge_changes(changes, png("changes")))
        dp = _sigmoid(dec["logit"].to_numpy()) - _sigmoid(dec[LEVELS["knowledge"]].to_numpy())
        sid = dec["scenario"].to_numpy()
        plots_written.append(plots.plot_dp_histogram({n: dp[sid == s] for s, n in enumerate(names) if (sid == s).any()},
                                                     cfg.threshold, png("dp_hist")))

    # --- user cards
    prompts = {p.key: p.prompt for p in read_prompts(data, "user")}
    texts: Optional[Dict[str, str]] = None
    if cfg.texts:
        tkb = load_knowledge(cfg.texts)
        texts = {k: t for k, t in zip(tkb.tables["user"].keys, tkb.tables["user"].texts) if t}
    users = list(cfg.users) or _auto_users(dec, segments, cfg.auto_users) or list(prompts)[: max(cfg.auto_users, 0)]
    cards = [user_card(u, spec, train, prompts, kb=card_kb, model=model, dec=dec, texts=texts,
                       nearest=cfg.nearest, top_k=cfg.top_items, normalize=normalize, threshold=cfg.threshold,
                       liked=liked) for u in users]

    result: Dict[str, Any] = {
        "config": to_dict(cfg), "dataset": spec.name, "data": os.path.abspath(data), "scenario_names": names,
        "normalize": normalize, "relations": {k: v.tolist() for k, v in relations.items()},
        "scenario_map": maps, "user_map": umaps, "model": model_info, "changes": changes, "cards": cards,
        "plots": [os.path.basename(p) for p in plots_written], "seconds": round(time.time() - t0, 1),
    }
    md = "\n".join([f"# What the knowledge says and changes — {spec.name}", ""]
                   + markdown_sections(result) + [""])
    write_json(os.path.join(out_dir, f"{cfg.name}.json"), result)
    report.write_report(out_dir, md, title=f"LLM4MSR explain — {spec.name}", name=cfg.name)
    return result


# ---- Markdown ---------------------------------------------------------------------------------
def _f(v: Any, fmt: str = "{:.3f}") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(x) else fmt.format(x)


def _cut(text: Optional[str], n: int) -> str:
    t = " ".join(str(text or "").split())
    return (t[: n - 1] + "…" if len(t) > n else t).replace("|", "\\|")


def scenario_map_markdown(result: Mapping[str, Any], image_prefix: str = "") -> List[str]:
    """The scenario-map section (pairs table, rank correlations, user map) of an explain result."""
    names = result["scenario_names"]
    rel = result["relations"]
    maps = result["scenario_map"]
    name = result["config"]["name"]
    S = len(names)
    md = ["## Scenario map: does the LLM relate the scenarios as the data does?", "",
          f"Knowledge side: cosine similarity of the scenario knowledge vectors after `{result['normalize']}` "
          "normalisation (what the model's knowledge lookup applies). Data side, from the training split: "
          "Jaccard overlap of the scenarios' users and items, and the correlation of per-item / per-user "
          "positive rates over the items / users two scenarios share (n/a when they share none). "
          f"ρ is Spearman's rank correlation over the {S * (S - 1) // 2} scenario pairs"
          + (" — with 3 scenarios it can only be ±0.5 or ±1, so read it as whether the ordering of the pairs "
             "agrees, not as a test." if S <= 4 else "."), ""]
    header = ["pair"] + [f"knowledge cos {lab}" for lab in maps] + [k.replace("_", " ") for k in rel]
    rows = []
    for i in range(S):
        for j in range(i + 1, S):
            rows.append([f"{names[i]} – {names[j]}"] + [_f(m["knowledge"][i][j]) for m in maps.values()]
                        + [_f(rel[k][i][j]) for k in rel])
    md += [report.markdown_table(header, rows), ""]
    rows = [[lab] + [f"{_f(m['rank_correlation'][k]['spearman'], '{:+.2f}')} ({m['rank_correlation'][k]['pairs']})"
                     for k in rel] for lab, m in maps.items()]
    md += ["Rank correlation of knowledge similarity with each data relation, ρ (pairs):", "",
           report.markdown_table(["LLM"] + [k.replace("_", " ") for k in rel], rows), "",
           f"![scenario map]({image_prefix}{name}_scenario_map.png)", ""]
    umaps = result.get("user_map") or {}
    if umaps:
        md += ["### User map: are users close in knowledge alike in the data?", "",
               "Over random user pairs: Spearman ρ between the users' knowledge cosine and the Jaccard overlap of "
               "the items they liked in training; and the mean overlap of each user with their nearest users by "
               "knowledge vs random pairs (lift > 1: the knowledge neighbours share tastes).", ""]
        rows = []
        for lab, u in umaps.items():
            lift = (u["neighbour_jaccard"] / u["random_jaccard"]) if u.get("random_jaccard") else float("nan")
            rows.append([lab, u["users"], u["pairs"], _f(u["spearman"], "{:+.3f}"), u.get("neighbours"),
                         _f(u["neighbour_jaccard"], "{:.4f}"), _f(u["random_jaccard"], "{:.4f}"), _f(lift, "{:.2f}x")])
        md += [report.markdown_table(["LLM", "users", "pairs", "ρ cosine vs liked overlap", "k",
                                      "overlap with k nearest", "overlap random pairs", "lift"], rows), ""]
        if f"{name}_user_map.png" in result.get("plots", []):
            md += [f"![user map]({image_prefix}{name}_user_map.png)", ""]
    return md


def changes_markdown(result: Mapping[str, Any], image_prefix: str = "") -> List[str]:
    """The "what the knowledge changes" section of an explain result (empty without a model)."""
    ch, mi = result.get("changes"), result.get("model")
    if not ch or not mi:
        return []
    name = result["config"]["name"]
    t = ch["threshold"]
    form = mi["user_meta_form"]
    md = ["## What the knowledge changes", "",
          f"Model: `{mi.get('backbone')}` + LLM4MSR, user meta form `{form}`"
          f"{' (zero_init)' if mi.get('zero_init') else ''}, knowledge `{mi.get('knowledge_llm')}` normalised "
          f"`{mi.get('knowledge_normalize')}`; {mi['rows']} {mi['split']} predictions"
          + (f", test AUC {_f(mi.get('test_auc'), '{:.4f}')}" if mi.get("test_auc") is not None else "") + ".", "",
          f"Per prediction, the model's probability is compared with the probability with a level switched off: "
          f"*user level* = {FORM_STATIC.get(form, form)}; *scenario level* = the scenario tower's logit removed "
          "(the backbone's logit alone); *both* = both off; *scen. knowledge* = every layer kept, each example "
          "reading the mean of the scenario vectors instead of its own scenario's (the tower's capacity stays, "
          "what the scenario knowledge tells the scenarios apart goes); *user → default* = every layer kept, "
          "the user's knowledge replaced by the unknown-user vector (what a new user would get; one definition "
          "for every user meta form). The model's logit is exactly backbone logit + "
          f"scenario-tower logit (largest difference on this split: {mi['max_abs_sum_error']:.1e}). "
          f"*Moved* = |Δp| > {t:.2f}; *toward label* = share of the moved predictions that moved towards their "
          "label; the AUCs are on the moved subset, with and without the knowledge.", "",
          "Read *without* as the same trained model with a part switched off, not as a model trained without "
          "knowledge: the backbone co-adapted with the knowledge paths, and the scenario tower (a network on the "
          "embeddings whose weights come from the scenario knowledge) carries its whole logit, not only what the "
          "knowledge adds. These numbers say where the knowledge paths act and whether their push goes the right "
          "way; whether the knowledge pays overall is the quality benchmark's comparison with the backbone alone "
          "and with random knowledge.", ""]
    lv = ch["levels"]
    rows = []
    for g, title in (("overall", None), ("scenario", "scenario"), ("history", "history"),
                     ("scenarios_used", "scenarios used")):
        order = (ch.get("order") or {}).get(g) or list(lv["knowledge"].get(g, {}))
        items = [("all", lv["knowledge"]["overall"])] if g == "overall" else [(k, lv["knowledge"][g][k]) for k in order]
        for k, s in items:
            label = "all" if g == "overall" else f"{title}: {k}"
            u = lv["user"]["overall"] if g == "overall" else lv["user"][g][k]
            sc = lv["scenario"]["overall"] if g == "overall" else lv["scenario"][g][k]
            sk = lv["scenario_knowledge"]["overall"] if g == "overall" else lv["scenario_knowledge"][g][k]
            ud = lv["user_default"]["overall"] if g == "overall" else lv["user_default"][g][k]
            rows.append([label, s["rows"], _f(s["share_moved"], "{:.1%}"), _f(u["share_moved"], "{:.1%}"),
                         _f(ud["share_moved"], "{:.1%}"), _f(sc["share_moved"], "{:.1%}"),
                         _f(sk["share_moved"], "{:.1%}"),
                         _f(s["mean_abs_dp"], "{:.4f}"),
                         _f(s["toward_label"], "{:.1%}"), _f(s["auc_moved_with"], "{:.4f}"),
                         _f(s["auc_moved_without"], "{:.4f}"),
                         _f(s["auc_moved_with"] - s["auc_moved_without"], "{:+.4f}")
                         if s["moved"] else "n/a",
                         _f(s["auc_with"], "{:.4f}"), _f(s["auc_without"], "{:.4f}")])
    md += [report.markdown_table(
        ["group", "rows", "moved (both)", "moved (user)", "moved (user → default)", "moved (scenario)",
         "moved (scen. knowledge)",
         "mean |Δp| (both)",
         "toward label", "AUC moved with", "AUC moved without", "Δ AUC moved", "AUC all with", "AUC all without"],
        rows), "",
        "History = the user's training interactions; scenarios used = distinct scenarios in the user's training "
        "rows. The AUC columns are for both levels; the JSON has every column for each level.", "",
        f"![what the knowledge changes]({image_prefix}{name}_changes.png)", "",
        f"![distribution of the moves]({image_prefix}{name}_dp_hist.png)", ""]
    return md


def _item_label(entry: Mapping[str, Any], extra: Sequence[str]) -> str:
    """``item (feature=value, ...)`` for a top-items table; floats to 3 significant digits."""
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return entry["item"] + (" (" + ", ".join(f"{k}={fmt(entry[k])}" for k in extra) + ")" if extra else "")


def cards_markdown(result: Mapping[str, Any]) -> List[str]:
    """The user cards of an explain result."""
    cards = result.get("cards") or []
    if not cards:
        return []
    md = ["## User cards", ""]
    for c in cards:
        md += [f"### User `{c['user']}`", ""]
        if not c["known"]:
            md += [f"**{c['message']}**", ""]
            continue
        if c["message"]:
            md += [f"*{c['message']}*", ""]
        if c["history"]:
            md.append("Training history: " + "; ".join(f"{s}: {h['rows']} rated, {h['positives']} liked"
                                                       for s, h in c["history"].items()) + ".")
            md.append("")
        md += ["Prompt:", "", "```", c["prompt"] or "(no prompt)", "```", ""]
        md += ["Generated by the LLM:", "", "> " + (_cut(c["generated"], 1200) if c["generated"] else
                                                    "(no generated text: the knowledge job ran without --generate)"), ""]
        if c["nearest"]:
            md += ["Nearest users by knowledge vector:", "",
                   report.markdown_table(["user", "cosine", "liked overlap (Jaccard)", "prompt"],
                                         [[n["user"], _f(n["cosine"]), _f(n["liked_overlap"], "{:.3f}"),
                                           _cut(n["prompt"], 180)] for n in c["nearest"]]), ""]
        eff = [e for e in c["effect"] if e["rows"]]
        if eff:
            md += [f"Effect on this user's {(result.get('model') or {}).get('split', '')} predictions (mean Δp = p with − "
                   "p without the level):", "",
                   report.markdown_table(["scenario", "rows", "liked", "mean p", "Δp both", "Δp user", "Δp user → default",
                                          "Δp scenario", "Δp scen. knowledge", "moved (both)"],
                                         [[e["scenario"], e["rows"], e["positives"], _f(e["mean_p"]),
                                           _f(e["mean_dp_knowledge"], "{:+.4f}"), _f(e["mean_dp_user"], "{:+.4f}"),
                                           _f(e.get("mean_dp_user_default"), "{:+.4f}"),
                                           _f(e["mean_dp_scenario"], "{:+.4f}"),
                                           _f(e.get("mean_dp_scenario_knowledge"), "{:+.4f}"), e["moved_knowledge"]]
                                          for e in eff]), ""]
        for t in c["top_items"]:
            if not t["with"]:
                continue
            md += [f"Top unseen items in *{t['scenario']}* ({t['candidates']} candidates; {t['shared']} of the top "
                   f"{len(t['with'])} shared):", ""]
            extra = [k for k in t["with"][0] if k not in ("item", "p_with", "p_without")]
            rows = []
            for r, (a, b) in enumerate(zip(t["with"], t["without"]), 1):
                rows.append([r, _item_label(a, extra), _f(a["p_with"]), _f(a["p_without"]),
                             _item_label(b, extra), _f(b["p_without"]), _f(b["p_with"])])
            md += [report.markdown_table(["#", "with knowledge", "p with", "p without", "without knowledge",
                                          "p without", "p with"], rows), ""]
    return md


def markdown_sections(result: Mapping[str, Any], image_prefix: str = "") -> List[str]:
    """Every explain section as Markdown lines (images linked as ``image_prefix + NAME_*.png``)."""
    return (scenario_map_markdown(result, image_prefix) + changes_markdown(result, image_prefix)
            + cards_markdown(result))


def summary_lines(result: Mapping[str, Any]) -> List[str]:
    """The one-screen summary ``llm4msr explain`` prints."""
    out = [f"explain {result['dataset']} ({result['seconds']:.0f}s): {os.path.join(result['config']['out'], result['config']['name'])}.md/.html/.json"]
    for lab, m in result["scenario_map"].items():
        rc = ", ".join(f"{k} {_f(v['spearman'], '{:+.2f}')}" for k, v in m["rank_correlation"].items())
        out.append(f"  scenario map {lab}: rank corr. with {rc}")
    for lab, u in (result.get("user_map") or {}).items():
        out.append(f"  user map {lab}: rho {_f(u['spearman'], '{:+.3f}')} over {u['pairs']} pairs; "
                   f"nearest-user overlap {_f(u['neighbour_jaccard'], '{:.4f}')} vs random {_f(u['random_jaccard'], '{:.4f}')}")
    ch = result.get("changes")
    if ch:
        for level in ("knowledge", "user", "user_default", "scenario", "scenario_knowledge"):
            s = ch["levels"][level]["overall"]
            out.append(f"  without {level:<18}: {s['share_moved']:.1%} of {s['rows']} moved > {ch['threshold']:.2f}; "
                       f"AUC moved {_f(s['auc_moved_with'], '{:.4f}')} with vs {_f(s['auc_moved_without'], '{:.4f}')} "
                       "without")
    for c in result.get("cards") or []:
        out.append(f"  card {c['user']}: " + ("known" if c["known"] else "unknown") + (f" ({c['message']})" if c["message"] else ""))
    return out
