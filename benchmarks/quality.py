"""Test quality of every backbone alone and with LLM4MSR, with an eval-only protocol and a capacity control.

Protocol (the same for every model; nothing is ever chosen on test):
- the prepared dataset's fixed split (MovieLens: seeded random 8:1:1, label rating > 3; scenarios
  by age group or genre family, optionally a sparse training split), Adam, batch 2048, at most
  `--epochs` epochs, early stopping on the *eval* AUC (stop after `--patience` epochs without
  improvement), the best-eval weights restored, then one pass over the *test* split:
  per-scenario and overall AUC and log loss (sklearn);
- for every (backbone, variant) the learning rate is searched over `--lrs` on seed 0 and chosen
  by the best eval AUC; the other seeds run at that rate. The backbone alone is tuned exactly
  the same way;
- variants: the backbone alone (``knowledge: none``); LLM4MSR with each LLM's knowledge, for
  each named fusion setting (`--fusion NAME=JSON`, ModelConfig overrides); and the capacity
  control ``knowledge: random``: the same LLM4MSR layers fed seeded Gaussian vectors of the same
  dim and keys (`llm4msr_tf.knowledge.random_like`), at the rate chosen for the real knowledge
  (`--random-of`, default the first LLM);
- the summary pairs runs by seed: Δ(real − alone) and Δ(real − random) with the mean and the
  standard deviation of the paired differences. Seeds change initialisation, batch order and
  the random control's vectors.
The result JSON is rewritten after every run and a rerun resumes from it, so a partial sweep is
kept; stages run breadth-first (every cell's rate search, then the control, then more seeds).

With ``--peer`` the peer library torch-rechub trains its SharedBottom / MMOE / PLE (one task
tower per scenario, as Scenario-Wise-Rec does) on the same encoded arrays with the same
protocol, in a child process without TensorFlow; its rows are marked ``library: torch-rechub``.
"""
import argparse
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks import common
from benchmarks.train_throughput import PEER_MODELS

log = logging.getLogger("benchmarks.quality")

NAME = "quality"
BACKBONES = ("shared_bottom", "mmoe", "ple", "star", "sar_net", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet",
             "pepnet", "hinet", "m3oe", "hamur")
OURS, PEER = "llm4msr_tf", "torch-rechub"
NONE, RANDOM = "none", "random"
NO_FUSION = "-"
DEFAULT_LRS = (3e-4, 1e-3, 3e-3)


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


def metrics(y: np.ndarray, p: np.ndarray, sid: np.ndarray, num_scenarios: int) -> Dict[str, Any]:
    """Overall and per-scenario AUC and log loss (`llm4msr_tf.metrics`, the one metrics code), in
    this benchmark's run schema: ``{"auc", "log_loss", "per_scenario": {"0": {...}, ...}}``."""
    from llm4msr_tf.metrics import scenario_metrics

    m = scenario_metrics(y, p, sid, num_scenarios)
    return {"auc": m["overall"]["auc"], "log_loss": m["overall"]["log_loss"],
            "per_scenario": {k: {"auc": b["auc"], "log_loss": b["log_loss"], "rows": b["rows"]}
                             for k, b in m["scenarios"].items() if b["rows"] and not np.isnan(b["auc"])}}


class EarlyStop:
    """The peer's early stopping: `llm4msr_tf.training.BestEpoch`'s rule (best eval AUC wins, stop
    after `patience` epochs without improvement) for a PyTorch loop."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.best_epoch, self.bad = int(patience), -1.0, 0, 0

    def update(self, epoch: int, value: float) -> Tuple[bool, bool]:
        """(improved, stop) after an epoch with eval AUC `value`."""
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            return True, False
        self.bad += 1
        return False, self.bad >= self.patience


def build_variant(spec: Any, backbone: str, kb: Any, fusion: Dict[str, Any], lr: float,
                  embedding_dim: int) -> Any:
    """Our compiled model for one cell: the shared backbone widths, plus the fusion's ModelConfig overrides."""
    from benchmarks.train_throughput import backbone_params
    from llm4msr_tf.models import ModelConfig, build_model

    cfg = ModelConfig(backbone=backbone, backbone_params=backbone_params(backbone, embedding_dim),
                      embedding_dim=embedding_dim,
                      use_knowledge=kb is not None, per_scenario_metrics=False, learning_rate=lr,
                      **(fusion if kb is not None else {}))
    return build_model(spec, cfg, knowledge=kb, compile=True)


