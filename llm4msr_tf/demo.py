"""The main job: every LLM4MSR stage end to end on embedded defaults, ending in a report.

prepare (synthetic by default) -> knowledge (Beam, default local LLM) -> explanations (the LLM
generates text for the scenario prompts and a few users, for interpretability) -> fast
training of the backbone alone, LLM4MSR and two ablations -> the TFX pipeline for the backbone
alone and with LLM4MSR (pushed SavedModels) -> a serving check of the pushed models on the test
split -> `report.md` / `report.html` with PNG plots.

Each stage runs the `llm4msr` subcommand of that stage in a child process (the same command a
user would type, so the demo exercises the real CLI, and the LLM's memory is returned to the OS
before TensorFlow trains). A stage whose command and outputs are unchanged since its last
successful run is reused, so re-running the demo after a failure resumes where it stopped.
"""
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence


from llm4msr_tf.config import save_config
from llm4msr_tf.demo_report import VARIANT_LABELS, VARIANTS, build_report
from llm4msr_tf.utils.io import ARTIFACT_MARKER, UserInputError, artifact_kind, read_json, write_json, write_marker

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DemoConfig:
    """Options of `llm4msr demo`; the defaults are the embedded main job."""

    out: str = dataclasses.field(default="demo_out", metadata={"help": "output directory"})
    dataset: str = dataclasses.field(
        default="synthetic",
        metadata={"help": "dataset adapter for `llm4msr prepare` (synthetic needs no source)"},
    )
    source: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "source path for real datasets, e.g. ../shared/data/ml-100k"}
    )
    backbone: str = dataclasses.field(default="mmoe", metadata={"help": "backbone name"})
    llm: str = dataclasses.field(default="gemma3-270m", metadata={"help": "LLM spec for knowledge"})
    generate: int = dataclasses.field(
        default=40,
        metadata={"help": "tokens the LLM generates to explain each shown prompt (0: skip)"},
    )
    explain_users: int = dataclasses.field(
        default=3, metadata={"help": "how many user prompts get a generated explanation"}
    )
    explain_views: bool = dataclasses.field(
        default=True, metadata={"help": "add the `llm4msr explain` views to the report (scenario map, what the "
                                        "knowledge changes, user cards)"}
    )
    epochs: int = dataclasses.field(default=8, metadata={"help": "max epochs (early stopping)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed for data and training"})
    ablations: bool = dataclasses.field(
        default=True, metadata={"help": "also train without scenario level / user level"}
    )
    tfx: bool = dataclasses.field(
        default=True, metadata={"help": "run the TFX pipeline and push SavedModels"}
    )
    prepare_args: str = dataclasses.field(
        default="", metadata={"help": "extra flags for `llm4msr prepare`, one quoted string"}
    )
    knowledge_args: str = dataclasses.field(
        default="", metadata={"help": "extra flags for `llm4msr knowledge`, one quoted string"}
    )
    train_args: str = dataclasses.field(
        default="", metadata={"help": "extra flags for `llm4msr train`, one quoted string"}
    )
    pipeline_args: str = dataclasses.field(
        default="", metadata={"help": "extra flags for `llm4msr pipeline`, one quoted string"}
    )


def _llm4msr_exe() -> List[str]:
    """The `llm4msr` console script of this interpreter's environment."""
    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "llm4msr_tf.cli"]


class _Stages:
    """Runs numbered stages with a one-line header each; reuses stages that already finished."""

    def __init__(self, out: str, total: int):
        self.out = out
        self.total = total
        self.n = 0
        self.timings: Dict[str, float] = {}
        self.reused: List[str] = []
        os.makedirs(os.path.join(out, ".stages"), exist_ok=True)
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)

    def _marker(self, name: str) -> str:
        return os.path.join(self.out, ".stages", f"{name}.json")

    def header(self, name: str, what: str) -> None:
        self.n += 1
        print(f"[{self.n}/{self.total}] {name}: {what}", flush=True)

    def run(self, name: str, what: str, args: Sequence[str], outputs: Sequence[str]) -> None:
        """Run `llm4msr ARGS` unless the same command already produced `outputs`."""
        self.header(name, what)
        cmd = _llm4msr_exe() + list(args)
        key = hashlib.sha256(json.dumps(list(args)).encode()).hexdigest()
        marker = self._marker(name)
        if os.path.exists(marker) and all(os.path.exists(p) for p in outputs):
            if read_json(marker).get("key") == key:
                print(f"      reused (finished earlier: {os.path.relpath(outputs[0], self.out)})",
                      flush=True)
                self.reused.append(name)
                return
        logpath = os.path.join(self.out, "logs", f"{name}.log")
        t0 = time.time()
        # The child's progress bars go to the terminal; its full output also goes to the log.
        with open(logpath, "w") as logf:
            logf.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
            logf.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1)
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                if _worth_showing(line):
                    sys.stdout.write("      " + line)
                    sys.stdout.flush()
            rc = proc.wait()
        dt = time.time() - t0
        self.timings[name] = dt
        if rc != 0:
            tail = open(logpath).read()[-3000:]
            raise UserInputError(
                f"stage '{name}' failed (exit {rc}) after {dt:.0f}s; its log is {logpath}. "
                f"Fix the cause and re-run the demo: finished stages are reused.\n--- log tail ---\n"
                f"{tail}"
            )
        write_json(marker, {"key": key, "cmd": cmd, "seconds": dt})
        print(f"      done in {dt:.0f}s", flush=True)


