"""amazon, kuaisar and csv adapters: real files where we have them, published-format fixtures otherwise."""
import collections
import json
import os

import pandas as pd
import pytest

import llm4msr_tf  # noqa: F401
from llm4msr_tf.data.config import PrepareConfig
from llm4msr_tf.data.prepare import prepare
from llm4msr_tf.data.prompt_format import read_prompts
from llm4msr_tf.data.reader import read_split
from llm4msr_tf.utils.io import UserInputError

SPLITS = ("train", "eval", "test")


def _cfg(**kw):
    kw.setdefault("progress", False)
    return PrepareConfig(**kw)


def _all_rows(out):
    return pd.concat([read_split(out, k).assign(split=k) for k in SPLITS], ignore_index=True)


# ---------------------------------------------------------------- amazon
def test_amazon_real_musical_instruments(shared_dataset, tmp_path):
    src = shared_dataset("amazon-musical-instruments")
    path = os.path.join(src, "Musical_Instruments_5.json")
    raw = [json.loads(l) for l in open(path)]
    out = str(tmp_path / "amz")
    spec = prepare(_cfg(dataset="amazon", source=src, out=out))
    uniq = {(r["reviewerID"], r["asin"]): r for r in raw}  # keep-last de-duplication
    rows = _all_rows(out)
    assert len(rows) == len(uniq) == spec.config["source_rows"] - spec.config["dropped"]["duplicate reviews"]
    assert spec.num_scenarios == 1 and spec.scenarios[0].name == "Musical Instruments"
    assert spec.split_method == "time"
    want = collections.Counter((u, a, int(r["overall"] > 3)) for (u, a), r in uniq.items())
    assert collections.Counter(zip(rows.user_id, rows.item_id, rows.label)) == want
    assert not rows.duplicated(["user_id", "item_id"]).any()  # splits are disjoint
    prompts = {p.key: p.prompt for p in read_prompts(out, "user")}
    assert set(prompts) == set(rows[rows.split == "train"].user_id)
    # Without metadata, products are named by the user's own TRAINING review summaries only.
    split_of = dict(zip(zip(rows.user_id, rows.item_id), rows.split))
    train_s = collections.defaultdict(set)
    for (u, a), r in uniq.items():
        if split_of[(u, a)] == "train":
            train_s[u].add(r.get("summary", "")[:60])
    named = leaked = 0
    for (u, a), r in uniq.items():
        s = r.get("summary", "").strip()[:60]
        if len(s) < 25 or u not in prompts:
            continue
        if split_of[(u, a)] == "train":
            named += f'"{s}"' in prompts[u]
        elif not any(s in t for t in train_s[u]):
            leaked += f'"{s}"' in prompts[u]
    assert named > 1000 and leaked == 0


def test_amazon_multi_category_with_meta(shared_dataset, tmp_path):
    src = shared_dataset("amazon-musical-instruments")
    lines = open(os.path.join(src, "Musical_Instruments_5.json")).read().splitlines()[:3000]
    objs = [json.loads(l) for l in lines]
    # Two "categories" from one real file: items split by asin, so users span both.
    d = tmp_path / "reviews"
    d.mkdir()
    a = [l for l, o in zip(lines, objs) if int(o["asin"][-1], 36) % 2 == 0]
    b = [l for l, o in zip(lines, objs) if l not in set(a)]
    (d / "reviews_Guitars_5.json").write_text("\n".join(a) + "\n")
    import gzip

    with gzip.open(d / "reviews_Studio_Gear_5.json.gz", "wt") as fh:  # gzip as published
        fh.write("\n".join(b) + "\n")
    asins = sorted({o["asin"] for o in objs})[:20]
    # Published 2014 metadata format: Python literals with single quotes.
    meta = [repr({"asin": s, "title": f"Fixture Product {k}", "categories": [["Musical Instruments", "Guitars",
                  "Strings"]], "price": 9.99}) for k, s in enumerate(asins)]
    (d / "meta_Guitars.json").write_text("\n".join(meta) + "\n")
    out = str(tmp_path / "amz2")
    spec = prepare(_cfg(dataset="amazon", source=str(d), out=out, user_prompt_max_chars=2000))
    assert [s.name for s in spec.scenarios] == ["Guitars", "Studio Gear"]
    rows = _all_rows(out)
    assert len(rows) == len({(o["reviewerID"], o["asin"]) for o in objs})
    assert (rows.groupby("user_id").scenario_id.nunique() == 2).any()  # users joined by reviewerID
    assert "item_category" in [f.name for f in spec.categorical]
    assert set(rows[rows.item_id.isin(asins)].item_category) == {"Guitars"}
    prompts = " ".join(p.prompt for p in read_prompts(out, "user"))
    assert "Fixture Product" in prompts and '"Studio Gear"' in prompts and "Strings" in prompts


