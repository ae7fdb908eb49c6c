"""Markdown summary of every benchmark result and README's generated "Performance" section.

`python -m benchmarks.report` reads `benchmarks/results/*.json`, merges quality sweeps of the
same dataset and protocol (e.g. one run per knowledge source) into one table, writes
`benchmarks/results/README.md`, and replaces the text between ``<!-- perf:start -->`` and
``<!-- perf:end -->`` in the project README (appending the markers once if absent). Where the
README has ``<!-- zoo-llm:start -->`` / ``<!-- zoo-llm:end -->``, the backbone zoo's
"LLM4MSR on the zoo" table between them is rebuilt from `quality_ml1m_zoo.json` too. Only
those sections are touched.
"""
import argparse
import glob
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from benchmarks import common
from benchmarks.quality import PEER, aggregate, run_key
from benchmarks.quality import markdown as quality_markdown
from benchmarks.quality import plot as quality_plot
from llm4msr_tf.utils.io import read_json

log = logging.getLogger("benchmarks.report")
START, END = "<!-- perf:start -->", "<!-- perf:end -->"
ZOO_START, ZOO_END = "<!-- zoo-llm:start -->", "<!-- zoo-llm:end -->"
ZOO_RESULT = "quality_ml1m_zoo"
README = os.path.join(common.PROJECT_ROOT, "README.md")


# "lrs": a sweep with a learning-rate search is never merged with one at a fixed rate (patience
# also changed meaning with it: now the epochs without improvement before stopping).
PROTOCOL_KEYS = ("epochs", "patience", "batch_size", "embedding_dim", "split_method", "train_rows", "lrs")


def protocol(doc: Dict[str, Any]) -> tuple:
    """What must match for two quality sweeps' runs to be compared in one table."""
    return tuple(doc.get(k) for k in PROTOCOL_KEYS)


def merged_quality(results_dir: str) -> List[Dict[str, Any]]:
    """One quality document per dataset, runs of every quality_*.json of it combined.

    Only sweeps run under the same protocol (max epochs, patience, batch, split, ...) are
    merged: per dataset the newest sweep's protocol wins and older sweeps under another one are
    left out (logged and listed in ``superseded``), so a table never mixes, say, runs capped at
    10 epochs with runs that early-stopped freely.
    """
    docs: Dict[str, List[Dict[str, Any]]] = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "quality*.json"))):
        doc = read_json(path)
        if "runs" in doc:
            docs.setdefault(doc["dataset"], []).append(dict(doc, _file=os.path.basename(path)))
    by_dataset: Dict[str, Dict[str, Any]] = {}
    for dataset, group in docs.items():
        newest = max(group, key=lambda d: d.get("finished_utc", ""))
        cur = dict(newest, runs=[], llms=[], commands=[], superseded=[], sources=[])
        for doc in group:
            if protocol(doc) != protocol(newest):
                log.warning("quality: %s left out of the %s table (protocol %s, newest is %s)",
                            doc["_file"], dataset, protocol(doc), protocol(newest))
                cur["superseded"].append(doc["_file"])
                continue
            seen = {run_key(r) for r in cur["runs"]}
            cur["runs"] += [r for r in doc["runs"] if run_key(r) not in seen]
            cur["llms"] += [l for l in doc["llms"] if l not in cur["llms"]]
            cur["commands"].append(doc.get("command", ""))
            cur["sources"].append(doc["_file"])
        cur["seeds"] = sorted({r["seed"] for r in cur["runs"]})
        for doc in group:
            if doc["_file"] in cur["sources"]:
                for k, v in (doc.get("fusions") or {}).items():
                    cur.setdefault("fusions", {}).setdefault(k, v)
        cur["summary"] = aggregate(cur["runs"], cur["num_scenarios"], cur.get("search_seed", 0))
        order = {"none": 0, **{l: i + 1 for i, l in enumerate(cur["llms"])}, "random": 97, PEER: 98}
        cur["summary"].sort(key=lambda r: (r["backbone"], order.get(r["knowledge"], 99), r.get("fusion", "")))
        cur["command"] = " ; ".join(c for c in cur["commands"] if c)
        cur.pop("_file", None)
        by_dataset[dataset] = cur
    return list(by_dataset.values())


