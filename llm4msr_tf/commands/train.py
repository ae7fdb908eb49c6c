"""`llm4msr train`: train a backbone alone or with LLM4MSR on a prepared dataset (no TFX)."""
import argparse
import dataclasses
import json

from llm4msr_tf.commands import add_command, add_no_knowledge_flag
from llm4msr_tf.config import dataclass_from_args


class _Unset:
    """Default of every ModelConfig flag, so `run` can tell the flags a user typed (which override
    --model-config) from the ones left alone (which keep the file's value, else the field default).
    Prints as the field's default, so ``--help`` still shows it."""

    def __init__(self, default: object) -> None:
        self.default = default

    def __repr__(self) -> str:
        return repr(self.default)

    def __str__(self) -> str:
        return str(self.default)


def _field_default(f: "dataclasses.Field") -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `train` subcommand (flags: TrainConfig + ModelConfig fields, --model-config, --no-knowledge)."""
    # TrainConfig lives in the light config module so `llm4msr --help` does not load TensorFlow.
    from llm4msr_tf.distribute import DistributeConfig
    from llm4msr_tf.models.config import ModelConfig, TrainConfig

    p = add_command(sub, "train", [TrainConfig, ModelConfig, DistributeConfig], run,
                    help="train a model on a prepared dataset; writes metrics.json and a SavedModel",
                    description="Train BACKBONE (alone with --no-knowledge, or with LLM4MSR's meta networks fed "
                                "by --knowledge) with early stopping on eval AUC; report test AUC/log loss per "
                                "scenario. --strategy multi_worker trains on the cluster in $TF_CONFIG (run the "
                                "same command on every worker; only the chief writes --out).")
    p.add_argument("--model-config", default=None, metavar="FILE_OR_ZOO_NAME",
                   help="JSON object of model fields (backbone, backbone_params, embedding_dim, ...): a file, "
                        "a trained model's config.json, or a ready zoo config such as movielens-1m-age/hinet; "
                        "model flags given on the command line override it")
    add_no_knowledge_flag(p, "backbone only: same inputs, no knowledge or meta networks")
    p.set_defaults(**{f.name: _Unset(_field_default(f)) for f in dataclasses.fields(ModelConfig)})


def model_config_from_args(args: argparse.Namespace):
    """ModelConfig from --model-config (if any) overlaid with the model flags given explicitly."""
    from llm4msr_tf.config import from_dict
    from llm4msr_tf.models.config import ModelConfig

    values = {}
    if getattr(args, "model_config", None):
        from llm4msr_tf.configs import read_model_config

        values.update(read_model_config(args.model_config))
    for f in dataclasses.fields(ModelConfig):
        if hasattr(args, f.name) and not isinstance(getattr(args, f.name), _Unset):
            values[f.name] = getattr(args, f.name)
    return from_dict(ModelConfig, values)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, save; print the per-scenario test table."""
    from llm4msr_tf.distribute import DistributeConfig
    from llm4msr_tf.models.config import TrainConfig
    from llm4msr_tf.utils.io import UserInputError

    train_cfg = dataclass_from_args(TrainConfig, args)
    model_cfg = model_config_from_args(args)
    dist_cfg = dataclass_from_args(DistributeConfig, args)
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

    result = run_training(train_cfg, model_cfg, dist_cfg)
    if not result["distribute"]["is_chief"]:
        d = result["distribute"]
        print(f"{d['task_type']} {d['task_id']} of {d['num_workers']} workers done (the chief writes {train_cfg.out})")
        return 0
    print(summary_table(result))
    print(json.dumps({"out": train_cfg.out, "test_auc": result["test"]["overall"]["auc"]}))
    return 0
