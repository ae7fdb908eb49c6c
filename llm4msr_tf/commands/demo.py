"""`llm4msr demo`: the main job, every stage end to end on embedded defaults, with a report."""
import argparse

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `demo` subcommand."""
    from llm4msr_tf.demo import DemoConfig

    add_command(sub, "demo", [DemoConfig], run,
                help="run prepare -> knowledge -> train/TFX -> SavedModel -> serving check -> report",
                description="Runs every LLM4MSR stage on the synthetic default data and the default local LLM "
                            "(or --dataset/--source, --backbone, --llm), reusing stages that already finished, "
                            "and writes OUT/report.md and OUT/report.html.")


def run(args: argparse.Namespace) -> int:
    """Run the demo with the flags mapped onto DemoConfig."""
    from llm4msr_tf.demo import DemoConfig, run_demo

    run_demo(dataclass_from_args(DemoConfig, args))
    return 0