def losses(summary: List[Dict[str, Any]]) -> List[str]:
    """'backbone+llm ΔAUC' for every LLM4MSR variant whose mean test AUC is below its backbone alone."""
    return [f"{r['backbone']} + {_variant_label(r)} {r['delta_auc_vs_backbone']:+.4f}" for r in summary
            if r.get("delta_auc_vs_backbone") is not None and r["delta_auc_vs_backbone"] < 0
            and r["knowledge"] != "random"]


def _variant_label(row: Dict[str, Any]) -> str:
    f = row.get("fusion", "-")
    return row["knowledge"] + (f" ({f})" if f not in ("-", "default") else "")


def _variant(r: Dict[str, Any]) -> str:
    v = r.get("variant")
    return f"{r['llm']} ({v})" if v and v != "fp32" else r["llm"]


def knowledge_markdown(doc: Dict[str, Any]) -> str:
    """Prompts/s of every LLM, variant and batch size, and the Beam job's rate, as Markdown."""
    rows = [[_variant(r), str(p["batch_size"]), f"{p['prompts_per_s']:.2f}", f"{p['tokens_per_s']:.0f}",
             f"{p['fraction_of_matmul']:.2f}"] for r in doc["llms"] for p in r["sweep"]]
    rows += [[r["llm"], "1 (naive loop)", f"{r['naive_loop']['prompts_per_s']:.3f}", "", ""]
             for r in doc["llms"] if "naive_loop" in r]
    text = common.markdown_table(["LLM", "batch", "prompts/s", "tokens/s", "fraction of fp32 matmul rate"], rows)
    for b in doc.get("beam_job", []):
        frac = ""
        if "fraction_of_matmul_wall" in b:
            frac = (f" ({b['fraction_of_matmul_in_llm']:.2f} of the fp32 matmul rate in the LLM, "
                    f"{b['fraction_of_matmul_wall']:.2f} end to end)")
        text += (f"\nBeam job ({_variant(b)}): {b.get('prompts', '')} prompts, "
                 f"{b.get('prompts_per_s_wall', 0):.2f} prompts/s wall, "
                 f"{b.get('prompts_per_s_in_llm', 0):.2f} prompts/s in the LLM{frac}.\n")
    return text + f"\nCommand: `{doc.get('command', '')}`\n" + (f"\n{doc['note']}\n" if doc.get("note") else "")


def serving_markdown(doc: Dict[str, Any]) -> str:
    """Latency and throughput of the backbone's and LLM4MSR's SavedModels, as Markdown."""
    from benchmarks.serving import markdown as serving_md

    return serving_md(doc)


def _section(title: str, body: str) -> str:
    return f"### {title}\n\n{body}\n"