def test_amazon_errors(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "A_5.json").write_text('{"reviewerID": "u", "asin": "a", "overall": 5.0}\n{"reviewerID": "u", "asin": "b"}\n')
    with pytest.raises(UserInputError, match=r"A_5.json, line 2: review lacks field\(s\) \['overall'\]"):
        prepare(_cfg(dataset="amazon", source=str(d), out=str(tmp_path / "o")))
    (d / "A_5.json").write_text('{"reviewerID": "u", "asin": "a", "overall": "great"}\n')
    with pytest.raises(UserInputError, match="line 1, field 'overall'"):
        prepare(_cfg(dataset="amazon", source=str(d), out=str(tmp_path / "o")))
    (d / "A_5.json").write_text('{"reviewerID": "u", "asin": "a", "overall": 5.0, "unixReviewTime": 1}\n')
    (d / "B_5.json").write_text("\n")
    with pytest.raises(UserInputError, match=r"scenario\(s\) \['B'\].*no interactions"):
        prepare(_cfg(dataset="amazon", source=str(d), out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- kuaisar
def _write_kuaisar(d, n_users=6):
    """Small files in KuaiSAR's published layout (headers as on kuaisar.github.io)."""
    d.mkdir(parents=True, exist_ok=True)
    rec, src = [], []
    t0 = 1684742000000
    for u in range(n_users):
        for k in range(8):
            item = 100 + (u * 3 + k) % 12
            rec.append([u, item, 60792.0, 45400.0, "2023-05-22 15:53:20", t0 + (u * 100 + k) * 1000,
                        int(item % 2 == 0), 0, 0, 0, 0, 0])
        for k in range(4):
            item = 100 + (u + k * 5) % 12
            src.append([u, 10 * u + k, "2023-05-22 21:58:52", t0 + (u * 100 + 50 + k) * 1000, "[20, 34, 3]",
                        "USER_INPUT", item, int(item % 3 == 0), "VIDEO"])
    pd.DataFrame(rec, columns=["user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp", "click",
                               "forward", "like", "follow", "search", "search_item_related"]).to_csv(
        d / "rec_inter.csv", index=False)
    pd.DataFrame(src, columns=["user_id", "search_session_id", "search_session_time", "search_session_timestamp",
                               "keyword", "search_source", "item_id", "click_cnt", "item_type"]).to_csv(
        d / "src_inter.csv", index=False)
    pd.DataFrame([[u, u % 3, (u + 1) % 4, u % 2, u % 8] for u in range(n_users)],
                 columns=["user_id", "search_active_level", "rec_active_level", "onehot_feat1", "onehot_feat2"]
                 ).to_csv(d / "user_features.csv", index=False)
    cats = [("搞笑", "Funny", "Funny joke"), ("美食", "Food", "Cooking"), ("游戏", "Games", "empty")]
    items = [[i, "[1, 213, 24]", 10, "NORMAL", "2023-04-22", "LongImport", i % 3, cats[i % 3][0], cats[i % 3][1],
              i % 3 + 100, "x", cats[i % 3][2], 0, "空", "empty", 0, "空", "empty"] for i in range(100, 111)]
    pd.DataFrame(items, columns=[
        "item_id", "caption", "author_id", "item_type", "upload_time", "upload_type", "first_level_category_id",
        "first_level_category_name", "first_level_category_name_en", "second_level_category_id",
        "second_level_category_name", "second_level_category_name_en", "third_level_category_id",
        "third_level_category_name", "third_level_category_name_en", "fourth_level_category_id",
        "fourth_level_category_name", "fourth_level_category_name_en"]).to_csv(d / "item_features.csv", index=False)
    return len(rec), len(src)


def test_kuaisar_fixture(tmp_path):
    n_rec, n_src = _write_kuaisar(tmp_path / "k")
    out = str(tmp_path / "out")
    spec = prepare(_cfg(dataset="kuaisar", source=str(tmp_path / "k"), out=out, user_prompt_max_chars=1500))
    assert [s.name for s in spec.scenarios] == ["recommendation", "search"] and spec.split_method == "time"
    rows = _all_rows(out)
    assert (rows.scenario_id == 0).sum() == n_rec and (rows.scenario_id == 1).sum() == n_src
    names = {f.name for f in spec.categorical}
    assert {"search_active_level", "rec_active_level", "onehot_feat1", "item_category"} <= names
    # Item 111 is only in the search log and has no features: category "unknown".
    assert set(rows.item_category) <= {"Funny", "Food", "Games", "unknown"}
    assert (rows[rows.item_id == "103"].item_category == "Food").all() and (rows.item_id == "103").any()
    sp = read_prompts(out, "scenario")
    assert "Kuaishou" in sp[0].prompt and "Funny" in sp[0].prompt
    up = {p.key: p.prompt for p in read_prompts(out, "user")}
    assert set(up) == {str(u) for u in range(6)}
    assert "Funny joke" in " ".join(up.values()) and "empty" not in " ".join(up.values())
    assert '"search"' in up["0"] and '"recommendation"' in up["0"]


def test_kuaisar_errors(tmp_path):
    _write_kuaisar(tmp_path / "k")
    os.remove(tmp_path / "k" / "src_inter.csv")
    with pytest.raises(UserInputError, match="src_inter.csv"):
        prepare(_cfg(dataset="kuaisar", source=str(tmp_path / "k"), out=str(tmp_path / "o")))
    _write_kuaisar(tmp_path / "k")
    df = pd.read_csv(tmp_path / "k" / "rec_inter.csv").drop(columns=["click"])
    df.to_csv(tmp_path / "k" / "rec_inter.csv", index=False)
    with pytest.raises(UserInputError, match=r"rec_inter.csv: missing column\(s\) \['click'\]"):
        prepare(_cfg(dataset="kuaisar", source=str(tmp_path / "k"), out=str(tmp_path / "o")))


# ---------------------------------------------------------------- csv / Scenario-Wise-Rec
@pytest.mark.parametrize("name,scenarios,rows", [
    ("kuairand_sample.csv", ["tab=1"], 200),
    ("mind_sample.csv", ["finance", "lifestyle", "news", "sports"], 8000),
    ("douban_sample.csv", ["book", "movie", "music"], 3000),
])
def test_csv_scenario_wise_rec_samples(shared_dataset, tmp_path, name, scenarios, rows):
    src = os.path.join(shared_dataset("scenario-wise-rec-samples"), name)
    out = str(tmp_path / "o")
    spec = prepare(_cfg(dataset="csv", source=src, out=out))
    assert [s.name for s in spec.scenarios] == scenarios
    assert sum(spec.splits[k]["rows"] for k in SPLITS) == rows == len(pd.read_csv(src))
    raw = pd.read_csv(src, dtype=str)
    user_col = {"kuairand_sample.csv": "user_id", "mind_sample.csv": "User_ID", "douban_sample.csv": "user_id"}[name]
    got = _all_rows(out)
    assert collections.Counter(got.user_id) == collections.Counter(raw[user_col])
    assert spec.split_method == "random"  # these samples carry no interaction timestamps
    up = read_prompts(out, "user")
    assert {p.key for p in up} == set(got[got.split == "train"].user_id)
    assert len(read_prompts(out, "scenario")) == len(scenarios)


def test_csv_ali_ccp_three_files(shared_dataset, tmp_path):
    d = shared_dataset("scenario-wise-rec-samples")
    files = [os.path.join(d, f"ali_ccp_{k}_sample.csv") for k in ("train", "val", "test")]
    spec = prepare(_cfg(dataset="csv", source=",".join(files), out=str(tmp_path / "o")))
    assert spec.num_scenarios == 3 and [s.name for s in spec.scenarios] == ["301=1", "301=2", "301=3"]
    assert sum(spec.splits[k]["rows"] for k in SPLITS) == sum(len(pd.read_csv(f)) for f in files)
    assert "f_121" in [f.name for f in spec.categorical]  # digit column names made safe
    assert sum(spec.splits[k]["positives"] for k in SPLITS) == sum(int(pd.read_csv(f).click.sum()) for f in files)


def test_csv_mapping_no_text_prompts_and_time(tmp_path):
    p = tmp_path / "log.tsv"
    rows = ["uid\tiid\tdomain\tclick\tts\tprice\tcity"]
    for u in range(20):
        for k in range(6):
            dom = "app" if k % 2 else "web"
            rows.append(f"U{u}\tI{(u + k) % 9}\t{dom}\t{(u + k) % 2}\t{1000 + k}\t{k * 1.5}\tc{u % 3}")
    p.write_text("\n".join(rows) + "\n")
    out = str(tmp_path / "o")
    spec = prepare(_cfg(dataset="csv", source=str(p), out=out, columns=(
        "user=uid,item=iid,scenario=domain,label=click,timestamp=ts,numeric=price,categorical=city")))
    assert [s.name for s in spec.scenarios] == ["app", "web"] and spec.split_method == "time"
    assert [f.name for f in spec.numeric] == ["price"] and "city" in [f.name for f in spec.categorical]
    rows_out = _all_rows(out)
    assert rows_out.price.between(0, 1).all() and len(rows_out) == 120
    # No text at all: prompts are still written, from counts and ids, naming training items only.
    up = {p.key: p.prompt for p in read_prompts(out, "user")}
    assert set(up) == {f"U{u}" for u in range(20)}
    tr = rows_out[rows_out.split == "train"]
    for u, g in rows_out.groupby("user_id"):
        held = set(g[g.split != "train"].item_id) - set(tr[tr.user_id == u].item_id)
        assert not any(f"#{i};" in up[u] or f"#{i}." in up[u] for i in held)
        assert "liked" in up[u] or "disliked" in up[u]
    sp = read_prompts(out, "scenario")
    assert "positive rate" in sp[0].prompt and '"web" shares' in sp[0].prompt


def test_csv_errors(tmp_path, shared_dataset):
    src = os.path.join(shared_dataset("scenario-wise-rec-samples"), "douban_sample.csv")
    with pytest.raises(UserInputError, match=r"names column\(s\) \['dom'\]"):
        prepare(_cfg(dataset="csv", source=src, out=str(tmp_path / "o"),
                     columns="user=user_id,item=item_id,label=rating,scenario=dom"))
    with pytest.raises(UserInputError, match="role 'usr' is unknown"):
        prepare(_cfg(dataset="csv", source=src, out=str(tmp_path / "o"), columns="usr=user_id"))
    bad = tmp_path / "bad.csv"
    bad.write_text("u,i,y\n1,2,1\n1,3,yes\n")
    with pytest.raises(UserInputError, match=r"bad.csv, line 3, column 'y': value 'yes' is not a number"):
        prepare(_cfg(dataset="csv", source=str(bad), out=str(tmp_path / "o"), columns="user=u,item=i,label=y"))
    with pytest.raises(UserInputError, match="matches no known layout"):
        prepare(_cfg(dataset="csv", source=str(bad), out=str(tmp_path / "o")))
    with pytest.raises(UserInputError, match="does not exist"):
        prepare(_cfg(dataset="csv", source=str(tmp_path / "missing.csv"), out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()
