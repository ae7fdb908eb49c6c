"""The knowledge job on Beam's portable runner with separate SDK worker processes (EXTERNAL
environment, Beam's worker pool), as on Flink or Spark: equal to the DirectRunner, the LLM loaded
once per worker process, and an incremental re-run that recomputes (and loads) nothing.

The workers start without TF_USE_LEGACY_KERAS, like a real cluster's: they unpickle
``ProtoCoder(tf.train.Example)`` (importing TensorFlow) before our DoFns import llm4msr_tf,
the import-order trap of issue 19.
"""
import json
import os

import numpy as np
import pytest

from llm4msr_tf.knowledge.config import KnowledgeConfig
from llm4msr_tf.knowledge.store import iter_records
from llm4msr_tf.testing import LocalPortableCluster, build_tiny_causal_lm, write_prompt_texts
from llm4msr_tf.testing.beam_cluster import worker_env

SCENARIOS = {"0": "Scenario 0: home feed; 310 users, 41% positive.", "1": "Scenario 1: search; dramas."}
# 30 users, 24 distinct texts (users i and i + 24 share one): dedupe happens across workers too.
USERS = {str(i): f"User {i % 24} liked " + ", ".join(["space operas", "westerns", "musicals"][: 1 + i % 3] * (1 + i % 4))
         for i in range(30)}


def _vectors(kdir):
    return {(r.key_type, r.key): r.vector for r in iter_records(kdir)}


def _loads(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_portable_runner_with_worker_pool_equals_direct_runner(tmp_path):
    from llm4msr_tf.knowledge.job import LOAD_LOG_ENV, run

    lm = build_tiny_causal_lm(str(tmp_path / "lm"))
    data = write_prompt_texts(str(tmp_path / "data"), SCENARIOS, USERS)
    base = dict(data=data, llm=f"hf:{lm}", batch_size=4, sort_window=2, num_shards=2)
    direct = run(KnowledgeConfig(out=str(tmp_path / "k_direct"), **base))
    want = _vectors(str(tmp_path / "k_direct"))
    assert len(want) == 32

    load_log = str(tmp_path / "llm_loads.jsonl")
    env = worker_env({**os.environ, LOAD_LOG_ENV: load_log})
    assert "TF_USE_LEGACY_KERAS" not in env
    portable = dict(base, runner="PortableRunner")
    with LocalPortableCluster(str(tmp_path / "cluster"), env=env) as cluster:
        # Beam's own job service (one SDK worker process per job).
        one = run(KnowledgeConfig(out=str(tmp_path / "k_one"), **portable), cluster.beam_args(workers=1))
        assert cluster.workers_started() == 1
        loads_one = _loads(load_log)
        # Two SDK worker processes share the bundles.
        two = run(KnowledgeConfig(out=str(tmp_path / "k_two"), **portable), cluster.beam_args(workers=2))
        assert cluster.workers_started() == 3
        loads_two = _loads(load_log)[len(loads_one):]
        # Incremental re-run on the workers: every vector reused, no LLM call, no LLM load.
        again = run(KnowledgeConfig(out=str(tmp_path / "k_two"), **portable), cluster.beam_args(workers=2))
        loads_again = _loads(load_log)[len(loads_one) + len(loads_two):]

    for out, m in (("k_one", one), ("k_two", two)):
        got = _vectors(str(tmp_path / out))
        assert set(got) == set(want), out
        for key, vec in want.items():
            np.testing.assert_allclose(got[key], vec, rtol=0, atol=1e-6, err_msg=f"{out} {key}")
        assert m["counts"] == direct["counts"] == {"scenario": 2, "user": 30}
        assert m["encoded_prompts"] == direct["encoded_prompts"] == 26 and m["runner"] == "PortableRunner"
        assert m["encoded_prompts_per_second"] and direct["encoded_prompts_per_second"]
    # The LLM ran in the worker processes (not here), loaded once in each of them.
    pids_one, pids_two = [r["pid"] for r in loads_one], [r["pid"] for r in loads_two]
    assert len(pids_one) == 1 and os.getpid() not in pids_one
    assert len(pids_two) == len(set(pids_two)) == 2 and not set(pids_two) & (set(pids_one) | {os.getpid()})
    assert again["reused"] == 32 and again["encoded_prompts"] == 0 and loads_again == []
    after = _vectors(str(tmp_path / "k_two"))
    np.testing.assert_allclose(np.stack([after[k] for k in sorted(want)]), np.stack([want[k] for k in sorted(want)]),
                               rtol=0, atol=1e-6)
    print(f"\nprompts/s (model time): DirectRunner {direct['encoded_prompts_per_second']}, "
          f"PortableRunner 1 worker {one['encoded_prompts_per_second']}, 2 workers "
          f"{two['encoded_prompts_per_second']}; wall s: {direct['seconds']} / {one['seconds']} / {two['seconds']}")
