"""Kill tests: SIGKILL `prepare`, `knowledge` and `train` at a random point, rerun, check the output.

Each stage runs as the real console script in its own process; the kill lands at a seeded random
moment while the stage writes (after its temp folder appears). The rerun, with the same command,
must finish with complete output equal to an uninterrupted run's, remove the killed run's
leftovers, and for the knowledge job send only the prompts of unfinished batches to the LLM.
Also here: the stale-temp cleanup rules, the umask and strict JSON, on real files.
"""
import glob
import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import PROJECT_ROOT, run_cli
from llm4msr_tf.utils import io as sio

SEED = int(os.environ.get("LLM4MSR_KILL_SEED", "0")) or random.SystemRandom().randrange(1, 10 ** 6)


def _popen(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.Popen([exe, *args], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc, ready, timeout=600):
    """Poll until `ready()` or the process ends; returns the seconds waited."""
    t0 = time.time()
    while not ready() and proc.poll() is None:
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the stage to start writing")
        time.sleep(0.02)
    return time.time() - t0


def _temps(out):
    parent, base = os.path.split(out)
    return glob.glob(os.path.join(parent, f".{base}.tmp-*")) + glob.glob(os.path.join(parent, f".{base}.old-*"))


def _clean_then_killed(args_for, out_clean, out_killed, rng, ready_for=None):
    """Run once to the end (timing the write phase), then again killed at a random point of it."""
    ready_for = ready_for or (lambda out: lambda: bool(_temps(out)))
    p = _popen(*args_for(out_clean))
    _wait_for(p, ready_for(out_clean))
    t0 = time.time()
    _, err = p.communicate(timeout=900)
    window = time.time() - t0
    assert p.returncode == 0, err[-3000:]
    p = _popen(*args_for(out_killed))
    _wait_for(p, ready_for(out_killed))
    delay = rng.uniform(0.0, 0.9 * window)
    time.sleep(delay)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    return killed, delay, window


def _tree(root, skip=(sio.ARTIFACT_MARKER,)):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f not in skip:
                p = os.path.join(d, f)
                out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


# ------------------------------------------------------------------------------- unit rules
def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_temps_only_provably_ours_are_cleaned(tmp_path):
    host, dead, me = sio._host_tag(), _dead_pid(), sio.temp_tag()
    final = tmp_path / "out"

    def mk(name, marker=True):
        d = tmp_path / name
        d.mkdir()
        (d / "part").write_text("x")
        if marker:
            sio.write_marker(str(d), "data")
        return d

    stale = mk(f".out.tmp-{host}-{dead}-1-abc")
    parked = mk(f".out.old-{host}-{dead}-1-def")  # a swap killed between its two renames
    live = mk(f".out.tmp-{me}-ghi")  # this very process: still running
    foreign = mk(f".out.tmp-deadbeef-{dead}-1-jkl")  # another machine on a shared file system
    users = mk(".out.tmp-mine", marker=False)  # not our name pattern
    other = mk(f".other.tmp-{host}-{dead}-1-mno")  # another target's temp
    (tmp_path / f".out.tmp-{host}-{dead}-1-file").write_text("half a file")
    done = sio.clean_stale_temps(str(final))
    assert done == {"removed": 2, "restored": 1}
    assert not stale.exists() and not (tmp_path / f".out.tmp-{host}-{dead}-1-file").exists()
    assert (final / "part").read_text() == "x" and not parked.exists()  # the previous version is back
    assert live.exists() and foreign.exists() and users.exists() and other.exists()


def test_outputs_respect_umask_and_json_is_strict(tmp_path):
    old = os.umask(0o027)
    try:
        with sio.atomic_dir(str(tmp_path / "d"), kind="data") as d:
            open(os.path.join(d, "f"), "w").write("x")
        sio.write_json(str(tmp_path / "m.json"), {"auc": float("nan"), "loss": [1.0, float("inf")],
                                                  "ok": np.float32(0.5)})
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "d").st_mode & 0o777) == oct(0o750)
    assert oct(os.stat(tmp_path / "m.json").st_mode & 0o777) == oct(0o640)

    def no_constants(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    m = json.loads((tmp_path / "m.json").read_text(), parse_constant=no_constants)
    assert m["auc"] is None and "NaN" in m["auc_null_reason"] and m["loss"] == [1.0, None] and m["ok"] == 0.5
    # A symlink planted where the file goes is replaced, never written through.
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "p.jsonl")
    sio.write_text(str(tmp_path / "p.jsonl"), "predictions\n")
    assert target.read_text() == "keep me" and not os.path.islink(tmp_path / "p.jsonl")


