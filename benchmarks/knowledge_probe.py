"""Knowledge screen: which prompt variant, LLM and pooling give user vectors that know something?

For each run (scenario definition x prompt variant x LLM x pooling) this prepares the dataset
(`llm4msr prepare`, MovieLens with label rating > 3 and the seeded random 8:1:1 split of the
quality benchmark), encodes it (`llm4msr knowledge`), and runs `llm4msr knowledge-report`'s
diagnostics (`llm4msr_tf.knowledge.diagnostics`): spread across keys of both tables and the
cross-validated ridge probe from user vectors to eval-split facts beside random vectors, a
bag-of-liked-items vector, the user's training statistics, and ids+counts with and without the
knowledge. Everything is cached in the work dir and resumes: existing DATA_DIRs, knowledge dirs
and reports are reused, and the result JSON is rewritten after every run. Every run records the
exact commands that produced its data, knowledge and report.

Usage::

    python -m benchmarks.knowledge_probe --dataset ml-100k --work-dir W \\
        [--runs genre/default/minilm/auto genre/noid/gemma3-270m/auto ...] [--no-encode]

A run is SCENARIO_BY/PROMPT_VARIANT/LLM/POOLING with PROMPT_VARIANT one of `PROMPT_VARIANTS`.
With `--no-encode` runs whose knowledge is not in the work dir are listed as missing instead of
encoded (the LLM is the slow part: gemma3-270m over ML-100K is ~15 min on 2 busy cores).
"""
import argparse
import logging
import os
import shlex
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

log = logging.getLogger("benchmarks.knowledge_probe")

PROMPT_VARIANTS: Dict[str, List[str]] = {
    "default": [],
    "noid": ["--no-user-prompt-id"],
    "chars1200": ["--user-prompt-max-chars", "1200"],
    "noid-chars1200": ["--no-user-prompt-id", "--user-prompt-max-chars", "1200"],
    # The sparse regime: a seeded 20% of each user's training rows (eval/test unchanged).
    "sparse20": ["--train-keep-fraction", "0.2", "--train-keep-seed", "0"],
    "noid-chars1200-sparse20": ["--no-user-prompt-id", "--user-prompt-max-chars", "1200",
                                "--train-keep-fraction", "0.2", "--train-keep-seed", "0"],
}
DATASET_PREFIX = {"ml-100k": "ml100k", "ml-1m": "ml1m"}
DEFAULT_RUNS = {
    # The screen as run (gemma3-270m is ~3-25 min per variant on 2 shared cores, so not every
    # combination): every prompt variant with minilm, the main ones with gemma last and mean.
    "ml-100k": [
        "genre/default/minilm/auto", "genre/default/gemma3-270m/auto", "genre/default/gemma3-270m/mean",
        "genre/noid/minilm/auto", "genre/noid/gemma3-270m/auto", "genre/noid/gemma3-270m/mean",
        "genre/chars1200/minilm/auto", "genre/chars1200/gemma3-270m/auto", "genre/chars1200/gemma3-270m/mean",
        "genre/noid-chars1200/minilm/auto",
        "genre/sparse20/minilm/auto", "genre/sparse20/gemma3-270m/mean", "genre/noid-chars1200-sparse20/minilm/auto",
        "age/default/minilm/auto", "age/default/gemma3-270m/auto", "age/noid/minilm/auto",
        "age/noid/gemma3-270m/auto", "age/chars1200/minilm/auto",
    ],
    # gemma over ML-1M's 6,040 prompts takes ~30+ min on 2 cores: minilm only by default.
    "ml-1m": ["genre/default/minilm/auto", "genre/noid-chars1200/minilm/auto", "genre/sparse20/minilm/auto"],
}


def _cmd(args: Sequence[str]) -> str:
    return " ".join(["llm4msr"] + [shlex.quote(a) for a in args])


