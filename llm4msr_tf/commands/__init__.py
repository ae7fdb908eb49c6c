"""CLI subcommands, one module each; see `llm4msr_tf.cli.COMMAND_MODULES`.

Each module's ``register(sub)`` adds its subparser with `add_command` (the flags are the fields
of its config dataclasses) and points ``func`` at its ``run(args)``.
"""
import argparse
from typing import Any, Callable, Sequence


def add_command(sub: "argparse._SubParsersAction", name: str, configs: Sequence[type], run: Callable[..., int],
                help: str, description: str, raw_description: bool = False) -> argparse.ArgumentParser:
    """Add subcommand `name` with one flag per field of `configs`, running `run`.

    Args:
        sub: the top-level parser's subparsers.
        name: the subcommand.
        configs: config dataclasses whose fields become flags (`llm4msr_tf.config.add_dataclass_args`).
        run: called with the parsed arguments; returns the exit code.
        help: the one-line help in ``llm4msr --help``.
        description: the subcommand's ``--help`` text.
        raw_description: keep the description's line breaks (a module docstring).

    Returns:
        The subparser, for arguments that are not config fields.
    """
    from llm4msr_tf.config import add_dataclass_args

    kwargs: Any = {"formatter_class": argparse.RawDescriptionHelpFormatter} if raw_description else {}
    p = sub.add_parser(name, help=help, description=description, **kwargs)
    for cls in configs:
        add_dataclass_args(p, cls)
    p.set_defaults(func=run)
    return p


def add_no_knowledge_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--no-knowledge``: the backbone alone (sets ModelConfig.use_knowledge, which has no flag)."""
    p.add_argument("--no-knowledge", dest="use_knowledge", action="store_false", default=True, help=help)
