"""`llm4msr train`: train a backbone alone or with LLM4MSR on a prepared dataset (no TFX)."""
import argparse
import json

from llm4msr_tf.commands import add_command, add_no_knowledge_flag
from llm4msr_tf.config import dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `train` subcommand (flags: TrainConfig + ModelConfig fields, plus --no-knowledge)."""
    # TrainConfig lives in the light config module so `llm4msr --help` does not load TensorFlow.
    from llm4msr_tf.models.config import ModelConfig, TrainConfig

    p = add_command(sub, "train", [TrainConfig, ModelConfig], run,
                    help="train a model on a prepared dataset; writes metrics.json and a SavedModel",
                    description="Train BACKBONE (alone with --no-knowledge, or with LLM4MSR's meta networks fed "
                                "by --knowledge) with early stopping on eval AUC; report test AUC/log loss per "
                                "scenario.")
    add_no_knowledge_flag(p, "backbone only: same inputs, no knowledge or meta networks")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, save; print the per-scenario test table."""
    from llm4msr_tf.models.config import ModelConfig, TrainConfig
    from llm4msr_tf.utils.io import UserInputError

    train_cfg = dataclass_from_args(TrainConfig, args)
    model_cfg = dataclass_from_args(ModelConfig, args)
    if not train_cfg.data:
        raise UserInputError("--data is required: a directory written by `llm4msr prepare`")
    if not train_cfg.out:
        raise UserInputError("--out is required: where to write the trained model")
    if model_cfg.use_knowledge and not train_cfg.knowledge:
        raise UserInputError("pass --knowledge KNOWLEDGE_DIR (from `llm4msr knowledge`), or "
                             "--no-knowledge to train the backbone alone")
    if not model_cfg.use_knowledge and train_cfg.knowledge:
        raise UserInputError(f"--knowledge {train_cfg.knowledge} and --no-knowledge contradict each other: "
                             "drop --knowledge to train the backbone alone, or --no-knowledge to use it")
    from llm4msr_tf.checks import check_model_config, check_train_config

    check_train_config(train_cfg)  # before TensorFlow loads (seconds)
    check_model_config(model_cfg)
    from llm4msr_tf.training import run_training, summary_table

    result = run_training(train_cfg, model_cfg)
    print(summary_table(result))
    print(json.dumps({"out": train_cfg.out, "test_auc": result["test"]["overall"]["auc"]}))
    return 0
