"""Interpretability views (`llm4msr_tf.explain`, `llm4msr explain`): the with/without decomposition, the
scenario-map statistics, user cards (also for unknown users) and the CLI on a toy model."""
import json
import os

import numpy as np
import pandas as pd
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from conftest import run_cli
from llm4msr_tf.explain import scenario_map as smap
from llm4msr_tf.explain.card import side_columns, user_card
from llm4msr_tf.explain.changes import (bucket_labels, decompose_dataset, knowledge_changes, summarize,
                                        user_segments)
from llm4msr_tf.models import ModelConfig, build_model
from llm4msr_tf.testing import toy
from llm4msr_tf.training import make_dataset

FORMS = ("lowrank", "gate", "feature")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    spec = toy.write_toy_dataset(str(root / "data"), rows={"train": 512, "eval": 128, "test": 128})
    kb = toy.write_toy_knowledge(str(root / "k"), skip_users=2, dim=12)  # u0, u1 have no vector
    toy.write_prompt_texts(str(root / "data"), {str(s): f"scenario {s}" for s in range(3)},
                           {f"u{u}": f"user {u} likes things" for u in range(40)})
    batch = next(iter(make_dataset(spec, "train", 512, cache=False)))
    return root, spec, kb, batch


def cfg(**kw):
    base = dict(backbone="mmoe", backbone_params={"num_experts": 2, "expert_units": [8], "tower_units": [4]},
                embedding_dim=4, projection_dim=6, meta_generator_units=6, scenario_tower_units=(6,))
    base.update(kw)
    return ModelConfig(**base)


def _trained(spec, kb, **kw):
    """A model whose every weight is moved off its initial value (as training would), without tracing a fit."""
    tf.keras.utils.set_random_seed(0)
    model = build_model(spec, cfg(**kw), knowledge=kb, compile=False)
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:
        v.assign(v + rng.normal(0.0, 0.2, v.shape).astype(np.float32))
    return model


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("zero_init", [False, True])
def test_decomposition_sums_back_to_the_models_logit_exactly(toy_data, form, zero_init):
    _, spec, kb, batch = toy_data
    model = _trained(spec, kb, user_meta_form=form, zero_init=zero_init, knowledge_normalize="center")
    full = model(batch, training=False)["logit"].numpy()
    d = {k: v.numpy() for k, v in model.decompose(batch).items()}
    np.testing.assert_array_equal(d["logit"], full)
    np.testing.assert_array_equal(d["backbone_logit"] + d["scenario_logit"], full)
    assert all(v.shape == full.shape for v in d.values())
    # Trained, both levels do change predictions, and switching one off is not switching both off.
    assert np.abs(d["logit_without_user"] - full).max() > 1e-6
    assert np.abs(d["scenario_logit"]).max() > 1e-6
    assert np.abs(d["logit_without_knowledge"] - d["logit_without_user"]).max() > 1e-6
    assert np.abs(d["logit_mean_scenario_knowledge"] - full).max() > 1e-6
    assert np.abs(d["logit_default_user"] - full).max() > 1e-6
    if form == "feature":
        np.testing.assert_array_equal(d["logit_default_user"], d["logit_without_user"])
    # Users without a vector get the default already: replacing theirs by the default changes nothing.
    unknown = np.isin(batch["user_id"].numpy(), [b"u0", b"u1"])
    np.testing.assert_allclose(d["logit_default_user"][unknown], full[unknown], atol=1e-5)


def test_static_part_is_what_the_layer_does_when_the_knowledge_adds_nothing(toy_data):
    _, spec, kb, batch = toy_data
    # lowrank: zero every generator head -> W(c) = b(c) = 0 -> the layer is its static part.
    model = _trained(spec, kb, user_meta_form="lowrank")
    for layer in model.user_meta:
        for head in (layer.u_head, layer.v_head, layer.b_head):
            head.kernel.assign(tf.zeros_like(head.kernel))
            head.bias.assign(tf.zeros_like(head.bias))
    d = model.decompose(batch)
    np.testing.assert_allclose(d["logit_without_user"].numpy(), d["logit"].numpy(), atol=1e-5)
    # gate / feature / lowrank+zero_init at initialisation: the user level is switched off already.
    for form in FORMS:
        fresh = build_model(spec, cfg(user_meta_form=form, zero_init=True), knowledge=kb)
        d = fresh.decompose(batch)
        np.testing.assert_allclose(d["logit_without_user"].numpy(), d["logit"].numpy(), atol=1e-6)
        np.testing.assert_allclose(d["scenario_logit"].numpy(), 0.0)
    # Scenario vectors that are all alike tell the scenarios nothing apart: the mean-knowledge logit is the logit.
    for form in FORMS:
        model = _trained(spec, kb, user_meta_form=form)
        table = model.scenario_knowledge.vectors
        table.assign(tf.tile(table[1:2], [table.shape[0], 1]))
        d = model.decompose(batch)
        np.testing.assert_allclose(d["logit_mean_scenario_knowledge"].numpy(), d["logit"].numpy(), atol=1e-5)
    # feature: "without user" = the unknown-user vector, so users without a vector do not move.
    model = _trained(spec, kb, user_meta_form="feature", knowledge_normalize="center")
    d = model.decompose(batch)
    unknown = np.isin(batch["user_id"].numpy(), [b"u0", b"u1"])
    assert unknown.any() and (~unknown).any()
    np.testing.assert_allclose(d["logit_without_user"].numpy()[unknown], d["logit"].numpy()[unknown], atol=1e-5)
    assert np.abs(d["logit_without_user"].numpy()[~unknown] - d["logit"].numpy()[~unknown]).max() > 1e-6