def _worth_showing(line: str) -> bool:
    """Keep the terminal to progress and summaries; TF/absl chatter stays in the log."""
    noisy = ("WARNING", "W0000", "I0000", "tensorflow/", "oneDNN", "TF-TRT", "cuda", "absl",
             "rebuild TensorFlow", "To enable the following", "UserWarning", "warnings.warn",
             "Warning", "deprecat", "calls to avoid build errors", "standards-based tools")
    return bool(line.strip()) and not any(n in line for n in noisy)


def _split_args(s: str) -> List[str]:
    return shlex.split(s) if s else []


DEMO_KIND = "demo"


def check_demo_out(out: str) -> None:
    """Refuse an --out the demo would litter or overwrite: a file, or a non-empty folder it did not write.

    The demo resumes in its own folder (finished stages are reused), so a folder with the demo's
    marker, or the ``.stages`` folder of a demo run before markers existed, is fine; any other
    non-empty folder would get config.json, summary.json and report.md written over its files.
    """
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserInputError(f"--out {out} exists and is not a directory; choose another --out")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if artifact_kind(out) == DEMO_KIND or (os.path.isdir(os.path.join(out, ".stages"))
                                           and not os.path.exists(os.path.join(out, ARTIFACT_MARKER))):
        return
    raise UserInputError(f"--out {out} is a non-empty folder that `llm4msr demo` did not write (no demo "
                         f"{ARTIFACT_MARKER}); the demo writes config.json, summary.json and report.md there: "
                         "choose another --out or an empty folder")


