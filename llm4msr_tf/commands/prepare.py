"""`llm4msr prepare`: turn multi-scenario logs into TFRecords, prompts and dataset.json."""
import argparse

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `prepare` subcommand (flags map one-to-one onto PrepareConfig fields)."""
    from llm4msr_tf.data.config import PrepareConfig

    add_command(sub, "prepare", [PrepareConfig], run,
                help="turn interaction logs (synthetic, movielens, amazon, kuaisar, csv) into a prepared DATA_DIR",
                description="Write DATA_DIR with train/eval/test gzip TFRecords, vocab/, prompts/ and "
                            "dataset.json (see docs/interfaces.md).")


def run(args: argparse.Namespace) -> int:
    """Run prepare and print the summary table."""
    from llm4msr_tf.data.config import PrepareConfig
    from llm4msr_tf.data.prepare import prepare, summary_table

    cfg = dataclass_from_args(PrepareConfig, args)
    spec = prepare(cfg)
    print(summary_table(spec))
    pr = spec.config.get("prompts", {})
    print(f"prompts: {pr.get('scenario', 0)} scenario, {pr.get('user', 0)} user "
          f"({pr.get('user_truncated', 0)} truncated, mean {pr.get('user_mean_chars', 0):.0f} chars)")
    tk = spec.config.get("train_keep", {})
    if tk.get("fraction", 1.0) < 1.0:
        print(f"sparse training: kept {tk['train_rows_kept']} of {tk['train_rows_full']} training rows "
              f"(--train-keep-fraction {tk['fraction']:g}, seed {tk['seed']}); eval/test unchanged")
    print(f"wrote {spec.data_dir}")
    return 0
