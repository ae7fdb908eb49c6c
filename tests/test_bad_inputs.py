"""The bad-input suite: a table of user mistakes per stage, each must end in one clear line.

For every case the CLI (`llm4msr_tf.cli.main`, in-process so the table stays fast; a few cases
also run the real console script in a fresh process) must return exit code 2, print exactly one
``llm4msr <stage>: error: ...`` line containing the expected words (the input named and the
fix), print no traceback, and leave the whole scratch world byte-for-byte unchanged: no partial
output, no temp leftovers, no damaged input. `test_suite_count` reports N tried -> N clear.
"""
import gzip
import hashlib
import json
import logging
import os
import shutil

import numpy as np
import pytest

from conftest import run_cli
from llm4msr_tf import cli
from llm4msr_tf.utils.io import ARTIFACT_MARKER

RESULTS = {}  # stage -> [(case id, ok)]


def _rows(n_users=14, per_user=8):
    rows = ["u,i,s,y,ts"]
    for u in range(n_users):
        for k in range(per_user):
            rows.append(f"U{u},I{(u * 7 + k) % 13},{'a' if k % 2 else 'b'},{(u + k) % 2},{1000 + k}")
    return rows


def _write(path, lines, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding) as f:
        f.write("\n".join(lines) + "\n")
    return path


