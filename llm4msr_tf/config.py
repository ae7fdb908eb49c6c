"""Typed configuration: dataclasses with defaults that run, mapped one-to-one onto CLI flags.

Every subcommand's config is a dataclass; `add_dataclass_args` turns its fields into
argparse flags (``field_name`` -> ``--field-name``) and `dataclass_from_args` builds the
config back, so a flag can never drift from its field. Configs compose: a field whose type
is itself a config dataclass (e.g. the pipeline's ``train: TrainConfig``) contributes that
config's flags (its ``default_factory`` gives their defaults; ``metadata={"skip": (...)}``
leaves out fields that do not apply), so no field is declared twice. `save_config` writes the
effective config next to the artifact it produced.
"""
import argparse
import dataclasses
import os
import typing
from typing import Any, Dict, Optional, Type, TypeVar

from llm4msr_tf.utils.io import UserInputError, read_json, write_json

T = TypeVar("T")

CONFIG_FILENAME = "config.json"


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)


def _base_type(tp: Any) -> Any:
    if _is_optional(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _field_default(f: "dataclasses.Field[Any]", base: Any = None) -> Any:
    """The field's value in `base` (a config instance), else its declared default."""
    if base is not None:
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore


def _nested(hints: Dict[str, Any], f: "dataclasses.Field[Any]") -> bool:
    """True for a field holding a composed config dataclass."""
    return dataclasses.is_dataclass(_base_type(hints[f.name]))


def add_dataclass_args(parser: argparse.ArgumentParser, cls: Type[Any], skip: tuple = (),
                       base: Any = None) -> None:
    """Add one ``--flag`` per config field, recursing into composed config fields.

    Args:
        parser: the (sub)parser to extend.
        cls: the config dataclass; each field's ``metadata["help"]`` is its help text,
            ``metadata["choices"]`` its choices, ``metadata["cli"] = False`` keeps it off the CLI.
        skip: field names to leave out.
        base: an instance whose values are the flags' defaults (default: the class defaults).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        default = _field_default(f, base)
        if _nested(hints, f):
            add_dataclass_args(parser, type(default), skip=tuple(f.metadata.get("skip", ())), base=default)
            continue
        tp = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        kwargs: Dict[str, Any] = {"dest": f.name, "default": default}
        helptext = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            # --flag / --no-flag pair so both defaults are reachable from the CLI.
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple) or tp in (list, tuple):
            args = typing.get_args(tp)
            elem = args[0] if args else str
            kwargs["type"] = elem
            kwargs["nargs"] = "*"
        elif tp in (int, float, str):
            kwargs["type"] = tp
        else:
            kwargs["type"] = str
        # BooleanOptionalAction already appends "(default: ...)" to the help on Python 3.10.
        kwargs["help"] = helptext if tp is bool else f"{helptext} (default: {default!r})"
        parser.add_argument(flag, **kwargs)


def dataclass_from_args(cls: Type[T], args: argparse.Namespace, base: Any = None, **overrides: Any) -> T:
    """Build a config dataclass from parsed args (the inverse of `add_dataclass_args`).

    Args:
        cls: the config dataclass.
        args: parsed arguments; fields absent from them keep their default (or `base`'s value).
        base: an instance supplying the values of fields absent from `args`.
        **overrides: field values that win over `args`.

    Returns:
        The config, composed configs built the same way from the same flat `args`.
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif _nested(hints, f):
            sub = _field_default(f, base)
            values[f.name] = dataclass_from_args(type(sub), args, base=sub)
        elif hasattr(args, f.name):
            v = getattr(args, f.name)
            if isinstance(v, list) and typing.get_origin(_base_type(hints[f.name])) is tuple:
                v = tuple(v)
            values[f.name] = v
        elif base is not None:
            values[f.name] = getattr(base, f.name)
    return cls(**values)  # type: ignore[call-arg]


def to_dict(cfg: Any) -> Dict[str, Any]:
    """A JSON-ready dict of a config dataclass, with its class name for provenance."""
    d = dataclasses.asdict(cfg)
    d["__config_class__"] = f"{type(cfg).__module__}.{type(cfg).__qualname__}"
    return d


def from_dict(cls: Type[T], d: Dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are a clear error."""
    d = {k: v for k, v in d.items() if k != "__config_class__"}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserInputError(
            f"unknown config field(s) {unknown} for {cls.__name__}; valid fields: {sorted(names)}"
        )
    hints = typing.get_type_hints(cls)
    for k, v in list(d.items()):
        tp = _base_type(hints[k])
        if isinstance(v, list) and typing.get_origin(tp) is tuple:
            d[k] = tuple(v)
        elif isinstance(v, dict) and dataclasses.is_dataclass(tp):
            d[k] = from_dict(tp, v)
    return cls(**d)  # type: ignore[call-arg]


def save_config(cfg: Any, directory: str, filename: str = CONFIG_FILENAME) -> str:
    """Write the effective config next to the artifact it produced; returns the path."""
    path = os.path.join(directory, filename)
    write_json(path, to_dict(cfg))
    return path


def load_config(cls: Type[T], directory: str, filename: str = CONFIG_FILENAME) -> T:
    """Read a config written by `save_config`."""
    return from_dict(cls, read_json(os.path.join(directory, filename)))


def default_data_root(project_root: Optional[str] = None) -> str:
    """Where the shared real datasets live: $LLM4MSR_DATA_ROOT, else ../shared/data."""
    env = os.environ.get("LLM4MSR_DATA_ROOT")
    if env:
        return env
    root = project_root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.normpath(os.path.join(root, "..", "shared", "data"))
