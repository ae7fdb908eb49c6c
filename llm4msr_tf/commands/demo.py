"""`llm4msr demo`: the main job, every stage end to end on embedded defaults, with a report."""
import argparse

from llm4msr_tf.config import add_dataclass_args, dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `demo` subcommand."""
    from llm4msr_tf.demo import DemoConfig

    p = sub.add_parser(
        "demo",
        help="run prepare -> knowledge -> train/TFX -> SavedModel -> serving check -> report",
        description=(
            "Runs every LLM4MSR stage on the synthetic default data and the default local LLM "
            "(or --dataset/--source, --backbone, --llm), reusing stages that already finished, "
            "and writes OUT/report.md and OUT/report.html."
        ),
    )
    add_dataclass_args(p, DemoConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the flags mapped onto DemoConfig."""
    from llm4msr_tf.demo import DemoConfig, run_demo

    run_demo(dataclass_from_args(DemoConfig, args))
    return 0