def _snapshot(root):
    """Every path under root with a hash of its bytes (directories as None)."""
    snap = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for x in dirs:
            snap[os.path.relpath(os.path.join(d, x), root)] = None
        for x in files:
            p = os.path.join(d, x)
            with open(p, "rb") as f:
                snap[os.path.relpath(p, root)] = hashlib.sha1(f.read()).hexdigest()
    return snap


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs every case draws on: CSVs, a prepared dataset, knowledge, a tiny model and LM."""
    from llm4msr_tf.data.config import PrepareConfig
    from llm4msr_tf.data.prepare import prepare
    from llm4msr_tf.knowledge import write_knowledge
    from llm4msr_tf.knowledge.store import MANIFEST_FILENAME, KnowledgeRecord, write_shards
    from llm4msr_tf.models.config import ModelConfig, TrainConfig
    from llm4msr_tf.testing import build_tiny_causal_lm, toy
    from llm4msr_tf.training import run_training

    root = str(tmp_path_factory.mktemp("world"))
    w = {"root": root}
    src = os.path.join(root, "src")
    rows = _rows()
    w["good"] = _write(f"{src}/good.csv", rows)
    w["cols"] = "user=u,item=i,scenario=s,label=y,timestamp=ts"
    w["stray"] = _write(f"{src}/stray.csv", rows[:20] + ["U2,I3,a,2,1005"] + rows[21:30] + ["U3,I4,b,-1,1006"]
                        + rows[31:])
    w["ratings"] = _write(f"{src}/ratings.csv", ["u,i,s,y,ts"] + [r.rsplit(",", 2)[0] + f",{1 + i % 5},{1000 + i}"
                                                                for i, r in enumerate(rows[1:])])
    w["badts"] = _write(f"{src}/badts.csv", rows[:12] + ["U1,I4,a,1,yesterday"] + rows[13:])
    w["short"] = _write(f"{src}/short.csv", rows[:8] + ["U1,I2,a"] + rows[9:])
    w["long"] = _write(f"{src}/long.csv", rows[:9] + ["U1,I2,a,1,1003,extra"] + rows[10:])
    w["latin"] = _write(f"{src}/latin.csv", rows[:5] + ["Ué,I1,a,1,1000"] + rows[6:], encoding="latin-1")
    w["tiny"] = _write(f"{src}/tiny.csv", ["u,i,s,y,ts", "U1,I1,a,1,1", "U1,I2,a,0,2", "U2,I1,b,0,1", "U2,I3,b,1,2"])
    open(f"{src}/empty.csv", "w").close()
    w["empty"] = f"{src}/empty.csv"
    w["plain_dir"] = os.path.join(root, "my_notes")
    _write(os.path.join(w["plain_dir"], "notes.txt"), ["precious"])
    w["file"] = w["good"]
    # A prepared dataset (through the real prepare) and knowledge for it.
    w["data"] = os.path.join(root, "data")
    prepare(PrepareConfig(dataset="csv", source=w["good"], columns=w["cols"], out=w["data"], progress=False))
    w["toy"] = os.path.join(root, "toy")
    spec = toy.write_toy_dataset(w["toy"], rows={"train": 300, "eval": 100, "test": 100})
    w["k"] = os.path.join(root, "k")
    kb = toy.write_toy_knowledge(w["k"], dim=8)
    # Knowledge with one NaN and one inf user vector (written below the validating writer).
    w["k_nan"] = os.path.join(root, "k_nan")
    recs = [KnowledgeRecord("scenario", k, kb.tables["scenario"].get(k)) for k in kb.tables["scenario"].keys]
    recs += [KnowledgeRecord("user", k, kb.tables["user"].get(k).copy()) for k in kb.tables["user"].keys]
    recs[5].vector[2], recs[6].vector[0] = np.nan, np.inf
    os.makedirs(w["k_nan"])
    write_shards(w["k_nan"], recs)
    with open(os.path.join(w["k_nan"], MANIFEST_FILENAME), "w") as f:
        json.dump({"llm": "random-toy", "dim": 8, "counts": {"scenario": 3, "user": 40}}, f)
    # Knowledge of another dataset: no user overlaps.
    w["k_other"] = os.path.join(root, "k_other")
    write_knowledge(w["k_other"], [{"key_type": "scenario", "key": str(s), "vector": np.ones(8)} for s in range(3)]
                    + [{"key_type": "user", "key": f"stranger{u}", "vector": np.ones(8)} for u in range(5)],
                    {"llm": "random-toy"})
    # A copy of the toy data whose first training shard is cut in half; one with a garbage test shard.
    w["toy_cut"] = os.path.join(root, "toy_cut")
    shutil.copytree(w["toy"], w["toy_cut"])
    shard = spec.tfrecord_files("train")[0].replace(w["toy"], w["toy_cut"])
    blob = open(shard, "rb").read()
    open(shard, "wb").write(blob[: len(blob) // 2])
    w["toy_garbage"] = os.path.join(root, "toy_garbage")
    shutil.copytree(w["toy"], w["toy_garbage"])
    with gzip.open(spec.tfrecord_files("test")[0].replace(w["toy"], w["toy_garbage"]), "wb") as f:
        f.write(b"this is not a TFRecord file" * 10)
    # One tiny trained backbone (2 steps) with its SavedModel: the export / predict cases need one.
    w["model"] = os.path.join(root, "model")
    run_training(TrainConfig(data=w["toy"], out=w["model"], epochs=1, steps_per_epoch=2, batch_size=64,
                             progress="none"),
                 ModelConfig(backbone="shared_bottom", use_knowledge=False, embedding_dim=4, per_scenario_metrics=False,
                             optimizer="legacy_adam", backbone_params={"bottom_units": [8], "tower_units": [4]}))
    w["serving"] = os.path.join(root, "serving")
    os.makedirs(os.path.join(w["serving"], "m", "1000000000"))  # an existing (fake) version
    w["lm"] = build_tiny_causal_lm(os.path.join(root, "lm"))
    gg = os.path.join(root, "cut.gguf")
    with open(gg, "wb") as f:
        f.write(b"GGUF\x03\x00\x00\x00" + b"\x05" * 20)  # header cut after its counts
    w["gguf"] = gg
    w["no_config_dir"] = os.path.join(root, "empty_model_dir")
    os.makedirs(w["no_config_dir"])
    # Model-config files (train --model-config) a user might hand over by mistake.
    mc = os.path.join(root, "mc")
    os.makedirs(mc)
    for name, blob in {"cut": b'{"backbone": "mmoe",', "latin": '{"backbone": "\xe9"}'.encode("latin-1"),
                       "list": b"[1, 2]", "unknown": b'{"backbone": "mmoe", "bogus": 1}',
                       "choice": b'{"user_meta_form": "sideways"}',
                       "param": b'{"backbone": "epnet", "backbone_params": {"gate_gamma": -1}}'}.items():
        w[f"mc_{name}"] = os.path.join(mc, f"{name}.json")
        with open(w[f"mc_{name}"], "wb") as f:
            f.write(blob)
    w["notes_md"] = _write(os.path.join(w["plain_dir"], "README.md"), ["# my notes", "keep me"])
    return w


def _cases(w):
    """(stage, id, argv, expected words in the error line)."""
    r, good, cols, data, toy, k = w["root"], w["good"], w["cols"], w["data"], w["toy"], w["k"]
    new = os.path.join(r, "new_out")  # never created by a failing case
    csv = ["prepare", "--dataset", "csv", "--columns", cols, "--no-progress"]
    tr = ["train", "--data", toy, "--knowledge", k, "--out", new, "--epochs", "1", "--progress", "none"]
    kn = ["knowledge", "--data", data, "--out", new, "--llm", f"hf:{w['lm']}"]
    pr = ["predict", "--data", toy, "--rest", "localhost:1"]
    pipe = ["pipeline", "--data", toy, "--knowledge", k, "--pipeline-root", new, "--serving-dir", new + "2"]
    ex = ["export", "--model", w["model"], "--serving-dir", w["serving"], "--model-name", "m"]
    kr = ["knowledge-report", "--knowledge", k, "--data", toy]
    return [
        # ---------------------------------------------------------------- prepare
        ("prepare", "out-is-source", csv + ["--source", os.path.dirname(good), "--out", os.path.dirname(good),
                                            "--overwrite"], ["is the input --source", "choose an --out outside"]),
        ("prepare", "out-contains-source", csv + ["--source", good, "--out", r, "--overwrite"],
         ["contains the input --source", good]),
        ("prepare", "out-unmarked-folder", csv + ["--source", good, "--out", w["plain_dir"], "--overwrite"],
         ["did not write", "never replaced"]),
        ("prepare", "out-other-kind", csv + ["--source", good, "--out", k, "--overwrite"],
         ["holds a knowledge directory", "not a prepared dataset"]),
        ("prepare", "out-exists", csv + ["--source", good, "--out", data], ["already exists", "--overwrite"]),
        ("prepare", "out-below-file", csv + ["--source", good, "--out", good + "/x"], ["is a file"]),
        ("prepare", "out-unwritable", csv + ["--source", good, "--out", "/proc/llm4msr-x/out"],
         ["/proc"]),
        ("prepare", "ratios-sum", csv + ["--source", good, "--out", new, "--split-ratios", "0.5", "0.7", "0.3"],
         ["--split-ratios", "sum to 1", "sum 1.5"]),
        ("prepare", "ratios-zero", csv + ["--source", good, "--out", new, "--split-ratios", "1", "0", "0"],
         ["--split-ratios", "> 0"]),
        ("prepare", "ratios-two", csv + ["--source", good, "--out", new, "--split-ratios", "0.9", "0.1"],
         ["--split-ratios"]),
        ("prepare", "stray-labels", csv + ["--source", w["stray"], "--out", new],
         ["stray.csv, line 21, column 'y'", "not 0 or 1", "--label-threshold"]),
        ("prepare", "threshold-no-positives", csv + ["--source", w["ratings"], "--out", new, "--label-threshold", "9"],
         ["no positives", "--label-threshold 9"]),
        ("prepare", "bad-timestamp", csv + ["--source", w["badts"], "--out", new],
         ["badts.csv, line 13, column 'ts'", "'yesterday'"]),
        ("prepare", "short-row", csv + ["--source", w["short"], "--out", new],
         ["short.csv, line 9", "fewer fields"]),
        ("prepare", "long-row", csv + ["--source", w["long"], "--out", new], ["long.csv", "line 10"]),
        ("prepare", "empty-csv", csv + ["--source", w["empty"], "--out", new], ["empty.csv is empty"]),
        ("prepare", "latin-1", csv + ["--source", w["latin"], "--out", new],
         ["latin.csv, line 6", "--encoding latin-1"]),
        ("prepare", "bad-encoding-flag", csv + ["--source", good, "--out", new, "--encoding", "klingon"],
         ["--encoding 'klingon'"]),
        ("prepare", "missing-column", ["prepare", "--dataset", "csv", "--source", good, "--out", new,
                                       "--columns", "user=u,item=i,label=click"], ["['click']", "its columns are"]),
        ("prepare", "no-source", ["prepare", "--dataset", "movielens", "--out", new], ["needs --source"]),
        ("prepare", "missing-file", csv + ["--source", good + ".gone", "--out", new], ["does not exist"]),
        ("prepare", "rows-per-shard", csv + ["--source", good, "--out", new, "--rows-per-shard", "0"],
         ["--rows-per-shard"]),
        ("prepare", "empty-splits", csv + ["--source", w["tiny"], "--out", new], ["split(s) would be empty"]),
        ("prepare", "keep-fraction-0", csv + ["--source", good, "--out", new, "--train-keep-fraction", "0"],
         ["--train-keep-fraction must be in (0, 1]", "got 0.0"]),
        ("prepare", "keep-fraction-nan", csv + ["--source", good, "--out", new, "--train-keep-fraction", "nan"],
         ["--train-keep-fraction must be in (0, 1]"]),
        ("prepare", "seed-negative", csv + ["--source", good, "--out", new, "--seed", "-5"],
         ["--seed must be an integer >= 0", "-5"]),
        ("prepare", "keep-seed-negative", csv + ["--source", good, "--out", new, "--train-keep-fraction", "0.5",
                                                 "--train-keep-seed", "-3"], ["--train-keep-seed", "-3"]),
        ("prepare", "keep-fraction-above-1", csv + ["--source", good, "--out", new, "--train-keep-fraction", "1.5"],
         ["--train-keep-fraction must be in (0, 1]", "got 1.5"]),
        # ---------------------------------------------------------------- knowledge
        ("knowledge", "batch-size-0", kn + ["--batch-size", "0"], ["--batch-size", ">= 1"]),
        ("knowledge", "max-length-0", kn + ["--max-length", "0"], ["--max-length"]),
        ("knowledge", "out-is-data", ["knowledge", "--data", data, "--out", data, "--llm", f"hf:{w['lm']}"],
         ["is the input --data"]),
        ("knowledge", "out-contains-data", ["knowledge", "--data", data, "--out", r, "--llm", f"hf:{w['lm']}"],
         ["contains the input --data"]),
        ("knowledge", "out-unmarked", ["knowledge", "--data", data, "--out", w["plain_dir"], "--llm", f"hf:{w['lm']}"],
         ["not a knowledge directory", "did not write"]),
        ("knowledge", "out-is-other-data", ["knowledge", "--data", data, "--out", toy, "--llm", f"hf:{w['lm']}"],
         ["not a knowledge directory"]),
        ("knowledge", "unknown-llm", kn[:-2] + ["--llm", "nope"], ["unknown --llm 'nope'"]),
        ("knowledge", "truncated-gguf", kn[:-2] + ["--llm", f"gguf:{w['gguf']}"], ["cut.gguf", "damaged or incomplete"]),
        ("knowledge", "hf-dir-without-config", kn[:-2] + ["--llm", f"hf:{w['no_config_dir']}"], ["no config.json"]),
        ("knowledge", "no-prompts", ["knowledge", "--data", toy, "--out", new, "--llm", f"hf:{w['lm']}"],
         ["no prompts", "llm4msr prepare"]),
        # ---------------------------------------------------------------- train
        ("train", "epochs-0", tr + ["--epochs", "0"], ["--epochs", ">= 1"]),
        ("train", "batch-size-0", tr + ["--batch-size", "0"], ["--batch-size"]),
        ("train", "steps-0", tr + ["--steps-per-epoch", "0"], ["--steps-per-epoch"]),
        ("train", "embedding-dim-0", tr + ["--embedding-dim", "0"], ["--embedding-dim"]),
        ("train", "tower-units-0", tr + ["--scenario-tower-units", "0"], ["--scenario-tower-units"]),
        ("train", "learning-rate", tr + ["--learning-rate", "-1"], ["--learning-rate"]),
        ("train", "coverage-bound", tr + ["--min-user-knowledge-coverage", "2"], ["--min-user-knowledge-coverage"]),
        ("train", "num-experts", tr + ["--backbone", "mmoe", "--backbone-params", '{"num_experts": -3}'],
         ["num_experts must be >= 1, got -3", "--backbone-params"]),
        ("train", "knowledge-and-no-knowledge", tr + ["--no-knowledge"], ["contradict"]),
        ("train", "out-is-data", ["train", "--data", toy, "--knowledge", k, "--out", toy, "--overwrite"],
         ["is the input --data"]),
        ("train", "out-is-knowledge", ["train", "--data", toy, "--knowledge", k, "--out", k, "--overwrite"],
         ["is the input --knowledge"]),
        ("train", "out-contains-data", ["train", "--data", toy, "--knowledge", k, "--out", r, "--overwrite"],
         ["contains the input --data"]),
        ("train", "out-unmarked", ["train", "--data", toy, "--knowledge", k, "--out", w["plain_dir"], "--overwrite"],
         ["did not write"]),
        ("train", "not-a-data-dir", ["train", "--data", w["plain_dir"], "--knowledge", k, "--out", new],
         ["llm4msr prepare"]),
        ("train", "nan-knowledge", ["train", "--data", toy, "--knowledge", w["k_nan"], "--out", new],
         ["not finite", "key 'u"]),
        ("train", "low-coverage-fail", ["train", "--data", toy, "--knowledge", w["k_other"], "--out", new,
                                        "--on-low-knowledge-coverage", "fail"], ["covers 0 of 40 training users"]),
        ("train", "truncated-shard", ["train", "--data", w["toy_cut"], "--no-knowledge", "--out", new, "--epochs", "1",
                                      "--batch-size", "64", "--progress", "none"],
         ["part-00000-of-00002.tfrecord.gz is unreadable", "llm4msr prepare"]),
        ("train", "model-config-missing", tr + ["--model-config", os.path.join(r, "nope.json")],
         ["nope.json", "no such file, and not a zoo config"]),
        ("train", "model-config-zoo-typo", tr + ["--model-config", "synthetic/hinett"], ["not a zoo config",
                                                                                       "synthetic/hinet"]),
        ("train", "model-config-dir", tr + ["--model-config", w["plain_dir"]], ["is a directory", "config.json"]),
        ("train", "model-config-cut-json", tr + ["--model-config", w["mc_cut"]], ["cut.json: not valid JSON"]),
        ("train", "model-config-latin-1", tr + ["--model-config", w["mc_latin"]], ["latin.json: not valid JSON"]),
        ("train", "model-config-list", tr + ["--model-config", w["mc_list"]], ["expected a JSON object", "list"]),
        ("train", "model-config-unknown-field", tr + ["--model-config", w["mc_unknown"]],
         ["unknown config field(s) ['bogus']"]),
        ("train", "model-config-bad-choice", tr + ["--model-config", w["mc_choice"]],
         ["--user-meta-form must be one of", "'sideways'"]),
        ("train", "model-config-bad-backbone-param", tr + ["--model-config", w["mc_param"]],
         ["backbone 'epnet'", "gate_gamma must be > 0", "backbone_params"]),
        ("train", "meta-dropout-1", tr + ["--meta-dropout", "1"], ["--meta-dropout must be below 1"]),
        ("train", "meta-l2-negative", tr + ["--meta-l2", "-1"], ["--meta-l2"]),
        ("train", "pca-without-normalize", tr + ["--knowledge-pca-dim", "4", "--knowledge-normalize", "none"],
         ["--knowledge-pca-dim 4 needs --knowledge-normalize"]),
        ("train", "pca-wider-than-knowledge", tr + ["--knowledge-pca-dim", "99", "--knowledge-normalize", "center"],
         ["pca_dim must be in 0..8", "got 99"]),
        # ---------------------------------------------------------------- knowledge-report
        ("knowledge-report", "out-in-knowledge", kr + ["--out", os.path.join(k, "manifest.json")],
         ["lies in the input --knowledge"]),
        ("knowledge-report", "out-in-data", kr + ["--out", os.path.join(toy, "report")], ["lies in the input --data"]),
        ("knowledge-report", "out-replaces-other-file", kr + ["--out", w["notes_md"]],
         ["README.md exists and is not a knowledge report", "never overwritten"]),
        ("knowledge-report", "out-is-dir", kr + ["--out", w["plain_dir"] + "/"],
         ["is a directory", "my_notes/report"]),
        ("knowledge-report", "out-below-file", kr + ["--out", good + "/r.json"], ["is a file"]),
        ("knowledge-report", "folds-1", kr + ["--folds", "1"], ["--folds must be >= 2"]),
        ("knowledge-report", "min-rows-0", kr + ["--min-rows", "0"], ["--min-rows must be >= 1"]),
        ("knowledge-report", "nan-knowledge", ["knowledge-report", "--knowledge", w["k_nan"], "--data", toy],
         ["not finite", "key 'u"]),
        ("knowledge-report", "data-not-prepared", ["knowledge-report", "--knowledge", k, "--data", w["plain_dir"]],
         ["llm4msr prepare"]),
        ("knowledge-report", "other-dataset", ["knowledge-report", "--knowledge", w["k_other"], "--data", toy],
         ["none of the 5 user keys", "is a training user", "llm4msr knowledge"]),
        ("knowledge-report", "no-data", ["knowledge-report", "--knowledge", k], ["are both required"]),
        # ---------------------------------------------------------------- demo (refused before any stage runs)
        ("demo", "out-unmarked-folder", ["demo", "--out", w["plain_dir"]],
         ["my_notes is a non-empty folder that `llm4msr demo` did not write", "choose another --out"]),
        ("demo", "out-is-data", ["demo", "--out", data], ["did not write"]),
        ("demo", "out-is-file", ["demo", "--out", good], ["exists and is not a directory"]),
        ("demo", "no-source", ["demo", "--dataset", "movielens", "--out", new], ["needs --source"]),
        # ---------------------------------------------------------------- pipeline (refused before TFX starts)
        ("pipeline", "min-auc", pipe + ["--min-auc", "7"], ["--min-auc"]),
        ("pipeline", "max-auc-drop", pipe + ["--max-auc-drop", "-1"], ["--max-auc-drop"]),
        ("pipeline", "epochs-0", pipe + ["--epochs", "0"], ["--epochs"]),
        ("pipeline", "knowledge-and-no-knowledge", pipe + ["--no-knowledge"], ["contradict"]),
        # ---------------------------------------------------------------- export
        ("export", "version-below-latest", ex + ["--version", "5"], ["below the latest version 1000000000"]),
        ("export", "bad-model-name", ex[:-2] + ["--model-name", "a/b"], ["plain directory name"]),
        ("export", "negative-warmup", ex + ["--warmup-examples", "-1"], ["--warmup-examples"]),
        ("export", "no-model", ["export", "--model", w["plain_dir"], "--serving-dir", w["serving"]],
         ["holds no model.keras"]),
        ("export", "wrong-data", ex + ["--data", data], ["lacks feature(s)", "gender"]),
        # ---------------------------------------------------------------- predict
        ("predict", "limit-negative", pr + ["--limit", "-5"], ["--limit"]),
        ("predict", "batch-size-0", pr + ["--batch-size", "0"], ["--batch-size"]),
        ("predict", "output-is-dir", pr + ["--output", w["plain_dir"]], ["is a directory"]),
        ("predict", "output-below-file", pr + ["--output", good + "/p.jsonl"], ["is a file"]),
        ("predict", "output-in-data", pr + ["--output", os.path.join(toy, "p.jsonl")], ["lies in the input --data"]),
        ("predict", "rest-not-a-host", ["predict", "--data", toy, "--rest", "not a host"], ["not a host name"]),
        ("predict", "grpc-port", ["predict", "--data", toy, "--grpc", "localhost:99999"], ["outside 1..65535"]),
        ("predict", "no-target", ["predict", "--data", toy], ["pass exactly one of"]),
        ("predict", "garbage-shard", ["predict", "--data", w["toy_garbage"], "--rest", "localhost:1"],
         ["part-00000-of-00002.tfrecord.gz is not a readable"]),
        ("predict", "mismatched-features", ["predict", "--data", data, "--local", os.path.join(w["model"], "saved_model")],
         ["rejected examples", "same features"]),
    ]


CASES = None


def _run_case(world, capsys, argv, expect):
    before = _snapshot(world["root"])
    handlers = logging.getLogger().handlers[:]  # main() points logging at the captured stderr
    try:
        rc = cli.main(argv)
        crashed = None
    except BaseException as e:  # an uncaught exception is exactly what the suite hunts
        rc, crashed = None, e
    finally:
        logging.getLogger().handlers[:] = handlers
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"llm4msr {argv[0]}: error:")]
    after = _snapshot(world["root"])
    problems = []
    if crashed is not None:
        problems.append(f"uncaught {type(crashed).__name__}: {crashed}")
    if rc != 2:
        problems.append(f"exit code {rc}")
    if "Traceback" in err:
        problems.append("traceback printed")
    if len(lines) != 1:
        problems.append(f"{len(lines)} error lines")
    missing = [x for x in expect if not lines or x not in lines[0]]
    if missing:
        problems.append(f"message lacks {missing}: {lines[0] if lines else err[-400:]}")
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))[:5]
        problems.append(f"files changed: {changed}")
    return problems


@pytest.mark.parametrize("stage", ["prepare", "knowledge", "knowledge-report", "train", "demo", "pipeline", "export",
                                   "predict"])
def test_bad_input_table(world, capsys, stage):
    cases = [c for c in _cases(world) if c[0] == stage]
    failures = {}
    for _, cid, argv, expect in cases:
        problems = _run_case(world, capsys, argv, expect)
        RESULTS.setdefault(stage, []).append((cid, not problems))
        if problems:
            failures[cid] = problems
    assert not failures, json.dumps(failures, indent=1, default=str)


def test_documented_warnings_and_no_damage(world, caplog, tmp_path):
    """Two cases end in a warning, not an error: low user-knowledge coverage and a hand-edited models.config."""
    from llm4msr_tf.checks import check_user_coverage
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.knowledge import load
    from llm4msr_tf.serving.server_config import GENERATED_HEADER, write_serving_dir_config

    spec = DatasetSpec.load(world["toy"])
    with caplog.at_level(logging.WARNING):
        cov = check_user_coverage(load(world["k_other"]), spec, 0.5)
    assert cov == {"users": 40, "covered": 0, "fraction": 0.0}
    assert "covers 0 of 40 training users" in caplog.text and "llm4msr knowledge" in caplog.text
    assert check_user_coverage(load(world["k"]), spec, 0.5)["fraction"] == 1.0
    # models.config: ours is rewritten, a hand-edited one is kept byte for byte (with a warning).
    serving = tmp_path / "serving"
    (serving / "a" / "1").mkdir(parents=True)
    path = write_serving_dir_config(str(serving))
    assert open(path).read().startswith(GENERATED_HEADER)
    (serving / "b" / "7").mkdir(parents=True)
    write_serving_dir_config(str(serving))
    assert "name: \"b\"" in open(path).read()
    edited = 'model_config_list {\n  config {\n    name: "a"  # pinned by ops\n    base_path: "/srv/a"\n' \
             '    model_platform: "tensorflow"\n  }\n}\n'
    open(path, "w").write(edited)
    (serving / "c" / "3").mkdir(parents=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        write_serving_dir_config(str(serving))
    assert open(path).read() == edited
    assert "edited by hand" in caplog.text and "'b', 'c'" in caplog.text
    RESULTS.setdefault("warnings", []).extend([("low-coverage-warn", True), ("hand-edited-models-config", True)])


@pytest.mark.parametrize("argv,expect", [
    (["prepare", "--dataset", "synthetic", "--out", "{root}", "--overwrite", "--num-users", "5"],
     "did not write"),
    (["train", "--data", "{toy}", "--knowledge", "{k}", "--out", "{new}", "--epochs", "0"], "--epochs"),
    (["knowledge", "--data", "{data}", "--out", "{new}", "--batch-size", "0"], "--batch-size"),
    (["predict", "--data", "{toy}", "--rest", "localhost:1", "--limit", "-5"], "--limit"),
])
def test_console_script_exit_code_and_one_line(world, argv, expect):
    """The real console script in a fresh process: exit code 2, one stderr line, nothing written."""
    w = dict(world, new=os.path.join(world["root"], "new_out"), root=world["plain_dir"])
    before = _snapshot(world["root"])
    r = run_cli(*[a.format(**w) for a in argv], timeout=300)
    err = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn(" not in ln]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith(f"llm4msr {argv[0]}: error:") and expect in err[0], r.stderr
    assert _snapshot(world["root"]) == before
    RESULTS.setdefault("subprocess", []).append((argv[0], True))


def _mount_tmpfs(path, size):
    """Mount a tiny tmpfs at `path` (a real full disk); False where mounting is not permitted."""
    import subprocess

    os.makedirs(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    return r.returncode == 0


@pytest.mark.parametrize("fault", ["disk-full", "file-size-limit"])
def test_full_disk_and_file_size_limit_end_in_one_line(tmp_path, fault):
    """prepare runs out of room while writing TFRecords (TensorFlow's errors, not OSErrors): one
    line naming the file and the fix, exit code 2, no output and no temp folder left behind."""
    import resource
    import signal
    import subprocess
    import sys

    where = str(tmp_path / "vol")
    limit = None
    if fault == "disk-full":
        if not _mount_tmpfs(where, "256k"):
            pytest.skip("cannot mount a tmpfs here (needs root); the file-size-limit case still runs")
    else:
        os.makedirs(where)
        limit = 3000

    def pre():  # the real kernel limit (ulimit -f); SIGXFSZ ignored so write() fails with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    try:
        r = subprocess.run([exe, "prepare", "--dataset", "synthetic", "--num-users", "400", "--out",
                            os.path.join(where, "d"), "--no-progress"], capture_output=True, text=True,
                           preexec_fn=pre if limit else None, timeout=300)
        left = os.listdir(where)
    finally:
        if fault == "disk-full":
            subprocess.run(["umount", where], check=False)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("llm4msr prepare: error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(errors) == 1, r.stderr[-2000:]
    want = {"disk-full": ("No space left on device", "free disk space"),
            "file-size-limit": ("File too large", "ulimit -f")}[fault]
    assert all(w in errors[0] for w in want) and ".tfrecord.gz" in errors[0], errors[0]
    assert left == [], left  # neither the output nor the temp folder of the failed run
    RESULTS.setdefault("faults", []).append((fault, True))


EXTRA = ("warnings", "subprocess", "faults")  # counted apart from the table


def test_suite_count(world):
    """N inputs tried -> N clear errors (printed for the closing note); runs after the table."""
    table = [c for c in _cases(world)]
    done = sum(len(v) for k, v in RESULTS.items() if k not in EXTRA)
    ok = sum(ok for k, v in RESULTS.items() if k not in EXTRA for _, ok in v)
    print(f"\nbad-input suite: {done} of {len(table)} inputs tried -> {ok} clear errors, "
          f"{len(RESULTS.get('warnings', []))} documented warnings, "
          f"{len(RESULTS.get('subprocess', []))} console-script cases, "
          f"{len(RESULTS.get('faults', []))} full-disk/file-size faults; per stage: "
          + ", ".join(f"{k} {sum(o for _, o in v)}/{len(v)}" for k, v in RESULTS.items()))
    if done:
        assert ok == done
    assert ARTIFACT_MARKER in os.listdir(world["data"])  # the fixture itself wrote marked outputs


def test_tf_file_errors_are_told_apart_from_other_tf_errors():
    """Only TensorFlow errors of a full disk, a size limit or permissions become one line."""
    import tensorflow as tf

    from llm4msr_tf.utils.io import tf_file_error_message

    full = tf.errors.ResourceExhaustedError(None, None, "/o/x.tfrecord.gz; No space left on device")
    assert tf_file_error_message(full) == "/o/x.tfrecord.gz; No space left on device; " \
                                          "free disk space or choose another output path"
    assert "check the permissions" in tf_file_error_message(tf.errors.PermissionDeniedError(None, None, "/o/x"))
    # Out of memory and end of sequence are not the user's files: their tracebacks stay.
    assert tf_file_error_message(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")) is None
    assert tf_file_error_message(tf.errors.OutOfRangeError(None, None, "End of sequence")) is None
    assert tf_file_error_message(ValueError("x")) is None