def _predict(model: Any, arrays: Dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    from llm4msr_tf.training import predict

    import tensorflow as tf

    _, p, _ = predict(model, tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size))
    return p


def train_one(spec: Any, backbone: str, kb: Any, seed: int, data: Dict[str, Dict[str, np.ndarray]],
              args: argparse.Namespace, lr: float = 1e-3, fusion: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train one model with `llm4msr_tf.training.fit` (the one training loop: early stopping on eval
    AUC, best epoch restored); returns its exact eval and test metrics and its history."""
    import tensorflow as tf

    from llm4msr_tf.training import TrainConfig, fit

    tf.keras.utils.set_random_seed(seed)
    model = build_variant(spec, backbone, kb, fusion or {}, lr, args.embedding_dim)
    tr = data["train"]
    n = len(tr[spec.label])
    train_ds = (tf.data.Dataset.from_tensor_slices(tr).shuffle(n, seed=seed, reshuffle_each_iteration=True)
                .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    eval_ds = tf.data.Dataset.from_tensor_slices(data["eval"]).batch(8192).cache()
    cfg = TrainConfig(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, seed=seed,
                      progress="none", export=False)
    t0 = time.time()
    facts = fit(model, spec, cfg, train_ds=train_ds, eval_ds=eval_ds)
    h = facts["history"]
    history = [{"epoch": i + 1, "train_loss": h["loss"][i], "eval_auc_keras": h["val_auc"][i],
                "seconds": round(facts["epoch_seconds"][i], 2)} for i in range(facts["epochs_run"])]
    ev = metrics(data["eval"][spec.label], _predict(model, data["eval"]), data["eval"][spec.scenario_feature],
                 spec.num_scenarios)
    test = metrics(data["test"][spec.label], _predict(model, data["test"]), data["test"][spec.scenario_feature],
                   spec.num_scenarios)
    return {"test": test, "eval": ev, "best_eval_auc": ev["auc"], "best_epoch": facts["best_epoch"],
            "epochs_run": facts["epochs_run"], "history": history, "train_seconds": round(time.time() - t0, 1),
            "params": int(model.count_params())}


# ---- the protocol --------------------------------------------------------------------------------
def variant(run: Dict[str, Any]) -> str:
    """What a run compares: its knowledge source (none, an LLM, random) or the peer library."""
    return PEER if run.get("library", OURS) == PEER else run["knowledge"]


def cell_of(run: Dict[str, Any]) -> Tuple[str, str, str]:
    """(backbone, variant, fusion): the unit whose learning rate is searched."""
    return run["backbone"], variant(run), run.get("fusion", NO_FUSION)


LEGACY_LR = 1e-3  # runs written before the rate search all used Adam 1e-3


def run_lr(run: Dict[str, Any]) -> float:
    """The run's learning rate."""
    return float(run.get("lr", LEGACY_LR))


def run_key(run: Dict[str, Any]) -> Tuple[Any, ...]:
    """(seed, backbone, variant, fusion, lr): one run of a sweep."""
    return (run["seed"],) + cell_of(run) + (run_lr(run),)


def _searched(run: Dict[str, Any], search_seed: int) -> bool:
    # Legacy runs (one fixed rate, no stage) count as a one-point search on the search seed.
    return run["seed"] == search_seed and run.get("stage", "lr_search") == "lr_search"


def chosen_lr(runs: List[Dict[str, Any]], cell: Tuple[str, str, str], search_seed: int) -> Optional[float]:
    """The rate of `cell` with the best *eval* AUC among its seed-`search_seed` runs (None if none yet)."""
    cands = [r for r in runs if cell_of(r) == cell and _searched(r, search_seed)]
    if not cands:
        return None
    return run_lr(max(cands, key=lambda r: (r.get("best_eval_auc", 0.0), -run_lr(r))))


def _paired(mine: Dict[int, float], base: Dict[int, float]) -> Optional[Dict[str, Any]]:
    seeds = sorted(set(mine) & set(base))
    if not seeds:
        return None
    d = np.array([mine[s] - base[s] for s in seeds])
    std = float(d.std(ddof=1)) if len(d) > 1 else None
    return {"mean": float(d.mean()), "std": std, "seeds": seeds,
            "beyond_2sd": bool(std is not None and d.mean() > 2 * std),
            "below_1sd": bool(std is not None and d.mean() < -std)}


def aggregate(runs: List[Dict[str, Any]], num_scenarios: int, search_seed: int = 0) -> List[Dict[str, Any]]:
    """Per cell at its chosen rate: test AUC / log loss over seeds and the paired deltas."""
    cells: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault(cell_of(r), []).append(r)
    out = []
    finals: Dict[Tuple[str, str, str], Dict[int, Dict[str, Any]]] = {}
    for cell, rs in cells.items():
        lr = chosen_lr(runs, cell, search_seed)
        if lr is None:  # the random control has no search of its own: it runs at the real one's rate
            lr = run_lr(rs[0])
        at = {r["seed"]: r for r in rs if abs(run_lr(r) - lr) < 1e-12}
        if not at:
            continue
        finals[cell] = at
        b, k, f = cell
        row: Dict[str, Any] = {"backbone": b, "knowledge": k, "fusion": f, "library": rs[0].get("library", OURS),
                               "lr": lr, "seeds": sorted(at),
                               "lr_search": {repr(run_lr(r)): r.get("best_eval_auc") for r in rs
                                             if _searched(r, search_seed)}}
        if rs[0].get("random_of"):
            row["random_of"] = rs[0]["random_of"]
        for metric in ("auc", "log_loss"):
            v = np.array([at[s]["test"][metric] for s in sorted(at)])
            row[metric] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
            for sc in range(num_scenarios):
                vs = np.array([at[s]["test"]["per_scenario"][str(sc)][metric] for s in sorted(at)
                               if str(sc) in at[s]["test"]["per_scenario"]])
                if len(vs):
                    row.setdefault("per_scenario", {}).setdefault(str(sc), {})[metric] = {
                        "mean": float(vs.mean()), "std": float(vs.std(ddof=1)) if len(vs) > 1 else 0.0}
        if all("best_eval_auc" in at[s] for s in at):
            row["best_eval_auc"] = float(np.mean([at[s]["best_eval_auc"] for s in sorted(at)]))
        out.append(row)
    for row in out:
        b, k, f = row["backbone"], row["knowledge"], row["fusion"]
        if k in (NONE, PEER):
            continue
        mine = {s: r["test"]["auc"] for s, r in finals[(b, k, f)].items()}
        alone = finals.get((b, NONE, NO_FUSION))
        if alone:
            d = _paired(mine, {s: r["test"]["auc"] for s, r in alone.items()})
            if d:
                row["delta_auc_vs_alone"] = d
                # Kept under the old name too, so earlier readers of the JSON still work.
                row["delta_auc_vs_backbone"] = d["mean"]
                row["delta_seeds"] = d["seeds"]
        if k != RANDOM and (b, RANDOM, f) in finals:
            d = _paired(mine, {s: r["test"]["auc"] for s, r in finals[(b, RANDOM, f)].items()})
            if d:
                row["delta_auc_vs_random"] = d
    return out


def _fmt_delta(d: Optional[Dict[str, Any]]) -> str:
    if not d:
        return "-"
    mark = " **>2σ**" if d.get("beyond_2sd") else (" *<−1σ*" if d.get("below_1sd") else "")
    return f"{d['mean']:+.4f}" + (f" ± {d['std']:.4f}" if d.get("std") is not None else "") + mark


def markdown(doc: Dict[str, Any]) -> str:
    """Per cell at its eval-chosen rate: per-scenario and overall test AUC, and the paired deltas."""
    S = doc["num_scenarios"]
    names = doc.get("scenario_names") or [str(s) for s in range(S)]
    headers = ["backbone", "knowledge", "fusion", "lr (eval-chosen)", "seeds"] + [f"AUC {n}" for n in names] + [
        "AUC all", "log loss all", "Δ vs alone (paired)", "Δ vs random (paired)"]
    rows = []
    order = {v: i for i, v in enumerate([NONE] + list(doc.get("llms", [])) + [RANDOM, PEER])}
    bb = {b: i for i, b in enumerate(doc.get("backbones") or BACKBONES)}
    for r in sorted(doc["summary"], key=lambda r: (bb.get(r["backbone"], 99), order.get(r["knowledge"], 50),
                                                    r["fusion"])):
        ps = r.get("per_scenario", {})
        label = f"{PEER} (backbone alone)" if r["knowledge"] == PEER else r["knowledge"]
        if r["knowledge"] == RANDOM and r.get("random_of"):
            label = f"random (dim of {r['random_of']})"
        one = len(r["seeds"]) < 2  # no spread from a single seed: show the value alone

        def ms(m: Dict[str, float]) -> str:
            return f"{m['mean']:.4f}" if one else f"{m['mean']:.4f} ± {m['std']:.4f}"

        cells = [r["backbone"], label, r["fusion"], f"{r['lr']:g}", str(len(r["seeds"]))]
        cells += [ms(ps[str(s)]["auc"]) if str(s) in ps else "-" for s in range(S)]
        cells += [ms(r["auc"]), ms(r["log_loss"]), _fmt_delta(r.get("delta_auc_vs_alone")),
                  _fmt_delta(r.get("delta_auc_vs_random"))]
        rows.append(cells)
    fusions = doc.get("fusions") or {}
    head = (f"Test quality on {doc['dataset']} (split {doc['split_method']}; {doc['train_rows']:,} train rows), "
            f"max {doc['epochs']} epochs, early stopping on eval AUC (patience {doc['patience']}), batch "
            f"{doc['batch_size']}; learning rate chosen per row from {doc.get('lrs')} on seed "
            f"{doc.get('search_seed', 0)}'s eval AUC (the random control reuses the real knowledge's rate); "
            "mean ± std over seeds; Δ = mean ± std of the per-seed differences (**>2σ**: mean above twice "
            "the spread; *<−1σ*: below minus the spread).\n\n")
    tail = ""
    if fusions:
        tail += "\nFusion settings (ModelConfig overrides of the LLM4MSR rows):\n\n" + "\n".join(
            f"- `{k}`: `{json.dumps(v, sort_keys=True)}`" for k, v in fusions.items()) + "\n"
    if any(r["knowledge"] == PEER for r in doc["summary"]):
        tail += (f"\n{PEER} rows: the peer library's own SharedBottom / MMOE / PLE (one tower per scenario, "
                 "as Scenario-Wise-Rec builds them) trained on the same encoded split with the same widths, "
                 "batch, optimizer, rate search, epochs and early stopping.\n")
    return head + common.markdown_table(headers, rows) + tail + f"\nCommand: `{doc.get('command', '')}`\n"


def plot(doc: Dict[str, Any], path: str) -> str:
    """Bars of overall test AUC (mean ± std) per backbone, one bar per (variant, fusion)."""
    from llm4msr_tf.report import pyplot

    plt = pyplot()
    summ = doc["summary"]
    backbones = [b for b in (doc.get("backbones") or BACKBONES) if any(r["backbone"] == b for r in summ)]
    order = [NONE] + list(doc.get("llms", [])) + [RANDOM, PEER]
    variants = sorted({(r["knowledge"], r["fusion"]) for r in summ},
                      key=lambda v: (order.index(v[0]) if v[0] in order else 50, v[1]))
    x = np.arange(len(backbones))
    w = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(backbones) + 0.4 * len(variants)), 4.8))
    lo, hi = 1.0, 0.5
    for i, (k, f) in enumerate(variants):
        pick = [next((r for r in summ if r["backbone"] == b and r["knowledge"] == k and r["fusion"] == f), None)
                for b in backbones]
        means = [p["auc"]["mean"] if p else np.nan for p in pick]
        stds = [p["auc"]["std"] if p else 0 for p in pick]
        if not np.all(np.isnan(means)):
            lo, hi = min(lo, np.nanmin(means)), max(hi, np.nanmax(means))
        label = ("backbone alone" if k == NONE else f"{PEER} backbone alone" if k == PEER
                 else f"LLM4MSR, knowledge: {k}" + (f" ({f})" if f != NO_FUSION and len(doc.get("fusions") or {}) > 1
                                                   else ""))
        ax.bar(x + (i - (len(variants) - 1) / 2) * w, means, w, yerr=stds, capsize=3, label=label)
    ax.set_ylim(max(0.5, lo - 0.02), hi + 0.01)
    ax.set_xticks(x)
    ax.set_xticklabels(backbones, rotation=20 if len(backbones) > 5 else 0)
    ax.set_ylabel("test AUC (all scenarios), mean ± std")
    ax.set_title(f"Test AUC on {doc['dataset']}, eval-chosen learning rate, up to {len(doc['seeds'])} seeds",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- peer: torch-rechub on the same split --------------------------------------------------------
def train_peer(spec: Any, backbone: str, seed: int, enc: Dict[str, Dict[str, np.ndarray]],
               args: argparse.Namespace) -> Dict[str, Any]:
    """torch-rechub's model under our protocol: Adam at `args.lr`, shuffled batches, early stopping on eval AUC."""
    import copy

    import torch

    from benchmarks.train_throughput import peer_model

    torch.manual_seed(seed)
    torch.set_num_threads(args.threads)
    scen, label = spec.scenario_feature, spec.label
    train = {k: torch.from_numpy(v) for k, v in enc["train"].items() if k != label}
    y = torch.from_numpy(enc["train"][label].astype(np.float32))
    model = peer_model(backbone, spec, args.embedding_dim)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
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

    stop, best_state, history = EarlyStop(args.patience), None, []
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
        improved, done = stop.update(epoch, m["auc"])
        if improved:
            best_state = copy.deepcopy(model.state_dict())
        if done:
            break
    model.load_state_dict(best_state)
    test = metrics(enc["test"][label], predict_split("test"), enc["test"][scen], spec.num_scenarios)
    return {"test": test, "best_eval_auc": stop.best, "best_epoch": stop.best_epoch + 1,
            "epochs_run": len(history), "history": history, "lr": float(args.lr),
            "train_seconds": round(time.time() - t0, 1), "params": int(sum(p.numel() for p in model.parameters())),
            "seed": seed, "backbone": backbone, "knowledge": "none", "library": PEER,
            "peer_model": type(model).__name__, "threads": torch.get_num_threads()}


def run_peer(spec: Any, backbone: str, seed: int, data: Dict[str, Dict[str, np.ndarray]],
             args: argparse.Namespace, lr: float) -> Dict[str, Any]:
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
           "--embedding-dim", str(args.embedding_dim), "--threads", str(args.threads), "--lr", repr(lr)]
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


