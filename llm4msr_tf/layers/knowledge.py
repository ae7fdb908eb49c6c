"""Knowledge vectors inside the model: a key -> vector lookup and a trainable projection.

`KnowledgeLookup` holds one key type's vectors (scenario or user) as a non-trainable weight
with a `StaticHashTable` from key to row, so training and serving share one code path and
examples never carry copies of large vectors. Row 0 is an explicit default for unknown keys
(new users): the mean of the known vectors, or zeros; unknown lookups are counted in the
non-trainable variables ``unknown_count`` / ``lookup_count``. ``mode="feature"`` instead
takes the vector from an input feature (for user bases too large to embed in the model).

`KnowledgeProjection` (LayerNorm + Dense) maps any LLM width (640, 384, 4096, ...) to the
width the meta networks use.
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf


PACKAGE = "llm4msr_tf"
MODES = ("table", "feature")
DEFAULTS = ("mean", "zeros")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class KnowledgeLookup(tf.keras.layers.Layer):
    """Maps keys (string or int ids, [B]) to knowledge vectors [B, dim]; unknown -> default row."""

    def __init__(
        self,
        keys: Sequence[str] = (),
        dim: int = 0,
        key_type: str = "user",
        mode: str = "table",
        default: str = "mean",
        vectors: Optional[np.ndarray] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"KnowledgeLookup mode {mode!r} is not one of {MODES}")
        if default not in DEFAULTS:
            raise ValueError(f"KnowledgeLookup default {default!r} is not one of {DEFAULTS}")
        if int(dim) <= 0:
            raise ValueError(f"KnowledgeLookup for {key_type!r} needs dim > 0, got {dim}")
        self.keys = [str(k) for k in keys] if mode == "table" else []
        self.dim = int(dim)
        self.key_type = key_type
        self.mode = mode
        self.default = default
        if mode == "feature":
            return
        n = len(self.keys)
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape != (n, self.dim):
                raise ValueError(
                    f"{key_type} knowledge: vectors have shape {vectors.shape}, expected "
                    f"({n}, {self.dim}) (keys x knowledge dim from the manifest); the knowledge "
                    "directory is inconsistent: recompute it")
            if default == "mean" and n:
                row0 = vectors.mean(axis=0, keepdims=True)
            else:
                row0 = np.zeros((1, self.dim), np.float32)
            init = tf.constant_initializer(np.concatenate([row0, vectors], axis=0))
        else:
            init = "zeros"  # from_config: the real values come with the saved weights
        self.vectors = self.add_weight(
            name="vectors", shape=(n + 1, self.dim), dtype=tf.float32, initializer=init,
            trainable=False)
        self.unknown_count = self.add_weight(
            name="unknown_count", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)
        self.lookup_count = self.add_weight(
            name="lookup_count", shape=(), dtype=tf.int64, initializer="zeros", trainable=False)
        if n:
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(self.keys, tf.string), tf.range(1, n + 1, dtype=tf.int64)),
                default_value=tf.constant(0, tf.int64))
        else:
            self.table = None

    def rows(self, keys: tf.Tensor) -> tf.Tensor:
        """Row index of each key (0 = unknown -> default vector)."""
        keys = tf.reshape(keys, [-1])
        if keys.dtype != tf.string:
            keys = tf.strings.as_string(tf.cast(keys, tf.int64))
        if self.table is None:
            return tf.zeros_like(keys, dtype=tf.int64)
        return self.table.lookup(keys)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        if self.mode == "feature":
            v = tf.cast(inputs, tf.float32)
            if v.shape.rank != 2 or (v.shape[-1] is not None and v.shape[-1] != self.dim):
                raise ValueError(
                    f"{self.key_type} knowledge feature has shape {v.shape}, expected [B, {self.dim}] "
                    "(the knowledge dim the model was built with)")
            return v
        rows = self.rows(inputs)
        self.unknown_count.assign_add(tf.reduce_sum(tf.cast(tf.equal(rows, 0), tf.int64)))
        self.lookup_count.assign_add(tf.size(rows, out_type=tf.int64))
        return tf.gather(self.vectors, rows)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(keys=list(self.keys), dim=self.dim, key_type=self.key_type, mode=self.mode,
                   default=self.default)
        return cfg

    @classmethod
    def from_keyed_vectors(cls, kv: Any, key_type: str, default: str = "mean",
                           **kwargs: Any) -> "KnowledgeLookup":
        """Build a table-mode lookup from a `llm4msr_tf.knowledge.KeyedVectors`."""
        return cls(keys=list(kv.keys), dim=int(kv.vectors.shape[1]), key_type=key_type,
                   default=default, vectors=kv.vectors, name=f"{key_type}_knowledge", **kwargs)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class KnowledgeProjection(tf.keras.layers.Layer):
    """Trainable LayerNorm + Dense that maps knowledge vectors of any width to `units`."""

    def __init__(self, units: int = 64, activation: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.norm = tf.keras.layers.LayerNormalization(name="norm")
        self.dense = tf.keras.layers.Dense(self.units, activation=activation, name="dense")

    def build(self, input_shape: Any) -> None:
        """Create LayerNorm's gamma/beta and the Dense kernel for the input width."""
        self.norm.build(input_shape)
        self.dense.build(input_shape)
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """``dense(layer_norm(x))``, computed as ``normalize(x) @ (gamma * W) + (beta @ W + b)``.

        Same weights and numbers as running the two layers, but the [B, width] work is only
        the normalisation of x, which needs no gradient for frozen knowledge (the fused
        LayerNorm kernel always computes d/dx, the costliest part of a training step here).
        """
        x = tf.cast(x, self.compute_dtype)
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        normed = (x - mean) * tf.math.rsqrt(var + self.norm.epsilon)
        kernel = self.norm.gamma[:, None] * self.dense.kernel
        bias = tf.linalg.matvec(self.dense.kernel, self.norm.beta, transpose_a=True) + self.dense.bias
        y = tf.matmul(normed, kernel) + bias
        return self.dense.activation(y)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation)
        return cfg