def run_demo(cfg: DemoConfig) -> Dict[str, Any]:
    """Run the whole job into cfg.out and return the summary written to summary.json."""
    out = os.path.abspath(cfg.out)
    if cfg.dataset != "synthetic" and not cfg.source:
        raise UserInputError(f"--dataset {cfg.dataset} needs --source PATH (the raw files)")
    check_demo_out(out)
    os.makedirs(out, exist_ok=True)
    write_marker(out, DEMO_KIND)
    save_config(cfg, out)
    variants = list(VARIANTS if cfg.ablations else VARIANTS[:2])
    # prepare, knowledge, [explain], one train per variant, [2 TFX runs + serving check], report
    total = 3 + len(variants) + (3 if cfg.tfx else 0) + (1 if cfg.generate > 0 else 0)
    st = _Stages(out, total)
    t_start = time.time()
    data = os.path.join(out, "data")
    kdir = os.path.join(out, "knowledge")

    # 1. prepare
    args = ["prepare", "--dataset", cfg.dataset, "--out", data, "--seed", str(cfg.seed),
            "--overwrite"]
    if cfg.source:
        args += ["--source", os.path.abspath(cfg.source)]
    st.run("prepare", f"{cfg.dataset} logs -> TFRecords, prompts, dataset spec",
           args + _split_args(cfg.prepare_args), [os.path.join(data, "dataset.json")])

    # 2. knowledge
    st.run("knowledge", f"Beam job: {cfg.llm} over the scenario and user prompts",
           ["knowledge", "--data", data, "--out", kdir, "--llm", cfg.llm]
           + _split_args(cfg.knowledge_args), [os.path.join(kdir, "manifest.json")])

    # 3. explanations (interpretability): generated text for a few prompts only.
    edir = os.path.join(out, "explanations")
    if cfg.generate > 0:
        sub = _explain_subset(data, os.path.join(out, "explain_prompts"), cfg.explain_users)
        st.run("explain", f"{cfg.llm} writes explanations for {sub} prompts (--generate "
               f"{cfg.generate})",
               ["knowledge", "--data", os.path.join(out, "explain_prompts"), "--out", edir,
                "--llm", cfg.llm, "--generate", str(cfg.generate)]
               + _split_args(cfg.knowledge_args), [os.path.join(edir, "manifest.json")])

    # 4. fast training path: the comparison and the ablations on one code path.
    runs = {}
    for v in variants:
        mdir = os.path.join(out, "runs", v)
        runs[v] = mdir
        args = ["train", "--data", data, "--backbone", cfg.backbone, "--out", mdir,
                "--epochs", str(cfg.epochs), "--seed", str(cfg.seed), "--overwrite"]
        if v == "backbone":
            args += ["--no-knowledge"]
        else:
            args += ["--knowledge", kdir]
        if v == "no_scenario_meta":
            args += ["--no-use-scenario-meta"]
        if v == "no_user_meta":
            args += ["--no-use-user-meta"]
        st.run(f"train-{v}", f"{VARIANT_LABELS[v]} ({cfg.backbone})",
               args + _split_args(cfg.train_args), [os.path.join(mdir, "metrics.json")])

    # 5. TFX pipeline -> pushed SavedModels.
    serving_dir = os.path.join(out, "serving")
    pushed: Dict[str, Optional[str]] = {}
    if cfg.tfx:
        for v in ("backbone", "llm4msr"):
            name = cfg.backbone if v == "backbone" else f"{cfg.backbone}_llm4msr"
            args = ["pipeline", "--data", data, "--backbone", cfg.backbone,
                    "--pipeline-root", os.path.join(out, "tfx", v), "--serving-dir", serving_dir,
                    "--model-name", name, "--epochs", str(cfg.epochs)]
            # --knowledge with --no-knowledge is refused as a contradiction (issue 21).
            args += ["--no-knowledge"] if v == "backbone" else ["--knowledge", kdir]
            st.run(f"tfx-{v}", f"TFX pipeline (LocalDagRunner) for {VARIANT_LABELS[v]}",
                   args + _split_args(cfg.pipeline_args), [os.path.join(serving_dir, name)])
            pushed[v] = _latest_version(os.path.join(serving_dir, name))

    # 6. serving check: load each pushed SavedModel like TF Serving would, score the test split.
    serving_metrics: Dict[str, Any] = {}
    if cfg.tfx:
        st.header("serve", "load pushed SavedModels, score the test split via serving_default")
        for v, path in pushed.items():
            if path is None:
                serving_metrics[v] = {"error": "no version pushed (see the pipeline log)"}
                continue
            serving_metrics[v] = serving_check(path, data)
            print(f"      {v}: {path} overall AUC {serving_metrics[v]['overall']['auc']:.4f}",
                  flush=True)
        write_json(os.path.join(out, "serving_check.json"), serving_metrics)

    # 7. report
    st.header("report", "tables, plots and example explanations")
    summary = build_report(out, cfg, runs, kdir, edir if cfg.generate > 0 else None,
                           serving_metrics, pushed)
    summary["seconds_total"] = time.time() - t_start
    summary["stage_seconds"] = st.timings
    summary["reused_stages"] = st.reused
    write_json(os.path.join(out, "summary.json"), summary)
    print(_summary_screen(summary, out), flush=True)
    return summary


def _explain_subset(data: str, dest: str, n_users: int) -> int:
    """Write a prompts dir holding all scenario prompts and the first n users' prompts."""
    from llm4msr_tf.data.prompt_format import read_prompts, write_prompts

    chosen = read_prompts(data, "scenario") + read_prompts(data, "user")[:n_users]
    write_prompts(dest, chosen)
    # The dataset spec travels with its prompts (the explanation set is a view of DATA_DIR).
    shutil.copyfile(os.path.join(data, "dataset.json"), os.path.join(dest, "dataset.json"))
    return len(chosen)


def _latest_version(model_base: str) -> Optional[str]:
    """The highest numeric version directory under a TF Serving model base path, if any."""
    from llm4msr_tf.serving.versions import existing_versions, latest_version_dir

    return latest_version_dir(model_base) if existing_versions(model_base) else None


def serving_check(saved_model_dir: str, data_dir: str, split: str = "test") -> Dict[str, Any]:
    """Score a split through the SavedModel's serving_default, as TF Serving would run it.

    The same path as `llm4msr predict --local`; metrics overall and per scenario.
    """
    from llm4msr_tf.serving.scoring import PredictConfig, predict_split

    s = predict_split(PredictConfig(local=saved_model_dir, data=data_dir, split=split, batch_size=1024))["summary"]
    return {"overall": s["overall"], "scenarios": s["scenarios"], "mean_scenario_auc": s["mean_scenario_auc"],
            "examples": s["rows"], "examples_per_second": s["rows"] / max(s["wall_s"], 1e-9),
            "saved_model": saved_model_dir}


def _summary_screen(summary: Dict[str, Any], out: str) -> str:
    lines = ["", "=" * 72, "LLM4MSR demo finished in %.0fs" % summary["seconds_total"]]
    for row in summary.get("headline", []):
        lines.append("  " + row)
    lines.append(f"  report: {os.path.join(out, 'report.md')} (and report.html)")
    lines.append("=" * 72)
    return "\n".join(lines)
