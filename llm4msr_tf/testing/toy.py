"""A tiny synthetic multi-scenario dataset, knowledge base and prompt files in the real formats.

`write_toy_dataset` writes a DATA_DIR the way ``llm4msr prepare`` does, through the same
writers (`llm4msr_tf.data.writer.write_examples`, `build_features`, `DatasetSpec.save`);
`write_toy_knowledge` / `write_random_knowledge` write a KNOWLEDGE_DIR of random vectors
through `llm4msr_tf.knowledge.write_knowledge`; `write_prompt_texts` writes prompt files
through `llm4msr_tf.data.prompt_format.write_prompts`. Labels depend on user, item and
scenario, so models can learn something.
"""
import math
import os
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, USER
from llm4msr_tf.data.prompt_format import Prompt, write_prompts
from llm4msr_tf.data.spec import DatasetSpec, ScenarioSpec
from llm4msr_tf.data.writer import build_features, write_examples


def _rows(n: int, rng: np.random.Generator, world: Dict[str, Any]) -> pd.DataFrame:
    """`n` interactions drawn from the toy world, in draw order."""
    cols: Dict[str, list] = {USER: [], ITEM: [], SCENARIO: [], LABEL: [], "gender": [], "age": []}
    for _ in range(n):
        u, it, s = rng.integers(world["num_users"]), rng.integers(world["num_items"]), rng.integers(world["S"])
        z = world["user_bias"][u] + world["item_bias"][it] + world["scen_bias"][s] + 1.5 * world["user_scen"][u, s]
        cols[LABEL].append(int(rng.random() < 1 / (1 + np.exp(-z))))
        cols[USER].append(f"u{u}")
        cols[ITEM].append(f"i{it}")
        cols[SCENARIO].append(int(s))
        cols["gender"].append(world["genders"][world["user_gender"][u]])
        cols["age"].append(float(world["user_age"][u]))
    return pd.DataFrame(cols)


def write_toy_dataset(data_dir: str, num_users: int = 40, num_items: int = 30, num_scenarios: int = 3,
                      rows: Optional[Dict[str, int]] = None, seed: int = 0, num_shards: int = 2) -> DatasetSpec:
    """Write a small prepared dataset (3 splits, vocabularies, dataset.json).

    Args:
        data_dir: where to write DATA_DIR.
        num_users, num_items, num_scenarios: size of the toy world (users ``u0..``, items ``i0..``).
        rows: rows per split (default 2000 / 400 / 400).
        seed: seed of the world and of the draws.
        num_shards: gzip TFRecord files per split; example ``j`` of a split lands in shard
            ``j % num_shards``, so reading the shards interleaved gives the draw order back.

    Returns:
        The `DatasetSpec` loaded back from DATA_DIR.
    """
    rows = rows or {"train": 2000, "eval": 400, "test": 400}
    rng = np.random.default_rng(seed)
    world = {"num_users": num_users, "num_items": num_items, "S": num_scenarios,
             "user_bias": rng.normal(0, 1.0, num_users), "item_bias": rng.normal(0, 1.0, num_items),
             "scen_bias": np.linspace(-1.0, 1.0, num_scenarios),
             "user_scen": rng.normal(0, 1.0, (num_users, num_scenarios)),
             "genders": ["F", "M"], "user_gender": rng.integers(0, 2, num_users),
             "user_age": rng.uniform(0, 1, num_users)}
    frames = {split: _rows(n, rng, world) for split, n in rows.items()}
    features = build_features(frames["train"], num_scenarios, ["gender"], ["age"], os.path.join(data_dir, "vocab"))
    # user_id, item_id, scenario_id, gender, age: the toy dataset's feature order.
    features.insert(2, features.pop(next(i for i, f in enumerate(features) if f.name == SCENARIO)))
    splits = {}
    for split, frame in frames.items():
        # Round-robin rows over the shards: the writer fills shards with consecutive rows.
        order = np.concatenate([np.arange(s, len(frame), num_shards) for s in range(num_shards)])
        write_examples(frame.iloc[order], features, os.path.join(data_dir, split),
                       rows_per_shard=max(1, math.ceil(len(frame) / num_shards)), progress=False)
        by_scenario = frame.groupby(SCENARIO)[LABEL]
        per = {str(s): {"rows": int(n), "positives": int(p)}
               for s, n, p in zip(by_scenario.size().index, by_scenario.size(), by_scenario.sum())}
        splits[split] = {"rows": len(frame), "positives": int(frame[LABEL].sum()), "per_scenario": per}
    spec = DatasetSpec(
        name="toy", num_scenarios=num_scenarios,
        scenarios=[ScenarioSpec(s, f"scenario{s}", f"toy scenario {s}") for s in range(num_scenarios)],
        features=features, splits=splits, split_method="random", data_dir=os.path.abspath(data_dir))
    spec.save(data_dir)
    return DatasetSpec.load(data_dir)


def _random_knowledge(knowledge_dir: str, scenario_keys: Iterable[str], user_keys: Iterable[str], dim: int,
                      rng: np.random.Generator, llm: str) -> Any:
    """Write one random vector per key through `write_knowledge`; returns the loaded base."""
    from llm4msr_tf import knowledge as kn

    recs = [{"key_type": "scenario", "key": k, "vector": rng.normal(size=dim)} for k in scenario_keys]
    recs += [{"key_type": "user", "key": k, "vector": rng.normal(size=dim)} for k in user_keys]
    kn.write_knowledge(knowledge_dir, recs, {"llm": llm, "dim": dim}, overwrite=True)
    return kn.load(knowledge_dir)


def write_toy_knowledge(knowledge_dir: str, num_users: int = 40, num_scenarios: int = 3, dim: int = 24,
                        seed: int = 0, skip_users: int = 0) -> Any:
    """Random knowledge for users ``u{skip_users}..u{num_users-1}`` and every scenario.

    Returns:
        The loaded `llm4msr_tf.knowledge.KnowledgeBase`.
    """
    return _random_knowledge(knowledge_dir, [str(s) for s in range(num_scenarios)],
                             [f"u{u}" for u in range(skip_users, num_users)], dim,
                             np.random.default_rng(seed + 1), "random-toy")


def write_random_knowledge(knowledge_dir: str, spec: DatasetSpec, dim: int = 24, seed: int = 0,
                           drop_users: int = 0) -> Any:
    """Random knowledge for every scenario and training user of a prepared dataset.

    The first `drop_users` users of the vocabulary get no vector (to exercise unknown keys).

    Returns:
        The loaded `llm4msr_tf.knowledge.KnowledgeBase`.
    """
    return _random_knowledge(knowledge_dir, [str(s) for s in range(spec.num_scenarios)],
                             spec.vocab(spec.user_feature)[drop_users:], dim,
                             np.random.default_rng(seed + 7), "random")


def write_prompt_texts(data_dir: str, scenario: Mapping[str, str], user: Mapping[str, str],
                       truncated: Optional[Iterable[str]] = None) -> str:
    """Write DATA_DIR/prompts/{scenario,user}.jsonl from key -> text maps.

    Args:
        data_dir: the directory to hold ``prompts/``.
        scenario, user: prompt text per scenario key / user key.
        truncated: keys whose record says the prompt was truncated by prepare.

    Returns:
        `data_dir`.
    """
    cut = {str(k) for k in (truncated or ())}
    write_prompts(data_dir, [Prompt(key=str(k), key_type=kt, prompt=p, truncated=str(k) in cut)
                             for kt, texts in (("scenario", scenario), ("user", user)) for k, p in texts.items()])
    return data_dir
