"""Test quality of every backbone alone and with LLM4MSR (knowledge from each LLM), over seeds.

Protocol (the same for every model): the prepared dataset's fixed split (MovieLens: 3 age-group
scenarios, label rating > 3, seeded random 8:1:1), Adam 1e-3, batch 2048, at most `--epochs`
epochs, early stopping on the *eval* split's AUC with `--patience`, the best-eval weights
restored, then one pass over the *test* split: per-scenario and overall AUC and log loss
(sklearn). The test split is never used for any choice. Seeds change initialisation and batch
order only. The result JSON is rewritten after every run, so a partial sweep is kept.

With ``--peer`` the peer library torch-rechub trains its SharedBottom / MMOE / PLE (one task
tower per scenario, as Scenario-Wise-Rec does) on the same encoded arrays with the same
protocol, in a child process without TensorFlow; its rows are marked ``library: torch-rechub``.
"""
import argparse
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks.train_throughput import PEER_MODELS

log = logging.getLogger("benchmarks.quality")

NAME = "quality"
BACKBONES = ("shared_bottom", "mmoe", "ple", "star", "sar_net", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet",
             "pepnet", "hinet", "m3oe", "hamur")
OURS, PEER = "llm4msr_tf", "torch-rechub"
# Scenario-Wise-Rec's published per-domain AUCs were searched for (see report); `--peer` runs
# the peer library on our split instead.
SWR_REFERENCE = {
    "source": "Scenario-Wise Rec, arXiv 2412.17374, Table 3; https://github.com/Xiaopengli1/Scenario-Wise-Rec",
    "found": False,
    "note": "the per-domain table is only in the paper (arXiv 2412.17374, Table 3). None of the stored "
            "versions of the repository's README holds results, the paper PDF in its docs/ has no text layer, "
            "and only the opening of the arXiv HTML is retrievable offline, so no published numbers are shown "
            "rather than numbers recalled from memory. (In the repository's issue #3 a user reports "
            "reproducing most ML-1M models within a small margin of the paper, STAR and M2M well below it.) "
            "Its protocol also differs: zip code and first genre as features, 3 experts of [16] and towers "
            "of [8], batch 4096, 10 seeds. Instead, the torch-rechub rows are the peer library's models "
            "(the code Scenario-Wise-Rec builds on) trained on our split with our protocol",
}


def knowledge_dir(work_dir: str, dataset: str, llm: str) -> str:
    """Where `llm4msr knowledge --llm LLM` output for a benchmark dataset is kept."""
    return os.path.join(work_dir, "knowledge", f"{dataset}-{llm}")


def ensure_knowledge(work_dir: str, dataset: str, data_dir: str, llm: str) -> str:
    """KNOWLEDGE_DIR for (dataset, llm), running `llm4msr knowledge` when it is missing."""
    out = knowledge_dir(work_dir, dataset, llm)
    if not os.path.exists(os.path.join(out, "manifest.json")):
        common.run_cli(["knowledge", "--llm", llm, "--data", data_dir, "--out", out, "--batch-size", "32"],
                       f"knowledge {llm} on {dataset}")
    return out


def predict(model: Any, arrays: Dict[str, Any], batch_size: int = 8192) -> np.ndarray:
    """Probabilities [N] of the model over in-memory feature tensors."""
    import tensorflow as tf

    n = int(arrays["__n__"])
    fn = arrays.get("__predict_fn__")
    if fn is None:
        @tf.function(reduce_retracing=True)
        def fn(batch):
            return model(batch, training=False)["probability"]
    out = []
    for a in range(0, n, batch_size):
        batch = {k: v[a:a + batch_size] for k, v in arrays.items() if not k.startswith("__")}
        out.append(fn(batch).numpy().reshape(-1))
    return np.concatenate(out)


def metrics(y: np.ndarray, p: np.ndarray, sid: np.ndarray, num_scenarios: int) -> Dict[str, Any]:
    """Overall and per-scenario AUC and log loss (sklearn)."""
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    out: Dict[str, Any] = {"auc": float(roc_auc_score(y, p)), "log_loss": float(log_loss(y, p, labels=[0, 1])),
                           "per_scenario": {}}
    for s in range(num_scenarios):
        m = sid == s
        if m.sum() and len(np.unique(y[m])) == 2:
            out["per_scenario"][str(s)] = {"auc": float(roc_auc_score(y[m], p[m])),
                                           "log_loss": float(log_loss(y[m], p[m], labels=[0, 1])),
                                           "rows": int(m.sum())}
    return out


