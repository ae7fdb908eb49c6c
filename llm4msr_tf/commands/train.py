"""`llm4msr train`: train a backbone alone or with LLM4MSR on a prepared dataset (no TFX)."""
import argparse
import json

from llm4msr_tf.commands import add_command, add_no_knowledge_flag
from llm4msr_tf.config import dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `train` subcommand (flags: TrainConfig + ModelConfig fields, plus --no-knowledge)."""
    # TrainConfig lives in the light config module so `llm4msr --help` does not load TensorFlow.
    from llm4msr_tf.distribute import DistributeConfig
    from llm4msr_tf.models.config import ModelConfig, TrainConfig

    p = add_command(sub, "train", [TrainConfig, ModelConfig, DistributeConfig], run,
                    help="train a model on a prepared dataset; writes metrics.json and a SavedModel",
                    description="Train BACKBONE (alone with --no-knowledge, or with LLM4MSR's meta networks fed "
                                "by --knowledge) with early stopping on eval AUC; report test AUC/log loss per "
                                "scenario. --strategy multi_worker trains on the cluster in $TF_CONFIG (run the "
                                "same command on every worker; only the chief writes --out).")
    add_no_knowledge_flag(p, "backbone only: same inputs, no knowledge or meta networks")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, save; print the per-scenario test table."""
    from llm4msr_tf.distribute import DistributeConfig
    from llm4msr_tf.models.config import ModelConfig, TrainConfig
    from llm4msr_tf.utils.io import UserInputError

    train_cfg = dataclass_from_args(TrainConfig, args)
    model_cfg = dataclass_from_args(ModelConfig, args)
    dist_cfg = dataclass_from_args(DistributeConfig, args)
    if not train_cfg.data:
        raise UserInputError("--data is required: a directory written by `llm4msr prepare`")
    if not train_cfg.out:
        raise UserInputError("--out is required: where to write the trained model")
    if model_cfg.use_knowledge and not train_cfg.knowledge:
        raise UserInputError("pass --knowledge KNOWLEDGE_DIR (from `llm4msr knowledge`), or "
                             "--no-knowledge to train the backbone alone")
    from llm4msr_tf.training import run_training, summary_table

    result = run_training(train_cfg, model_cfg, dist_cfg)
    if not result["distribute"]["is_chief"]:
        d = result["distribute"]
        print(f"{d['task_type']} {d['task_id']} of {d['num_workers']} workers done (the chief writes {train_cfg.out})")
        return 0
    print(summary_table(result))
    print(json.dumps({"out": train_cfg.out, "test_auc": result["test"]["overall"]["auc"]}))
    return 0
