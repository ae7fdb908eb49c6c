"""Knowledge fusion options: table normalisation, the three user meta forms, zero-initialised
knowledge paths (LLM4MSR starts as the backbone), regularisation, and the random-knowledge control."""
import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.knowledge import random_like
from llm4msr_tf.layers import KnowledgeGate, KnowledgeLookup, OutputScale
from llm4msr_tf.layers.knowledge import normalization_stats
from llm4msr_tf.models import LITE_FUSION, PAPER_FUSION, ModelConfig, build_model, load_model, save_model
from llm4msr_tf.testing import toy
from llm4msr_tf.training import make_dataset

FORMS = ("lowrank", "gate", "feature")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    spec = toy.write_toy_dataset(str(root / "data"), rows={"train": 256, "eval": 64, "test": 64})
    kb = toy.write_toy_knowledge(str(root / "k"), skip_users=2, dim=20)
    batch = next(iter(make_dataset(spec, "train", 256, cache=False)))
    return spec, kb, batch


def cfg(**kw):
    base = dict(backbone="mmoe", backbone_params={"num_experts": 2, "expert_units": [16], "tower_units": [8]},
                embedding_dim=4, projection_dim=8, meta_generator_units=8, scenario_tower_units=(8,), **PAPER_FUSION)
    base.update(kw)
    return ModelConfig(**base)


def test_normalization_stats_center_standardize_whiten():
    rng = np.random.default_rng(0)
    # Correlated but well-conditioned (scales 1..2 on rotated axes), offset from the origin.
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    v = rng.normal(0.0, 1.0, (2000, 6)) @ np.diag(np.linspace(1.0, 2.0, 6)) @ q + 5.0
    for name in ("center", "standardize", "whiten"):
        shift, t = normalization_stats(v, name)
        z = (v - shift) @ t
        np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
        if name == "standardize":
            # shrinkage eps = 1% of the mean variance keeps every std a little below 1
            assert np.all(z.std(axis=0) < 1.0) and np.all(z.std(axis=0) > 0.9)
        if name == "whiten":
            cov = np.cov(z.T, bias=True)
            assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.05  # decorrelated
            assert np.all(np.diag(cov) > 0.9) and np.all(np.diag(cov) < 1.0)
    # PCA whitening to 3 of 6 dims: the top components, uncorrelated with unit variance.
    shift, t = normalization_stats(v, "whiten", pca_dim=3)
    z = (v - shift) @ t
    assert t.shape == (6, 3)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(3), atol=0.02)
    shift, t = normalization_stats(v, "center", pca_dim=2)
    z = (v - shift) @ t
    lam = np.sort(np.linalg.eigvalsh(np.cov((v - v.mean(0)).T, bias=True)))[::-1]
    np.testing.assert_allclose(np.sort(np.var(z, axis=0))[::-1], lam[:2], rtol=1e-3)  # top-2 variance kept
    with pytest.raises(ValueError, match="pca_dim needs"):
        normalization_stats(v, "none", pca_dim=2)
    with pytest.raises(ValueError, match="pca_dim must be in 0..6"):
        normalization_stats(v, "center", pca_dim=7)
    shift, t = normalization_stats(v, "none")
    np.testing.assert_array_equal(shift, 0.0)
    np.testing.assert_array_equal(t, np.eye(6))
    # Fewer keys than dimensions (3 scenarios, wide LLM vectors) stays finite.
    shift, t = normalization_stats(rng.normal(size=(3, 40)), "whiten")
    assert np.all(np.isfinite(t))
    with pytest.raises(ValueError, match="normalize 'bogus'"):
        normalization_stats(v, "bogus")


