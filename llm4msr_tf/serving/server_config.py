"""TF Serving's configuration files: ``models.config`` (ModelServerConfig) and batching parameters."""
import os
from typing import Any, Dict, Sequence, Tuple

from llm4msr_tf.serving.versions import existing_versions
from llm4msr_tf.utils.io import UserInputError, write_text


def models_config_text(
    models: Sequence[Tuple[str, str]],
    version_policy: str = "latest",
    num_versions: int = 1,
    versions: Sequence[int] = (),
) -> str:
    """A TF Serving `--model_config_file` (ModelServerConfig text proto) for (name, base_path)s.

    version_policy: "latest" (keep the newest `num_versions`), "all", or "specific" (`versions`).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models:
        m = cfg.model_config_list.config.add()
        m.name = name
        m.base_path = base_path
        m.model_platform = "tensorflow"
        policy = m.model_version_policy
        if version_policy == "latest":
            policy.latest.num_versions = int(num_versions)
        elif version_policy == "all":
            policy.all.SetInParent()
        elif version_policy == "specific":
            if not versions:
                raise UserInputError("version_policy 'specific' needs at least one version")
            policy.specific.versions.extend(int(v) for v in versions)
        else:
            raise UserInputError(
                f"unknown version policy {version_policy!r}; use latest, all or specific"
            )
    return text_format.MessageToString(cfg)


def parse_models_config(path: str) -> Any:
    """Read and validate a models.config file into a ModelServerConfig proto."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist")
    cfg = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        try:
            text_format.Parse(f.read(), cfg)
        except text_format.ParseError as e:
            raise UserInputError(f"{path} is not a valid ModelServerConfig text proto: {e}") from e
    names = [m.name for m in cfg.model_config_list.config]
    if not names:
        raise UserInputError(f"{path} lists no models (model_config_list.config is empty)")
    if len(set(names)) != len(names):
        raise UserInputError(f"{path} lists a model name twice: {names}")
    for m in cfg.model_config_list.config:
        if not m.base_path:
            raise UserInputError(f"{path}: model {m.name!r} has no base_path")
    return cfg


def write_models_config(path: str, models: Sequence[Tuple[str, str]], **kwargs: Any) -> str:
    """Write models.config atomically and validate it by parsing it back."""
    write_text(path, models_config_text(models, **kwargs))
    parse_models_config(path)
    return path


def batching_parameters_text(
    max_batch_size: int = 1024,
    batch_timeout_micros: int = 2000,
    num_batch_threads: int = 4,
    max_enqueued_batches: int = 100,
    allowed_batch_sizes: Sequence[int] = (1, 8, 64, 256, 1024),
    pad_variable_length_inputs: bool = True,
) -> str:
    """A TF Serving `--batching_parameters_file` (BatchingParameters text proto)."""
    if allowed_batch_sizes and int(allowed_batch_sizes[-1]) != int(max_batch_size):
        raise UserInputError("the last allowed batch size must equal max_batch_size")
    lines = [
        f"max_batch_size {{ value: {int(max_batch_size)} }}",
        f"batch_timeout_micros {{ value: {int(batch_timeout_micros)} }}",
        f"num_batch_threads {{ value: {int(num_batch_threads)} }}",
        f"max_enqueued_batches {{ value: {int(max_enqueued_batches)} }}",
    ]
    lines += [f"allowed_batch_sizes: {int(b)}" for b in allowed_batch_sizes]
    lines.append(f"pad_variable_length_inputs: {'true' if pad_variable_length_inputs else 'false'}")
    return "\n".join(lines) + "\n"


def parse_batching_parameters(path: str) -> Dict[str, Any]:
    """Validate a batching parameters file; returns its fields (proto when TF Serving's is installed)."""
    if not os.path.exists(path):
        raise UserInputError(f"{path} does not exist")
    text = open(path).read()
    try:
        from google.protobuf import text_format
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        msg = session_bundle_config_pb2.BatchingParameters()
        text_format.Parse(text, msg)
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(msg, preserving_proto_field_name=True)
    except ImportError:
        # tensorflow-serving-api does not ship session_bundle_config_pb2: check the fields
        # ourselves against the BatchingParameters schema.
        return _parse_batching_fallback(path, text)


_BATCHING_WRAPPED = ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
                     "max_enqueued_batches", "thread_pool_name")
_BATCHING_SCALAR = ("allowed_batch_sizes", "pad_variable_length_inputs",
                    "enable_large_batch_splitting")


def _parse_batching_fallback(path: str, text: str) -> Dict[str, Any]:
    import re

    out: Dict[str, Any] = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(\w+)\s*\{\s*value\s*:\s*(\S+?)\s*\}", line)
        if m and m.group(1) in _BATCHING_WRAPPED:
            v = m.group(2).strip('"')
            out[m.group(1)] = int(v) if v.isdigit() else v
            continue
        m = re.fullmatch(r"(\w+)\s*:\s*(\S+)", line)
        if m and m.group(1) in _BATCHING_SCALAR:
            v = m.group(2)
            if m.group(1) == "allowed_batch_sizes":
                out.setdefault("allowed_batch_sizes", []).append(int(v))
            else:
                out[m.group(1)] = v == "true"
            continue
        raise UserInputError(f"{path} line {i}: {line!r} is not a BatchingParameters field")
    sizes = out.get("allowed_batch_sizes", [])
    if sizes and sizes != sorted(sizes):
        raise UserInputError(f"{path}: allowed_batch_sizes must increase")
    if sizes and "max_batch_size" in out and sizes[-1] != int(out["max_batch_size"]):
        raise UserInputError(f"{path}: the last allowed_batch_sizes must equal max_batch_size")
    return out


GENERATED_HEADER = ("# Written by `llm4msr export` (TF Serving --model_config_file). Delete this line to keep\n"
                    "# your edits: a file without it is never overwritten.\n")


def _is_generated(path: str) -> bool:
    """True when models.config was written by us (our header, or exactly what we generate)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if text.startswith(GENERATED_HEADER):
        return True
    try:  # written before the header existed: byte-equal to what we would generate for its models
        cfg = parse_models_config(path)
        return text == models_config_text([(m.name, m.base_path) for m in cfg.model_config_list.config])
    except UserInputError:
        return False


def write_serving_dir_config(serving_dir: str, base_path: str = "/models") -> str:
    """Write SERVING_DIR/models.config listing every model with numeric versions there.

    `base_path` is where the server sees SERVING_DIR (the container mount), so the file can
    be used as is with serving/docker-compose.yml. A models.config edited by hand (without our
    header line) is left as it is; models it does not list are named in a warning.
    """
    import logging

    names = sorted(d for d in os.listdir(serving_dir)
                   if not d.startswith(".") and existing_versions(os.path.join(serving_dir, d)))
    if not names:
        raise UserInputError(f"{serving_dir} holds no BASE/<model_name>/<version>/ models to list")
    models = [(n, base_path.rstrip("/") + "/" + n) for n in names]
    path = os.path.join(serving_dir, "models.config")
    if os.path.exists(path) and not _is_generated(path):
        try:
            listed = {m.name for m in parse_models_config(path).model_config_list.config}
        except UserInputError:
            listed = set()
        missing = [n for n in names if n not in listed]
        if missing:
            logging.getLogger(__name__).warning(
                "%s was edited by hand, so it is left unchanged; it does not list %s: add "
                "config { name: '%s' base_path: '%s' model_platform: 'tensorflow' } to model_config_list",
                path, missing, missing[0], dict(models)[missing[0]])
        return path
    write_text(path, GENERATED_HEADER + models_config_text(models))
    parse_models_config(path)
    return path
