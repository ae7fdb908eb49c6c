"""Safe output: atomic directories and files that never lose data and clean up after a kill.

- `atomic_dir` builds an artifact in a temp directory beside its target and renames it into
  place only on success; every directory it writes holds a marker (`ARTIFACT_MARKER`, with
  the artifact kind), and ``overwrite`` replaces only a directory of the same kind that this
  tool wrote (`check_output_dir`): never a source it reads, an ancestor of one, or a folder
  without the marker.
- Temp names carry this host, process id and process start time
  (``.<name>.tmp-<host>-<pid>-<start>-<random>``), so the next run can prove a leftover of a
  killed run is ours and dead and remove it (`clean_stale_temps`); a previous version parked
  as ``.<name>.old-...`` by a swap that was killed midway is put back.
- `write_text` / `write_json` write a temp file created with `mkstemp` (O_EXCL, so a planted
  symlink is never followed) beside the target, then `os.replace` it.
- Outputs respect the umask (mkstemp/mkdtemp would give 0600/0700).
- `write_json` writes strict JSON: NaN/inf become null, with a ``<key>_null_reason``.
"""
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Any, Dict, Iterator, Mapping, Optional


class UserInputError(ValueError):
    """An error the user caused (bad path, column, model name...); the message says the fix."""


ARTIFACT_MARKER = ".llm4msr-artifact.json"
# Output layouts written before markers existed: a folder holding only these names (and the
# first one) is recognised as ours, so older outputs can still be updated or replaced.
LEGACY_LAYOUTS = {
    "data": ("dataset.json", {"dataset.json", "config.json", "train", "eval", "test", "vocab", "prompts"}),
    "knowledge": ("manifest.json", {"manifest.json", "config.json", re.compile(r"knowledge-.*\.tfrecord\.gz")}),
    "model": ("model.keras", {"model.keras", "metrics.json", "config.json", "saved_model"}),
}
KIND_NAMES = {"data": "prepared dataset (llm4msr prepare)", "knowledge": "knowledge directory (llm4msr knowledge)",
              "model": "trained model (llm4msr train)", "saved_model": "SavedModel export (llm4msr export)",
              "demo": "demo run folder (llm4msr demo)"}


# --------------------------------------------------------------------------- process identity
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def _start_time(pid: int) -> Optional[int]:
    """Kernel start time of a process (clock ticks since boot), None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        if not os.path.isdir("/proc/self"):  # not Linux: fall back to "does the pid exist"
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return 0
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after ")".
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return 0


def temp_tag() -> str:
    """``<host>-<pid>-<start>``: names a temp path as this process's (see `clean_stale_temps`)."""
    pid = os.getpid()
    return f"{_host_tag()}-{pid}-{_start_time(pid) or 0}"


_TAG = r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-"


def _owner_dead(host: str, pid: int, start: int) -> bool:
    """True only when the named process provably no longer runs (same host, pid gone or reused)."""
    if host != _host_tag():
        return False  # another machine's temp (shared file system): not ours to judge
    if pid == os.getpid():
        return False
    now = _start_time(pid)
    return now is None or (start != 0 and now != 0 and now != start)


# --------------------------------------------------------------------------- permissions
def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (threads may be running)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def respect_umask(path: str, is_dir: bool) -> None:
    """Give `path` the mode a plain mkdir/open would (0777/0666 minus the umask)."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


# --------------------------------------------------------------------------- markers
def artifact_kind(path: str) -> Optional[str]:
    """The kind recorded in a directory's marker; for pre-marker outputs the kind their layout shows."""
    marker = os.path.join(path, ARTIFACT_MARKER)
    if os.path.isfile(marker):
        try:
            with open(marker, encoding="utf-8") as f:
                return str(json.load(f).get("kind") or "artifact")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        names = set(os.listdir(path))
    except OSError:
        return None
    for kind, (key, allowed) in LEGACY_LAYOUTS.items():
        if key in names and all(any(a == n if isinstance(a, str) else a.fullmatch(n) for a in allowed)
                                for n in names):
            return kind
    return None


