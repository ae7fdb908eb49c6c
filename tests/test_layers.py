"""Layers: feature embedding lookups, knowledge lookup defaults/counting, MetaDense, blocks, configs."""
import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.layers import MLP, Experts, FeatureEmbedding, Gate, KnowledgeLookup, KnowledgeProjection, MetaDense

FEATURES = [
    {"name": "user_id", "kind": "categorical", "dtype": "string", "vocab_size": 3, "vocabulary": ["a", "b", "c"]},
    {"name": "scenario_id", "kind": "categorical", "dtype": "int64", "vocab_size": 2},
    {"name": "age", "kind": "numeric", "dtype": "float32", "vocab_size": None},
]


def _inputs():
    return {"user_id": tf.constant(["a", "c", "zzz", "b"]), "scenario_id": tf.constant([0, 1, 7, -1], tf.int64),
            "age": tf.constant([0.1, 0.5, 0.9, 0.0])}


def roundtrip(layer, *args):
    """Rebuild a layer from its config, copy weights, and check outputs are identical."""
    clone = type(layer).from_config(layer.get_config())
    out = layer(*args)
    clone(*args)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(*args).numpy(), out.numpy())
    return clone


def test_feature_embedding_shapes_oov_and_roundtrip():
    layer = FeatureEmbedding(FEATURES, embedding_dim=4)
    out = layer(_inputs())
    assert out.shape == (4, 12) and layer.output_dim == 12
    table = layer.embeddings["user_id"].embeddings.numpy()
    np.testing.assert_array_equal(out[2, :4], table[0])  # unknown string -> OOV row 0
    np.testing.assert_array_equal(out[0, :4], table[1])  # "a" is the first vocabulary entry
    sc = layer.embeddings["scenario_id"].embeddings.numpy()
    np.testing.assert_array_equal(out[2, 4:8], sc[0])  # int out of range -> 0
    np.testing.assert_array_equal(out[3, 4:8], sc[0])
    np.testing.assert_array_equal(out[1, 4:8], sc[1])
    roundtrip(layer, _inputs())


def test_feature_embedding_hash_mode_and_errors():
    feats = [dict(f, vocabulary=None) if f["dtype"] == "string" else f for f in FEATURES]
    layer = FeatureEmbedding(feats, embedding_dim=3, categorical_encoding="hash", hash_bins=50)
    assert layer(_inputs()).shape == (4, 9)
    with pytest.raises(ValueError, match="no vocabulary"):
        FeatureEmbedding(feats, categorical_encoding="vocab")
    with pytest.raises(ValueError, match="missing"):
        layer({"user_id": tf.constant(["a"])})


def test_knowledge_lookup_table_default_and_counts():
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
    layer = KnowledgeLookup(["u1", "u2", "7"], 4, "user", vectors=vecs)
    out = layer(tf.constant(["u2", "new", "u1"])).numpy()
    np.testing.assert_array_equal(out[0], vecs[1])
    np.testing.assert_array_equal(out[2], vecs[0])
    np.testing.assert_allclose(out[1], vecs.mean(0))  # explicit default: mean vector
    assert int(layer.unknown_count.numpy()) == 1 and int(layer.lookup_count.numpy()) == 3
    np.testing.assert_array_equal(layer(tf.constant([7], tf.int64)).numpy()[0], vecs[2])  # int keys
    zeros = KnowledgeLookup(["u1", "u2", "7"], 4, vectors=vecs, default="zeros")
    np.testing.assert_array_equal(zeros(tf.constant(["?"])).numpy(), np.zeros((1, 4)))
    clone = KnowledgeLookup.from_config(layer.get_config())
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(tf.constant(["u2", "x"])).numpy(), layer(tf.constant(["u2", "x"])).numpy())


def test_knowledge_lookup_feature_mode_and_shape_errors():
    layer = KnowledgeLookup(dim=4, mode="feature")
    v = tf.random.normal([2, 4])
    np.testing.assert_array_equal(layer(v).numpy(), v.numpy())
    with pytest.raises(ValueError, match=r"expected \[B, 4\]"):
        layer(tf.zeros([2, 5]))
    with pytest.raises(ValueError, match="expected"):
        KnowledgeLookup(["a"], 4, vectors=np.zeros((1, 3), np.float32))


def test_knowledge_projection_any_width():
    for width in (384, 4096):
        assert KnowledgeProjection(8)(tf.random.normal([3, width])).shape == (3, 8)