def test_lookup_normalises_table_and_feature_mode_alike():
    rng = np.random.default_rng(1)
    vecs = (rng.normal(size=(5, 4)) + 10.0).astype(np.float32)
    keys = ["a", "b", "c", "d", "e"]
    table = KnowledgeLookup(keys, 4, "user", vectors=vecs, normalize="center")
    got = table(tf.constant(keys)).numpy()
    np.testing.assert_allclose(got, vecs - vecs.mean(axis=0), atol=1e-5)
    # The unknown-key default (mean of the known vectors) becomes exactly zero after centring.
    np.testing.assert_allclose(table(tf.constant(["new"])).numpy(), 0.0, atol=1e-5)
    feat = KnowledgeLookup((), 4, "user", mode="feature", normalize="whiten", fit_vectors=vecs)
    tab_w = KnowledgeLookup(keys, 4, "user", vectors=vecs, normalize="whiten")
    np.testing.assert_allclose(feat(tf.constant(vecs)).numpy(), tab_w(tf.constant(keys)).numpy(), atol=1e-4)
    clone = KnowledgeLookup.from_config(tab_w.get_config())
    clone(tf.constant(keys))
    clone.set_weights(tab_w.get_weights())
    np.testing.assert_allclose(clone(tf.constant(keys)).numpy(), tab_w(tf.constant(keys)).numpy())
    with pytest.raises(ValueError, match="normalize"):
        KnowledgeLookup(keys, 4, vectors=vecs, normalize="pca")
    small = KnowledgeLookup(keys, 4, "user", vectors=vecs, normalize="whiten", pca_dim=2)
    feat2 = KnowledgeLookup((), 4, "user", mode="feature", normalize="whiten", pca_dim=2, fit_vectors=vecs)
    assert small.out_dim == 2 and small(tf.constant(keys)).shape == (5, 2)
    np.testing.assert_allclose(feat2(tf.constant(vecs)).numpy(), small(tf.constant(keys)).numpy(), atol=1e-4)


def test_gate_starts_at_one_and_output_scale_starts_off():
    x = tf.random.normal([5, 6])
    c = tf.random.normal([5, 3])
    gate = KnowledgeGate(4)
    np.testing.assert_allclose(gate([x, c]).numpy(), x.numpy(), rtol=1e-6)
    g = gate.gate(c).numpy()
    np.testing.assert_allclose(g, 1.0)
    np.testing.assert_array_equal(OutputScale(0.0)(x).numpy(), 0.0)
    with pytest.raises(ValueError, match="generator_units"):
        KnowledgeGate(0)


@pytest.mark.parametrize("form", FORMS)
def test_zero_init_starts_as_if_knowledge_were_absent_then_learns(toy_data, form):
    spec, kb, batch = toy_data
    tf.keras.utils.set_random_seed(0)
    model = build_model(spec, cfg(user_meta_form=form, zero_init=True, knowledge_normalize="center"), knowledge=kb)
    before = model(batch)["logit"].numpy()
    # Replace both knowledge tables by other vectors: at initialisation nothing changes.
    for layer in (model.user_knowledge, model.scenario_knowledge):
        layer.vectors.assign(tf.random.normal(layer.vectors.shape, seed=3) * 5.0)
    np.testing.assert_allclose(model(batch)["logit"].numpy(), before, atol=1e-5)
    # ...but the knowledge paths get gradients and, after a few steps, knowledge matters.
    opener = {"lowrank": lambda m: m.user_meta_scale[0].alpha, "gate": lambda m: m.user_meta[0].out.kernel,
              "feature": lambda m: m.user_feature_scale.alpha}[form](model)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    g_open, g_logit = tape.gradient(loss, [opener, model.scenario_logit.kernel])
    assert float(tf.reduce_max(tf.abs(g_open))) > 0 and float(tf.reduce_max(tf.abs(g_logit))) > 0
    model.fit(make_dataset(spec, "train", 64, cache=False), epochs=2, verbose=0)
    after = model(batch)["logit"].numpy()
    for layer in (model.user_knowledge, model.scenario_knowledge):
        layer.vectors.assign(tf.random.normal(layer.vectors.shape, seed=4) * 5.0)
    assert np.abs(model(batch)["logit"].numpy() - after).max() > 1e-4


