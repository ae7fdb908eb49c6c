"""LLM4MSR model: outputs, gradients to both meta networks and the backbone, training of every
backbone with and without knowledge, save/load parity, a user backbone subclass, and errors."""
import os

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf import backbones
from llm4msr_tf.models import LLM4MSR, ModelConfig, build_model, load_model, save_model
from llm4msr_tf.testing import toy
from llm4msr_tf.training import make_dataset

SMALL = {
    "shared_bottom": {"bottom_units": [16], "tower_units": [8]},
    "mmoe": {"num_experts": 2, "expert_units": [16], "tower_units": [8]},
    "ple": {"num_levels": 2, "num_shared_experts": 1, "num_specific_experts": 1, "expert_units": [16]},
    "star": {"hidden_units": [16], "aux_units": [8]},
}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """A tiny prepared dataset + knowledge (users u0, u1 have no vector) and one parsed batch."""
    root = tmp_path_factory.mktemp("toy")
    spec = toy.write_toy_dataset(str(root / "data"), rows={"train": 256, "eval": 64, "test": 64})
    kb = toy.write_toy_knowledge(str(root / "k"), skip_users=2, dim=20)
    batch = next(iter(make_dataset(spec, "train", 256, cache=False)))
    return spec, kb, batch


def cfg(name="shared_bottom", **kw):
    return ModelConfig(backbone=name, backbone_params=SMALL[name], embedding_dim=4, projection_dim=8,
                       meta_generator_units=8, scenario_tower_units=(8,), **kw)


def test_outputs_shapes_and_label_ignored(toy_data):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg(), knowledge=kb)
    out = model(batch)
    assert set(out) == {"logit", "probability"}
    assert out["logit"].shape == (256, 1) and out["probability"].shape == (256, 1)
    np.testing.assert_allclose(out["probability"].numpy(), tf.sigmoid(out["logit"]).numpy(), rtol=1e-6)
    no_label = {k: v for k, v in batch.items() if k != spec.label}
    np.testing.assert_array_equal(model(no_label)["logit"].numpy(), out["logit"].numpy())
    # New users (u0, u1) hit the explicit default row and are counted.
    model.reset_knowledge_stats()
    model(batch)
    stats = model.knowledge_stats()
    n_new = int(np.isin(batch["user_id"].numpy(), [b"u0", b"u1"]).sum())
    assert stats["user"] == {"unknown": n_new, "lookups": 256} and stats["scenario"]["unknown"] == 0


def test_gradients_reach_both_meta_networks_and_backbone(toy_data):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg("mmoe"), knowledge=kb)
    with tf.GradientTape(persistent=True) as tape:
        loss = model.compute_loss(batch, training=True)
    groups = {
        "user_meta": model.user_meta[0].trainable_variables + model.user_projection.trainable_variables,
        "scenario_meta": [v for l in model.scenario_tower for v in l.trainable_variables]
        + model.scenario_projection.trainable_variables,
        "backbone": model.backbone.trainable_variables,
        "embedding": model.embedding.trainable_variables,
    }
    for name, variables in groups.items():
        grads = tape.gradient(loss, variables)
        assert variables, name
        assert all(g is not None for g in grads), name
        assert sum(float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) for g in grads) > 0, name
    del tape
    # The knowledge tables are frozen (non-trainable) and the LLM vectors are not updated.
    assert not model.user_knowledge.trainable_weights


def test_user_meta_layer_weights_differ_between_users(toy_data):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg(), knowledge=kb)
    feats = {k: v[:2] for k, v in batch.items()}
    feats["user_id"] = tf.constant(["u5", "u6"])
    feats["scenario_id"] = tf.constant([1, 1], tf.int64)
    uk = model.user_projection(model.user_knowledge(feats["user_id"]))
    sk = model.scenario_projection(model.scenario_knowledge(feats["scenario_id"]))
    w, b = model.user_meta[0].generate(tf.concat([uk, sk], -1))
    assert float(tf.reduce_max(tf.abs(w[0] - w[1]))) > 1e-5 and float(tf.reduce_max(tf.abs(b[0] - b[1]))) > 1e-6


def _train_steps(model, batch, steps=6):
    losses = []
    opt = tf.keras.optimizers.Adam(0.01)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_backbone_trains_with_and_without_llm4msr(toy_data, name):
    spec, kb, batch = toy_data
    half = {k: v[:128] for k, v in batch.items()}
    for use_knowledge in (True, False):
        tf.keras.utils.set_random_seed(0)
        model = build_model(spec, cfg(name, use_knowledge=use_knowledge), knowledge=kb, compile=False)
        assert model.use_knowledge == use_knowledge
        assert hasattr(model, "user_meta") == use_knowledge
        losses = _train_steps(model, half)
        assert losses[-1] < losses[0] - 0.01, (name, use_knowledge, losses)


