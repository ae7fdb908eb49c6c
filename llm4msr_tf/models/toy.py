"""A tiny synthetic multi-scenario dataset and knowledge base in the real on-disk formats.

For tests and examples of the model stage: `write_toy_dataset` writes a DATA_DIR exactly as
``llm4msr prepare`` does (gzip tf.Example TFRecords, vocab files, dataset.json), and
`write_toy_knowledge` writes a KNOWLEDGE_DIR with random vectors through the knowledge
stage's writer. Labels depend on user, item and scenario, so models can learn something.
"""
import os
from typing import Dict, List, Optional

import numpy as np

from llm4msr_tf.data.spec import DatasetSpec, FeatureSpec, ScenarioSpec


def _example(row: Dict[str, object]):
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    feats = {}
    for k, v in row.items():
        if isinstance(v, str):
            feats[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
        elif isinstance(v, float):
            feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
        else:
            feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
    return tf.train.Example(features=tf.train.Features(feature=feats))


def write_toy_dataset(data_dir: str, num_users: int = 40, num_items: int = 30, num_scenarios: int = 3,
                      rows: Optional[Dict[str, int]] = None, seed: int = 0, num_shards: int = 2) -> DatasetSpec:
    """Write a small prepared dataset (3 splits, vocabularies, dataset.json); returns its spec."""
    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    rows = rows or {"train": 2000, "eval": 400, "test": 400}
    rng = np.random.default_rng(seed)
    user_bias = rng.normal(0, 1.0, num_users)
    item_bias = rng.normal(0, 1.0, num_items)
    scen_bias = np.linspace(-1.0, 1.0, num_scenarios)
    user_scen = rng.normal(0, 1.0, (num_users, num_scenarios))
    genders = ["F", "M"]
    user_gender = rng.integers(0, 2, num_users)
    user_age = rng.uniform(0, 1, num_users)
    os.makedirs(os.path.join(data_dir, "vocab"), exist_ok=True)
    counts: Dict[str, Dict[str, int]] = {}
    splits = {}
    for split, n in rows.items():
        os.makedirs(os.path.join(data_dir, split), exist_ok=True)
        writers = [tf.io.TFRecordWriter(
            os.path.join(data_dir, split, f"part-{i:05d}-of-{num_shards:05d}.tfrecord.gz"), options="GZIP")
            for i in range(num_shards)]
        per: Dict[str, Dict[str, int]] = {}
        pos = 0
        for j in range(n):
            u, it, s = rng.integers(num_users), rng.integers(num_items), rng.integers(num_scenarios)
            z = user_bias[u] + item_bias[it] + scen_bias[s] + 1.5 * user_scen[u, s]
            y = int(rng.random() < 1 / (1 + np.exp(-z)))
            pos += y
            d = per.setdefault(str(s), {"rows": 0, "positives": 0})
            d["rows"] += 1
            d["positives"] += y
            if split == "train":
                for name, val in (("user_id", f"u{u}"), ("item_id", f"i{it}"), ("gender", genders[user_gender[u]])):
                    counts.setdefault(name, {})
                    counts[name][val] = counts[name].get(val, 0) + 1
            writers[j % num_shards].write(_example({
                "user_id": f"u{u}", "item_id": f"i{it}", "scenario_id": int(s), "label": y,
                "gender": genders[user_gender[u]], "age": float(user_age[u])}).SerializeToString())
        for w in writers:
            w.close()
        splits[split] = {"rows": n, "positives": pos, "per_scenario": per}
    features: List[FeatureSpec] = []
    for name in ("user_id", "item_id", "gender"):
        vocab = sorted(counts[name], key=lambda k: (-counts[name][k], k))
        with open(os.path.join(data_dir, "vocab", f"{name}.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")
        features.append(FeatureSpec(name, "categorical", "string", len(vocab), f"vocab/{name}.txt"))
    features.insert(2, FeatureSpec("scenario_id", "categorical", "int64", num_scenarios))
    features.append(FeatureSpec("age", "numeric", "float32"))
    spec = DatasetSpec(
        name="toy", num_scenarios=num_scenarios,
        scenarios=[ScenarioSpec(s, f"scenario{s}", f"toy scenario {s}") for s in range(num_scenarios)],
        features=features, splits=splits, split_method="random", data_dir=os.path.abspath(data_dir))
    spec.save(data_dir)
    return DatasetSpec.load(data_dir)


def write_toy_knowledge(knowledge_dir: str, num_users: int = 40, num_scenarios: int = 3, dim: int = 24,
                        seed: int = 0, skip_users: int = 0):
    """Write a knowledge dir of random vectors for users u{skip_users}..u{n-1} and all scenarios; returns load()."""
    from llm4msr_tf import knowledge as kn

    rng = np.random.default_rng(seed + 1)
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=dim)} for s in range(num_scenarios)]
    recs += [{"key_type": "user", "key": f"u{u}", "vector": rng.normal(size=dim)}
             for u in range(skip_users, num_users)]
    kn.write_knowledge(knowledge_dir, recs, {"llm": "random-toy", "dim": dim}, overwrite=True)
    return kn.load(knowledge_dir)


def write_random_knowledge(knowledge_dir: str, spec: DatasetSpec, dim: int = 24, seed: int = 0,
                           drop_users: int = 0):
    """Random knowledge vectors for every scenario and training user of a prepared dataset.

    The first `drop_users` users of the vocabulary get no vector (to exercise unknown keys).
    Returns the loaded `KnowledgeBase`.
    """
    from llm4msr_tf import knowledge as kn

    rng = np.random.default_rng(seed + 7)
    recs = [{"key_type": "scenario", "key": str(s), "vector": rng.normal(size=dim)}
            for s in range(spec.num_scenarios)]
    recs += [{"key_type": "user", "key": u, "vector": rng.normal(size=dim)}
             for u in spec.vocab(spec.user_feature)[drop_users:]]
    kn.write_knowledge(knowledge_dir, recs, {"llm": "random", "dim": dim}, overwrite=True)
    return kn.load(knowledge_dir)