def prepare_args(dataset: str, scenario_by: str, variant: str, out: str, source: str) -> List[str]:
    """`llm4msr prepare` argv of one data variant (the quality benchmark's split and label)."""
    if variant not in PROMPT_VARIANTS:
        raise common.UserInputError(f"prompt variant {variant!r} is unknown; use one of {list(PROMPT_VARIANTS)}")
    return ["prepare", "--dataset", "movielens", "--source", source, "--scenario-by", scenario_by,
            "--label-threshold", "3", "--split", "random", "--seed", "42", "--no-progress", "--out", out,
            *PROMPT_VARIANTS[variant]]


def parse_run(run: str) -> Dict[str, str]:
    """SCENARIO_BY/PROMPT_VARIANT/LLM/POOLING -> dict (clear error on a malformed name)."""
    parts = run.split("/")
    if len(parts) != 4 or parts[0] not in ("age", "genre") or parts[1] not in PROMPT_VARIANTS:
        raise common.UserInputError(
            f"run {run!r} is not SCENARIO_BY/PROMPT_VARIANT/LLM/POOLING (scenario_by age|genre, "
            f"variant one of {list(PROMPT_VARIANTS)}), e.g. genre/noid/minilm/auto")
    return dict(zip(("scenario_by", "prompt", "llm", "pooling"), parts))


def run_one(dataset: str, spec: Dict[str, str], args: argparse.Namespace) -> Dict[str, Any]:
    """Prepare, encode (unless --no-encode) and diagnose one run; returns its record."""
    from llm4msr_tf.config import default_data_root
    from llm4msr_tf.knowledge import diagnostics as D
    from llm4msr_tf.utils.io import read_json, write_json

    prefix = DATASET_PREFIX[dataset]
    data_name = f"{prefix}-{spec['scenario_by']}-{spec['prompt']}"
    data_dir = os.path.join(args.work_dir, "data", data_name)
    know_dir = os.path.join(args.work_dir, "know", f"{data_name}--{spec['llm']}-{spec['pooling']}")
    source = os.path.join(args.data_root or default_data_root(common.PROJECT_ROOT), dataset)
    p_args = prepare_args(dataset, spec["scenario_by"], spec["prompt"], data_dir, source)
    k_args = ["knowledge", "--data", data_dir, "--out", know_dir, "--llm", spec["llm"], "--pooling", spec["pooling"]]
    r_args = ["knowledge-report", "--knowledge", know_dir, "--data", data_dir, "--folds", str(args.folds),
              "--seed", str(args.seed)]
    rec: Dict[str, Any] = {**spec, "run": "/".join(spec[k] for k in ("scenario_by", "prompt", "llm", "pooling")),
                           "data_dir": data_dir, "knowledge_dir": know_dir,
                           "commands": {"prepare": _cmd(p_args), "knowledge": _cmd(k_args), "report": _cmd(r_args)}}
    if not os.path.exists(os.path.join(data_dir, "dataset.json")):
        common.run_cli(p_args, f"prepare {data_name}")
    if not os.path.exists(os.path.join(know_dir, "manifest.json")):
        if not args.encode:
            rec["status"] = "missing knowledge (run without --no-encode)"
            return rec
        t = time.time()
        common.run_cli(k_args, f"knowledge {spec['llm']} on {data_name}")
        rec["encode_seconds"] = round(time.time() - t, 1)
    cache = os.path.join(args.work_dir, "reports", os.path.basename(know_dir) + f"-f{args.folds}-s{args.seed}.json")
    if os.path.exists(cache) and not args.recompute:
        report = read_json(cache)
        report["summary"] = D.summarise(report)  # summaries may gain fields; the fits are cached
    else:
        cfg = D.DiagnosticsConfig(knowledge=know_dir, data=data_dir, folds=args.folds, seed=args.seed)
        t = time.time()
        report = D.knowledge_report(know_dir, data_dir, cfg)
        report["report_seconds"] = round(time.time() - t, 1)
        write_json(cache, report)
    manifest = read_json(os.path.join(know_dir, "manifest.json"))
    dataset_json = read_json(os.path.join(data_dir, "dataset.json"))
    rec["prompts"] = dataset_json.get("config", {}).get("prompts")
    rec["knowledge_seconds"] = manifest.get("seconds")
    rec["status"] = "ok"
    rec["summary"] = report["summary"]
    rec["report"] = slim(report)
    return rec