# ------------------------------------------------------------------------------- prepare
def test_prepare_killed_at_random_point_then_rerun(tmp_path):
    rng = random.Random(SEED)

    def args(out):
        return ["prepare", "--dataset", "synthetic", "--num-users", "300", "--out", out, "--no-progress"]

    clean, out = str(tmp_path / "clean"), str(tmp_path / "data")
    killed, delay, window = _clean_then_killed(args, clean, out, rng)
    print(f"\nprepare (seed {SEED}): killed={killed} after {delay:.2f}s of a {window:.2f}s write phase; "
          f"left {len(_temps(out))} temp folder(s), output present: {os.path.exists(out)}")
    if killed:
        assert not os.path.exists(out) or os.path.exists(os.path.join(out, "dataset.json"))
    # --overwrite in case the kill landed after the final rename (then the output is complete).
    r = run_cli(*args(out), "--overwrite", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not _temps(out)  # the killed run's leftovers are gone
    a, b = _tree(clean), _tree(out)
    assert sorted(a) == sorted(b)
    for name in a:
        if name in ("dataset.json", "config.json"):  # they record --out and --overwrite
            ja, jb = json.loads(a[name]), json.loads(b[name])
            for j in (ja, jb):
                for key in ("out", "overwrite"):
                    j.pop(key, None)
                    (j.get("config") or {}).pop(key, None)
            assert ja == jb, name
        else:
            assert a[name] == b[name], name


# ------------------------------------------------------------------------------- knowledge
def test_knowledge_killed_midway_resumes_only_unfinished_batches(tmp_path):
    from llm4msr_tf.data.prompt_format import prompt_sha256
    from llm4msr_tf.knowledge import checkpoint, load
    from llm4msr_tf.knowledge.config import KnowledgeConfig
    from llm4msr_tf.knowledge.encoders import TextEncoder
    from llm4msr_tf.knowledge.store import example_to_record
    from llm4msr_tf.testing import build_tiny_causal_lm, write_prompt_texts
    import tensorflow as tf

    rng = random.Random(SEED + 1)
    lm = build_tiny_causal_lm(str(tmp_path / "lm"))
    users = {f"u{i}": f"User {i} liked " + ", ".join(["space operas"] * (1 + i % 9)) + f" and film {i}."
             for i in range(200)}
    users["dup"] = users["u7"]  # shares a prompt: encoded once
    scen = {"0": "Scenario zero: home feed.", "1": "Scenario one: search."}
    data = write_prompt_texts(str(tmp_path / "data"), scen, users)
    out = str(tmp_path / "k")
    ckpt = checkpoint.checkpoint_dir(out)
    args = ["knowledge", "--data", data, "--out", out, "--llm", f"hf:{lm}", "--batch-size", "1",
            "--sort-window", "1"]
    target = rng.randint(3, 80)  # finished batches before the kill
    p = _popen(*args)
    _wait_for(p, lambda: len(checkpoint.batch_files(ckpt)) >= target)
    time.sleep(rng.uniform(0, 0.5))
    assert p.poll() is None, "the job finished before the kill: make it longer"
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert not os.path.exists(out) and _temps(out)  # nothing committed; a temp folder left behind
    files = checkpoint.batch_files(ckpt)
    done = set()
    for f in files:
        for raw in tf.data.TFRecordDataset(f, compression_type="GZIP"):
            done.add(example_to_record(tf.train.Example.FromString(raw.numpy())).prompt_sha256)
    distinct = {prompt_sha256(t) for t in list(users.values()) + list(scen.values())}
    print(f"\nknowledge (seed {SEED}): killed after {len(files)} finished batches ({len(done)} of "
          f"{len(distinct)} distinct prompts)")
    r = run_cli(*args, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["encoded_prompts"] == len(distinct) - len(done)  # only unfinished batches recomputed
    resumed_keys = sum(1 for t in list(users.values()) + list(scen.values()) if prompt_sha256(t) in done)
    assert m["resumed_from_checkpoint"] == resumed_keys and m["reused"] == 0
    assert m["counts"] == {"scenario": 2, "user": 201}
    assert not os.path.exists(ckpt) and not _temps(out)
    kb = load(out, expected_dim=32)
    enc = TextEncoder(KnowledgeConfig(llm=f"hf:{lm}"))
    keys = sorted(users)[::10]
    direct = enc.encode([users[k] for k in keys])
    for k, d in zip(keys, direct):
        np.testing.assert_allclose(kb.tables["user"].get(k), d.vector, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- train
def test_train_killed_at_random_point_then_rerun(tmp_path):
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.testing import toy

    rng = random.Random(SEED + 2)
    data = str(tmp_path / "toy")
    toy.write_toy_dataset(data, rows={"train": 3000, "eval": 400, "test": 400})

    def args(out):  # the backbone alone: the same write path as LLM4MSR, at a third of the trace time
        return ["train", "--data", data, "--no-knowledge", "--out", out, "--epochs", "2", "--batch-size", "256",
                "--embedding-dim", "4", "--backbone-params", '{"bottom_units": [8], "tower_units": [4]}',
                "--optimizer", "legacy_adam", "--progress", "none", "--no-export"]

    clean, out = str(tmp_path / "m_clean"), str(tmp_path / "m")
    killed, delay, window = _clean_then_killed(args, clean, out, rng)
    print(f"\ntrain (seed {SEED}): killed={killed} after {delay:.1f}s of a {window:.1f}s run; "
          f"left {len(_temps(out))} temp folder(s)")
    r = run_cli(*args(out), "--overwrite", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not _temps(out)
    names = set(os.listdir(out))
    assert {"model.keras", "metrics.json", "config.json", sio.ARTIFACT_MARKER} <= names

    def strict(path):
        return json.loads(open(path).read(), parse_constant=lambda c: pytest.fail(f"{path}: {c}"))

    m, mc = strict(os.path.join(out, "metrics.json")), strict(os.path.join(clean, "metrics.json"))
    spec = DatasetSpec.load(data)
    assert m["test"]["overall"]["rows"] == spec.splits["test"]["rows"] == 400
    # Same seed, same data: the rerun trains the model the uninterrupted run trained.
    assert m["epochs_run"] == mc["epochs_run"] and m["history"]["loss"] == pytest.approx(mc["history"]["loss"], rel=1e-4)
    assert m["test"]["overall"]["auc"] == pytest.approx(mc["test"]["overall"]["auc"], abs=1e-4)
    assert math.isfinite(m["test"]["overall"]["log_loss"])
