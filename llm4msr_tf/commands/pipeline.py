"""`llm4msr pipeline`: run the LLM4MSR TFX pipeline locally, or compile it for Kubeflow/Vertex."""
import argparse
import os

from llm4msr_tf.config import add_dataclass_args, dataclass_from_args, save_config


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `pipeline` subcommand."""
    from pipeline.runner import PipelineConfig

    p = sub.add_parser(
        "pipeline",
        help="TFX pipeline: ExampleGen..Transform -> Trainer -> Evaluator (per scenario) -> Pusher",
        description=(
            "Run the TFX pipeline with LocalDagRunner (metadata in SQLite under the pipeline "
            "root), or with --compile-only write a KubeflowV2 / Vertex AI Pipelines JSON spec."
        ),
    )
    add_dataclass_args(p, PipelineConfig)
    p.add_argument(
        "--no-knowledge", dest="use_knowledge", action="store_false", default=True,
        help="train the bare backbone without LLM4MSR (no --knowledge needed)",
    )
    p.set_defaults(func=run)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def print_summary(result) -> None:
    """One screen: component states, per-slice metrics, blessing and push outcome."""
    print(f"pipeline run {result.run_id}: {result.wall_seconds:.1f}s")
    for name, state in result.component_states.items():
        print(f"  {name:<22} {state}")
    cols = ["example_count", "auc", "log_loss", "calibration", "mean_label", "mean_prediction"]
    if result.slice_metrics:
        print(f"  {'slice':<16}" + "".join(f"{c:>16}" for c in cols))
        for name, m in sorted(result.slice_metrics.items(), key=lambda kv: (kv[0] != "overall", kv[0])):
            lower = {k.lower(): v for k, v in m.items()}
            print(f"  {name:<16}" + "".join(f"{_fmt(lower.get(c)):>16}" for c in cols))
    if result.pushed:
        print(f"model BLESSED and pushed to {result.pushed_dir}")
    elif result.blessed is False:
        print("model NOT pushed: the Evaluator did not bless it:")
        for r in result.not_blessed_reasons or ["(no failure details recorded)"]:
            print(f"  - {r}")
    else:
        print("model NOT pushed (see component states above)")


def run(args: argparse.Namespace) -> int:
    """Run or compile the pipeline; exit code 0 only when a model was pushed (or compiled)."""
    from pipeline.runner import PipelineConfig, compile_kubeflow, run_local

    cfg = dataclass_from_args(PipelineConfig, args)
    if cfg.compile_only:
        out = compile_kubeflow(cfg, cfg.compile_only)
        save_config(cfg, os.path.dirname(out), "pipeline_config.json")
        print(f"wrote {out}")
        return 0
    result = run_local(cfg)
    save_config(cfg, os.path.abspath(cfg.pipeline_root), "pipeline_config.json")
    print_summary(result)
    if not result.succeeded:
        return 1
    return 0 if result.pushed else 3
