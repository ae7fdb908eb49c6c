"""Version directories of the TF Serving layout ``BASE/<model_name>/<version>/``.

TF Serving's file system source polls ``BASE/<model_name>`` and loads numeric subdirectories
(the layout the TFX Pusher writes); temp directories with non-numeric names are ignored.
"""
import glob
import os
import time
from typing import List

from llm4msr_tf.utils.io import UserInputError


def existing_versions(base_dir: str) -> List[int]:
    """Numeric version subdirectories of BASE/<model_name> (what TF Serving would load)."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(d) for d in os.listdir(base_dir)
                  if d.isdigit() and os.path.isdir(os.path.join(base_dir, d)))


def next_version(base_dir: str) -> int:
    """Unix time (as the TFX Pusher uses), bumped above any existing version."""
    versions = existing_versions(base_dir)
    return max([int(time.time())] + [v + 1 for v in versions])


def check_new_version(base_dir: str, version: int) -> None:
    """Refuse a version TF Serving's default policy (serve the latest) would never load."""
    versions = existing_versions(base_dir)
    if versions and int(version) < versions[-1]:
        raise UserInputError(
            f"version {int(version)} is below the latest version {versions[-1]} in {base_dir}: TF Serving "
            f"serves the highest version, so it would never be served; leave --version unset or use > {versions[-1]}")


def latest_version_dir(base_dir: str) -> str:
    """The highest numeric version directory under BASE/<model_name>."""
    versions = existing_versions(base_dir)
    if not versions:
        raise UserInputError(f"no numeric version directories under {base_dir}; export a model first")
    return os.path.join(base_dir, str(versions[-1]))


def find_saved_model(path: str) -> str:
    """A SavedModel dir from a path that is one, BASE/<name> with version subdirs, or MDIR."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    if existing_versions(path):
        return latest_version_dir(path)
    # A `llm4msr train` output dir keeps its export in MDIR/saved_model/.
    if os.path.exists(os.path.join(path, "saved_model", "saved_model.pb")):
        return os.path.join(path, "saved_model")
    # A SERVING_DIR holding exactly one model: use its latest version.
    models = sorted({os.path.dirname(os.path.dirname(h))
                     for h in glob.glob(os.path.join(path, "*", "*", "saved_model.pb"))
                     if os.path.basename(os.path.dirname(h)).isdigit()})
    if len(models) == 1:
        return latest_version_dir(models[0])
    raise UserInputError(
        f"{path} is not a SavedModel (no saved_model.pb) nor a BASE/<model_name> directory with "
        "numeric versions; pass the directory `llm4msr export` wrote"
    )
