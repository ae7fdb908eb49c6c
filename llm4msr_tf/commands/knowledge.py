"""`llm4msr knowledge`: run the Beam knowledge job (prompts -> frozen LLM -> knowledge TFRecords)."""
import argparse

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args
from llm4msr_tf.knowledge.config import KnowledgeConfig


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `knowledge` subcommand."""
    p = add_command(
        sub, "knowledge", [KnowledgeConfig], run,
        help="encode scenario/user prompts with a frozen LLM into knowledge vectors (Beam job)",
        description="Reads DATA_DIR/prompts/*.jsonl, runs a frozen LLM over each distinct prompt "
        "(Apache Beam RunInference) and writes gzip TFRecords + manifest.json to --out. An existing "
        "--out is updated incrementally: prompts whose hash is already there are reused. Extra Beam "
        "pipeline options go after `--`, e.g. `-- --project P --region R --temp_location gs://B/tmp "
        "--setup_file ./setup.py` with --runner DataflowRunner.")
    p.add_argument("beam_args", nargs="*", metavar="-- BEAM_OPTION",
                   help="Beam pipeline options passed to the runner (after `--`)")


def run(args: argparse.Namespace) -> int:
    """Run the job and print a one-screen summary."""
    cfg = dataclass_from_args(KnowledgeConfig, args)
    from llm4msr_tf.checks import check_knowledge_config
    from llm4msr_tf.knowledge.encoders import parse_spec, resolve_pooling
    from llm4msr_tf.utils.io import check_output_dir

    # Check the cheap things before importing Beam, TensorFlow and torch (seconds each).
    check_knowledge_config(cfg)
    if cfg.out:
        check_output_dir(cfg.out, "knowledge", True, {"--data": cfg.data})
    resolve_pooling(parse_spec(cfg.llm), cfg.pooling)
    from llm4msr_tf.knowledge.job import run as run_job

    m = run_job(cfg, args.beam_args)
    rows = [
        ("output", cfg.out),
        ("llm", f"{m['llm']} (dim {m['dim']}, {m['pooling']} pooling)"),
        ("vectors", f"{m['counts']['scenario']} scenario + {m['counts']['user']} user"),
        ("reused", m["reused"]),
        ("resumed", f"{m.get('resumed_from_checkpoint', 0)} from the checkpoint of an interrupted run"),
        ("prompts encoded", m["encoded_prompts"]),
        ("truncated", f"{m['truncated']} at {cfg.max_length} tokens"),
        ("forward batches", m["forward_batches"]),
        ("time", f"{m['seconds']:.1f}s total, {m['encode_seconds']:.1f}s in the LLM "
                 f"({m['encoded_prompts_per_second']} prompts/s)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
