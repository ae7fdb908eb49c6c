"""`llm4msr pipeline`: run the LLM4MSR TFX pipeline locally, or compile it for Kubeflow/Vertex."""
import argparse
import os

from llm4msr_tf.commands import add_command, add_no_knowledge_flag
from llm4msr_tf.config import dataclass_from_args, save_config


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `pipeline` subcommand."""
    from llm4msr_tf.tfx.config import PipelineConfig

    p = add_command(sub, "pipeline", [PipelineConfig], run,
                    help="TFX pipeline: ExampleGen..Transform -> Trainer -> Evaluator (per scenario) -> Pusher",
                    description="Run the TFX pipeline with LocalDagRunner (metadata in SQLite under the pipeline "
                                "root), or with --compile-only write a KubeflowV2 / Vertex AI Pipelines JSON spec. "
                                "Training and model flags are those of `llm4msr train`.")
    add_no_knowledge_flag(p, "train the bare backbone without LLM4MSR (no --knowledge needed)")


def check_pipeline_config(cfg: "object") -> None:
    """Refuse settings that would fail (or be ignored) only after minutes of TFX, before it starts."""
    from llm4msr_tf.checks import check_model_config, check_train_config, require_int, require_number
    from llm4msr_tf.utils.io import UserInputError

    model = cfg.resolved_model()
    if model.use_knowledge and not cfg.train.knowledge:
        raise UserInputError("pass --knowledge KNOWLEDGE_DIR (from `llm4msr knowledge`), or --no-knowledge "
                             "for the bare backbone")
    if not model.use_knowledge and cfg.train.knowledge:
        raise UserInputError(f"--knowledge {cfg.train.knowledge} and --no-knowledge contradict each other: "
                             "drop one of them")
    check_train_config(cfg.train)
    check_model_config(model)
    require_number(cfg, "min_auc", 0.0, 1.0)
    require_number(cfg, "max_auc_drop", 0.0, 1.0)
    require_int(cfg, "beam_workers", 1)


def run(args: argparse.Namespace) -> int:
    """Run or compile the pipeline; exit code 0 only when a model was pushed (or compiled)."""
    from llm4msr_tf.tfx.config import PipelineConfig

    cfg = dataclass_from_args(PipelineConfig, args)
    check_pipeline_config(cfg)  # before TFX loads (seconds) and runs (minutes)
    from llm4msr_tf.tfx.results import format_summary
    from llm4msr_tf.tfx.runner import compile_kubeflow, run_local

    if cfg.compile_only:
        out = compile_kubeflow(cfg, cfg.compile_only)
        save_config(cfg, os.path.dirname(out), "pipeline_config.json")
        print(f"wrote {out}")
        return 0
    result = run_local(cfg)
    save_config(cfg, os.path.abspath(cfg.pipeline_root), "pipeline_config.json")
    print(format_summary(result))
    if not result.succeeded:
        return 1
    return 0 if result.pushed else 3
