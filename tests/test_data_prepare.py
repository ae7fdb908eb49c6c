"""prepare core: tf.Example encoding, splits, prompts, spec, synthetic world, atomic output, CLI."""
import json
import os

import numpy as np
import pandas as pd
import pytest

import llm4msr_tf  # noqa: F401
from conftest import run_cli
from llm4msr_tf.data import DatasetSpec
from llm4msr_tf.data.adapters.synthetic import generate
from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, TIMESTAMP, USER, ItemInfo
from llm4msr_tf.data.config import PrepareConfig
from llm4msr_tf.data.prepare import prepare, summary_table
from llm4msr_tf.data.prompts import USER_QUESTION, UserPromptBuilder, build_user_prompts
from llm4msr_tf.data.prompt_format import read_prompts
from llm4msr_tf.data.reader import read_split
from llm4msr_tf.data.spec import FeatureSpec, ScenarioSpec
from llm4msr_tf.data.split import assign_splits
from llm4msr_tf.data.writer import serialize_examples
from llm4msr_tf.utils.io import UserInputError

TINY = dict(num_users=40, num_items=30, interactions_per_user=25, progress=False)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn") / "data")
    prepare(PrepareConfig(dataset="synthetic", out=out, **TINY))
    return out


def test_encoder_matches_protobuf_api():
    import tensorflow as tf

    frame = pd.DataFrame({
        "user_id": ["u1", "ü-ß", "u1"], "item_id": ["9", "10", "x" * 300],
        "scenario_id": [0, 2, 1], "label": [1, 0, 1], "neg": [-5, 2**40, 0],
        "price": np.array([0.25, -1.5, 3e-8], dtype=np.float32),
    })
    feats = [FeatureSpec("user_id", "categorical", "string"), FeatureSpec("item_id", "categorical", "string"),
             FeatureSpec("scenario_id", "categorical", "int64", 3), FeatureSpec("neg", "categorical", "int64"),
             FeatureSpec("price", "numeric", "float32")]
    got = serialize_examples(frame, feats)
    for i, rec in enumerate(got):
        ex = tf.train.Example.FromString(rec)
        f = ex.features.feature
        assert f["user_id"].bytes_list.value == [frame.user_id[i].encode()]
        assert f["item_id"].bytes_list.value == [frame.item_id[i].encode()]
        assert f["scenario_id"].int64_list.value == [frame.scenario_id[i]]
        assert f["neg"].int64_list.value == [frame.neg[i]]
        assert f["label"].int64_list.value == [frame.label[i]]
        assert f["price"].float_list.value[0] == pytest.approx(float(frame.price[i]), rel=1e-7)
        assert sorted(f.keys()) == sorted(list(frame.columns))
        # Same message as the protobuf API builds (map order may differ, so compare parsed).
        api = tf.train.Example(features=tf.train.Features(feature={
            "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame.user_id[i].encode()])),
            "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame.item_id[i].encode()])),
            "scenario_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(frame.scenario_id[i])])),
            "neg": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(frame.neg[i])])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(frame.label[i])])),
            "price": tf.train.Feature(float_list=tf.train.FloatList(value=[float(frame.price[i])])),
        }))
        assert ex == api


def test_splits_user_time_and_random():
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({USER: pd.Categorical(rng.integers(0, 50, n).astype(str)),
                          TIMESTAMP: rng.uniform(0, 1e6, n)})
    s = assign_splits(frame, "user-time", (0.8, 0.1, 0.1), seed=1)
    assert set(np.unique(s)) == {0, 1, 2}
    for _, g in frame.assign(s=s).groupby(USER):
        # Every eval/test interaction of a user is later than all of their training ones.
        if (g.s > 0).any():
            assert g[g.s == 0][TIMESTAMP].max() <= g[g.s > 0][TIMESTAMP].min()
        if (g.s == 2).any() and (g.s == 1).any():
            assert g[g.s == 1][TIMESTAMP].max() <= g[g.s == 2][TIMESTAMP].min()
        assert (g.s == 0).sum() >= 1
    r = assign_splits(frame, "random", (0.8, 0.1, 0.1), seed=3)
    assert np.array_equal(r, assign_splits(frame, "random", (0.8, 0.1, 0.1), seed=3))
    assert abs((r == 0).mean() - 0.8) < 0.04 and abs((r == 2).mean() - 0.1) < 0.03
    g = assign_splits(frame, "global-time", (0.8, 0.1, 0.1), seed=0)
    assert frame[TIMESTAMP][g == 0].max() <= frame[TIMESTAMP][g == 1].min()
    with pytest.raises(UserInputError, match="split-ratios"):
        assign_splits(frame, "random", (0.8, 0.1), seed=0)


