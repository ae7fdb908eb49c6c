"""`llm4msr explain`: the scenario map, what the knowledge changes per prediction, and user cards.

Writes OUT/NAME.json, NAME.md, NAME.html and NAME_*.png. With --model (a `llm4msr train` output)
the data and knowledge default to the model's; without it only the scenario and user maps and
cards without scores are written.
"""
import argparse

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args
from llm4msr_tf.explain.config import ExplainConfig


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `explain` subcommand."""
    add_command(sub, "explain", [ExplainConfig], run,
                help="interpretability: scenario map, what the knowledge changes, user cards (JSON + report)",
                description=__doc__, raw_description=True)


def run(args: argparse.Namespace) -> int:
    """Run the explain views and print a one-screen summary."""
    cfg = dataclass_from_args(ExplainConfig, args)
    from llm4msr_tf.explain.run import run_explain, summary_lines

    res = run_explain(cfg)
    print("\n".join(summary_lines(res)))
    return 0