def test_ablation_switches(toy_data):
    spec, kb, batch = toy_data
    only_user = build_model(spec, cfg(use_scenario_meta=False), knowledge=kb)
    only_scen = build_model(spec, cfg(use_user_meta=False), knowledge=kb)
    assert hasattr(only_user, "user_meta") and not hasattr(only_user, "scenario_tower")
    assert only_scen.user_knowledge is None and hasattr(only_scen, "scenario_tower")
    assert only_scen(batch)["logit"].shape == (256, 1)
    neither = build_model(spec, cfg(use_user_meta=False, use_scenario_meta=False), knowledge=kb)
    assert neither.scenario_knowledge is None and neither(batch)["logit"].shape == (256, 1)


@pytest.mark.parametrize("use_knowledge", [True, False])
def test_save_load_identical_predictions(toy_data, tmp_path, use_knowledge):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg("ple", use_knowledge=use_knowledge), knowledge=kb)
    _train_steps(model, batch, steps=2)  # move weights away from their initial values
    before = model(batch)["probability"].numpy()
    path = save_model(model, str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert isinstance(loaded, LLM4MSR) and type(loaded.backbone) is type(model.backbone)
    np.testing.assert_array_equal(loaded(batch)["probability"].numpy(), before)
    assert os.path.basename(path) == "model.keras"
    # get_config / from_config + weights also round-trips.
    clone = LLM4MSR.from_config(model.get_config())
    clone(clone.dummy_inputs())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(batch)["probability"].numpy(), before)


@tf.keras.utils.register_keras_serializable(package="test_models")
class TinyLinear(backbones.Backbone):
    """A user backbone following the contract: a per-scenario linear model."""

    def __init__(self, num_scenarios, scale=1.0, **kwargs):
        super().__init__(num_scenarios, **kwargs)
        self.scale = scale
        self.heads = [tf.keras.layers.Dense(1) for _ in range(num_scenarios)]

    def call(self, features, scenario_id, training=None):
        return self.scale * self.select(tf.stack([h(features) for h in self.heads], 1), scenario_id)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def test_user_backbone_subclass_works_everywhere(toy_data, tmp_path):
    spec, kb, batch = toy_data
    backbones.register("tiny_linear")(TinyLinear)
    tf.keras.utils.set_random_seed(0)
    try:
        model = build_model(spec, ModelConfig(backbone="tiny_linear", embedding_dim=4, projection_dim=8),
                            knowledge=kb)
        assert isinstance(model.backbone, TinyLinear)
        losses = _train_steps(model, batch, steps=6)
        assert losses[-1] < losses[0]
        before = model(batch)["logit"].numpy()
        save_model(model, str(tmp_path / "m"))
        np.testing.assert_array_equal(load_model(str(tmp_path / "m"))(batch)["logit"].numpy(), before)
        # A ready instance works too (no registry needed).
        direct = build_model(spec, ModelConfig(embedding_dim=4), knowledge=kb, backbone=TinyLinear(3, scale=0.5))
        assert direct(batch)["logit"].shape == (256, 1)
    finally:
        backbones.base._REGISTRY.pop("tiny_linear", None)


def test_errors_are_clear(toy_data):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg(), knowledge=kb)
    bad = dict(batch, scenario_id=tf.fill([256], tf.constant(3, tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"scenario_id outside 0\.\.2.*num_scenarios=3"):
        model(bad)
    with pytest.raises(ValueError, match="knowledge dimension mismatch.*4096.*dim=20"):
        build_model(spec, cfg(expected_knowledge_dim=4096), knowledge=kb)
    with pytest.raises(ValueError, match="use_knowledge=False"):
        build_model(spec, cfg(), knowledge=None)
    with pytest.raises(ValueError, match="unknown backbone 'bogus'.*available backbones: .*mmoe.*ple"):
        build_model(spec, ModelConfig(backbone="bogus"), knowledge=kb)
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig(backbone_params="{oops")
    with pytest.raises(ValueError, match="'user_id' is missing"):
        model({k: v for k, v in batch.items() if k != "user_id"})


def test_user_knowledge_feature_mode(toy_data):
    spec, kb, batch = toy_data
    model = build_model(spec, cfg(user_knowledge_mode="feature"), knowledge=kb)
    feats = dict(batch, user_knowledge=tf.random.normal([256, 20]))
    assert model(feats)["logit"].shape == (256, 1)
    with pytest.raises(ValueError, match=r"expected \[B, 20\]"):
        model(dict(batch, user_knowledge=tf.zeros([256, 7])))