def test_user_prompt_budget_truncation_and_order():
    items = {str(i): ItemInfo(title=f"Movie number {i}", categories=["Drama" if i % 2 else "Comedy"])
             for i in range(100)}
    scen = [ScenarioSpec(0, "feed"), ScenarioSpec(1, "search")]
    b = UserPromptBuilder(items, scen, max_chars=380, item_noun="movies")
    hist = {0: ([str(i) for i in range(40)], [str(i) for i in range(40, 60)]), 1: (["70", "71"], [])}
    p = b.build("u7", hist, ordered=True)
    assert len(p.prompt) <= 380 and p.truncated
    assert p.prompt.endswith(USER_QUESTION)
    assert "[truncated:" in p.prompt and "most recent first" in p.prompt
    assert "liked 40" in p.prompt and "disliked 20" in p.prompt and '"search": liked 2' in p.prompt
    # Most recent first: item 0 is named before item 1 when both are shown.
    assert p.prompt.index("Movie number 0") < p.prompt.index("Movie number 1")
    # A budget that fits everything is not truncated and names every item.
    small = {0: (["1", "2"], ["3"])}
    q = UserPromptBuilder(items, scen, max_chars=2000).build("u8", small, ordered=False)
    assert not q.truncated and all(f"Movie number {i}" in q.prompt for i in (1, 2, 3))
    # A tiny budget still keeps the question and says it cut the text.
    t = UserPromptBuilder(items, scen, max_chars=120).build("u9", hist, ordered=True)
    assert t.truncated and t.prompt.endswith(USER_QUESTION) and "truncated" in t.prompt


