"""Ready model configurations (the zoo) and the reader of model-config JSON files.

``zoo/<dataset>/<backbone>.json`` holds `ModelConfig` fields (backbone, backbone_params,
embedding_dim, ...) for one dataset x backbone, to copy or to pass as
``llm4msr train --model-config movielens-1m-age/hinet``. Keys starting with ``_`` are notes
for people (where the widths come from, which prepare / train flags go with the file) and are
ignored. Light module: no TensorFlow import.
"""
import glob
import json
import os
from typing import Any, Dict, List

from llm4msr_tf.utils.io import UserInputError

ZOO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")


def zoo_names() -> List[str]:
    """Every ready config as ``dataset/backbone``, sorted."""
    paths = glob.glob(os.path.join(ZOO_DIR, "*", "*.json"))
    return sorted(os.path.relpath(p, ZOO_DIR)[: -len(".json")].replace(os.sep, "/") for p in paths)


def resolve(path_or_name: str) -> str:
    """A model-config file path: an existing file, or a zoo name such as ``ml-100k/m2m``."""
    if os.path.isfile(path_or_name):
        return path_or_name
    if os.path.isdir(path_or_name):
        raise UserInputError(f"--model-config {path_or_name!r} is a directory; pass a JSON file (a trained "
                             "model's config.json) or a zoo name")
    name = path_or_name[: -len(".json")] if path_or_name.endswith(".json") else path_or_name
    candidate = os.path.join(ZOO_DIR, *name.split("/")) + ".json"
    if "/" in name and os.path.isfile(candidate):
        return candidate
    raise UserInputError(
        f"--model-config {path_or_name!r}: no such file, and not a zoo config; pass a JSON file of "
        f"ModelConfig fields or one of: {', '.join(zoo_names())}")


def read_model_config(path_or_name: str) -> Dict[str, Any]:
    """The ModelConfig fields of a JSON file (a zoo config, or a trained model's config.json)."""
    path = resolve(path_or_name)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"--model-config {path}: not valid JSON ({e}); fix the file or pass a zoo name") from e
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]  # MDIR/config.json written by `llm4msr train`: {"train": ..., "model": ...}
    if not isinstance(data, dict):
        raise UserInputError(f"--model-config {path}: expected a JSON object of ModelConfig fields, "
                             f"got {type(data).__name__}")
    return {k: v for k, v in data.items() if not k.startswith("_")}
