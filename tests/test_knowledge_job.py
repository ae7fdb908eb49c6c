"""The knowledge Beam job on a tiny random causal LM: schema, manifest, dedupe, resume, CLI."""
import json
import os

import numpy as np
import pytest

from conftest import run_cli
from llm4msr_tf.knowledge import load
from llm4msr_tf.knowledge.config import KnowledgeConfig
from llm4msr_tf.knowledge.encoders import TextEncoder
from llm4msr_tf.data.prompt_format import prompt_sha256, read_prompts
from llm4msr_tf.knowledge.store import iter_records, shard_files
from llm4msr_tf.testing import build_tiny_causal_lm, write_prompt_texts
from llm4msr_tf.utils.io import UserInputError

SCENARIOS = {"0": "Scenario 0: users under 25; 310 users, 41% positive.",
             "1": "Scenario 1: users 25 and older; many dramas and documentaries."}
# users i and i + 6 share a prompt text (dedupe)
USERS = {str(i): f"User {i % 6} liked " + ", ".join(["space operas"] * (1 + (i % 6) % 5)) for i in range(12)}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("tiny_lm")))


@pytest.fixture(scope="module")
def first_run(tiny_lm, tmp_path_factory):
    """One job over 14 prompts (users 0 and 6 share a prompt text), shared by several tests."""
    from llm4msr_tf.knowledge.job import run

    root = tmp_path_factory.mktemp("job")
    data = write_prompt_texts(str(root / "data"), SCENARIOS, USERS, truncated=["3"])
    cfg = KnowledgeConfig(data=data, out=str(root / "k"), llm=f"hf:{tiny_lm}", batch_size=3, sort_window=2,
                          num_shards=2)
    manifest = run(cfg)
    return cfg, manifest


def test_manifest_counts_and_dedupe(first_run):
    cfg, m = first_run
    assert m["llm"] == cfg.llm and m["dim"] == 32 and m["pooling"] == "last"
    assert m["counts"] == {"scenario": 2, "user": 12}
    distinct = len(set(USERS.values()) | set(SCENARIOS.values()))
    assert m["encoded_prompts"] == distinct < 14  # identical prompts are encoded once
    assert m["reused"] == 0 and m["truncated_in_prepare"] == 1
    assert m["forward_batches"] >= distinct // 3
    assert json.load(open(os.path.join(cfg.out, "config.json")))["batch_size"] == 3
    assert json.load(open(os.path.join(cfg.out, "manifest.json"))) == m


def test_tfrecord_schema_and_vectors_match_direct_encoding(first_run, tiny_lm):
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    cfg, _ = first_run
    files = shard_files(cfg.out)
    assert [os.path.basename(f) for f in files] == [
        "knowledge-00000-of-00002.tfrecord.gz", "knowledge-00001-of-00002.tfrecord.gz"]
    spec = {"key_type": tf.io.FixedLenFeature([], tf.string), "key": tf.io.FixedLenFeature([], tf.string),
            "vector": tf.io.FixedLenFeature([32], tf.float32), "text": tf.io.FixedLenFeature([], tf.string),
            "prompt_sha256": tf.io.FixedLenFeature([], tf.string)}
    rows = list(tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda s: tf.io.parse_single_example(s, spec)).as_numpy_iterator())
    assert len(rows) == 14
    by_key = {(r["key_type"].decode(), r["key"].decode()): r for r in rows}
    prompts = {**{("scenario", k): v for k, v in SCENARIOS.items()}, **{("user", k): v for k, v in USERS.items()}}
    assert set(by_key) == set(prompts)
    enc = TextEncoder(KnowledgeConfig(llm=cfg.llm))
    keys = sorted(prompts)
    direct = enc.encode([prompts[k] for k in keys])
    for k, d in zip(keys, direct):
        assert by_key[k]["prompt_sha256"].decode() == prompt_sha256(prompts[k])
        assert by_key[k]["text"] == b""
        np.testing.assert_allclose(by_key[k]["vector"], d.vector, rtol=1e-4, atol=1e-5)
    kb = load(cfg.out, expected_dim=32, expected_llm=cfg.llm)
    np.testing.assert_array_equal(kb.tables["user"].get("0"), kb.tables["user"].get("6"))


