"""Backbones: the contract (shapes, per-scenario routing), config round trips, registry errors,
and one parametrized set over every backbone (the four originals and the zoo): gradients reach
every weight, a few steps lower the loss, scenarios really differ after training, and under
LLM4MSR with knowledge the model trains and round-trips through .keras; plus the ready configs."""
import json
import os

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf import backbones

S, D, B = 3, 12, 12
ZOO = ("sar_net", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "pepnet", "hinet", "m3oe", "hamur")
SMALL = {
    "shared_bottom": {"bottom_units": [8], "tower_units": [4]},
    "mmoe": {"num_experts": 2, "expert_units": [8], "tower_units": [4]},
    "ple": {"num_levels": 2, "num_shared_experts": 1, "num_specific_experts": 1, "expert_units": [8]},
    "star": {"hidden_units": [8], "aux_units": [4]},
    "sar_net": {"num_shared_experts": 2, "num_specific_experts": 1, "expert_units": [4], "tower_units": [4]},
    # field_dim 4: D=12 is 3 tokens here, and LLM4MSR's F x 4 embeddings are F tokens below.
    "m2m": {"num_experts": 2, "expert_units": 4, "field_dim": 4, "num_transformer_layers": 1, "num_heads": 2,
            "transformer_ff_units": 4, "scenario_embedding_dim": 4, "tower_units": [4]},
    "adasparse": {"hidden_units": [8], "dropout": 0.0, "scenario_embedding_dim": 4},
    "adaptdhm": {"hidden_units": [8], "num_clusters": 2, "scenario_embedding_dim": 4},
    "epnet": {"hidden_units": [8], "scenario_embedding_dim": 4},
    "ppnet": {"hidden_units": [8], "scenario_embedding_dim": 4},
    "pepnet": {"hidden_units": [8], "scenario_embedding_dim": 4},
    "hinet": {"num_shared_subexperts": 2, "num_specific_subexperts": 1, "subexpert_units": [8], "san_units": [4],
              "num_task_experts": 1, "num_task_shared_experts": 1, "task_expert_units": [8], "tower_units": [4],
              "scenario_embedding_dim": 4},
    "m3oe": {"star_units": [8, 4], "expert_units": [4], "num_experts": 2, "tower_units": 4},
    "hamur": {"hidden_units": [8], "hyper_units": [4], "rank": 3, "adapter_units": 4},
}


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert set(SMALL) <= set(backbones.available())
    assert set(backbones.available()) >= set(ZOO) and len(SMALL) == 4 + len(ZOO)
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*mmoe.*shared_bottom.*star"):
        backbones.get("nope")
    with pytest.raises(TypeError, match="bad hyper-parameters"):
        backbones.create("mmoe", S, num_expertz=3)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_backbone_contract_and_roundtrip(name):
    tf.keras.utils.set_random_seed(0)
    bb = backbones.create(name, S, **SMALL[name])
    x = tf.random.normal([B, D])
    sid = tf.constant([0, 1, 2] * (B // 3), tf.int64)
    logit = bb(x, sid, training=False)
    assert logit.shape == (B, 1) and logit.dtype == tf.float32
    # Routing: the output of an example depends on its scenario id, and only on its own row.
    other = bb(x, tf.roll(sid, 1, axis=0), training=False)
    assert float(tf.reduce_max(tf.abs(other - logit))) > 1e-6
    first = bb(x[:3], sid[:3], training=False)
    np.testing.assert_allclose(first.numpy(), logit[:3].numpy(), rtol=1e-5, atol=1e-6)
    clone = type(bb).from_config(bb.get_config())
    clone(x, sid, training=False)
    clone.set_weights(bb.get_weights())
    np.testing.assert_array_equal(clone(x, sid, training=False).numpy(), logit.numpy())
    assert backbones.get(name) is type(bb)


def test_star_partitioned_norm_and_star_weights():
    bb = backbones.create("star", S, hidden_units=[6], aux_units=[3])
    x = tf.random.normal([B, D]) * 3.0 + 5.0
    sid = tf.constant([0, 1, 2] * (B // 3), tf.int64)
    bb(x, sid, training=True)
    # Moving moments move towards the batch moments in training only.
    mean_before = bb.pn.moving_mean.numpy().copy()
    bb(x, sid, training=False)
    np.testing.assert_array_equal(bb.pn.moving_mean.numpy(), mean_before)
    assert float(np.abs(mean_before).max()) > 0
    # Scenario-specific PN scale and FCN weights change only their scenario's outputs.
    base = bb(x, sid, training=False).numpy()
    bb.star_layers[0].w_s.assign(tf.tensor_scatter_nd_update(bb.star_layers[0].w_s, [[1]], [tf.zeros([D, 6])]))
    changed = bb(x, sid, training=False).numpy()
    moved = np.abs(changed - base)[:, 0] > 1e-7
    assert moved[sid.numpy() == 1].all() and not moved[sid.numpy() != 1].any()


# ---- every backbone: gradients, training, per-scenario behaviour, LLM4MSR + .keras ------------------
def _synthetic_batch(n=96, seed=0):
    """Features, scenario ids and labels whose rule differs by scenario (so scenarios must differ)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    sid = np.arange(n) % S
    w = rng.normal(size=(S, D))
    y = (np.einsum("bd,bd->b", x, w[sid]) > 0).astype("float32")[:, None]
    return tf.constant(x), tf.constant(sid, tf.int64), tf.constant(y)


def _bce(y, logit):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logit))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_backbone_gradients_training_and_scenarios(name):
    tf.keras.utils.set_random_seed(1)
    bb = backbones.create(name, S, **SMALL[name])
    x, sid, y = _synthetic_batch()
    opt = tf.keras.optimizers.Adam(0.02)
    losses = []
    for step in range(6):
        with tf.GradientTape() as tape:
            loss = _bce(y, bb(x, sid, training=True))
        grads = tape.gradient(loss, bb.trainable_variables)
        if step == 0:  # every trainable weight gets a non-zero gradient from one batch
            assert bb.trainable_variables
            dead = [v.name for v, g in zip(bb.trainable_variables, grads)
                    if g is None or not float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g))))]
            assert not dead, (name, dead)
        opt.apply_gradients(zip(grads, bb.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.01, (name, losses)
    # The same features under each scenario id give different outputs (scenario-specific parameters).
    outs = [bb(x, tf.fill([x.shape[0]], tf.constant(s, tf.int64)), training=False).numpy() for s in range(S)]
    for a in range(S):
        for b in range(a + 1, S):
            assert np.abs(outs[a] - outs[b]).max() > 1e-4, (name, a, b)
    assert all(np.isfinite(o).all() for o in outs)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """A tiny prepared dataset + knowledge and one parsed batch (as tests/test_models.py builds them)."""
    from llm4msr_tf.testing import toy
    from llm4msr_tf.training import make_dataset

    root = tmp_path_factory.mktemp("zoo_toy")
    spec = toy.write_toy_dataset(str(root / "data"), rows={"train": 128, "eval": 32, "test": 32})
    kb = toy.write_toy_knowledge(str(root / "k"), skip_users=2, dim=12)
    batch = next(iter(make_dataset(spec, "train", 128, cache=False)))
    return spec, kb, batch


# The four original backbones train under LLM4MSR in tests/test_models.py; the zoo here. Falling
# loss is the standalone test's job; the training pass here moves the training-mode state.
@pytest.mark.parametrize("name", ZOO)
def test_backbone_under_llm4msr_with_knowledge_and_keras_roundtrip(toy_data, tmp_path, name):
    from llm4msr_tf.models import PAPER_FUSION, ModelConfig, build_model, load_model, save_model

    spec, kb, batch = toy_data
    tf.keras.utils.set_random_seed(0)
    cfg = ModelConfig(backbone=name, backbone_params=SMALL[name], embedding_dim=4, projection_dim=8,
                      meta_generator_units=8, scenario_tower_units=(8,), per_scenario_metrics=False, **PAPER_FUSION)
    model = build_model(spec, cfg, knowledge=kb, compile=False)
    assert model.use_knowledge and type(model.backbone) is backbones.get(name)
    labels = tf.reshape(tf.cast(batch[spec.label], tf.float32), [-1, 1])
    with tf.GradientTape() as tape:  # the loss without compute_loss: its Keras metrics take seconds to trace
        loss = _bce(labels, model(batch, training=True)["logit"])
    grads = tape.gradient(loss, model.trainable_variables)
    by_var = {v.ref(): g for v, g in zip(model.trainable_variables, grads)}
    assert all(by_var[v.ref()] is not None for v in model.backbone.trainable_variables), name
    assert all(by_var[v.ref()] is not None for v in model.user_meta[0].trainable_variables), name
    before = model(batch, training=False)["probability"].numpy()
    assert before.shape == (128, 1) and np.isfinite(before).all()
    save_model(model, str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert type(loaded.backbone) is type(model.backbone)
    # Non-trainable state moved by training (AdaSparse's alpha, AdaptDHM's centres, BN moments) is saved too.
    np.testing.assert_array_equal(loaded(batch, training=False)["probability"].numpy(), before)


def test_zoo_parameter_errors_name_the_parameter():
    cases = [
        ("m2m", {"num_experts": 0}, "num_experts must be >= 1"),
        ("adasparse", {"form": "bogus"}, r"form must be one of \['binarization', 'scaling', 'fusion'\]"),
        ("hamur", {"hidden_units": []}, "hidden_units needs at least one width"),
        ("sar_net", {"tower_units": "64"}, "tower_units must be a list of layer widths"),
        ("hinet", {"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ("adaptdhm", {"beta": 2.0}, r"beta .* must be in \[0, 1\]"),
    ]
    for name, params, needle in cases:
        with pytest.raises((ValueError, TypeError), match=f"backbone '{name}'.*{needle}"):
            backbones.create(name, S, **params)  # the registry names the backbone, keeps the error type
        with pytest.raises((ValueError, TypeError), match=needle):
            backbones.get(name)(S, **params)
    bb = backbones.create("m2m", S, field_dim=5)
    with pytest.raises(ValueError, match="field_dim=5 does not divide the feature width 12.*embedding_dim"):
        bb(tf.zeros([2, D]), tf.zeros([2], tf.int64))


def test_original_backbones_refuse_bad_counts_widths_and_rates():
    """The four first backbones check their arguments like the zoo (a negative expert count used
    to build an empty expert list and fail later with an unrelated error)."""
    cases = [
        ("mmoe", {"num_experts": -3}, ValueError, "mmoe: num_experts must be >= 1, got -3"),
        ("mmoe", {"expert_units": [64, 0]}, ValueError, "every width in expert_units must be a positive integer"),
        ("ple", {"num_levels": 0}, ValueError, "ple: num_levels must be >= 1"),
        ("ple", {"num_shared_experts": 0, "num_specific_experts": 0}, ValueError,
         r"num_shared_experts \+ num_specific_experts must be >= 1, got 0 \+ 0"),
        ("shared_bottom", {"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ("shared_bottom", {"bottom_units": "128"}, TypeError, "bottom_units must be a list of layer widths"),
        ("star", {"aux_embedding_dim": 2.5}, TypeError, "aux_embedding_dim must be an integer >= 1"),
    ]
    for name, params, kind, needle in cases:
        with pytest.raises(kind, match=f"backbone '{name}'.*{needle}.*backbone_params"):
            backbones.create(name, S, **params)
    # Edges that are valid stay valid: no tower layers, a PLE level of shared experts only.
    assert backbones.create("shared_bottom", S, tower_units=[]).tower_units == []
    assert backbones.create("ple", S, num_specific_experts=0).num_shared_experts == 2
    for params in ({"num_specific_experts": 0}, {"num_shared_experts": 0}):  # ... and they run
        out = backbones.create("ple", S, expert_units=[4], **params)(tf.random.normal([5, 6]), tf.constant([0, 1, 2, 0, 1]))
        assert out.shape == (5, 1) and np.all(np.isfinite(out.numpy()))
    assert backbones.create("mmoe", S, expert_units=32).expert_units == [32]


@pytest.mark.parametrize("form", ["binarization", "scaling"])
def test_adasparse_other_forms_prune_and_anneal(form):
    tf.keras.utils.set_random_seed(0)
    bb = backbones.create("adasparse", S, hidden_units=[8], dropout=0.0, form=form, epsilon=0.5)
    x, sid, _ = _synthetic_batch(32)
    e = bb.scenario_embedding(tf.cast(sid, tf.int32))
    bb(x, sid, training=False)
    pi = bb.factors(e, x, 0).numpy()
    assert (pi == 0).any() and (pi >= 0.5).any() and not ((pi > 0) & (pi < 0.5)).any()  # below epsilon: pruned
    alpha = float(bb.alpha_var.numpy())
    bb(x, sid, training=True)
    assert float(bb.alpha_var.numpy()) == pytest.approx(alpha + 1e-4)


def test_adaptdhm_routes_by_learned_clusters_and_updates_them_only_in_training():
    tf.keras.utils.set_random_seed(0)
    bb = backbones.create("adaptdhm", S, hidden_units=[8], num_clusters=3)
    x, sid, _ = _synthetic_batch(64)
    bb(x, sid, training=False)
    before = bb.centers.numpy().copy()
    bb(x, sid, training=False)
    np.testing.assert_array_equal(bb.centers.numpy(), before)
    bb(x, sid, training=True)
    after = bb.centers.numpy()
    assert np.abs(after - before).max() > 1e-6
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=1e-5)
    z = tf.concat([bb.scenario_embedding(tf.cast(sid, tf.int32)), x], axis=-1)
    cluster = bb.route(z, training=False).numpy()
    assert cluster.shape == (64,) and set(cluster) <= {0, 1, 2}


# ---- ready configs (the zoo) and `llm4msr train --model-config` ----------------------------------
def _generator():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                        "make_zoo_configs.py")
    spec = importlib.util.spec_from_file_location("make_zoo_configs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zoo_configs_cover_every_dataset_and_backbone_and_build():
    from llm4msr_tf.config import from_dict
    from llm4msr_tf.configs import ZOO_DIR, read_model_config, zoo_names
    from llm4msr_tf.models.config import ModelConfig

    names = zoo_names()
    datasets = {"movielens-1m-age", "movielens-1m-genre", "ml-100k", "synthetic"}
    assert {n.split("/")[0] for n in names} == datasets
    for dataset in datasets:
        assert {n.split("/")[1] for n in names if n.startswith(dataset + "/")} == set(backbones.available())
    # The committed files are exactly what the generator writes (nothing edited by hand and forgotten).
    wanted = _generator().configs()
    assert sorted(wanted) == names
    for name in names:
        with open(os.path.join(ZOO_DIR, *name.split("/")) + ".json") as f:
            assert json.load(f) == json.loads(json.dumps(wanted[name])), name
        cfg = from_dict(ModelConfig, read_model_config(name))
        assert cfg.backbone == name.split("/")[1]
        backbones.create(cfg.backbone, S, **cfg.backbone_params)


def test_train_model_config_file_flags_override_and_errors(tmp_path, capsys):
    from llm4msr_tf.cli import build_parser, main
    from llm4msr_tf.commands.train import model_config_from_args

    parser = build_parser()
    base = ["train", "--data", "d", "--out", "o"]
    cfg = model_config_from_args(parser.parse_args(base + ["--model-config", "movielens-1m-age/hinet"]))
    assert cfg.backbone == "hinet" and cfg.embedding_dim == 16 and cfg.backbone_params["num_shared_subexperts"] == 5
    assert cfg.use_knowledge and cfg.projection_dim == 64  # fields the file leaves out keep their defaults
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"backbone": "m2m", "backbone_params": {"field_dim": 8}, "embedding_dim": 8,
                               "scenario_tower_units": [16], "_note": "ignored"}))
    cfg = model_config_from_args(parser.parse_args(base + ["--model-config", str(own), "--embedding-dim", "4",
                                                           "--backbone-params", '{"field_dim": 4}', "--no-knowledge"]))
    assert (cfg.backbone, cfg.embedding_dim, cfg.backbone_params) == ("m2m", 4, {"field_dim": 4})
    assert cfg.scenario_tower_units == (16,) and cfg.use_knowledge is False
    # A trained model's config.json ({"train": ..., "model": ...}) works as a model config too.
    trained = tmp_path / "config.json"
    trained.write_text(json.dumps({"train": {"epochs": 3}, "model": {"backbone": "epnet", "__config_class__": "x"}}))
    assert model_config_from_args(parser.parse_args(base + ["--model-config", str(trained)])).backbone == "epnet"
    assert model_config_from_args(parser.parse_args(base)).backbone == "shared_bottom"  # no file: plain defaults
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"backbone": "m2m", "embeding_dim": 8}))
    for arg, needle in [(str(bad), "unknown config field(s) ['embeding_dim']"),
                        ("nope/m2m", "not a zoo config.*movielens-1m-age/hinet"),
                        (str(tmp_path), "is a directory; pass a JSON file")]:
        assert main(base + ["--model-config", arg, "--no-knowledge"]) == 2
        assert needle.split(".*")[0] in capsys.readouterr().err, arg


# Representatives of what a serving graph must carry: a pruning threshold and an annealed scalar,
# routing centres, attention, batch norm with a per-example hyper-network.
SERVED = ("adasparse", "adaptdhm", "m2m", "hamur")


def test_zoo_saved_model_parity_in_one_export(tmp_path):
    """Four zoo backbones in ONE SavedModel (one signature returning all their logits): the loaded
    graph matches Keras after a training pass moved BN statistics, AdaSparse's alpha and AdaptDHM's
    centres. (The LLM4MSR export path itself is tests/test_export.py's; tests/test_train.py trains
    and serves AdaptDHM through `llm4msr train`; every backbone round-trips through .keras above.)"""
    from tensorflow.core.protobuf import saved_model_pb2

    tf.keras.utils.set_random_seed(2)
    zoo = [backbones.create(name, S, **SMALL[name]) for name in SERVED]
    x, sid, _ = _synthetic_batch(48)
    for bb in zoo:
        bb(x, sid, training=True)  # moves the non-trainable state away from its initial values

    # autograph=False: the backbones' Python control flow is static; tracing without the AST
    # conversion is several times faster on these CPUs.
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, D], tf.float32),
                                                   tf.TensorSpec([None], tf.int64)])
    def serve(features, scenario_id):
        return {name: bb(features, scenario_id, training=False) for name, bb in zip(SERVED, zoo)}

    # The module tracks only the variables: saving the layers as Keras objects would trace every
    # sub-layer's own call functions (a minute here) and add nothing the serving graph uses.
    module = tf.Module()
    module.weights = [v for bb in zoo for v in bb.variables]
    module.serve = serve
    path = str(tmp_path / "zoo_saved_model")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    want = {k: v.numpy() for k, v in serve(x, sid).items()}
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](features=x, scenario_id=sid)
    for name in SERVED:
        np.testing.assert_allclose(got[name].numpy(), want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    graph = sm.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for fn in graph.library.function for n in fn.node_def}
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}, sorted(ops)  # TF Serving is C++ only


def test_train_help_still_shows_model_defaults():
    from llm4msr_tf.cli import build_parser

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    text = train.format_help()
    assert "object at 0x" not in text and "(default: True)" in text and "(default: 16)" in text