def slim(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report without per-fold alpha lists (their median per target stays): keeps the JSON small."""
    import copy

    import numpy as np

    out = copy.deepcopy(report)
    for block in out.get("probe", {}).values():
        for per in (block.get("features", {}) if isinstance(block, dict) else {}).values():
            for res in per.values():
                res["alpha_rel_median"] = [float(np.median(a)) if a else None for a in res.pop("alpha_rel", [])]
    return out


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _pm(v: Optional[float], se: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:+.4f}" + (f" ± {se:.4f}" if se is not None else "")


def _f(v: Any, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(doc: Dict[str, Any]) -> str:
    """Summary tables of every run, then the per-target probe of the best run per scenario_by."""
    from llm4msr_tf.knowledge.diagnostics import to_markdown

    done = [r for r in doc["runs"] if r.get("status") == "ok"]
    lines = [f"# Knowledge probe on {doc['dataset']}", "",
             "Do the user knowledge vectors say anything about the user beyond ids and counts? Per run: spread "
             "of the user table across users, and the mean cross-validated R^2 (5 folds over users, ridge, alpha "
             "by exact leave-one-out) of a linear probe from the user's vector to facts about the user in the "
             "**eval** split (positive rate overall and per scenario, share of interactions per scenario and per "
             "top genre, log activity), beside baselines under the same protocol. Knowledge and bag columns "
             "take the best of their transforms (raw / per-row LayerNorm / standardised; named in the JSON); "
             "`ids+counts` = bag-of-liked-items + training statistics; `+knowledge` adds the knowledge block, "
             "and `gain` is what the knowledge adds beyond ids+counts. `train R^2` probes the training-split "
             "facts, i.e. whether the vector encodes what its own prompt says.", ""]
    key = ["scenarios", "prompt", "llm", "pooling"]
    rows = []
    for r in done:
        s = r["summary"]
        sp = r["report"]["spread"]["user"]["knowledge"]["raw"]
        rows.append([r["scenario_by"], r["prompt"], r["llm"], r["pooling"], (r.get("prompts") or {}).get("user_mean_chars"),
                     _f(s.get("user_mean_cosine")), _f(s.get("user_mean_cosine_layernorm")),
                     _f(s.get("user_variance_fraction_across_keys"), 4), _f(s.get("user_effective_dim"), 1),
                     sp["dims_for_90pct_variance"]])
    for row in rows:
        row[4] = _f(row[4], 0) if isinstance(row[4], float) else "-"
    lines += ["## User table spread across users", "",
              common.markdown_table(key + ["prompt chars", "mean cos", "mean cos after LayerNorm",
                                           "var. fraction across users", "eff. dim (PR)", "dims 90% var"], rows)]
    rows = []
    for r in done:
        s = r["summary"]

        def g(feat, group=""):
            return _f(s.get(f"eval_{group + '_' if group else 'best_'}r2/{feat}"))

        rows.append([r["scenario_by"], r["prompt"], r["llm"], r["pooling"],
                     g("knowledge"), g("knowledge", "rate"), g("knowledge", "mix"), g("knowledge", "activity"),
                     g("random"), g("bag_of_liked_items"), g("bag_of_liked_items", "rate"),
                     g("train_stats"), g("train_stats", "rate"), g("ids_counts"), g("ids_counts+knowledge"),
                     _pm(s.get("eval_r2_gain_beyond_ids_counts"), s.get("eval_r2_gain_beyond_ids_counts_se")),
                     _pm(_diff(s.get("eval_best_r2/knowledge"), s.get("eval_best_r2/bag_of_liked_items")),
                         s.get("eval_r2_knowledge_minus_bag_of_liked_items_se")),
                     _f(s.get("train_best_r2/knowledge"))])
    lines += ["## Probe on eval facts (cross-validated R^2; all = mean over every fact, rate = positive-rate "
              "facts, mix = scenario/genre shares, activity = log eval rows)", "",
              common.markdown_table(key + ["knowledge all", "knowledge rate", "knowledge mix", "knowledge activity",
                                           "random all", "bag all", "bag rate", "train stats all",
                                           "train stats rate", "ids+counts all", "+knowledge all",
                                           "gain beyond ids+counts (± SE)", "knowledge - bag (± SE)",
                                           "train-fact R^2 knowledge"], rows),
              "SE: standard error of the mean-over-facts difference from its 5 paired per-fold values (the same "
              "folds for every feature set).", ""]
    srows = []
    for r in done:
        sc = r["report"]["spread"].get("scenario", {}).get("knowledge", {}).get("raw")
        if sc:
            srows.append([r["scenario_by"], r["prompt"], r["llm"], r["pooling"], sc["keys"], _f(sc["mean_cosine"]),
                          _f(sc["mean_cosine_centred"]), _f(sc["variance_fraction_across_keys"], 4)])
    if srows:
        lines += ["## Scenario table spread", "",
                  common.markdown_table(["scenarios", "prompt", "llm", "pooling", "keys", "cos", "cos centred",
                                         "var across keys"], srows)]
    missing = [r for r in doc["runs"] if r.get("status") != "ok"]
    if missing:
        lines += ["Not run: " + ", ".join(f"`{r['run']}` ({r.get('status')})" for r in missing), ""]
    if doc.get("conclusion"):
        lines += ["## Reading", "", doc["conclusion"], ""]
    for sb in ("genre", "age"):
        cands = [r for r in done if r["scenario_by"] == sb and r["summary"].get("eval_best_r2/knowledge") is not None]
        if cands:
            best = max(cands, key=lambda r: r["summary"]["eval_best_r2/knowledge"])
            lines += [f"## Per-target detail of the best {sb} run: `{best['run']}`", "",
                      to_markdown(best["report"]).replace("## Knowledge diagnostics", "### Knowledge diagnostics"), ""]
    lines += ["## Commands", "", f"Benchmark: `{doc['command']}`", "",
              "Each run's exact `llm4msr prepare`, `llm4msr knowledge` and `llm4msr knowledge-report` commands "
              "are in the JSON (`runs[].commands`).", ""]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of the knowledge probe benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.knowledge_probe", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k", choices=sorted(DATASET_PREFIX))
    p.add_argument("--runs", nargs="*", default=None, help="SCENARIO_BY/PROMPT/LLM/POOLING (default: the screen)")
    p.add_argument("--work-dir", default=os.path.join(common.default_work_dir(), "knowledge_probe"))
    p.add_argument("--data-root", default="", help="folder holding ml-100k/ and ml-1m/ (default: shared data)")
    p.add_argument("--encode", action=argparse.BooleanOptionalAction, default=True,
                   help="run `llm4msr knowledge` for runs whose knowledge is missing")
    p.add_argument("--recompute", action="store_true", help="recompute cached reports")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="result name (default knowledge_probe_<dataset>)")
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    p.add_argument("--conclusion", default="", help="a paragraph of reading written into the Markdown")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the screen and write <name>.json and <name>.md."""
    args = parse_args(argv)
    common.setup()
    name = args.name or f"knowledge_probe_{DATASET_PREFIX[args.dataset]}"
    runs = [parse_run(r) for r in (args.runs if args.runs is not None else DEFAULT_RUNS[args.dataset])]
    doc: Dict[str, Any] = {"dataset": args.dataset, "work_dir": args.work_dir, "folds": args.folds,
                           "seed": args.seed, "runs": [], "conclusion": args.conclusion,
                           # Multi-threaded BLAS on oversubscribed cores made eigh ~6x slower here.
                           "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}
    for spec in runs:
        log.info("run %s", "/".join(spec.values()))
        doc["runs"].append(run_one(args.dataset, spec, args))
        doc = common.save_result(name, doc, "benchmarks.knowledge_probe", args.out_dir, argv)
        common.write_text(os.path.join(args.out_dir, f"{name}.md"), markdown(doc))
    print(f"wrote {os.path.join(args.out_dir, name)}.json/.md ({sum(r.get('status') == 'ok' for r in doc['runs'])} "
          f"of {len(runs)} runs done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
