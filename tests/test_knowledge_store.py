"""Knowledge directory format: writer/reader round trip, schema, and clear mismatch errors."""
import json
import os

import numpy as np
import pytest

from conftest import run_py
from llm4msr_tf.knowledge import KnowledgeRecord, load, write_knowledge
from llm4msr_tf.knowledge.store import shard_files
from llm4msr_tf.utils.io import UserInputError


def _records(dim=8, users=("10", "2", "u7"), scenarios=("0", "1", "2")):
    rng = np.random.default_rng(0)
    recs = [KnowledgeRecord("scenario", s, rng.normal(size=dim).astype(np.float32), f"s{s}", f"h{s}")
            for s in scenarios]
    recs += [dict(key_type="user", key=u, vector=rng.normal(size=dim).tolist(), prompt_sha256="x" + u)
             for u in users]
    return recs


def test_round_trip_tables_and_manifest(tmp_path):
    recs = _records()
    kdir = str(tmp_path / "k")
    write_knowledge(kdir, recs, {"llm": "test-llm", "pooling": "mean"}, num_shards=2)
    kb = load(kdir, expected_dim=8, expected_llm="test-llm")
    assert kb.dim == 8 and kb.llm == "test-llm" and kb.pooling == "mean"
    assert kb.manifest["counts"] == {"scenario": 3, "user": 3}
    assert kb.manifest["reused"] == 0
    assert len(shard_files(kdir)) == 2
    users = kb.tables["user"]
    assert users.keys == ["2", "10", "u7"]  # numeric keys in numeric order
    assert users.vectors.dtype == np.float32 and users.vectors.shape == (3, 8)
    np.testing.assert_allclose(users.get("10"), np.asarray(recs[3]["vector"], np.float32))
    sc = kb.tables["scenario"]
    assert sc.texts == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(sc.vectors[sc.index(1)], recs[1].vector)
    assert users.get("nobody") is None and "2" in users and 2 in users


def test_tfrecord_schema_is_the_documented_one(tmp_path):
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    kdir = str(tmp_path / "k")
    write_knowledge(kdir, _records(dim=4), {"llm": "x"})
    spec = {
        "key_type": tf.io.FixedLenFeature([], tf.string),
        "key": tf.io.FixedLenFeature([], tf.string),
        "vector": tf.io.FixedLenFeature([4], tf.float32),
        "text": tf.io.FixedLenFeature([], tf.string),
        "prompt_sha256": tf.io.FixedLenFeature([], tf.string),
    }
    ds = tf.data.TFRecordDataset(shard_files(kdir), compression_type="GZIP").batch(10)
    batch = next(iter(ds.map(lambda s: tf.io.parse_example(s, spec))))
    assert sorted(set(batch["key_type"].numpy().tolist())) == [b"scenario", b"user"]
    assert batch["vector"].shape == (6, 4)


def test_missing_dir_and_manifest_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist.*llm4msr knowledge"):
        load(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="manifest.json is missing"):
        load(str(tmp_path / "empty"))


def test_dim_and_llm_mismatch_errors_name_expected_and_found(tmp_path):
    kdir = str(tmp_path / "k")
    write_knowledge(kdir, _records(dim=8), {"llm": "gemma3-270m"})
    with pytest.raises(UserInputError, match=r"expected 640, found 8"):
        load(kdir, expected_dim=640)
    with pytest.raises(UserInputError, match=r"expected 'minilm', found 'gemma3-270m'.*--llm minilm"):
        load(kdir, expected_llm="minilm")


def test_corrupt_directory_is_caught(tmp_path):
    kdir = str(tmp_path / "k")
    write_knowledge(kdir, _records(dim=8), {"llm": "a"})
    mpath = os.path.join(kdir, "manifest.json")
    man = json.load(open(mpath))
    man["dim"] = 16
    json.dump(man, open(mpath, "w"))
    with pytest.raises(UserInputError, match="has length 8, but the manifest says dim=16"):
        load(kdir)
    man["dim"] = 8
    man["counts"]["user"] = 5
    json.dump(man, open(mpath, "w"))
    with pytest.raises(UserInputError, match="promises 5 user vectors but the shards hold 3"):
        load(kdir)


def test_writer_refuses_bad_input_and_existing_output(tmp_path):
    kdir = str(tmp_path / "k")
    with pytest.raises(UserInputError, match="vector lengths"):
        write_knowledge(kdir, _records(dim=8), {"llm": "a", "dim": 4})
    with pytest.raises(UserInputError, match="key_type"):
        write_knowledge(kdir, [dict(key_type="item", key="1", vector=[1.0])], {"llm": "a"})
    assert not os.path.exists(kdir)  # nothing half-written
    write_knowledge(kdir, _records(), {"llm": "a"})
    with pytest.raises(UserInputError, match="already exists"):
        write_knowledge(kdir, _records(), {"llm": "a"})


def test_import_is_light():
    r = run_py(
        "import sys, llm4msr_tf.knowledge; "
        "print([m for m in ('torch', 'transformers', 'apache_beam', 'tensorflow') if m in sys.modules])"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
