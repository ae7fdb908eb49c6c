"""movielens adapter on the real ML-100K and ML-1M files (counts checked against the raw files)."""
import collections
import os

import pytest

import llm4msr_tf  # noqa: F401
from llm4msr_tf.data import DatasetSpec
from llm4msr_tf.data.config import PrepareConfig
from llm4msr_tf.data.prepare import prepare
from llm4msr_tf.data.prompt_format import read_prompts
from llm4msr_tf.data.reader import read_split
from llm4msr_tf.utils.io import UserInputError


def _raw_100k(src):
    """(user, item, rating, ts) rows and user ages, parsed independently of the adapter."""
    rows = [line.split("\t") for line in open(os.path.join(src, "u.data"))]
    ages = {l.split("|")[0]: int(l.split("|")[1]) for l in open(os.path.join(src, "u.user"))}
    titles = {l.split("|")[0]: l.split("|")[1] for l in open(os.path.join(src, "u.item"), encoding="latin-1")}
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows], ages, titles


@pytest.fixture(scope="module")
def ml100k(shared_dataset, tmp_path_factory):
    src = shared_dataset("ml-100k")
    out = str(tmp_path_factory.mktemp("ml100k") / "data")
    prepare(PrepareConfig(dataset="movielens", source=src, out=out, progress=False))
    splits = {k: read_split(out, k) for k in ("train", "eval", "test")}
    return src, out, splits


def test_ml100k_counts_ids_and_scenarios(ml100k):
    src, out, splits = ml100k
    raw, ages, _ = _raw_100k(src)
    spec = DatasetSpec.load(out)
    assert spec.name == "movielens-100k" and spec.num_scenarios == 3 and spec.split_method == "time"
    assert sum(len(d) for d in splits.values()) == len(raw) == 100_000
    # The exact multiset of (user, item, label) rows survives, with raw ids as strings.
    got = collections.Counter()
    for d in splits.values():
        got.update(zip(d.user_id, d.item_id, d.label))
    want = collections.Counter((u, i, int(r > 3)) for u, i, r, _ in raw)
    assert got == want
    # Scenario = age bin (<25, 25-34, >=35) of the user, counted from u.user directly.
    bins = lambda a: 0 if a < 25 else (1 if a < 35 else 2)  # noqa: E731
    want_sc = collections.Counter(bins(ages[u]) for u, *_ in raw)
    got_sc = collections.Counter()
    for d in splits.values():
        got_sc.update(d.scenario_id.tolist())
        assert all(bins(ages[u]) == s for u, s in zip(d.user_id, d.scenario_id))
    assert got_sc == want_sc
    per = {s: sum(spec.splits[k]["per_scenario"][str(s)]["rows"] for k in splits) for s in range(3)}
    assert per == dict(want_sc)
    # No id collisions: vocabularies are unique, users and items keep distinct raw ids.
    uv, iv = spec.vocab("user_id"), spec.vocab("item_id")
    assert len(uv) == len(set(uv)) == 943 and len(iv) == len(set(iv))
    assert set(splits["train"].item_id) == set(iv)


def test_ml100k_split_by_time_is_disjoint(ml100k):
    src, out, splits = ml100k
    raw, _, _ = _raw_100k(src)
    ts = {(u, i): t for u, i, _, t in raw}
    keys = {k: set(zip(d.user_id, d.item_id)) for k, d in splits.items()}
    assert not (keys["train"] & keys["eval"]) and not (keys["train"] & keys["test"])
    assert not (keys["eval"] & keys["test"])
    last_train = collections.defaultdict(int)
    for u, i in keys["train"]:
        last_train[u] = max(last_train[u], ts[(u, i)])
    for k in ("eval", "test"):
        assert all(ts[(u, i)] >= last_train[u] for u, i in keys[k])
    assert abs(len(splits["train"]) / 100_000 - 0.8) < 0.02


