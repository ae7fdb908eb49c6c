"""`llm4msr export`: publish a trained model as a TF Serving version (same layout as the Pusher).

Loads the Keras model that `llm4msr train` saved in MODEL_DIR (``model.keras``), writes
``SERVING_DIR/<model-name>/<version>/`` with the ``serving_default`` and ``predict_raw``
signatures and warmup requests from real examples, checks it by reloading it and replaying
the warmup, and (re)writes ``SERVING_DIR/models.config`` for the server.
"""
import argparse
import logging
import os
from typing import Any, Optional

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args

log = logging.getLogger(__name__)


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `export` subcommand."""
    from llm4msr_tf.serving.export import ExportConfig

    add_command(sub, "export", [ExportConfig], run,
                help="export a trained model as a versioned TF Serving SavedModel with warmup",
                description=__doc__, raw_description=True)


def _data_dir_of(model_dir: str) -> Optional[str]:
    """The DATA_DIR a model directory was trained on, from the config.json `llm4msr train` wrote."""
    from llm4msr_tf.config import CONFIG_FILENAME
    from llm4msr_tf.utils.io import read_json

    path = os.path.join(model_dir, CONFIG_FILENAME)
    if not os.path.exists(path):
        return None
    # `llm4msr train` writes {"train": TrainConfig, "model": ModelConfig}.
    return (read_json(path).get("train") or {}).get("data") or None


def load_trained(model_dir: str, data: Optional[str] = None) -> Any:
    """(keras model, DatasetSpec) from a `llm4msr train` directory and its DATA_DIR."""
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.models import KERAS_MODEL_FILENAME, load_model
    from llm4msr_tf.utils.io import UserInputError

    if not model_dir:
        raise UserInputError("--model MODEL_DIR is required (a directory written by `llm4msr train`)")
    if not os.path.exists(os.path.join(model_dir, KERAS_MODEL_FILENAME)) and not model_dir.endswith(".keras"):
        raise UserInputError(
            f"{model_dir} holds no {KERAS_MODEL_FILENAME}; pass the directory `llm4msr train --out` wrote")
    data = data or _data_dir_of(model_dir)
    if data is None:
        raise UserInputError(
            f"cannot tell which prepared dataset {model_dir} was trained on; pass --data DATA_DIR")
    spec = DatasetSpec.load(data)
    model = load_model(model_dir)
    check_features_match(model, spec, model_dir)
    return model, spec


def check_features_match(model: Any, spec: Any, model_dir: str) -> None:
    """Refuse a DATA_DIR whose features are not the ones the model was trained on (wrong --data)."""
    from llm4msr_tf.utils.io import UserInputError

    emb = getattr(model, "embedding", None)
    wanted = {(f["name"], f["kind"], f["dtype"]) for f in getattr(emb, "features", [])}
    have = {(f.name, f.kind, f.dtype) for f in spec.features}
    missing = sorted(n for n, _, _ in wanted - have)
    if wanted and missing:
        raise UserInputError(
            f"--data {spec.data_dir} lacks feature(s) {missing} (or has them with another type) that the model in "
            f"{model_dir} was trained on; pass the DATA_DIR it was trained on")


def check_export_config(cfg: Any) -> None:
    """Refuse export settings that cannot work, before the model is loaded."""
    from llm4msr_tf.checks import require_int, require_ints
    from llm4msr_tf.serving.versions import check_new_version
    from llm4msr_tf.utils.io import UserInputError

    require_int(cfg, "warmup_examples", 0)
    require_ints(cfg, "warmup_batch_sizes", 1)
    require_int(cfg, "version", 0, optional=True)
    if not cfg.model_name or "/" in cfg.model_name or cfg.model_name.startswith("."):
        raise UserInputError(f"--model-name {cfg.model_name!r} must be a plain directory name")
    if cfg.version is not None:
        check_new_version(os.path.join(cfg.serving_dir, cfg.model_name), cfg.version)


def run(args: argparse.Namespace) -> int:
    """Export, verify, write models.config, print where it went."""
    import llm4msr_tf  # noqa: F401
    from llm4msr_tf import serving as ex
    from llm4msr_tf.config import to_dict

    cfg = dataclass_from_args(ex.ExportConfig, args)
    check_export_config(cfg)
    model, spec = load_trained(cfg.model, cfg.data)
    warm = ex.read_examples(spec, cfg.warmup_split, cfg.warmup_examples) if cfg.warmup_examples > 0 else []
    out = ex.export_versioned(
        model, spec, cfg.serving_dir, cfg.model_name, cfg.version, warm,
        transform_output_dir=cfg.transform_output, warmup_batch_sizes=cfg.warmup_batch_sizes,
        verify=cfg.verify, extra_metadata={"config": to_dict(cfg)})
    meta = ex.load_export_metadata(out)
    print(f"exported {cfg.model} -> {out}")
    print(f"  signatures: serving_default(examples), predict_raw("
          f"{', '.join(sorted(meta['signatures']['predict_raw']['inputs']))})")
    print(f"  warmup records: {meta['warmup_records']}"
          + (" (replayed OK)" if cfg.verify and meta["warmup_records"] else ""))
    if cfg.models_config:
        path = ex.write_serving_dir_config(cfg.serving_dir, cfg.config_base_path)
        print(f"  models.config: {path}")
    return 0
