"""`llm4msr train`: train a backbone alone or with LLM4MSR on a prepared dataset (no TFX)."""
import argparse
import dataclasses
import json

from llm4msr_tf.config import add_dataclass_args, dataclass_from_args

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
    """Add the `train` subcommand (flags: TrainConfig + ModelConfig fields, plus --no-knowledge)."""
    # TrainConfig lives in the light config module so `llm4msr --help` does not load TensorFlow.
    from llm4msr_tf.models.config import ModelConfig, TrainConfig

    p = sub.add_parser(
        "train", help="train a model on a prepared dataset; writes metrics.json and a SavedModel",
        description="Train BACKBONE (alone with --no-knowledge, or with LLM4MSR's meta networks fed "
                    "by --knowledge) with early stopping on eval AUC; report test AUC/log loss per scenario.")
    add_dataclass_args(p, TrainConfig)
    p.add_argument("--model-config", default=None, metavar="FILE_OR_ZOO_NAME",
                   help="JSON object of model fields (backbone, backbone_params, embedding_dim, ...): a file, "
                        "a trained model's config.json, or a ready zoo config such as movielens-1m-age/hinet; "
                        "model flags given on the command line override it")
    add_dataclass_args(p, ModelConfig)
    p.add_argument("--no-knowledge", dest="use_knowledge", action="store_false", default=True,
                   help="backbone only: same inputs, no knowledge or meta networks")
    p.set_defaults(func=run, **{f.name: _Unset(_field_default(f)) for f in dataclasses.fields(ModelConfig)})


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
    from llm4msr_tf.training import TrainConfig, run_training, summary_table

    train_cfg = dataclass_from_args(TrainConfig, args)
    model_cfg = model_config_from_args(args)
    result = run_training(train_cfg, model_cfg)
    print(summary_table(result))
    print(json.dumps({"out": train_cfg.out, "test_auc": result["test"]["overall"]["auc"]}))
    return 0