def train_one(spec: Any, backbone: str, kb: Any, seed: int, data: Dict[str, Dict[str, np.ndarray]],
              args: argparse.Namespace) -> Dict[str, Any]:
    """Train one model with early stopping on eval AUC; returns its test metrics and history."""
    import tensorflow as tf

    from benchmarks.train_throughput import build_ours, make_train_step

    tf.keras.utils.set_random_seed(seed)
    model = build_ours(spec, backbone, kb is not None, kb, args.embedding_dim)
    step = make_train_step(model, spec.label, jit=False)
    tr = data["train"]
    feats = {k: tf.constant(v) for k, v in tr.items()}
    n = len(tr[spec.label])
    rng = np.random.default_rng(seed)
    evald = {k: tf.constant(v) for k, v in data["eval"].items()}
    evald["__n__"] = len(data["eval"][spec.label])
    testd = {k: tf.constant(v) for k, v in data["test"].items()}
    testd["__n__"] = len(data["test"][spec.label])

    @tf.function(reduce_retracing=True)
    def pred_fn(batch):
        return model(batch, training=False)["probability"]

    evald["__predict_fn__"] = testd["__predict_fn__"] = pred_fn

    @tf.function
    def gather(idx):
        return {k: tf.gather(v, idx) for k, v in feats.items()}

    best, best_w, history, bad = -1.0, None, [], 0
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = rng.permutation(n)
        losses = []
        for b in range(n // args.batch_size):
            losses.append(float(step(gather(tf.constant(perm[b * args.batch_size:(b + 1) * args.batch_size])))))
        y_eval = data["eval"][spec.label]
        p_eval = predict(model, evald)
        m = metrics(y_eval, p_eval, data["eval"][spec.scenario_feature], spec.num_scenarios)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "eval_auc": m["auc"],
                        "eval_log_loss": m["log_loss"]})
        log.info("  epoch %d loss %.4f eval auc %.4f", epoch + 1, np.mean(losses), m["auc"])
        if m["auc"] > best:
            best, best_w, bad = m["auc"], model.get_weights(), 0
        else:
            bad += 1
            if bad > args.patience:
                break
    model.set_weights(best_w)
    p_test = predict(model, testd)
    test = metrics(data["test"][spec.label], p_test, data["test"][spec.scenario_feature], spec.num_scenarios)
    return {"test": test, "best_eval_auc": best, "epochs_run": len(history), "history": history,
            "train_seconds": round(time.time() - t0, 1), "params": int(model.count_params())}


def variant(run: Dict[str, Any]) -> str:
    """What a run compares: its knowledge source (ours: none or an LLM), or the peer library."""
    return PEER if run.get("library", OURS) == PEER else run["knowledge"]


def run_key(run: Dict[str, Any]) -> Any:
    """(seed, backbone, variant): one run of a sweep."""
    return run["seed"], run["backbone"], variant(run)


def aggregate(runs: List[Dict[str, Any]], num_scenarios: int) -> List[Dict[str, Any]]:
    """Mean and std over seeds per (backbone, variant), overall and per scenario."""
    groups: Dict[Any, List[Dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["backbone"], variant(r)), []).append(r)
    out = []
    for (b, k), rs in groups.items():
        row: Dict[str, Any] = {"backbone": b, "knowledge": k, "library": rs[0].get("library", OURS),
                               "seeds": [r["seed"] for r in rs]}
        for metric in ("auc", "log_loss"):
            v = np.array([r["test"][metric] for r in rs])
            row[metric] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
            for s in range(num_scenarios):
                vs = np.array([r["test"]["per_scenario"][str(s)][metric] for r in rs
                               if str(s) in r["test"]["per_scenario"]])
                if len(vs):
                    row.setdefault("per_scenario", {}).setdefault(str(s), {})[metric] = {
                        "mean": float(vs.mean()), "std": float(vs.std(ddof=1)) if len(vs) > 1 else 0.0}
        out.append(row)
    # Deltas vs our backbone alone use only the seeds both have (paired comparison).
    for r in out:
        if r["knowledge"] in ("none", PEER) or (r["backbone"], "none") not in groups:
            continue
        base = {x["seed"]: x["test"] for x in groups[(r["backbone"], "none")]}
        mine = {x["seed"]: x["test"] for x in groups[(r["backbone"], r["knowledge"])]}
        common_seeds = sorted(set(base) & set(mine))
        if common_seeds:
            r["delta_seeds"] = common_seeds
            r["delta_auc_vs_backbone"] = float(np.mean([mine[s]["auc"] - base[s]["auc"] for s in common_seeds]))
            r["delta_log_loss_vs_backbone"] = float(np.mean(
                [mine[s]["log_loss"] - base[s]["log_loss"] for s in common_seeds]))
    return out