@pytest.mark.parametrize("form", FORMS)
def test_forms_save_and_load_with_identical_outputs(toy_data, tmp_path, form):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg(user_meta_form=form, zero_init=form != "gate", knowledge_normalize="whiten",
                                  knowledge_pca_dim=6 if form == "feature" else 0, meta_dropout=0.2,
                                  meta_l2=1e-4), knowledge=kb)
    model.fit(make_dataset(spec, "train", 64, cache=False), epochs=1, verbose=0)
    path = save_model(model, str(tmp_path / form))
    loaded = load_model(path)
    np.testing.assert_allclose(loaded(batch)["logit"].numpy(), model(batch)["logit"].numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.user_meta_form == form and loaded.user_knowledge.normalize == "whiten"
    assert loaded.user_knowledge.out_dim == (6 if form == "feature" else 20)


def test_regularisation_and_dropout(toy_data):
    spec, kb, batch = toy_data
    plain = build_model(spec, cfg(user_meta_form="gate"), knowledge=kb)
    reg = build_model(spec, cfg(user_meta_form="gate", meta_l2=1e-2, meta_dropout=0.5), knowledge=kb)
    assert not plain.losses and len(reg.losses) >= 3
    assert float(tf.add_n(reg.losses)) > 0
    # Dropout on the projected user knowledge acts in training only.
    np.testing.assert_array_equal(reg(batch, training=False)["logit"].numpy(), reg(batch)["logit"].numpy())
    with pytest.raises(ValueError, match="meta_dropout"):
        build_model(spec, cfg(meta_dropout=1.0), knowledge=kb)
    with pytest.raises(ValueError, match="user_meta_form"):
        build_model(spec, cfg(user_meta_form="film"), knowledge=kb)


def test_random_like_keeps_keys_and_shape_and_is_seeded_per_key(toy_data):
    _, kb, _ = toy_data
    r0 = random_like(kb, seed=0)
    assert r0.llm == "random" and r0.dim == kb.dim and r0.manifest["random_of"] == kb.llm
    for kt in ("user", "scenario"):
        assert r0.tables[kt].keys == kb.tables[kt].keys
        assert r0.tables[kt].vectors.shape == kb.tables[kt].vectors.shape
        assert not np.allclose(r0.tables[kt].vectors, kb.tables[kt].vectors)
    again = random_like(kb, seed=0)
    np.testing.assert_array_equal(again.tables["user"].vectors, r0.tables["user"].vectors)
    assert not np.allclose(random_like(kb, seed=1).tables["user"].vectors, r0.tables["user"].vectors)
    # Per-key: a key's vector does not depend on where it sits in the table.
    k = kb.tables["user"].keys[3]
    v = r0.tables["user"].get(k)
    assert abs(float(v.mean())) < 1.0 and 0.5 < float(v.std()) < 1.5
    assert random_like(kb, seed=0, dim=7).tables["user"].vectors.shape[1] == 7


def _inputs(batch, kb, mode):
    """The batch as the model reads it: in feature mode with each user's vector (zeros if none)."""
    feats = dict(batch)
    if mode == "feature":
        feats["user_knowledge"] = tf.constant(np.stack([kb.tables["user"].get(u.decode(), np.zeros(kb.dim, np.float32))
                                                        for u in batch["user_id"].numpy()]))
    return feats


def _save_folded(folded, feats, path):
    """Save the folded module alone as a SavedModel whose serving_default returns its logit."""
    sig = tf.function(lambda f: folded(f)["logit"],
                      input_signature=[{k: tf.TensorSpec([None] + list(v.shape[1:]), v.dtype, name=k)
                                        for k, v in feats.items()}])
    root = tf.Module()
    root.folded = folded
    tf.saved_model.save(root, path, signatures={"serving_default": sig.get_concrete_function()})


@pytest.mark.parametrize("form,mode", [("lowrank", "table"), ("gate", "table"), ("feature", "table"),
                                       ("gate", "feature"), ("lowrank", "feature")])
def test_folded_model_matches_the_model_and_drops_the_wide_tables(toy_data, tmp_path, form, mode, monkeypatch):
    from llm4msr_tf.models.folded import FoldedLLM4MSR, fold

    # feature form, table mode: the variant with the scenario columns folded into the tower's biases
    monkeypatch.setattr(FoldedLLM4MSR, "FOLD_SCENARIO_COLUMNS", (form, mode) == ("feature", "table"))

    spec, kb, batch = toy_data
    tf.keras.utils.set_random_seed(1)
    # Rank 2 and a wider tower: the tower is folded as factors (cheaper than the full matrices);
    # rank 8 into 8 units: as full per-scenario matrices. Both must match the model.
    factored = form != "gate"
    tower = dict(meta_rank=2, scenario_tower_units=(16, 8)) if factored else {}
    model = build_model(spec, cfg(user_meta_form=form, zero_init=form == "lowrank", knowledge_normalize="center",
                                  user_knowledge_mode=mode, user_meta_layers=2 if form == "lowrank" else 1, **tower),
                        knowledge=kb)
    feats = _inputs(batch, kb, mode)
    model.fit(tf.data.Dataset.from_tensors(feats).repeat(4), epochs=1, verbose=0)  # move every weight off init
    want = model(feats, training=False)["logit"].numpy()
    folded = fold(model)
    assert isinstance(folded, FoldedLLM4MSR)
    assert [v is not None for v in folded.tower_v] == [factored] * len(model.scenario_tower)
    assert bool(folded.scenario_cols) == ((form, mode) == ("feature", "table"))
    # table mode: the embedding's and the knowledge's user lookups are one (toy users are vocab strings)
    assert (folded.user_fused is not None) == (mode == "table")
    np.testing.assert_allclose(folded(feats)["logit"].numpy(), want, rtol=1e-5, atol=1e-5)
    assert set(batch["user_id"].numpy()) & {b"u0", b"u1"}  # unknown users are in the batch
    # Saved alone, the folded module carries no knowledge-width (20) table of the trained model.
    _save_folded(folded, feats, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    widths = {tuple(shape) for _, shape in tf.train.list_variables(str(tmp_path / "sm" / "variables" / "variables"))}
    assert (len(kb.tables["user"].keys) + 1, kb.dim) not in widths, widths  # the trained model's user table
    assert mode == "feature" or tuple(model.user_knowledge.vectors.shape) == (len(kb.tables["user"].keys) + 1, kb.dim)
    np.testing.assert_allclose(loaded.signatures["serving_default"](**feats)["output_0"].numpy(), want,
                               rtol=1e-5, atol=1e-5)
    assert fold(build_model(spec, cfg(use_knowledge=False))).__class__.__name__ != "FoldedLLM4MSR"


@pytest.mark.parametrize("mode", ["table", "feature"])
def test_lite_fusion_has_no_tower_and_folds_to_the_same_scores(toy_data, tmp_path, mode):
    """LITE_FUSION (16-wide appended knowledge from PCA'd tables, no scenario tower): the model
    has no tower weights, the lookups return the PCA width, and the folded SavedModel, reloaded,
    scores equal to the Keras model, unknown users included."""
    from llm4msr_tf.models.folded import FoldedLLM4MSR, fold

    spec, kb, batch = toy_data
    tf.keras.utils.set_random_seed(2)
    model = build_model(spec, cfg(**{**LITE_FUSION, "knowledge_pca_dim": 6}, user_knowledge_mode=mode), knowledge=kb)
    assert not model.use_scenario_meta and not any("scenario_meta" in w.name for w in model.weights)
    assert model.projection_dim == 16 and model.user_knowledge.out_dim == model.scenario_knowledge.out_dim == 6
    feats = _inputs(batch, kb, mode)
    model.fit(tf.data.Dataset.from_tensors(feats).repeat(4), epochs=1, verbose=0)
    want = model(feats, training=False)["logit"].numpy()
    assert float(np.abs(model.user_feature_scale.weights[0].numpy()).max()) > 0  # the knowledge path trained
    folded = fold(model)
    assert isinstance(folded, FoldedLLM4MSR)
    _save_folded(folded, feats, str(tmp_path / "sm"))
    got = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](**feats)["output_0"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert set(batch["user_id"].numpy()) & {b"u0", b"u1"}  # unknown users are in the batch


def test_folded_fused_user_lookup_keeps_every_kind_of_user(toy_data, tmp_path):
    # The folded model looks a user up once for both its embedding and its knowledge rows: a
    # user with knowledge but no embedding row (not in the training vocabulary), one with an
    # embedding row but no knowledge, and one with neither must all score as in the model.
    from llm4msr_tf.models.folded import fold

    spec, _, batch = toy_data
    vocab = set(spec.vocab("user_id"))
    kb = toy.write_toy_knowledge(str(tmp_path / "k"), num_users=len(vocab) + 5, skip_users=2, dim=20)
    ghost = next(k for k in kb.tables["user"].keys if k not in vocab)  # knowledge, no embedding row
    cold = next(k for k in sorted(vocab) if k not in set(kb.tables["user"].keys))  # embedding row, no knowledge
    tf.keras.utils.set_random_seed(3)
    model = build_model(spec, cfg(user_meta_form="feature", zero_init=True, knowledge_normalize="center"),
                        knowledge=kb)
    model.fit(tf.data.Dataset.from_tensors(dict(batch)).repeat(4), epochs=1, verbose=0)
    folded = fold(model)
    assert folded.user_fused is not None
    users = [ghost, cold, "nobody-at-all", sorted(vocab)[-1]]
    feats = {k: tf.concat([v[:1]] * len(users), 0) for k, v in dict(batch).items()}
    feats["user_id"] = tf.constant(users)
    want = model(feats, training=False)["logit"].numpy()
    np.testing.assert_allclose(folded(feats)["logit"].numpy(), want, rtol=1e-5, atol=1e-5)
    assert len(set(np.round(want[:, 0], 5))) == len(users)  # the four users really score differently
