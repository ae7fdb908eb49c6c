"""Knowledge vectors inside the model: a key -> vector lookup and a trainable projection.

`KnowledgeLookup` holds one key type's vectors (scenario or user) as a non-trainable weight
with a `StaticHashTable` from key to row, so training and serving share one code path and
examples never carry copies of large vectors. Row 0 is an explicit default for unknown keys
(new users): the mean of the known vectors, or zeros; unknown lookups are counted in the
non-trainable variables ``unknown_count`` / ``lookup_count``. ``mode="feature"`` instead
takes the vector from an input feature (for user bases too large to embed in the model).

``normalize`` re-expresses a table relative to its own keys (our choice, not the paper's: a
small LLM's vectors can be ~0.98 cosine-alike, the shared part of every prompt dominating them):
``center`` subtracts the across-key mean, ``standardize`` also divides each dimension by its
across-key standard deviation, ``whiten`` applies ZCA whitening (shrunk towards the identity,
so tables with fewer keys than dimensions stay finite). The statistics are fitted once on the
table's keys and stored as the non-trainable weights ``shift`` / ``transform`` of the layer, so
serving and ``feature`` mode apply exactly what training saw; a table stores its vectors
already normalised (no cost per lookup).

`KnowledgeProjection` (LayerNorm + Dense) maps any LLM width (640, 384, 4096, ...) to the
width the meta networks use.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf


PACKAGE = "llm4msr_tf"
MODES = ("table", "feature")
DEFAULTS = ("mean", "zeros")
NORMALIZATIONS = ("none", "center", "standardize", "whiten")
# Shrinkage of the whitening / standardisation, relative to the mean variance per dimension.
_NORM_EPS = 1e-2
# Rows per chunk when fitting or applying a normalisation (bounds the temporary memory).
_STATS_CHUNK = 65536


def normalization_stats(vectors: np.ndarray, normalize: str,
                        pca_dim: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(shift [dim], transform [dim, out])`` with ``normalized = (v - shift) @ transform``.

    Args:
        vectors: float [n, dim], the table's known keys (not the default row).
        normalize: one of ``NORMALIZATIONS``.
        pca_dim: keep only the top ``pca_dim`` principal components across keys (0 = all
            dimensions, ``out = dim``); with ``whiten`` each kept component is scaled to unit
            variance (PCA whitening), with ``standardize`` the components are those of the
            standardised table. Needs a normalisation other than ``none``.

    Returns:
        float32 arrays; ``none`` gives zeros and the identity.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"knowledge normalize {normalize!r} is not one of {NORMALIZATIONS}")
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"knowledge vectors to normalise must be [n, dim], got shape {v.shape}")
    dim = v.shape[1]
    pca_dim = int(pca_dim or 0)
    if pca_dim < 0 or pca_dim > dim:
        raise ValueError(f"knowledge pca_dim must be in 0..{dim} (the vector width), got {pca_dim}")
    if pca_dim and normalize == "none":
        raise ValueError("knowledge pca_dim needs normalize center, standardize or whiten (PCA is taken "
                         "around the across-key mean)")
    out = pca_dim or dim
    if normalize == "none" or len(v) == 0:
        return np.zeros(dim, np.float32), np.eye(dim, out, dtype=np.float32)
    # Streamed over row chunks with float64 accumulators: a table of millions of users is never
    # copied whole (a float64 copy of 1M x 640 alone is 5 GB).
    n = len(v)
    chunks = [slice(a, min(n, a + _STATS_CHUNK)) for a in range(0, n, _STATS_CHUNK)]
    mean = sum(v[c].sum(axis=0, dtype=np.float64) for c in chunks) / n
    if normalize == "center" and not pca_dim:
        return mean.astype(np.float32), np.eye(dim, dtype=np.float32)
    var = sum(((v[c] - mean) ** 2).sum(axis=0) for c in chunks) / n
    eps = _NORM_EPS * max(float(var.mean()), 1e-12)
    inv_sd = 1.0 / np.sqrt(var + eps) if normalize == "standardize" else np.ones(dim)
    scale = np.diag(inv_sd)
    if normalize == "standardize" and not pca_dim:
        return mean.astype(np.float32), scale.astype(np.float32)
    cov = np.zeros((dim, dim))
    for c in chunks:
        z = (v[c] - mean) * inv_sd
        cov += z.T @ z
    cov /= max(1, n)
    lam, vecs = np.linalg.eigh(cov)  # ascending
    lam = np.clip(lam, 0.0, None)
    if normalize == "whiten" and not pca_dim:
        t = (vecs * (1.0 / np.sqrt(lam + eps))) @ vecs.T  # ZCA: whitened, same axes
    else:
        top = np.argsort(-lam)[:pca_dim]
        t = vecs[:, top]
        if normalize == "whiten":
            t = t * (1.0 / np.sqrt(lam[top] + eps))
    return mean.astype(np.float32), (scale @ t).astype(np.float32)


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
        normalize: str = "none",
        fit_vectors: Optional[np.ndarray] = None,
        pca_dim: int = 0,
        **kwargs: Any,
    ) -> None:
        """Args:
            keys: the table's keys (table mode); row i+1 holds ``vectors[i]``.
            dim: vector width.
            key_type: ``user`` or ``scenario`` (for messages and names).
            mode: ``table`` (in-model lookup) or ``feature`` (vector comes in the request).
            default: vector of unknown keys: the mean of the known ones, or zeros.
            vectors: float [len(keys), dim] (omit when restoring from a config).
            normalize: ``none``, ``center``, ``standardize`` or ``whiten`` (module docstring).
            fit_vectors: in feature mode, the vectors to fit the normalisation on.
            pca_dim: keep the top principal components only (`normalization_stats`); the
                lookup then returns [B, pca_dim].
        """
        super().__init__(**kwargs)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"KnowledgeLookup normalize {normalize!r} is not one of {NORMALIZATIONS}")
        self.normalize = normalize
        self.pca_dim = int(pca_dim or 0)
        if self.pca_dim and normalize == "none":
            raise ValueError("KnowledgeLookup pca_dim needs normalize center, standardize or whiten")
        if self.pca_dim < 0 or self.pca_dim > int(dim):
            raise ValueError(f"KnowledgeLookup pca_dim must be in 0..{dim}, got {pca_dim}")
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
        fit = vectors if mode == "table" else fit_vectors
        if self.normalize != "none":
            if fit is not None:
                fit = np.asarray(fit, dtype=np.float32)
                if fit.ndim != 2 or fit.shape[1] != self.dim:
                    raise ValueError(f"{key_type} knowledge: vectors to normalise have shape {fit.shape}, "
                                     f"expected [n, {self.dim}]")
                shift, transform = normalization_stats(fit, self.normalize, self.pca_dim)
                stats_init = (tf.constant_initializer(shift), tf.constant_initializer(transform))
            else:
                stats_init = ("zeros", "identity")  # from_config: restored with the weights
            self.shift = self.add_weight(name="shift", shape=(self.dim,), dtype=tf.float32,
                                         initializer=stats_init[0], trainable=False)
            self.transform = self.add_weight(name="transform", shape=(self.dim, self.out_dim), dtype=tf.float32,
                                             initializer=stats_init[1], trainable=False)
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
            table = np.empty((n + 1, self.out_dim), np.float32)
            identity = self.normalize == "none" or (transform.shape[0] == transform.shape[1] and np.array_equal(
                transform, np.eye(transform.shape[0], dtype=transform.dtype)))
            for a in range(0, n + 1, _STATS_CHUNK):  # row 0 (the default) then the keys, chunk by chunk
                rows = np.concatenate([row0, vectors[:_STATS_CHUNK - 1]]) if a == 0 else \
                    vectors[a - 1:a - 1 + _STATS_CHUNK]
                if self.normalize != "none":
                    rows = rows - shift[None, :]
                    if not identity:  # center: the transform is the identity, skip the [n, dim] matmul
                        rows = rows @ transform
                table[a:a + len(rows)] = rows
            init = tf.constant_initializer(table)
        else:
            init = "zeros"  # from_config: the real values come with the saved weights
        self.vectors = self.add_weight(
            name="vectors", shape=(n + 1, self.out_dim), dtype=tf.float32, initializer=init,
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

    @property
    def out_dim(self) -> int:
        """Width of the vectors this layer returns (``pca_dim`` when set, else ``dim``)."""
        return self.pca_dim or self.dim

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
            if self.normalize != "none":
                v = tf.matmul(v - self.shift, self.transform)
            return v
        rows = self.rows(inputs)
        self.unknown_count.assign_add(tf.reduce_sum(tf.cast(tf.equal(rows, 0), tf.int64)))
        self.lookup_count.assign_add(tf.size(rows, out_type=tf.int64))
        return tf.gather(self.vectors, rows)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(keys=list(self.keys), dim=self.dim, key_type=self.key_type, mode=self.mode,
                   default=self.default, normalize=self.normalize, pca_dim=self.pca_dim)
        return cfg

    @classmethod
    def from_keyed_vectors(cls, kv: Any, key_type: str, default: str = "mean", normalize: str = "none",
                           pca_dim: int = 0, **kwargs: Any) -> "KnowledgeLookup":
        """Build a table-mode lookup from a `llm4msr_tf.knowledge.KeyedVectors`."""
        return cls(keys=list(kv.keys), dim=int(kv.vectors.shape[1]), key_type=key_type,
                   default=default, vectors=kv.vectors, normalize=normalize, pca_dim=pca_dim,
                   name=f"{key_type}_knowledge", **kwargs)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class KnowledgeProjection(tf.keras.layers.Layer):
    """Trainable LayerNorm + Dense that maps knowledge vectors of any width to `units`."""

    def __init__(self, units: int = 64, activation: Optional[str] = None, l2: float = 0.0,
                 **kwargs: Any) -> None:
        """Args:
            units: output width.
            activation: activation of the Dense layer (None = linear).
            l2: L2 penalty on the Dense kernel.
        """
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.l2 = float(l2)
        self.norm = tf.keras.layers.LayerNormalization(name="norm")
        self.dense = tf.keras.layers.Dense(
            self.units, activation=activation, name="dense",
            kernel_regularizer=tf.keras.regularizers.L2(self.l2) if self.l2 > 0 else None)

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
        cfg.update(units=self.units, activation=self.activation, l2=self.l2)
        return cfg