def markdown(doc: Dict[str, Any]) -> str:
    """Per-scenario and overall test AUC / log loss (mean ± std over seeds) and delta vs backbone."""
    S = doc["num_scenarios"]
    names = doc.get("scenario_names") or [str(s) for s in range(S)]
    headers = ["backbone", "knowledge", "seeds"] + [f"AUC {n}" for n in names] + [
        "AUC all", "log loss all", "ΔAUC vs alone (paired seeds)"]
    rows = []
    for r in doc["summary"]:
        ps = r.get("per_scenario", {})
        label = f"{PEER} (backbone alone)" if r["knowledge"] == PEER else r["knowledge"]
        cells = [r["backbone"], label, str(len(r["seeds"]))]
        one = len(r["seeds"]) < 2  # no spread from a single seed: show the value alone

        def ms(m: Dict[str, float]) -> str:
            return f"{m['mean']:.4f}" if one else f"{m['mean']:.4f} ± {m['std']:.4f}"

        cells += [ms(ps[str(s)]["auc"]) if str(s) in ps else "-" for s in range(S)]
        cells += [ms(r["auc"]), ms(r["log_loss"]),
                  f"{r['delta_auc_vs_backbone']:+.4f}" if "delta_auc_vs_backbone" in r else "-"]
        rows.append(cells)
    head = (f"Test quality on {doc['dataset']} (split {doc['split_method']}; {doc['train_rows']:,} train rows), "
            f"max {doc['epochs']} epochs, early stopping on eval AUC (patience {doc['patience']}), "
            f"batch {doc['batch_size']}; mean ± std over seeds.\n\n")
    swr = doc.get("scenario_wise_rec_reference", {})
    tail = ""
    if doc["dataset"] == "movielens-1m":
        tail = f"\nScenario-Wise-Rec published ML-1M AUCs: {'see JSON' if swr.get('found') else swr.get('note', '')}.\n"
    if any(r["knowledge"] == PEER for r in doc["summary"]):
        tail += (f"\n{PEER} rows: the peer library's own SharedBottom / MMOE / PLE (one tower per scenario, "
                 "as Scenario-Wise-Rec builds them) trained on the same encoded split with the same widths, "
                 "batch, optimizer, epochs and early stopping.\n")
    return head + common.markdown_table(headers, rows) + tail + f"\nCommand: `{doc.get('command', '')}`\n"


def plot(doc: Dict[str, Any], path: str) -> str:
    """Bars of overall test AUC (mean ± std) per backbone, one bar per knowledge source."""
    from llm4msr_tf.report import pyplot

    plt = pyplot()

    summ = doc["summary"]
    backbones = [b for b in BACKBONES if any(r["backbone"] == b for r in summ)]
    variants = [v for v in ["none"] + doc["llms"] + [PEER] if any(r["knowledge"] == v for r in summ)]
    x = np.arange(len(backbones))
    w = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    lo, hi = 1.0, 0.5
    for i, v in enumerate(variants):
        means = [next((r["auc"]["mean"] for r in summ if r["backbone"] == b and r["knowledge"] == v), np.nan)
                 for b in backbones]
        stds = [next((r["auc"]["std"] for r in summ if r["backbone"] == b and r["knowledge"] == v), 0)
                for b in backbones]
        if not np.all(np.isnan(means)):
            lo, hi = min(lo, np.nanmin(means)), max(hi, np.nanmax(means))
        label = ("backbone alone" if v == "none" else f"{PEER} backbone alone" if v == PEER
                 else f"LLM4MSR, knowledge: {v}")
        ax.bar(x + (i - (len(variants) - 1) / 2) * w, means, w, yerr=stds, capsize=3, label=label)
    ax.set_ylim(max(0.5, lo - 0.02), hi + 0.01)
    ax.set_xticks(x)
    ax.set_xticklabels(backbones)
    ax.set_ylabel("test AUC (all scenarios), mean ± std")
    ax.set_title(f"Test AUC on {doc['dataset']}, up to {len(doc['seeds'])} seeds (higher is better)", fontsize=10)
    # Below the axes, two columns: four variants never overflow the figure or cover bars.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- peer: torch-rechub on the same split --------------------------------------------------------