def write_marker(directory: str, kind: str) -> None:
    """Mark `directory` as an artifact of `kind` written by this tool."""
    from llm4msr_tf import __version__

    with open(os.path.join(directory, ARTIFACT_MARKER), "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "tool": "llm4msr_tf", "version": __version__,
                   "created_unix": int(time.time())}, f)


def _within(path: str, root: str) -> bool:
    """True when `path` is `root` or inside it (both real paths)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def check_output_dir(out: str, kind: str, overwrite: bool = False,
                     protected: Optional[Mapping[str, Any]] = None, flag: str = "--out") -> str:
    """Refuse an output directory whose replacement could lose data; returns its absolute path.

    Args:
        out: the directory to (re)write.
        kind: the artifact kind written there (``data``, ``knowledge``, ``model``, ...).
        overwrite: whether an existing artifact of the same kind may be replaced.
        protected: input name (e.g. ``"--source"``) -> path or list of paths that `out` must
            not be, nor contain.
        flag: how messages name `out`.

    Raises:
        UserInputError: `out` is (or contains) a protected input, is a file, lies below a file,
            is a non-empty folder this tool did not write, holds another kind of artifact, or
            exists while `overwrite` is False.
    """
    if not out:
        raise UserInputError(f"{flag} DIR is required")
    absout = os.path.abspath(out)
    real = os.path.realpath(absout)
    for name, paths in (protected or {}).items():
        for p in ([paths] if isinstance(paths, str) else list(paths or ())):
            if not p or "://" in str(p):
                continue
            rp = os.path.realpath(os.path.abspath(str(p)))
            if _within(rp, real):
                what = "is" if rp == real else "contains"
                raise UserInputError(
                    f"{flag} {absout} {what} the input {name} {p}; writing there would delete it: "
                    f"choose an {flag} outside it")
    # The nearest existing ancestor must be a directory we can write into.
    probe = os.path.dirname(absout)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise UserInputError(f"cannot create {flag} {absout}: {probe} is a file, not a directory; "
                             f"choose another {flag}")
    if probe and not os.access(probe, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot create {flag} {absout}: no write permission in {probe}; "
                             f"choose another {flag}")
    if not os.path.lexists(absout):
        return absout
    if not os.path.isdir(absout):
        raise UserInputError(f"{flag} {absout} exists and is not a directory; choose another {flag}")
    if not os.listdir(absout):
        return absout  # an empty folder holds nothing to lose
    have = artifact_kind(absout)
    if have is None:
        raise UserInputError(
            f"{flag} {absout} is not a {KIND_NAMES.get(kind, kind)}: a non-empty folder that llm4msr did not "
            f"write (no {ARTIFACT_MARKER}); it is never replaced, even with --overwrite: choose another {flag} "
            "or empty it yourself")
    if have != kind:
        raise UserInputError(
            f"{flag} {absout} holds a {KIND_NAMES.get(have, have)}, not a {KIND_NAMES.get(kind, kind)}; "
            f"choose another {flag}")
    if not overwrite:
        raise UserInputError(f"output directory {absout} already exists; pass --overwrite to replace it "
                             f"or choose another {flag}")
    return absout


def check_output_file(path: str, flag: str, protected: Optional[Mapping[str, Any]] = None) -> str:
    """Refuse an output file path that is a directory, lies below a file, or is/inside an input."""
    absp = os.path.abspath(path)
    real = os.path.realpath(absp)
    if os.path.isdir(absp):
        raise UserInputError(f"{flag} {absp} is a directory; give a file path")
    for name, p in (protected or {}).items():
        if p and "://" not in str(p) and _within(real, os.path.realpath(os.path.abspath(str(p)))):
            raise UserInputError(f"{flag} {absp} lies in the input {name} {p}; write it somewhere else")
    probe = os.path.dirname(absp)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise UserInputError(f"cannot create {flag} {absp}: {probe} is a file, not a directory")
    return absp


# --------------------------------------------------------------------------- stale temps
def remove_tree_marker_last(path: str, keep_last: str) -> None:
    """Delete a tree, its `keep_last` file last, so a kill midway leaves it still provably ours."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            if not (root == path and name == keep_last):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            p = os.path.join(root, name)
            os.unlink(p) if os.path.islink(p) else os.rmdir(p)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, keep_last))
    os.rmdir(path)