def build(results_dir: str = common.RESULTS_DIR) -> Dict[str, str]:
    """The full results Markdown and the short README section, from the JSON results."""
    full: List[str] = ["# Benchmark results\n",
                       "Generated by `python -m benchmarks.report` from the JSON files in this folder; "
                       "each JSON holds the exact command, machine and versions.\n"]
    short: List[str] = []
    tp = common.load_result("train_throughput", results_dir)
    if tp:
        from benchmarks.train_throughput import markdown as tp_md

        full.append(_section("Training throughput", tp_md(tp) + "\n![throughput](train_throughput.png)\n"))
        lines = []
        for s in tp["summary"]:
            if s.get("ratio_ours_over_peer") and s["knowledge"]:
                lines.append(f"{s['model']} {s['ours_examples_per_s']:,.0f} ex/s "
                             f"({s['ratio_ours_over_peer']:.2f}x torch-rechub's bare backbone)")
            elif s.get("ratio_ours_over_peer"):
                lines.append(f"{s['model']} {s['ours_examples_per_s']:,.0f} ex/s "
                             f"({s['ratio_ours_over_peer']:.2f}x torch-rechub)")
            else:
                lines.append(f"{s['model']} {s['ours_examples_per_s']:,.0f} ex/s")
        short.append(f"- **Training throughput** ({tp['dataset']}, batch {tp['batch_size']}, "
                     f"{tp['machine']['nproc']} cores, {tp['machine']['cpu_model']}): " + "; ".join(lines) + ".")
    for q in merged_quality(results_dir):
        stem = "quality_" + q["dataset"].replace("movielens-", "ml").replace("-", "")
        # One plot and table per dataset over every knowledge source. A table from one sweep
        # links the plot that sweep already wrote; only a split sweep gets a merged plot.
        merged_png = os.path.join(results_dir, f"{stem}_merged.png")
        own_png = os.path.splitext(q["sources"][0])[0] + ".png"
        if len(q["sources"]) == 1 and os.path.exists(os.path.join(results_dir, own_png)):
            png = own_png
            if os.path.exists(merged_png):  # a copy left from when the sweep was split
                os.remove(merged_png)
        else:
            png = os.path.basename(quality_plot(q, merged_png))
        full.append(_section(f"Quality on {q['dataset']}", quality_markdown(q)
                             + f"\n![test AUC]({png})\n"))
        best = {}
        for r in q["summary"]:
            best.setdefault(r["backbone"], []).append(r)
        parts = []
        for b, rs in best.items():
            alone = next((r for r in rs if r["knowledge"] == "none"), None)
            with_k = [r for r in rs if r["knowledge"] not in ("none", PEER, "random")]
            peer = next((r for r in rs if r["knowledge"] == PEER), None)
            peer_txt = f", {PEER} alone {peer['auc']['mean']:.4f}" if peer else ""
            if alone and with_k:
                deltas = ", ".join(
                    f"{_variant_label(r)} {r['delta_auc_vs_backbone']:+.4f}"
                    + (f" (vs random {r['delta_auc_vs_random']['mean']:+.4f})" if r.get("delta_auc_vs_random") else "")
                    for r in with_k if r.get("delta_auc_vs_backbone") is not None)
                parts.append(f"{b} {alone['auc']['mean']:.4f} (LLM4MSR ΔAUC: {deltas}{peer_txt})")
            elif alone:
                parts.append(f"{b} {alone['auc']['mean']:.4f}" + (f" ({peer_txt[2:]})" if peer else ""))
        lost = losses(q["summary"])
        verdict = (" LLM4MSR is below the backbone alone for: " + "; ".join(lost) + "." if lost
                   else " LLM4MSR beats the backbone alone for every backbone and knowledge source.")
        short.append(f"- **Test AUC** on {q['dataset']} ({q['train_rows']:,} training rows; up to {len(q['seeds'])} seed(s), at most {q['epochs']} "
                     f"epochs with early stopping on eval AUC; backbone alone and LLM4MSR's paired-seed ΔAUC "
                     f"per knowledge source): " + "; ".join(parts) + "." + verdict)
    mem = common.load_result("memory", results_dir)
    if mem:
        from benchmarks.memory import markdown as mem_md

        full.append(_section("Memory", mem_md(mem) + "\n![memory](memory.png)\n"))
        short.append("- **Peak RSS** (" + mem["dataset"] + "): " + "; ".join(
            f"{r['process']} {r['model']} {r['peak_rss_mib']:,.0f} MiB" for r in mem["results"]) + ".")
    kn = common.load_result("knowledge", results_dir)
    if kn and kn.get("llms"):
        full.append(_section("Knowledge stage", knowledge_markdown(kn)))
        short.append("- **Knowledge encoding** (frozen LLM, user prompts, CPU): " + "; ".join(
            f"{_variant(r)} {r['best']['prompts_per_s']:.2f} prompts/s at batch {r['best']['batch_size']} "
            + (f"({r['speedup_best_batched_vs_naive']:.1f}x a one-prompt-at-a-time loop)"
               if "speedup_best_batched_vs_naive" in r else f"({r['best']['fraction_of_matmul']:.2f} of the fp32 matmul rate)")
            for r in kn["llms"]) + ".")
    sv = common.load_result("serving", results_dir)
    if sv and sv.get("results"):
        full.append(_section("Serving", serving_markdown(sv)))
        short.append(f"- **Serving** (SavedModel `serving_default`, {sv['dataset']}): " + "; ".join(
            f"{r.get('model', sv['backbone'])} batch {r['batch_size']} p50 {r['backbone']['p50_ms']:.2f} ms alone vs "
            f"{r['llm4msr']['p50_ms']:.2f} ms with LLM4MSR ({r['llm4msr_overhead']['p50_ratio']:.2f}x)"
            for r in sv["results"]) + ".")
    note = common.DEFAULT_SHARED_NOTE
    if tp and tp["machine"].get("loadavg_at_start_1_5_15"):
        note += f"; the throughput run started at load average {tp['machine']['loadavg_at_start_1_5_15'][0]:.2f}"
    readme = ("Generated by `python -m benchmarks.report` (`llm4msr bench` runs everything); details, "
              "commands and plots in [benchmarks/results/README.md](benchmarks/results/README.md).\n\n"
              + ("\n".join(short) if short else "- no benchmark results yet: run `llm4msr bench`.")
              + f"\n\nTimings: {note}.\n")
    return {"full": "\n".join(full), "readme": readme}


