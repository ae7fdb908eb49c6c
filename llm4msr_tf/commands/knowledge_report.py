"""`llm4msr knowledge-report`: does a knowledge directory say anything beyond ids? (spread + probe)."""
import argparse

from llm4msr_tf.config import add_dataclass_args, dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `knowledge-report` subcommand (flags map one-to-one onto DiagnosticsConfig)."""
    from llm4msr_tf.knowledge.diagnostics import DiagnosticsConfig

    p = sub.add_parser(
        "knowledge-report",
        help="diagnose knowledge vectors before training: spread across keys and a linear probe "
             "to held-out eval facts, beside random / bag-of-items / train-statistics baselines",
        description="Reads KNOWLEDGE_DIR (from `llm4msr knowledge`) and DATA_DIR (from `llm4msr prepare`). "
                    "Reports, per table, the mean pairwise cosine before/after centring, the fraction of "
                    "variance across keys and the effective dimensionality; then cross-validated ridge R^2 "
                    "from each user's vector to facts about the user in the eval split. Needs numpy only.",
    )
    add_dataclass_args(p, DiagnosticsConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute the report, print its summary and write --out."""
    from llm4msr_tf.knowledge.diagnostics import DiagnosticsConfig, knowledge_report, summary_lines, write_report
    from llm4msr_tf.utils.io import UserInputError

    cfg = dataclass_from_args(DiagnosticsConfig, args)
    if not cfg.knowledge or not cfg.data:
        raise UserInputError("--knowledge KNOWLEDGE_DIR and --data DATA_DIR are both required")
    if cfg.out:  # before the probe, which can take minutes
        from llm4msr_tf.knowledge.diagnostics import check_report_out

        check_report_out(cfg.out, protected={"--knowledge": cfg.knowledge, "--data": cfg.data})
    report = knowledge_report(cfg.knowledge, cfg.data, cfg)
    print("\n".join(summary_lines(report)))
    if cfg.out:
        for path in write_report(report, cfg.out):
            print(f"wrote {path}")
    return 0
