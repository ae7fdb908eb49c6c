"""`llm4msr join-knowledge`: add each user's knowledge vector to the examples (Beam job, for feature mode)."""
import argparse

from llm4msr_tf.commands import add_command
from llm4msr_tf.config import dataclass_from_args


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `join-knowledge` subcommand."""
    from llm4msr_tf.knowledge.join import JoinConfig

    p = add_command(
        sub, "join-knowledge", [JoinConfig], run,
        help="join user knowledge vectors into the examples (feature mode: no user table in the model)",
        description="Reads every split of --data and the user vectors of --knowledge, joins them by user id "
        "(Beam CoGroupByKey, so neither side must fit in memory) and writes a new DATA_DIR whose examples carry "
        "the vector as --feature (float [dim]). Train on it with `llm4msr train --data OUT --knowledge KDIR "
        "--user-knowledge-mode feature`; the exported model then takes the vector in every request. Extra Beam "
        "pipeline options go after `--` (e.g. with --runner DataflowRunner: -- --project P --region R "
        "--temp_location gs://B/tmp --setup_file ./setup.py).")
    p.add_argument("beam_args", nargs="*", metavar="-- BEAM_OPTION",
                   help="Beam pipeline options passed to the runner (after `--`)")


def run(args: argparse.Namespace) -> int:
    """Run the join and print a one-screen summary."""
    from llm4msr_tf.knowledge.join import JoinConfig, run as run_join

    r = run_join(dataclass_from_args(JoinConfig, args), args.beam_args)
    print(f"output   {r['out']}")
    print(f"feature  {r['feature']} (float [{r['dim']}])")
    for split, s in r["splits"].items():
        print(f"{split:<8} {s['rows']} examples, {s['unknown']} without user knowledge (default vector)")
    print(f"time     {r['seconds']:.1f}s")
    return 0