def test_knowledge_projection_equals_layer_norm_then_dense_with_same_gradients():
    # The fused form (normalise, then one matmul with gamma folded in) must be LayerNorm -> Dense.
    tf.keras.utils.set_random_seed(3)
    layer = KnowledgeProjection(8, activation="relu")
    x = tf.random.normal([6, 40]) * 3.0 + 1.0
    layer(x)
    layer.norm.gamma.assign(tf.random.normal([40]))
    layer.norm.beta.assign(tf.random.normal([40]))
    with tf.GradientTape(persistent=True) as tape:
        ours = layer(x)
        ref = layer.dense(layer.norm(x))
        l_ours, l_ref = tf.reduce_sum(ours ** 2), tf.reduce_sum(ref ** 2)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    assert float(tf.reduce_max(ours)) > 0.1  # not all clipped by the relu
    for g_ours, g_ref in zip(tape.gradient(l_ours, layer.trainable_variables),
                             tape.gradient(l_ref, layer.trainable_variables)):
        np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rank", [0, 3])
def test_meta_dense_generates_per_example_weights(rank):
    tf.keras.utils.set_random_seed(1)
    layer = MetaDense(rank=rank, generator_units=16)
    x = tf.random.normal([2, 6])
    c = tf.constant([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]])
    y = layer([x, c])
    assert y.shape == (2, 6) and layer.use_residual
    w, b = layer.generate(c)
    assert w.shape == (2, 6, 6) and b.shape == (2, 6)
    assert float(tf.reduce_max(tf.abs(w[0] - w[1]))) > 1e-4  # different users -> different weights
    # Same conditioning vector -> same weights.
    w2, _ = layer.generate(tf.stack([c[0], c[0]]))
    np.testing.assert_allclose(w2[0].numpy(), w2[1].numpy(), rtol=1e-6)
    # The layer really applies act(x W(c) + b(c) + x W0 + b0) + x.
    expect = tf.nn.relu(tf.einsum("bi,bio->bo", x, w) + b + x @ layer.kernel + layer.bias) + x
    np.testing.assert_allclose(y.numpy(), expect.numpy(), rtol=1e-5, atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer([x, c]))
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    roundtrip(layer, [x, c])
    # Indexed form (weights generated once per distinct condition, then gathered) is the same layer.
    idx = tf.constant([1, 0, 1])
    x3 = tf.random.normal([3, 6])
    np.testing.assert_allclose(layer([x3, c, idx]).numpy(), layer([x3, tf.gather(c, idx)]).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rank", [0, 1, 4])
def test_meta_dense_matmul_form_matches_materialised_weights_and_gradients(rank, monkeypatch):
    # call() never builds the [B, D_in, units] matrices; it must still be x @ W(c) + b(c), with the
    # same gradients for every generator weight and for x, in the per-example and indexed forms.
    tf.keras.utils.set_random_seed(2)
    layer = MetaDense(units=5, rank=rank, generator_units=7, activation="tanh")
    x = tf.random.normal([9, 6])
    conds = tf.random.normal([4, 3])
    idx = tf.constant([0, 3, 1, 1, 2, 0, 3, 2, 2])

    def reference(c):
        w, b = layer.generate(c)
        return tf.tanh(tf.einsum("bi,bio->bo", x, w) + b + x @ layer.kernel + layer.bias)

    layer([x, tf.gather(conds, idx)])
    # rank 1 applies the conditions through their factors (cheaper for 6 -> 5), rank 4 and 0
    # through the full matrices: both indexed forms are checked against the reference.
    assert layer.low_rank_cheaper() == (rank == 1)
    for max_all in (32, 0):  # all-conditions matmul, then the per-example gather fallback
        monkeypatch.setattr(MetaDense, "ALL_CONDITIONS_MAX", max_all)
        for inputs in ([x, tf.gather(conds, idx)], [x, conds, idx]):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                ours, ref = layer(inputs), reference(tf.gather(conds, idx))
                l_ours, l_ref = tf.reduce_sum(ours ** 2), tf.reduce_sum(ref ** 2)
            np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
            srcs = layer.trainable_variables + [x]
            for g_ours, g_ref in zip(tape.gradient(l_ours, srcs), tape.gradient(l_ref, srcs)):
                np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-5)


def test_meta_dense_width_change_and_errors():
    layer = MetaDense(units=5, rank=2)
    assert layer([tf.zeros([3, 7]), tf.zeros([3, 2])]).shape == (3, 5) and not layer.use_residual
    with pytest.raises(ValueError, match="residual"):
        MetaDense(units=5, residual=True)([tf.zeros([3, 7]), tf.zeros([3, 2])])
    with pytest.raises(ValueError, match="rank"):
        MetaDense(rank=-1)


def test_blocks_shapes_and_gate_mixture():
    x = tf.random.normal([4, 6])
    assert MLP([8, 1], output_activation=None)(x).shape == (4, 1)
    experts = Experts(3, [5])
    e = experts(x)
    assert e.shape == (4, 3, 5)
    gate = Gate(3)
    mixed = gate(x, e)
    w = tf.nn.softmax(gate.logits(x))
    np.testing.assert_allclose(mixed.numpy(), tf.einsum("be,bed->bd", w, e).numpy(), rtol=1e-5)
    roundtrip(MLP([4, 2], dropout=0.1), x)