def clean_stale_temps(final_path: str) -> Dict[str, int]:
    """Remove temp dirs/files of `final_path` left by killed runs; put back a parked old version.

    Only names with our prefix whose recorded process (same host) no longer runs are touched.

    Returns:
        ``{"removed": n, "restored": n}``.
    """
    final_path = os.path.abspath(final_path)
    parent, base = os.path.split(final_path)
    pattern = re.compile(r"\." + re.escape(base) + r"\.(?P<what>tmp|old)-" + _TAG)
    done = {"removed": 0, "restored": 0}
    try:
        names = os.listdir(parent)
    except OSError:
        return done
    for name in sorted(names, key=lambda n: ".old-" not in n):  # restore before removing
        m = pattern.match(name)
        if not m or not _owner_dead(m["host"], int(m["pid"]), int(m["start"])):
            continue
        path = os.path.join(parent, name)
        try:
            if m["what"] == "old" and os.path.isdir(path) and not os.path.lexists(final_path):
                os.rename(path, final_path)  # a swap was killed between its two renames
                done["restored"] += 1
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                remove_tree_marker_last(path, ARTIFACT_MARKER)
            else:
                os.unlink(path)
            done["removed"] += 1
        except FileNotFoundError:
            pass
    return done


# --------------------------------------------------------------------------- atomic outputs
@contextlib.contextmanager
def atomic_dir(final_path: str, overwrite: bool = False, kind: str = "artifact",
               protected: Optional[Mapping[str, Any]] = None) -> Iterator[str]:
    """Yield a temp directory next to `final_path`; rename it into place only on success.

    Args:
        final_path: the directory to write.
        overwrite: replace an existing artifact of the same `kind` written by this tool.
        kind: the artifact kind recorded in the marker (see `check_output_dir`).
        protected: inputs `final_path` must not be or contain (see `check_output_dir`).

    A failed run leaves no half-written directory behind; leftovers of a killed earlier run
    are cleaned first.
    """
    final_path = check_output_dir(final_path, kind, overwrite, protected)
    parent = os.path.dirname(final_path) or "."
    os.makedirs(parent, exist_ok=True)
    clean_stale_temps(final_path)
    base = os.path.basename(final_path)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-{temp_tag()}-", dir=parent)
    try:
        respect_umask(tmp, True)
        write_marker(tmp, kind)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.lexists(final_path) and not (os.path.isdir(final_path) and not os.listdir(final_path)):
        # Keep the old directory until the new one is complete, then swap.
        old = tempfile.mkdtemp(prefix=f".{base}.old-{temp_tag()}-", dir=parent)
        os.rmdir(old)
        os.rename(final_path, old)
        os.rename(tmp, final_path)
        remove_tree_marker_last(old, ARTIFACT_MARKER)
    else:
        if os.path.isdir(final_path):
            os.rmdir(final_path)
        os.rename(tmp, final_path)