def train_peer(spec: Any, backbone: str, seed: int, enc: Dict[str, Dict[str, np.ndarray]],
               args: argparse.Namespace) -> Dict[str, Any]:
    """torch-rechub's model under our protocol: Adam 1e-3, shuffled batches, early stopping on eval AUC."""
    import copy

    import torch

    from benchmarks.train_throughput import peer_model

    torch.manual_seed(seed)
    torch.set_num_threads(args.threads)
    scen, label = spec.scenario_feature, spec.label
    train = {k: torch.from_numpy(v) for k, v in enc["train"].items() if k != label}
    y = torch.from_numpy(enc["train"][label].astype(np.float32))
    model = peer_model(backbone, spec, args.embedding_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCELoss()
    rng = np.random.default_rng(seed)
    n = len(y)

    def scenario_prob(x: Dict[str, Any]) -> Any:
        return model(x).gather(1, x[scen].long().view(-1, 1)).view(-1)  # each row's scenario tower

    def predict_split(split: str) -> np.ndarray:
        model.eval()
        d, out = enc[split], []
        with torch.no_grad():
            for a in range(0, len(d[label]), 8192):
                out.append(scenario_prob({k: torch.from_numpy(v[a:a + 8192]) for k, v in d.items()
                                          if k != label}).numpy())
        model.train()
        return np.concatenate(out)

    best, best_state, history, bad = -1.0, None, [], 0
    t0 = time.time()
    model.train()
    for epoch in range(args.epochs):
        perm = torch.from_numpy(rng.permutation(n))
        losses = []
        for b in range(n // args.batch_size):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            loss = loss_fn(scenario_prob({k: v[idx] for k, v in train.items()}), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        m = metrics(enc["eval"][label], predict_split("eval"), enc["eval"][scen], spec.num_scenarios)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "eval_auc": m["auc"],
                        "eval_log_loss": m["log_loss"]})
        if m["auc"] > best:
            best, best_state, bad = m["auc"], copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad > args.patience:
                break
    model.load_state_dict(best_state)
    test = metrics(enc["test"][label], predict_split("test"), enc["test"][scen], spec.num_scenarios)
    return {"test": test, "best_eval_auc": best, "epochs_run": len(history), "history": history,
            "train_seconds": round(time.time() - t0, 1), "params": int(sum(p.numel() for p in model.parameters())),
            "seed": seed, "backbone": backbone, "knowledge": "none", "library": PEER,
            "peer_model": type(model).__name__, "threads": torch.get_num_threads()}