def test_ml100k_prompts_cover_everyone_and_leak_nothing(ml100k):
    src, out, splits = ml100k
    _, _, titles = _raw_100k(src)
    sp = read_prompts(out, "scenario")
    up = {p.key: p for p in read_prompts(out, "user")}
    assert [p.key for p in sp] == ["0", "1", "2"]
    assert "age<25" in sp[0].prompt and "positive rate" in sp[0].prompt
    train = splits["train"]
    assert set(up) == set(train.user_id)
    assert all(len(p.prompt) <= 400 for p in up.values())
    assert all(("[truncated" in p.prompt) == p.truncated for p in up.values())
    train_titles = collections.defaultdict(set)
    for u, i in zip(train.user_id, train.item_id):
        train_titles[u].add(titles[i])
    leaks = 0
    for k in ("eval", "test"):
        d = splits[k]
        for u, i in zip(d.user_id, d.item_id):
            t = titles[i]
            if t in up[u].prompt and not any(t in x for x in train_titles[u]):
                leaks += 1
    assert leaks == 0
    # Named titles come from the user's training history, most liked genres are reported.
    u0 = train.user_id.iloc[0]
    named = [t for t in train_titles[u0] if t in up[u0].prompt]
    assert named and "liked" in up[u0].prompt


def test_ml100k_genre_scenarios_and_threshold(shared_dataset, tmp_path):
    src = shared_dataset("ml-100k")
    spec = prepare(PrepareConfig(dataset="movielens", source=src, out=str(tmp_path / "g"), scenario_by="genre",
                                 label_threshold=4, split="random", progress=False))
    assert [s.name for s in spec.scenarios] == ["action & thriller", "drama & romance", "comedy & family"]
    assert sum(spec.splits[k]["rows"] for k in ("train", "eval", "test")) == 100_000
    raw, _, _ = _raw_100k(src)
    assert sum(spec.splits[k]["positives"] for k in ("train", "eval", "test")) == sum(r > 4 for _, _, r, _ in raw)
    assert all(spec.splits["train"]["per_scenario"][str(s)]["rows"] > 5000 for s in range(3))


def test_movielens_bad_input_errors(tmp_path, shared_dataset):
    src = shared_dataset("ml-100k")
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_text("1\t2\t5\t100\n1\t3\tfive\t101\n")
    with pytest.raises(UserInputError, match="u.item"):
        prepare(PrepareConfig(dataset="movielens", source=str(d), out=str(tmp_path / "o"), progress=False))
    for f in ("u.item", "u.user"):
        (d / f).write_bytes(open(os.path.join(src, f), "rb").read())
    with pytest.raises(UserInputError, match=r"u\.data, line 2, column 'rating'.*'five'"):
        prepare(PrepareConfig(dataset="movielens", source=str(d), out=str(tmp_path / "o"), progress=False))
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserInputError, match="neither u.data"):
        prepare(PrepareConfig(dataset="movielens", source=str(tmp_path), out=str(tmp_path / "o2"), progress=False))


@pytest.mark.slow
def test_ml1m_full(shared_dataset, tmp_path):
    src = shared_dataset("ml-1m")
    out = str(tmp_path / "ml1m")
    spec = prepare(PrepareConfig(dataset="movielens", source=src, out=out, progress=False))
    n_src = sum(1 for _ in open(os.path.join(src, "ratings.csv"))) - 1
    total = sum(spec.splits[k]["rows"] for k in ("train", "eval", "test"))
    assert total == n_src == 999_622 and spec.split_method == "random"
    assert abs(spec.splits["train"]["rows"] / total - 0.8) < 0.005
    # Scenario counts from users.dat age codes {1,18} {25} {35,45,50,56}.
    age = {l.split("::")[0]: int(l.split("::")[2]) for l in open(os.path.join(src, "users.dat"))}
    grp = lambda a: 0 if a in (1, 18) else (1 if a == 25 else 2)  # noqa: E731
    want = collections.Counter()
    with open(os.path.join(src, "ratings.csv")) as fh:
        next(fh)
        for line in fh:
            want[grp(age[line.split(",", 1)[0]])] += 1
    got = {s: sum(spec.splits[k]["per_scenario"][str(s)]["rows"] for k in ("train", "eval", "test")) for s in range(3)}
    assert got == dict(want)
    assert spec.feature("user_id").vocab_size == 6040
    users = {p.key for p in read_prompts(out, "user")}
    assert len(users) == spec.splits["train"]["users"] == 6040
    test = read_split(out, "test", limit=20000)
    assert set(test.scenario_id) == {0, 1, 2} and test.label.isin([0, 1]).all()