def test_decomposition_of_ablations_and_the_backbone_alone(toy_data):
    _, spec, kb, batch = toy_data
    alone = build_model(spec, cfg(use_knowledge=False))
    d = {k: v.numpy() for k, v in alone.decompose(batch).items()}
    np.testing.assert_array_equal(d["logit"], alone(batch)["logit"].numpy())
    for k in ("backbone_logit", "logit_without_user", "logit_without_knowledge", "logit_mean_scenario_knowledge",
              "logit_default_user"):
        np.testing.assert_array_equal(d[k], d["logit"])
    np.testing.assert_array_equal(d["scenario_logit"], 0.0)
    no_scen = _trained(spec, kb, use_scenario_meta=False)
    d = {k: v.numpy() for k, v in no_scen.decompose(batch).items()}
    np.testing.assert_array_equal(d["logit"], no_scen(batch)["logit"].numpy())
    np.testing.assert_array_equal(d["logit_without_user"], d["logit_without_knowledge"])
    no_user = _trained(spec, kb, use_user_meta=False)
    d = {k: v.numpy() for k, v in no_user.decompose(batch).items()}
    np.testing.assert_array_equal(d["logit"], no_user(batch)["logit"].numpy())
    np.testing.assert_array_equal(d["logit_without_user"], d["logit"])
    np.testing.assert_array_equal(d["logit_default_user"], d["logit"])