def _pm(stat: Dict[str, float], signed: bool = False) -> str:
    """``.8146 ± .0004`` for an AUC, ``+0.0011 ± 0.0007`` for a difference."""
    if signed:  # a paired spread that rounds to zero at 4 decimals is shown as "< 0.0001", not 0
        return f"{stat['mean']:+.4f} ± " + (f"{stat['std']:.4f}" if stat["std"] >= 5e-5 else "< 0.0001")
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}".replace("0.", ".")


def zoo_llm_table(doc: Dict[str, Any]) -> Optional[str]:
    """README's "LLM4MSR on the zoo" block from a backbone-major zoo sweep (None: nothing done yet).

    A backbone gets a row once the backbone alone, LLM4MSR with the sweep's LLM and its random-vector
    control each have every seed of the sweep; the differences are paired by seed.
    """
    llm = (doc.get("llms") or [None])[0]
    seeds = len(doc.get("seeds") or [])
    if llm is None or not seeds:
        return None
    by: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for r in doc.get("summary", []):
        if r.get("library", "llm4msr_tf") == "llm4msr_tf" and len(r.get("seeds", [])) >= seeds:
            by.setdefault(r["backbone"], {})[r["knowledge"]] = r
    rows, todo = [], []
    for b in doc.get("backbones", []):
        got = by.get(b, {})
        alone, real, rnd = got.get("none"), got.get(llm), got.get("random")
        if not (alone and real and rnd and real.get("delta_auc_vs_alone") and real.get("delta_auc_vs_random")):
            todo.append(f"`{b}`")
            continue
        rows.append(f"| `{b}` | {_pm(alone['auc'])} | {_pm(real['auc'])} | {_pm(rnd['auc'])} | "
                    f"{_pm(real['delta_auc_vs_alone'], True)} | {_pm(real['delta_auc_vs_random'], True)} |")
    if not rows:
        return None
    left = f"still to run: {', '.join(todo)}" if todo else "every backbone of the sweep done"
    names = ", ".join(f"`{n}`" for n in doc.get("scenario_names", []))
    return (f"LLM4MSR on the zoo, {doc.get('dataset', '?')} with scenarios {names} "
            f"({llm} knowledge, default fusion, the protocol above: {seeds} seeds, eval-chosen rate, "
            f"random-vector control at the real knowledge's rate; `{ZOO_RESULT}.md`, generated by "
            f"`python -m benchmarks.report`; backbones run one at a time with `--backbone-major`, {left}):\n\n"
            "| backbone | alone | + LLM4MSR | + random vectors | LLM4MSR − alone | LLM4MSR − random |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _replace_block(text: str, start: str, end: str, body: str) -> Optional[str]:
    """`text` with what lies between the markers replaced by `body`; None when a marker is missing."""
    if start not in text or end not in text:
        return None
    a, rest = text.split(start, 1)
    _, b = rest.split(end, 1)
    return a + f"{start}\n{body.rstrip()}\n{end}" + b


def update_readme(section: str, readme_path: str = README, zoo: Optional[str] = None) -> bool:
    """Replace the marked Performance section of README.md (and the zoo table, where marked and
    given); returns True when it changed."""
    text = open(readme_path, encoding="utf-8").read() if os.path.exists(readme_path) else ""
    new = _replace_block(text, START, END, section)
    if new is None:
        new = text.rstrip() + "\n\n## Performance\n\n" + f"{START}\n{section.rstrip()}\n{END}" + "\n"
    if zoo:
        new = _replace_block(new, ZOO_START, ZOO_END, zoo) or new
    if new == text:
        return False
    common.write_text(readme_path, new)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: `python -m benchmarks.report [--results-dir D] [--readme PATH | --no-readme]`."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default=common.RESULTS_DIR)
    p.add_argument("--readme", default=README)
    p.add_argument("--no-readme", action="store_true", help="only write results/README.md")
    args = p.parse_args(argv)
    out = build(args.results_dir)
    common.write_text(os.path.join(args.results_dir, "README.md"), out["full"])
    if not args.no_readme:
        zoo = common.load_result(ZOO_RESULT, args.results_dir)
        update_readme(out["readme"], args.readme, zoo=zoo_llm_table(zoo) if zoo else None)
    print(out["readme"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