def write_text(path: str, text: str) -> str:
    """Write a text file atomically (mkstemp beside it, then rename); returns the path.

    The temp file is created with O_EXCL, so a symlink planted at any name is never followed;
    a symlink at `path` itself is replaced, not written through.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise UserInputError(f"{path} is a directory; give a file path to write")
    d = os.path.dirname(path)
    if os.path.exists(d) and not os.path.isdir(d):
        raise UserInputError(f"cannot write {path}: {d} is a file, not a directory")
    os.makedirs(d, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-{temp_tag()}-", dir=d)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def strict_json_value(obj: Any) -> Any:
    """`obj` with every NaN/inf replaced by None; a dict gains ``<key>_null_reason`` for each."""
    obj = _json_default(obj) if not isinstance(obj, (dict, list, tuple, str, int, float, bool, type(None))) else obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out: Dict[str, Any] = {}
        for k, v in obj.items():
            clean = strict_json_value(v)
            out[k] = clean
            if clean is None and isinstance(_plain(v), float) and f"{k}_null_reason" not in obj:
                out[f"{k}_null_reason"] = _reason(_plain(v))
        return out
    if isinstance(obj, (list, tuple)):
        return [strict_json_value(v) for v in obj]
    return obj


def restore_nan(obj: Any) -> Any:
    """Inverse of `strict_json_value` for readers that compute with the numbers: null -> NaN.

    A dict value is restored when its ``<key>_null_reason`` is present; a None in a list of
    numbers (e.g. a loss history) is restored too.
    """
    if isinstance(obj, dict):
        return {k: (float("nan") if v is None and f"{k}_null_reason" in obj else restore_nan(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            return [float("nan") if v is None else restore_nan(v) for v in obj]
        return [restore_nan(v) for v in obj]
    return obj


def _plain(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    return v


def _reason(v: float) -> str:
    if math.isnan(v):
        return "not a number (NaN): undefined here, e.g. an AUC over one class or an empty slice"
    return "infinite value (a diverged loss or a division by zero)"


def write_json(path: str, obj: Any) -> None:
    """Write strict JSON atomically (temp file + rename), pretty-printed and key-sorted.

    NaN and inf are not JSON: they are written as null with a ``<key>_null_reason``.
    """
    write_text(path, json.dumps(strict_json_value(obj), indent=2, sort_keys=True, default=_json_default,
                                allow_nan=False) + "\n")


def read_json(path: str) -> Any:
    """Read a JSON file with a clear error when it is missing or malformed."""
    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist; run the stage that writes it first")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
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


# OSErrors a user (or their machine) causes: bad path, permissions, full disk.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP, errno.EXDEV,
               errno.EFBIG}
_ERRNO_FIX = {errno.ENOSPC: "free disk space or choose another output path",
              errno.EDQUOT: "free space in your quota or choose another output path",
              errno.EACCES: "check the permissions or choose another path",
              errno.EPERM: "check the permissions or choose another path",
              errno.EROFS: "the file system is read-only: choose another output path",
              errno.EFBIG: "raise the file-size limit (ulimit -f) or choose another output path"}

# TensorFlow's file errors (tf.io, TFRecordWriter) are not OSErrors: the error class names and
# message words that mark one a user's machine causes, with the fix.
_TF_FILE_ERRORS = {
    "ResourceExhaustedError": (("No space left on device", "quota"), _ERRNO_FIX[errno.ENOSPC]),
    "PermissionDeniedError": ((), _ERRNO_FIX[errno.EACCES]),
    "OutOfRangeError": (("File too large",), _ERRNO_FIX[errno.EFBIG]),  # EFBIG (ulimit -f)
}


def tf_file_error_message(e: BaseException) -> Optional[str]:
    """One line for a TensorFlow file error a user causes (full disk, permissions); else None.

    Checked by class name so that the CLI needs no TensorFlow import to tell (an out-of-memory
    ResourceExhaustedError is not one: its traceback stays).
    """
    names = {c.__name__ for c in type(e).__mro__}
    if "OpError" not in names:
        return None
    for cls, (words, fix) in _TF_FILE_ERRORS.items():
        msg = " ".join(str(getattr(e, "message", e)).split())
        if cls in names and (not words or any(w.lower() in msg.lower() for w in words)):
            return f"{msg}; {fix}"
    return None


def os_error_message(e: OSError) -> str:
    """One line for a file-system error: the path, what went wrong and the fix."""
    where = " -> ".join(str(p) for p in (e.filename, getattr(e, "filename2", None)) if p)
    fix = _ERRNO_FIX.get(e.errno or 0, "check the path")
    return f"{where or 'file system'}: {e.strerror or e}; {fix}"