def run_peer(spec: Any, backbone: str, seed: int, data: Dict[str, Dict[str, np.ndarray]],
             args: argparse.Namespace) -> Dict[str, Any]:
    """`train_peer` in a child interpreter that never imports TensorFlow (fair to torch's threads)."""
    import json
    import subprocess
    import sys

    npz = os.path.join(args.work_dir, f"peer-quality-{spec.name}.npz")
    if not os.path.exists(npz):
        flat = {f"{split}/{k}": v for split, d in data.items() for k, v in common.encode_indices(spec, d).items()}
        np.savez(npz + ".tmp.npz", **flat)
        os.replace(npz + ".tmp.npz", npz)
    cmd = [sys.executable, "-m", "benchmarks.quality", "--peer-child", npz, "--data-dir-child", spec.data_dir,
           "--backbones", backbone, "--seeds", str(seed), "--epochs", str(args.epochs),
           "--patience", str(args.patience), "--batch-size", str(args.batch_size),
           "--embedding-dim", str(args.embedding_dim), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.PROJECT_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{PEER} child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_child_main(args: argparse.Namespace) -> int:
    """Child side of `run_peer`: load the encoded splits, train one peer model, print its JSON."""
    import json

    from llm4msr_tf.data.spec import DatasetSpec

    spec = DatasetSpec.load(args.data_dir_child)
    enc: Dict[str, Dict[str, np.ndarray]] = {}
    with np.load(args.peer_child) as z:
        for key in z.files:
            split, name = key.split("/", 1)
            enc.setdefault(split, {})[name] = z[key]
    print(json.dumps(train_peer(spec, args.backbones[0], args.seeds[0], enc, args)))
    return 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of the quality benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k", help="ml-100k | ml-1m | synthetic")
    p.add_argument("--data-dir", default="", help="use this prepared DATA_DIR instead of --dataset")
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    p.add_argument("--llms", nargs="*", default=["gemma3-270m", "minilm"],
                   help="knowledge sources for the LLM4MSR variants (`llm4msr knowledge --llm`)")
    p.add_argument("--knowledge-dirs", nargs="*", default=[],
                   help="LLM=KNOWLEDGE_DIR pairs that override the work-dir location")
    p.add_argument("--no-baseline", action="store_true", help="skip the backbone-alone runs")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    p.add_argument("--name", default="", help="result file stem (default quality_<dataset>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="keep finished runs of an existing result with the same name and epochs")
    p.add_argument("--peer", action="store_true",
                   help=f"also train {PEER}'s SharedBottom/MMOE/PLE on the same split with the same protocol")
    p.add_argument("--peer-child", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir-child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The whole sweep (seeds outermost, so an interrupted run still covers every model)."""
    common.setup(args.threads)
    from llm4msr_tf import knowledge as kn
    from llm4msr_tf.data.spec import DatasetSpec

    data_dir = args.data_dir or common.ensure_prepared(args.dataset, args.work_dir)
    spec = DatasetSpec.load(data_dir)
    name = args.name or f"{NAME}_{args.dataset}".replace("-", "")
    data = {s: common.load_arrays(data_dir, s) for s in ("train", "eval", "test")}
    overrides = dict(kv.split("=", 1) for kv in args.knowledge_dirs)
    kbs = {}
    for llm in args.llms:
        kdir = overrides.get(llm) or ensure_knowledge(args.work_dir, args.dataset, data_dir, llm)
        kbs[llm] = kn.load(kdir)
    variants = ([] if args.no_baseline else ["none"]) + list(args.llms)
    runs: List[Dict[str, Any]] = []
    prev = common.load_result(name, args.out_dir) if args.resume else None
    if prev and prev.get("dataset") == spec.name and prev.get("epochs") == args.epochs:
        runs = [r for r in prev.get("runs", []) if variant(r) in variants + ([PEER] if args.peer else [])]
        log.info("resuming %s: %d finished runs kept", name, len(runs))
    done = {run_key(r) for r in runs}
    errors: List[Dict[str, Any]] = []

    def save() -> Dict[str, Any]:
        doc = {
            "dataset": spec.name, "data_dir": data_dir, "split_method": spec.split_method,
            "num_scenarios": spec.num_scenarios, "scenario_names": spec.scenario_names(),
            "train_rows": int(len(data["train"][spec.label])),
            "eval_rows": int(len(data["eval"][spec.label])),
            "test_rows": int(len(data["test"][spec.label])),
            "epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
            "embedding_dim": args.embedding_dim, "seeds": args.seeds, "llms": list(args.llms),
            "knowledge": {k: {"llm": kb.llm, "dim": kb.dim} for k, kb in kbs.items()},
            "protocol": "early stopping and weight selection on eval AUC only; test used once per run",
            "scenario_wise_rec_reference": SWR_REFERENCE,
            "runs": runs, "errors": errors, "summary": aggregate(runs, spec.num_scenarios),
        }
        doc = common.save_result(name, doc, "benchmarks.quality", args.out_dir, argv)
        common.write_text(os.path.join(args.out_dir, f"{name}.md"), markdown(doc))
        return doc

    for seed in args.seeds:
        for b in args.backbones:
            for v in variants:
                if (seed, b, v) in done:
                    continue
                log.info("seed %d backbone %s knowledge %s", seed, b, v)
                try:
                    r = train_one(spec, b, None if v == "none" else kbs[v], seed, data, args)
                except Exception as e:  # keep the sweep going; the failure is recorded
                    log.exception("run failed: seed %d %s %s", seed, b, v)
                    errors.append({"seed": seed, "backbone": b, "knowledge": v, "error": repr(e)[:500]})
                    continue
                r.update(seed=seed, backbone=b, knowledge=v)
                if v != "none":
                    r["knowledge_dim"] = kbs[v].dim
                runs.append(r)
                log.info("  test auc %.4f log loss %.4f (%d epochs, %.0fs)", r["test"]["auc"],
                         r["test"]["log_loss"], r["epochs_run"], r["train_seconds"])
                doc = save()
            if args.peer and b in PEER_MODELS and (seed, b, PEER) not in done:
                log.info("seed %d backbone %s in %s", seed, b, PEER)
                try:
                    r = run_peer(spec, b, seed, data, args)
                except Exception as e:  # recorded like our failures
                    log.exception("peer run failed: seed %d %s", seed, b)
                    errors.append({"seed": seed, "backbone": b, "knowledge": "none", "library": PEER,
                                   "error": repr(e)[:500]})
                    continue
                runs.append(r)
                log.info("  %s test auc %.4f log loss %.4f (%d epochs, %.0fs)", PEER, r["test"]["auc"],
                         r["test"]["log_loss"], r["epochs_run"], r["train_seconds"])
                doc = save()
    doc = save()
    if runs:
        plot(doc, os.path.join(args.out_dir, f"{name}.png"))
    return doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: `python -m benchmarks.quality [flags]`."""
    args = parse_args(argv)
    if args.peer_child:
        return peer_child_main(args)
    doc = run(args, argv)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