def test_tiny_synthetic_end_to_end(tiny_dir):
    spec = DatasetSpec.load(tiny_dir)
    assert spec.num_scenarios == 3 and spec.split_method == "time"
    assert [s.name for s in spec.scenarios] == ["home feed", "search", "deals"]
    assert all(s.description for s in spec.scenarios)
    names = [f.name for f in spec.features]
    assert names[:2] == ["user_id", "item_id"] and "scenario_id" in names and "label" not in names
    assert {f.name for f in spec.numeric} == {"item_price"}
    splits = {k: read_split(tiny_dir, k) for k in ("train", "eval", "test")}
    for k, df in splits.items():
        assert len(df) == spec.splits[k]["rows"] and df[LABEL].sum() == spec.splits[k]["positives"]
        for sid in range(3):
            assert (df[SCENARIO] == sid).sum() == spec.splits[k]["per_scenario"][str(sid)]["rows"]
        assert set(df[LABEL].unique()) <= {0, 1}
        assert df[SCENARIO].between(0, 2).all()
        assert df["item_price"].between(0, 1).all()
    # Rows are disjoint across splits (the generator never repeats user x item x scenario).
    keys = [set(zip(df[USER], df[ITEM], df[SCENARIO])) for df in splits.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sum(len(k) for k in keys) == sum(len(df) for df in splits.values())
    # Vocabularies: training values only, most frequent first, sizes as in the spec.
    train = splits["train"]
    uv = spec.vocab("user_id")
    assert len(uv) == len(set(uv)) == train[USER].nunique() == spec.feature("user_id").vocab_size
    counts = train[USER].value_counts()
    assert counts[uv[0]] == counts.max()
    assert spec.vocab("scenario_id") == ["0", "1", "2"]
    # Prompts: one per scenario and per training user; JSONL records as in the contract.
    sp = read_prompts(tiny_dir, "scenario")
    up = read_prompts(tiny_dir, "user")
    assert [p.key for p in sp] == ["0", "1", "2"] and all(p.key_type == "scenario" for p in sp)
    assert {p.key for p in up} == set(train[USER]) and all(p.key_type == "user" for p in up)
    for kind in ("scenario", "user"):  # the JSONL records hold exactly these fields
        with open(os.path.join(tiny_dir, "prompts", f"{kind}.jsonl")) as f:
            assert all(set(json.loads(line)) == {"key", "key_type", "prompt", "truncated"} for line in f)
    assert all(len(p.prompt) <= 400 for p in up)
    assert "home feed" in sp[0].prompt and "positive rate" in sp[0].prompt
    cfg = json.load(open(os.path.join(tiny_dir, "config.json")))
    assert cfg["num_users"] == 40 and cfg["dataset"] == "synthetic"
    assert "train" in summary_table(spec) and "deals" in summary_table(spec)


def test_prompts_only_use_training_rows():
    data = generate(60, 40, 30, seed=5)
    f = data.frame
    s = assign_splits(f, "user-time", (0.8, 0.1, 0.1), seed=0)
    train = f[s == 0]
    prompts = {p.key: p.prompt for p in build_user_prompts(train, data.items, data.scenarios, max_chars=100000)}
    # With an unlimited budget every training item is named, and no item the user only saw
    # in eval/test is.
    for u, g in f.assign(s=s).groupby(USER):
        tr = {data.items[i].title for i in g[g.s == 0][ITEM]}
        held = {data.items[i].title for i in g[g.s > 0][ITEM]} - tr
        assert all(t in prompts[u] for t in tr)
        assert not any(t in prompts[u] for t in held if not any(t in x for x in tr))


def test_synthetic_world_has_planted_structure():
    d = generate(400, 300, 60, seed=42)
    f = d.frame
    assert 15_000 < len(f) < 40_000 and f[USER].nunique() == 400
    # Deterministic for a seed.
    assert generate(400, 300, 60, seed=42).frame.equals(f)
    # Scenario-specific behaviour: search clicks most.
    rate = f.groupby(SCENARIO)[LABEL].mean()
    assert rate[1] > rate[0] + 0.1 and rate[1] > rate[2] + 0.1
    # Taste carries across scenarios: a user's favourite category learnt from the OTHER
    # scenarios predicts clicks in this one.
    u = f[USER].cat.codes.to_numpy()
    c = f["item_category"].cat.codes.to_numpy()
    sc = f[SCENARIO].to_numpy()
    y = f[LABEL].to_numpy()
    pos = np.zeros((u.max() + 1, 3, c.max() + 1))
    np.add.at(pos, (u, sc, c), y)
    other = pos.sum(axis=1, keepdims=True) - pos  # positives per category in the other scenarios
    fav = other.argmax(axis=2)
    enough = other.sum(axis=2) >= 3
    keep = enough[u, sc]
    is_fav = (c == fav[u, sc])[keep]
    hit, miss = y[keep][is_fav], y[keep][~is_fav]
    assert np.mean(hit) > np.mean(miss) + 0.15
    # Titles carry the category (text reflects taste): every title's noun belongs to its category.
    from llm4msr_tf.data.adapters.synthetic import CATEGORIES
    for info in d.items.values():
        assert any(n in info.title for n in CATEGORIES[info.categories[0]])


def test_atomic_output_and_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "data"
    cfg = PrepareConfig(dataset="synthetic", out=str(out), **TINY)
    import llm4msr_tf.data.prepare as prep

    def boom(*a, **k):  # fault injection: fail after TFRecords are written, before prompts
        raise RuntimeError("disk full")

    monkeypatch.setattr(prep, "build_user_prompts", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(cfg)
    assert os.listdir(tmp_path) == []  # no DATA_DIR and no temporary leftovers
    monkeypatch.undo()
    prepare(cfg)
    first = DatasetSpec.load(str(out)).splits
    with pytest.raises(UserInputError, match="already exists"):
        prepare(cfg)
    prepare(PrepareConfig(dataset="synthetic", out=str(out), overwrite=True, seed=7, **TINY))
    assert DatasetSpec.load(str(out)).splits != first
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_spec_errors(tmp_path):
    with pytest.raises(UserInputError, match="llm4msr prepare"):
        DatasetSpec.load(str(tmp_path))
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(UserInputError, match="lacks keys"):
        DatasetSpec.load(str(tmp_path))


def test_cli_prepare_and_clear_errors(tmp_path):
    out = tmp_path / "d"
    r = run_cli("prepare", "--dataset", "synthetic", "--out", str(out), "--num-users", "30",
                "--num-items", "20", "--interactions-per-user", "10", "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "(all)" in r.stdout and "prompts: 3 scenario, 30 user" in r.stdout
    assert DatasetSpec.load(str(out)).config["num_users"] == 30
    r = run_cli("prepare", "--dataset", "movielens", "--source", str(tmp_path / "nope"), "--out",
                str(tmp_path / "e"), timeout=600)
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "e").exists()


def test_csv_values_cleaned_filters_and_flag_checks(tmp_path):
    p = tmp_path / "log.csv"
    lines = ["user,item,click,city"]
    for u in range(12):
        for k in range(u % 4 + 1):  # users 0,4,8 have 1 row; 3,7,11 have 4
            city = "" if u == 3 else "new\nyork"
            lines.append(f'{u},{k},{(u + k) % 2},"{city}"')
    p.write_text("\n".join(lines) + "\n")
    cols = "user=user,item=item,label=click,categorical=city"
    spec = prepare(PrepareConfig(dataset="csv", source=str(p), out=str(tmp_path / "o"), columns=cols,
                                 min_user_interactions=3, progress=False))
    n_kept = sum(u % 4 + 1 for u in range(12) if u % 4 + 1 >= 3)
    assert sum(spec.splits[k]["rows"] for k in ("train", "eval", "test")) == n_kept
    assert spec.config["dropped"]["users below --min-user-interactions"] == 30 - n_kept
    # Newlines inside values would break the line-based vocab files: they become spaces.
    # Empty values become "unknown".
    assert sorted(spec.vocab("city")) == ["new york", "unknown"]
    rows = pd.concat([read_split(str(tmp_path / "o"), k) for k in ("train", "eval", "test")])
    assert set(rows.city) == {"new york", "unknown"}
    with pytest.raises(UserInputError, match="--user-prompt-max-chars"):
        prepare(PrepareConfig(dataset="csv", source=str(p), out=str(tmp_path / "o2"), columns=cols,
                              user_prompt_max_chars=10, progress=False))


def test_prompts_without_time_list_strongest_ratings_first():
    from llm4msr_tf.data.base import RATING

    items = {str(i): ItemInfo(title=f"Title{i}x") for i in range(6)}
    train = pd.DataFrame({USER: ["a"] * 6, ITEM: [str(i) for i in range(6)], SCENARIO: [0] * 6,
                          LABEL: [1, 1, 1, 0, 0, 0], RATING: [4.0, 5.0, 4.5, 2.0, 1.0, 3.0]})
    (p,) = build_user_prompts(train, items, [ScenarioSpec(0, "s")], max_chars=2000)
    t = p.prompt
    assert "strongest ratings first" in t
    assert t.index("Title1x") < t.index("Title2x") < t.index("Title0x")  # likes: 5, 4.5, 4
    assert t.index("Title4x") < t.index("Title3x") < t.index("Title5x")  # dislikes: 1, 2, 3


def test_sparse_training_keeps_eval_test_and_builds_prompts_from_kept_rows(tmp_path, tiny_dir):
    out = str(tmp_path / "sparse")
    spec = prepare(PrepareConfig(dataset="synthetic", out=out, train_keep_fraction=0.3, train_keep_seed=3, **TINY))
    full = {k: read_split(tiny_dir, k) for k in ("train", "eval", "test")}
    sparse = {k: read_split(out, k) for k in ("train", "eval", "test")}
    # Eval and test: the same rows in the same order as without the option.
    for k in ("eval", "test"):
        pd.testing.assert_frame_equal(full[k], sparse[k])
    # Train: a subset of the full training rows, about 30% of each user's (at least one).
    key = [USER, ITEM, SCENARIO, LABEL]
    full_rows = set(map(tuple, full["train"][key].to_numpy()))
    kept_rows = list(map(tuple, sparse["train"][key].to_numpy()))
    assert set(kept_rows) <= full_rows and len(set(kept_rows)) == len(kept_rows)
    n_full = full["train"][USER].value_counts()
    n_kept = sparse["train"][USER].value_counts().reindex(n_full.index, fill_value=0)
    assert (n_kept >= 1).all()
    assert (n_kept == np.maximum(1, np.floor(n_full * 0.3 + 0.5))).all()
    # Vocabularies and prompts come from the kept rows only; dataset.json records the option.
    assert set(spec.vocab("item_id")) == set(sparse["train"][ITEM])
    tk = spec.config["train_keep"]
    assert tk == {"fraction": 0.3, "seed": 3, "train_rows_full": len(full["train"]),
                  "train_rows_kept": len(sparse["train"]), "train_users": len(n_full)}
    assert json.load(open(os.path.join(out, "config.json")))["train_keep_fraction"] == 0.3
    up = {p.key: p.prompt for p in read_prompts(out, "user")}
    import re
    for u, g in sparse["train"].groupby(USER):
        # Per-scenario "liked N" / "disliked N" counts add up to the kept rows, not the full ones.
        liked = sum(int(n) for n in re.findall(r"(?<!dis)liked (\d+)", up[u]))
        disliked = sum(int(n) for n in re.findall(r"disliked (\d+)", up[u]))
        assert (liked, disliked) == (int(g[LABEL].sum()), int((1 - g[LABEL]).sum()))
    # Another seed keeps other rows; fraction 1 is the full prepare.
    other = prepare(PrepareConfig(dataset="synthetic", out=str(tmp_path / "s2"), train_keep_fraction=0.3,
                                  train_keep_seed=4, **TINY))
    assert set(map(tuple, read_split(other.data_dir, "train")[key].to_numpy())) != set(kept_rows)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UserInputError, match="--train-keep-fraction must be in"):
            prepare(PrepareConfig(dataset="synthetic", out=str(tmp_path / "bad"), train_keep_fraction=bad, **TINY))
    assert not (tmp_path / "bad").exists()


def test_user_prompt_without_raw_id(tmp_path):
    data = generate(20, 15, 10, seed=2)
    with_id = build_user_prompts(data.frame, data.items, data.scenarios, max_chars=100000)
    no_id = build_user_prompts(data.frame, data.items, data.scenarios, max_chars=100000, include_user_id=False)
    assert [p.key for p in with_id] == [p.key for p in no_id]
    for a, b in zip(with_id, no_id):
        assert a.prompt.startswith(f"User {a.key}'s ") and a.key in a.prompt
        assert b.prompt.startswith("This user's ") and b.key not in b.prompt
        # Without a budget cut only the opening words differ (with one, the freed characters
        # may name one more item).
        assert a.prompt.split(" per scenario", 1)[1] == b.prompt.split(" per scenario", 1)[1]
    r = run_cli("prepare", "--dataset", "synthetic", "--out", str(tmp_path / "d"), "--num-users", "20",
                "--num-items", "15", "--interactions-per-user", "10", "--no-progress", "--no-user-prompt-id",
                "--train-keep-fraction", "0.5", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "sparse training: kept" in r.stdout
    assert all(p.prompt.startswith("This user's") for p in read_prompts(str(tmp_path / "d"), "user"))
    assert DatasetSpec.load(str(tmp_path / "d")).config["user_prompt_id"] is False
    r = run_cli("prepare", "--dataset", "synthetic", "--out", str(tmp_path / "e"), "--train-keep-fraction", "2",
                timeout=600)
    assert r.returncode == 2 and "--train-keep-fraction must be in (0, 1]" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
