"""Backbones: the contract (shapes, per-scenario routing), config round trips, registry errors."""
import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf import backbones

S, D, B = 3, 10, 12
SMALL = {
    "shared_bottom": {"bottom_units": [8], "tower_units": [4]},
    "mmoe": {"num_experts": 2, "expert_units": [8], "tower_units": [4]},
    "ple": {"num_levels": 2, "num_shared_experts": 1, "num_specific_experts": 1, "expert_units": [8]},
    "star": {"hidden_units": [8], "aux_units": [4]},
}


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert set(SMALL) <= set(backbones.available())
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