def test_resume_reuses_everything_then_encodes_only_new_prompts(first_run, tmp_path):
    from llm4msr_tf.knowledge.job import run

    cfg, m1 = first_run
    before = {(r.key_type, r.key): r.vector for r in iter_records(cfg.out)}
    m2 = run(cfg)
    assert m2["reused"] == 14 and m2["encoded_prompts"] == 0
    # one new user, one changed prompt, one removed user
    users = dict(USERS)
    users["new"] = "User new has watched only westerns"
    users["5"] = "User 5 changed their mind: musicals only"
    del users["11"]
    write_prompt_texts(cfg.data, SCENARIOS, users)
    m3 = run(cfg)
    assert m3["encoded_prompts"] == 2 and m3["reused"] == 12
    assert m3["counts"] == {"scenario": 2, "user": 12}
    after = {(r.key_type, r.key): r.vector for r in iter_records(cfg.out)}
    assert ("user", "11") not in after and ("user", "new") in after
    np.testing.assert_array_equal(after[("user", "1")], before[("user", "1")])
    assert not np.allclose(after[("user", "5")], before[("user", "5")])
    # different settings -> nothing reused
    m4 = run(KnowledgeConfig(**{**cfg.__dict__, "pooling": "mean"}))
    assert m4["reused"] == 0 and m4["pooling"] == "mean"
    # the arithmetic is part of a vector's identity: bf16 recomputes, and back to auto recomputes
    m5 = run(KnowledgeConfig(**{**cfg.__dict__, "pooling": "mean", "precision": "bf16"}))
    assert m5["reused"] == 0 and m5["precision"] == "bf16"
    assert run(KnowledgeConfig(**{**cfg.__dict__, "pooling": "mean", "precision": "bf16"}))["reused"] == 14
    # a manifest from before --precision existed counts as auto (what it was made with)
    import json as _json
    from llm4msr_tf.knowledge.job import _reusable
    man_path = os.path.join(cfg.out, "manifest.json")
    man = _json.load(open(man_path))
    man.pop("precision")
    (man.get("config") or {}).pop("precision", None)
    _json.dump(man, open(man_path, "w"))
    assert _reusable(cfg.out, KnowledgeConfig(**{**cfg.__dict__, "pooling": "mean"}), "mean")[0] is not None
    assert _reusable(cfg.out, KnowledgeConfig(**{**cfg.__dict__, "pooling": "mean", "precision": "bf16"}), "mean")[0] is None
    assert not [p for p in os.listdir(os.path.dirname(cfg.out)) if p.startswith(".k.")]  # no temp dirs left


def test_bad_prompt_files_fail_clearly(tmp_path, tiny_lm):
    from llm4msr_tf.knowledge.job import run

    with pytest.raises(UserInputError, match="run `llm4msr prepare`"):
        run(KnowledgeConfig(data=str(tmp_path / "none"), out=str(tmp_path / "k"), llm=f"hf:{tiny_lm}"))
    data = write_prompt_texts(str(tmp_path / "d"), SCENARIOS, {"1": "x"})
    with open(os.path.join(data, "prompts", "user.jsonl"), "a") as f:
        f.write('{"key": "2", "key_type": "user"}\n')
    with pytest.raises(UserInputError, match=r"user.jsonl:2: missing field\(s\) \['prompt'\]"):
        read_prompts(data)
    with open(os.path.join(data, "prompts", "user.jsonl"), "w") as f:
        f.write('{"key": "1", "key_type": "user", "prompt": "a"}\n{"key": "1", "key_type": "user", "prompt": "b"}\n')
    with pytest.raises(UserInputError, match="appears twice with different prompts"):
        read_prompts(data)
    os.makedirs(tmp_path / "notk")
    (tmp_path / "notk" / "file.txt").write_text("x")
    write_prompt_texts(data, SCENARIOS, {"1": "x"})
    with pytest.raises(UserInputError, match="not a knowledge directory"):
        run(KnowledgeConfig(data=data, out=str(tmp_path / "notk"), llm=f"hf:{tiny_lm}"))


@pytest.mark.slow
def test_cli_end_to_end_with_generation(tiny_lm, tmp_path):
    data = write_prompt_texts(str(tmp_path / "data"), SCENARIOS, dict(list(USERS.items())[:4]))
    out = str(tmp_path / "k")
    r = run_cli("knowledge", "--data", data, "--out", out, "--llm", f"hf:{tiny_lm}", "--generate", "3",
                "--pooling", "mean", "--batch-size", "2", "--", "--direct_running_mode=in_memory")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 scenario + 4 user" in r.stdout and "reused" in r.stdout
    kb = load(out, expected_dim=32)
    assert kb.manifest["generate"] == 3 and kb.pooling == "mean"
    assert kb.manifest["tokens"] > 0 and np.isfinite(kb.tables["user"].vectors).all()
    bad = run_cli("knowledge", "--data", data, "--out", out, "--llm", "nope")
    assert bad.returncode == 2 and "unknown --llm 'nope'" in bad.stderr
