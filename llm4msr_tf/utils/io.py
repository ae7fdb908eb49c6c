"""Atomic output helpers: every artifact is written to a temp path, then renamed."""
import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator


class UserInputError(ValueError):
    """An error the user caused (bad path, column, model name...); the message says the fix."""


@contextlib.contextmanager
def atomic_dir(final_path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temp directory next to `final_path`; rename it into place only on success.

    A failed run leaves no half-written directory behind.
    """
    final_path = os.path.abspath(final_path)
    parent = os.path.dirname(final_path) or "."
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(final_path) and not overwrite:
        raise UserInputError(
            f"output directory {final_path} already exists; pass --overwrite or choose another path"
        )
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(final_path):
        # Keep the old directory until the new one is complete, then swap.
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(final_path)}.old-", dir=parent)
        os.rmdir(old)
        os.rename(final_path, old)
        os.rename(tmp, final_path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final_path)


def write_text(path: str, text: str) -> str:
    """Write a text file atomically (temp file in the same folder + rename); returns the path."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path: str, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), pretty-printed and key-sorted."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str) -> Any:
    """Read a JSON file with a clear error when it is missing or malformed."""
    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist; run the stage that writes it first")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{path} is not valid JSON ({e}); delete it and re-run") from e


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    return str(o)