def test_scenario_map_statistics_on_a_hand_made_case():
    # 3 scenarios; users a,b,c; items disjoint between s0/s1 except "x"; s2 shares nothing with s0.
    rows = [  # user, item, scenario, label
        ("a", "x", 0, 1), ("a", "y", 0, 0), ("b", "x", 0, 1), ("c", "z", 0, 0),
        ("a", "x", 1, 0), ("b", "w", 1, 1), ("c", "w", 1, 1),
        ("c", "v", 2, 1), ("d", "v", 2, 0),
    ]
    f = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario_id", "label"])
    rel = smap.data_relations(f, 3, min_count=1, min_pairs=2)
    # users: s0 {a,b,c}, s1 {a,b,c}, s2 {c,d}; items: s0 {x,y,z}, s1 {x,w}, s2 {v}
    np.testing.assert_allclose(rel["user_overlap"], [[1, 1, 1 / 4], [1, 1, 1 / 4], [1 / 4, 1 / 4, 1]])
    np.testing.assert_allclose(rel["item_overlap"], [[1, 1 / 4, 0], [1 / 4, 1, 0], [0, 0, 1]])
    # one shared item (x) < min_pairs -> undefined; s0 and s2 share no item at all
    assert np.isnan(rel["item_rate_corr"][0, 1]) and np.isnan(rel["item_rate_corr"][0, 2])
    # per-user positive rates s0: a .5, b 1, c 0; s1: a 0, b 1, c 1 -> Pearson over 3 users
    want = np.corrcoef([0.5, 1.0, 0.0], [0.0, 1.0, 1.0])[0, 1]
    np.testing.assert_allclose(rel["user_rate_corr"][0, 1], want)
    np.testing.assert_allclose(rel["user_rate_corr"][1, 0], want)
    assert np.isnan(rel["user_rate_corr"][0, 2])  # only c is in both
    # Knowledge cosine after centring; rank correlation over the upper triangle.
    v = np.array([[1.0, 0.0, 5.0], [0.9, 0.1, 5.0], [0.0, 1.0, 5.0]])
    sim = smap.knowledge_similarity(v, "center")
    c = v - v.mean(axis=0)
    np.testing.assert_allclose(sim[0, 1], c[0] @ c[1] / np.linalg.norm(c[0]) / np.linalg.norm(c[1]))
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]  # s0, s1 alike
    rho, n = smap.rank_correlation(sim, rel["user_overlap"])
    assert n == 3
    # ranks: knowledge pairs (01, 02, 12) vs user overlap (1, .25, .25) -> tied ranks averaged
    k_ranks = smap._rankdata_average(np.array([sim[0, 1], sim[0, 2], sim[1, 2]]))
    np.testing.assert_allclose(rho, np.corrcoef(k_ranks, [3, 1.5, 1.5])[0, 1])
    assert smap.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == (pytest.approx(1.0), 4)
    assert smap.spearman([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert np.isnan(smap.spearman([1, 2], [1, 2])[0])  # too few pairs
    assert np.isnan(smap.rank_correlation(sim, rel["item_rate_corr"])[0])
    with pytest.raises(ValueError, match="lacks column"):
        smap.data_relations(f.drop(columns="label"), 3)
    with pytest.raises(ValueError, match="empty"):
        smap.data_relations(f.iloc[:0], 3)


def test_segments_buckets_and_summaries():
    assert bucket_labels((25, 50)) == ["1-25", "26-50", ">50"]
    with pytest.raises(ValueError, match="increasing"):
        bucket_labels((50, 25))
    f = pd.DataFrame({"user_id": ["a"] * 30 + ["b"] * 3, "scenario_id": [0] * 20 + [1] * 10 + [2] * 3})
    seg = user_segments(f, history_buckets=(25, 50))
    assert seg.loc["a"].tolist() == [30, 2, "26-50"] and seg.loc["b"].tolist() == [3, 1, "1-25"]
    dec = pd.DataFrame({"label": [1, 0, 1, 0], "scenario": [0, 0, 1, 1], "user": ["a", "a", "b", "zz"],
                        "logit": [2.0, -2.0, 0.0, 0.1], "logit_without_knowledge": [0.0, 0.0, 0.0, 0.1],
                        "logit_without_user": [1.0, -1.0, 0.0, 0.1], "backbone_logit": [2.0, -2.0, 0.0, 0.1],
                        "logit_mean_scenario_knowledge": [2.0, -2.0, 0.0, 0.1],
                        "logit_default_user": [2.0, -2.0, 0.0, 0.1]})
    s = summarize(dec, "logit_without_knowledge", 0.05)
    assert s["moved"] == 2 and s["share_moved"] == 0.5 and s["toward_label"] == 1.0
    assert s["auc_moved_with"] == 1.0 and s["auc_moved_without"] == 0.5
    ch = knowledge_changes(dec, seg, ["s0", "s1"], 0.05, history_buckets=(25, 50))
    assert ch["levels"]["scenario"]["overall"]["moved"] == 0
    assert ch["levels"]["knowledge"]["scenario"]["s0"]["moved"] == 2
    assert set(ch["levels"]["knowledge"]["history"]) == {"26-50", "1-25", "unseen"}
    assert ch["order"]["history"] == ["1-25", "26-50", "unseen"]  # by bucket edge, also after JSON
    assert ch["levels"]["knowledge"]["scenarios_used"]["2"]["rows"] == 2
    with pytest.raises(ValueError, match="threshold"):
        knowledge_changes(dec, seg, threshold=1.5)


def test_user_cards_known_without_vector_and_unknown(toy_data):
    from llm4msr_tf.data.reader import read_split

    root, spec, kb, _ = toy_data
    train = read_split(str(root / "data"), "train")
    assert side_columns(train, "user_id", ["gender", "age", "item_id"]) == ["gender", "age"]
    model = _trained(spec, kb, user_meta_form="feature", zero_init=True, knowledge_normalize="center")
    dec = decompose_dataset(model, make_dataset(spec, "test", 64, cache=False))
    prompts = {f"u{u}": f"user {u} likes things" for u in range(40)}
    liked = smap.liked_items(train)
    card = user_card("u5", spec, train, prompts, kb=kb, model=model, dec=dec, nearest=3, top_k=2, liked=liked)
    assert card["known"] and card["has_knowledge"] and card["message"] == ""
    assert card["prompt"] == "user 5 likes things" and len(card["nearest"]) == 3
    assert all(n["prompt"].startswith("user ") for n in card["nearest"])
    assert [e["scenario"] for e in card["effect"]] == spec.scenario_names()
    t = card["top_items"][0]
    assert len(t["with"]) == 2 and t["with"][0]["p_with"] >= t["with"][1]["p_with"]
    seen = set(train[train["user_id"] == "u5"]["item_id"])
    assert not seen & {r["item"] for r in t["with"] + t["without"]}  # only unseen items
    # In the data but without a knowledge vector: says the default vector is used.
    card = user_card("u0", spec, train, prompts, kb=kb, model=model, dec=dec)
    assert card["known"] and not card["has_knowledge"] and "default" in card["message"]
    assert card["nearest"] == [] and card["top_items"]
    # Nobody knows this user: the card says so instead of failing.
    card = user_card("nobody-42", spec, train, prompts, kb=kb, model=model, dec=dec)
    assert not card["known"] and "unknown" in card["message"] and card["top_items"] == []
    from llm4msr_tf.explain.run import cards_markdown

    md = "\n".join(cards_markdown({"cards": [card], "model": None}))
    assert "nobody-42" in md and "unknown" in md


def test_explain_cli_end_to_end_and_one_line_errors(toy_data, tmp_path, capsys):
    from llm4msr_tf.config import to_dict
    from llm4msr_tf.models import save_model
    from llm4msr_tf.models.config import TrainConfig
    from llm4msr_tf.utils.io import write_json

    root, spec, kb, _ = toy_data
    # What `llm4msr train` leaves in MODEL_DIR (model.keras + config.json), without the fit.
    mdir = str(tmp_path / "model")
    model_cfg = cfg(user_meta_form="feature", zero_init=True, knowledge_normalize="center")
    save_model(_trained(spec, kb, **{k: getattr(model_cfg, k) for k in
                                     ("user_meta_form", "zero_init", "knowledge_normalize")}), mdir)
    write_json(os.path.join(mdir, "config.json"),
               {"train": to_dict(TrainConfig(data=str(root / "data"), knowledge=str(root / "k"), out=mdir)),
                "model": to_dict(model_cfg)})
    out = tmp_path / "ex"
    r = run_cli("explain", "--model", mdir, "--out", str(out), "--name", "toy", "--users", "u3", "nobody",
                "--user-pairs", "500", "--history-buckets", "10", "20", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "scenario map random-toy" in r.stdout and "card nobody: unknown" in r.stdout
    res = json.loads((out / "toy.json").read_text())
    assert res["model"]["max_abs_sum_error"] == 0.0
    assert res["changes"]["levels"]["knowledge"]["overall"]["rows"] == 128
    assert set(res["changes"]["levels"]["knowledge"]["history"]) <= {"1-10", "11-20", ">20", "unseen"}
    md = (out / "toy.md").read_text()
    for section in ("## Scenario map", "## What the knowledge changes", "## User cards", "User `nobody`"):
        assert section in md
    for p in res["plots"]:
        assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({p})" in md, p
    assert (out / "toy.html").exists()
    # The demo report embeds the same views (files under OUT/explain, images linked below it).
    from llm4msr_tf.demo_report import explain_sections

    demo_md = "\n".join(explain_sections(str(tmp_path / "demo"), mdir))
    assert "## What the knowledge changes" in demo_md and "](explain/explain_changes.png)" in demo_md
    assert (tmp_path / "demo" / "explain" / "explain_changes.png").read_bytes()[:4] == b"\x89PNG"
    assert "not available" in "\n".join(explain_sections(str(tmp_path / "demo2"), str(tmp_path / "nope")))
    # Errors a user can cause: one line, exit code 2 (in-process through the CLI's main: the
    # console script itself was exercised above, and each fresh process costs seconds).
    from llm4msr_tf.cli import main

    for args, needle in ((["--data", str(tmp_path / "nope"), "--knowledge", str(root / "k")], "not found"),
                         (["--model", mdir, "--threshold", "2"], "--threshold"),
                         (["--data", str(root / "data")], "--knowledge"),
                         (["--model", str(tmp_path)], "config.json"),
                         (["--model", mdir, "--labels", "a", "b"], "--labels")):
        capsys.readouterr()
        assert main(["explain", "--out", str(tmp_path / "bad"), *args]) == 2, args
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("llm4msr explain: error:")]
        assert len(lines) == 1 and needle in lines[0], err[-2000:]


def test_plots_are_written_also_for_undefined_and_constant_relations(tmp_path):
    from llm4msr_tf.explain import plots

    names = ["action & thriller", "drama & romance", "comedy & family"]
    eye = np.eye(3)
    relations = {"user_overlap": np.array([[1, .98, .96], [.98, 1, .95], [.96, .95, 1]]),
                 "item_overlap": eye.copy(),  # the scenarios share no item: every pair is 0
                 "item_rate_corr": np.where(eye > 0, 1.0, np.nan)}  # undefined for every pair
    maps = {"minilm": {"knowledge": (-0.5 * (1 - eye) + eye).tolist(), "normalize": "center",
                       "rank_correlation": {"user_overlap": {"spearman": float("nan"), "pairs": 3}}}}
    path = plots.plot_scenario_map(names, relations, maps, str(tmp_path / "map.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    dp = {"a": np.random.default_rng(0).normal(0, 0.05, 500), "b": np.zeros(3)}
    path = plots.plot_dp_histogram(dp, 0.05, str(tmp_path / "dp.png"))
    assert os.path.getsize(path) > 5000
