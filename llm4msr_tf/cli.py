"""The `llm4msr` command line: one subcommand per implemented stage.

Each stage module exposes ``register(subparsers)``, which adds its subparser and sets
``func``; only modules listed in `COMMAND_MODULES` are shown, so the help lists exactly
what is implemented. Heavy imports (TensorFlow, torch, Beam) happen inside the command
functions, so `llm4msr --help` stays fast.

Errors a user can cause surface as one line and exit code 2: the library raises `ValueError`
/ `TypeError` / `FileNotFoundError` with a message naming the input (the CLI's own checks
raise `UserInputError`, a `ValueError` whose message names the flag); file-system errors a user
or their machine causes (permissions, full disk, a file where a folder should be) are one line
naming the path too. ``-v`` adds the traceback.
"""
import argparse
import importlib
import logging
import sys
from typing import List, Optional

from llm4msr_tf import __version__
from llm4msr_tf.utils.logging_utils import setup_logging

# Order is the order shown in --help. Add a module here when its stage lands.
COMMAND_MODULES: List[str] = [
    "llm4msr_tf.commands.info",
    "llm4msr_tf.commands.prepare",
    "llm4msr_tf.commands.knowledge",
    "llm4msr_tf.commands.knowledge_report",
    "llm4msr_tf.commands.join_knowledge",
    "llm4msr_tf.commands.train",
    "llm4msr_tf.commands.pipeline",
    "llm4msr_tf.commands.export",
    "llm4msr_tf.commands.predict",
    "llm4msr_tf.commands.explain",
    "llm4msr_tf.commands.bench",
    "llm4msr_tf.commands.demo",
]

log = logging.getLogger("llm4msr_tf")

# What a user can cause (bad path, flag, data, backbone name...): one line, exit code 2.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every implemented subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="llm4msr",
        description="LLM4MSR: LLM-enhanced multi-scenario recommendation on TensorFlow/TFX.",
    )
    parser.add_argument("--version", action="version", version=f"llm4msr_tf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the `llm4msr` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        rc = args.func(args)
    except OSError as e:
        from llm4msr_tf.utils.io import USER_ERRNOS, os_error_message

        if isinstance(e, FileNotFoundError) and e.errno is None:
            return _user_error(args, str(e))  # raised by our own code with a message
        if e.errno not in USER_ERRNOS:
            raise
        return _user_error(args, os_error_message(e))
    except USER_ERRORS as e:
        return _user_error(args, str(e))
    except Exception as e:  # TensorFlow's file errors: a full disk while writing TFRecords
        from llm4msr_tf.utils.io import tf_file_error_message

        message = tf_file_error_message(e)
        if message is None:
            raise
        return _user_error(args, message)
    return int(rc or 0)


def _user_error(args: argparse.Namespace, message: str) -> int:
    """One clear line for an error the user can fix (exit code 2); the traceback only with -v."""
    if args.verbose:
        log.exception("failed")
    one_line = " ".join(message.split())
    print(f"llm4msr {args.command}: error: {one_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
