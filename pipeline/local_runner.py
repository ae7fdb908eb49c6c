"""Run this project's pipeline here with LocalDagRunner: ``python pipeline/local_runner.py``.

Settings come from `configs.local_config()`; ``--print-config`` shows them as JSON and exits.
Exit code 0 when a model was pushed, 3 when the Evaluator did not bless it, 1 on a failure.
"""
import sys

import configs

from llm4msr_tf.tfx.results import format_summary
from llm4msr_tf.tfx.runner import run_local
from llm4msr_tf.utils.logging_utils import setup_logging


def main(argv: list) -> int:
    """Run (or with --print-config, show) the local pipeline."""
    cfg = configs.local_config()
    if "--print-config" in argv:
        return configs.print_config(cfg)
    setup_logging()
    result = run_local(cfg)
    print(format_summary(result))
    if not result.succeeded:
        return 1
    return 0 if result.pushed else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