def parse_fusions(items: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """``NAME=JSON`` pairs -> {name: ModelConfig overrides}; a bad pair is one clear error."""
    import dataclasses

    from llm4msr_tf.models import ModelConfig

    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name or name == NO_FUSION:
            raise common.UserInputError(f"--fusion {item!r}: expected NAME=JSON, e.g. "
                                        "gate='{\"user_meta_form\": \"gate\"}'")
        try:
            cfg = json.loads(text or "{}")
        except json.JSONDecodeError as e:
            raise common.UserInputError(f"--fusion {name}: not valid JSON ({e}): {text!r}") from e
        if not isinstance(cfg, dict) or set(cfg) - fields:
            raise common.UserInputError(f"--fusion {name}: expected a JSON object of ModelConfig fields; unknown: "
                                        f"{sorted(set(cfg) - fields) if isinstance(cfg, dict) else cfg!r}")
        out[name] = cfg
    return out or {"default": {}}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of the quality benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k",
                   help="ml-100k | ml-1m, optionally with -genre and/or -sparseNN (e.g. ml-1m-genre-sparse20) "
                        "| synthetic")
    p.add_argument("--data-dir", default="", help="use this prepared DATA_DIR instead of --dataset")
    p.add_argument("--work-dir", default=common.default_work_dir())
    p.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    p.add_argument("--llms", nargs="*", default=["gemma3-270m", "minilm"],
                   help="knowledge sources for the LLM4MSR variants (`llm4msr knowledge --llm`)")
    p.add_argument("--knowledge-dirs", nargs="*", default=[],
                   help="LLM=KNOWLEDGE_DIR pairs that override the work-dir location")
    p.add_argument("--fusion", nargs="*", default=[], dest="fusions",
                   help="NAME=JSON ModelConfig overrides of the LLM4MSR variants (each is its own row)")
    p.add_argument("--random-control", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the random-knowledge capacity control")
    p.add_argument("--random-of", default="", help="the LLM whose dim, keys and chosen rate the control copies "
                                                   "(default: the first of --llms)")
    p.add_argument("--no-baseline", action="store_true", help="skip the backbone-alone runs")
    p.add_argument("--backbone-major", action="store_true",
                   help="run every stage of one backbone before the next (complete rows first when a sweep "
                        "will not finish in one go); the default runs every rate search first")
    p.add_argument("--lrs", nargs="*", type=float, default=list(DEFAULT_LRS),
                   help="learning rates searched on the first seed (eval AUC)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default=common.RESULTS_DIR)
    p.add_argument("--name", default="", help="result file stem (default quality_<dataset>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="keep finished runs of an existing result with the same name and protocol")
    p.add_argument("--peer", action="store_true",
                   help=f"also train {PEER}'s SharedBottom/MMOE/PLE on the same split with the same protocol")
    p.add_argument("--peer-child", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir-child", default="", help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, default=1e-3, help=argparse.SUPPRESS)  # the peer child's rate
    args = p.parse_args(argv)
    for flag in ("epochs", "patience", "batch_size", "embedding_dim", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not args.seeds or not args.lrs or any(lr <= 0 for lr in args.lrs):
        p.error("--seeds and --lrs need at least one value; learning rates must be > 0")
    return args


PROTOCOL_KEYS = ("epochs", "patience", "batch_size", "embedding_dim", "lrs")


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The whole sweep, breadth-first: rate searches, then the random control, then the other seeds."""
    common.setup(args.threads)
    from llm4msr_tf import knowledge as kn
    from llm4msr_tf.data.spec import DatasetSpec

    fusions = parse_fusions(args.fusions)
    data_dir = args.data_dir or common.ensure_prepared(args.dataset, args.work_dir)
    spec = DatasetSpec.load(data_dir)
    name = args.name or f"{NAME}_{args.dataset}".replace("-", "")
    data = {s: common.load_arrays(data_dir, s) for s in ("train", "eval", "test")}
    overrides = dict(kv.split("=", 1) for kv in args.knowledge_dirs)
    kbs = {}
    for llm in args.llms:
        kdir = overrides.get(llm) or ensure_knowledge(args.work_dir, args.dataset, data_dir, llm)
        kbs[llm] = kn.load(kdir)
    random_of = args.random_of or (args.llms[0] if args.llms else "")
    if args.random_of and random_of not in kbs:
        raise common.UserInputError(f"--random-of {random_of!r} is not one of --llms {args.llms}")
    args.random_control = args.random_control and bool(random_of)  # no LLM, no control to match
    search_seed, other_seeds = args.seeds[0], list(args.seeds[1:])
    protocol = {k: (list(getattr(args, k)) if k == "lrs" else getattr(args, k)) for k in PROTOCOL_KEYS}
    runs: List[Dict[str, Any]] = []
    prev = common.load_result(name, args.out_dir) if args.resume else None
    if prev and prev.get("dataset") == spec.name and all(prev.get(k) == v for k, v in protocol.items()):
        runs = list(prev.get("runs", []))
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
            **protocol, "seeds": args.seeds, "search_seed": search_seed, "llms": list(args.llms),
            "backbones": list(args.backbones), "fusions": fusions, "random_of": random_of,
            "knowledge": {k: {"llm": kb.llm, "dim": kb.dim, "path": kb.path} for k, kb in kbs.items()},
            "protocol": "learning rate and early stopping chosen on eval AUC only (rate on the first seed); "
                        "test used once per run; random control at the real knowledge's rate",
            "runs": runs, "errors": errors, "summary": aggregate(runs, spec.num_scenarios, search_seed),
        }
        doc = common.save_result(name, doc, "benchmarks.quality", args.out_dir, argv)
        common.write_text(os.path.join(args.out_dir, f"{name}.md"), markdown(doc))
        return doc

    def one(seed: int, backbone: str, knowledge: str, fusion: str, lr: float, stage: str) -> None:
        if (seed, backbone, knowledge, fusion, float(lr)) in done:
            return
        log.info("seed %d %s knowledge=%s fusion=%s lr=%g (%s)", seed, backbone, knowledge, fusion, lr, stage)
        try:
            if knowledge == PEER:
                r = run_peer(spec, backbone, seed, data, args, lr)
            else:
                kb = (None if knowledge == NONE else
                      kn.random_like(kbs[random_of], seed=1000 + seed) if knowledge == RANDOM else kbs[knowledge])
                r = train_one(spec, backbone, kb, seed, data, args, lr=lr, fusion=fusions.get(fusion, {}))
        except Exception as e:  # keep the sweep going; the failure is recorded
            log.exception("run failed: seed %d %s %s %s lr %g", seed, backbone, knowledge, fusion, lr)
            errors.append({"seed": seed, "backbone": backbone, "knowledge": knowledge, "fusion": fusion,
                           "lr": lr, "error": repr(e)[:500]})
            return
        r.update(seed=seed, backbone=backbone, knowledge=NONE if knowledge == PEER else knowledge, fusion=fusion,
                 lr=float(lr), stage=stage)
        if knowledge not in (NONE, PEER):
            r["knowledge_dim"] = kbs[random_of].dim if knowledge == RANDOM else kbs[knowledge].dim
            r["fusion_config"] = fusions.get(fusion, {})
        if knowledge == RANDOM:
            r["random_of"] = random_of
        runs.append(r)
        done.add(run_key(r))
        log.info("  eval auc %.4f test auc %.4f (%d epochs, %.0fs)", r["best_eval_auc"], r["test"]["auc"],
                 r["epochs_run"], r["train_seconds"])
        save()

    def sweep(backbones: Sequence[str]) -> None:
        cells: List[Tuple[str, str, str]] = []
        for b in backbones:
            if not args.no_baseline:
                cells.append((b, NONE, NO_FUSION))
            if args.peer and b in PEER_MODELS:
                cells.append((b, PEER, NO_FUSION))
            cells += [(b, llm, f) for llm in args.llms for f in fusions]
        # 1. the rate search of every searched cell, on the first seed
        for b, k, f in cells:
            for lr in args.lrs:
                one(search_seed, b, k, f, lr, "lr_search")
        # 2. the random control at the rate chosen for its real knowledge, every seed
        controls = [(b, RANDOM, f) for b in backbones for f in fusions] if args.random_control else []
        for seed in args.seeds:
            for b, _, f in controls:
                lr = chosen_lr(runs, (b, random_of, f), search_seed)
                if lr is not None:
                    one(seed, b, RANDOM, f, lr, "seeds")
            # 3. every searched cell's remaining seeds at its chosen rate
            if seed == search_seed:
                continue
            for b, k, f in cells:
                lr = chosen_lr(runs, (b, k, f), search_seed)
                if lr is not None:
                    one(seed, b, k, f, lr, "seeds")

    if args.backbone_major:  # finish each backbone's rows (search, control, seeds) before the next
        for b in args.backbones:
            sweep([b])
    else:
        sweep(args.backbones)
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
