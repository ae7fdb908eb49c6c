"""Feature embeddings built from the dataset spec: raw tf.Example features -> one flat vector.

Each feature of the spec becomes an `embedding_dim`-wide vector and all are concatenated
(in spec order) into ``[B, num_features * embedding_dim]``, the input of every backbone:

- string categorical: a `StringLookup` over the spec's training vocabulary inside the model
  (OOV -> index 0), so serving takes raw ids; or, with ``categorical_encoding="hash"``, a
  `Hashing` layer with ``hash_bins`` buckets (no vocabulary to ship, collisions allowed);
- int64 categorical: values are already indices in ``[0, vocab_size]`` (e.g. TFX Transform
  output, or ``scenario_id``); values outside that range map to index 0;
- numeric: a tiny dense projection of the scalar (a learned direction plus bias).
"""
from typing import Any, Dict, List, Optional, Sequence

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf


PACKAGE = "llm4msr_tf"
ENCODINGS = ("vocab", "hash")


def feature_descriptions(spec: Any, exclude: Sequence[str] = (), with_vocab: bool = True,
                         ) -> List[Dict[str, Any]]:
    """Plain-dict feature descriptions (name, kind, dtype, vocab_size, vocabulary) from a DatasetSpec.

    The layer keeps these dicts (not the spec) in its config so a saved model needs no data dir.
    """
    out = []
    names = {f.name for f in spec.features}
    for name in exclude:
        if name not in names:
            raise ValueError(
                f"exclude_features names {name!r}, which is not a feature of dataset "
                f"{spec.name!r}; features: {sorted(names)}")
    for f in spec.features:
        if f.name in exclude or f.name == spec.label:
            continue
        d: Dict[str, Any] = {"name": f.name, "kind": f.kind, "dtype": f.dtype,
                             "vocab_size": f.vocab_size}
        if f.kind == "categorical" and f.dtype == "string" and with_vocab:
            d["vocabulary"] = spec.vocab(f.name)
        out.append(d)
    return out


def _plain(f: Any) -> Dict[str, Any]:
    # Keras wraps list/dict attributes in trackable wrappers; configs must be plain JSON.
    out = {}
    for k, v in dict(f).items():
        if k.startswith("_"):
            continue
        out[k] = [str(x) for x in v] if k == "vocabulary" and v is not None else v
    return out


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FeatureEmbedding(tf.keras.layers.Layer):
    """Embeds a dict of raw parsed features (each [B]) into one float32 tensor [B, F * dim]."""

    def __init__(
        self,
        features: List[Dict[str, Any]],
        embedding_dim: int = 16,
        categorical_encoding: str = "vocab",
        hash_bins: int = 100_000,
        embeddings_regularizer: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if categorical_encoding not in ENCODINGS:
            raise ValueError(
                f"categorical_encoding {categorical_encoding!r} is not one of {ENCODINGS}")
        if not features:
            raise ValueError("FeatureEmbedding needs at least one feature")
        self.features = [dict(f) for f in features]
        self.embedding_dim = int(embedding_dim)
        self.categorical_encoding = categorical_encoding
        self.hash_bins = int(hash_bins)
        self.embeddings_regularizer = embeddings_regularizer
        reg = tf.keras.regularizers.l2(embeddings_regularizer) if embeddings_regularizer else None
        self.lookups: Dict[str, tf.keras.layers.Layer] = {}
        self.embeddings: Dict[str, tf.keras.layers.Layer] = {}
        self.projections: Dict[str, tf.keras.layers.Layer] = {}
        for f in self.features:
            name, kind, dtype = f["name"], f["kind"], f["dtype"]
            if kind == "numeric":
                self.projections[name] = tf.keras.layers.Dense(self.embedding_dim, name=f"num_{name}")
                continue
            if dtype == "string":
                if categorical_encoding == "hash":
                    self.lookups[name] = tf.keras.layers.Hashing(self.hash_bins, name=f"hash_{name}")
                    size = self.hash_bins
                else:
                    vocab = f.get("vocabulary")
                    if not vocab:
                        raise ValueError(
                            f"string feature {name!r} has no vocabulary; pass the DatasetSpec's "
                            "vocab (feature_descriptions) or use categorical_encoding='hash'")
                    # num_oov_indices=1 and no mask token: OOV -> 0, vocab -> 1..V.
                    self.lookups[name] = tf.keras.layers.StringLookup(
                        vocabulary=list(vocab), num_oov_indices=1, mask_token=None,
                        name=f"lookup_{name}")
                    size = len(vocab) + 1
            else:
                if not f.get("vocab_size"):
                    raise ValueError(f"int64 categorical feature {name!r} needs a vocab_size")
                size = int(f["vocab_size"]) + 1
            f["_table_size"] = size
            self.embeddings[name] = tf.keras.layers.Embedding(
                size, self.embedding_dim, embeddings_regularizer=reg, name=f"emb_{name}")

    @property
    def output_dim(self) -> int:
        """Width of the flat output: number of features times `embedding_dim`."""
        return len(self.features) * self.embedding_dim

    @property
    def feature_names(self) -> List[str]:
        """Names of the embedded features, in output order."""
        return [f["name"] for f in self.features]

    def call(self, inputs: Dict[str, tf.Tensor], precomputed: Optional[Dict[str, tf.Tensor]] = None,
             append: Sequence[tf.Tensor] = ()) -> tf.Tensor:
        """Forward pass (shapes in the class docstring).

        ``precomputed`` maps feature names to their embeddings [B, dim] when the caller already
        has them (the folded serving model gathers the user's embedding with its knowledge rows);
        ``append`` are [B, k] tensors concatenated after the embeddings in the same concat.
        """
        parts = []
        for f in self.features:
            name = f["name"]
            if precomputed and name in precomputed:
                parts.append(precomputed[name])
                continue
            if name not in inputs:
                raise ValueError(
                    f"input feature {name!r} is missing; the model expects {self.feature_names}")
            x = tf.reshape(inputs[name], [-1])
            if f["kind"] == "numeric":
                parts.append(self.projections[name](tf.cast(x, tf.float32)[:, None]))
                continue
            if f["dtype"] == "string":
                idx = self.lookups[name](x)
            else:
                idx = tf.cast(x, tf.int64)
                size = f["_table_size"]
                idx = tf.where((idx >= 0) & (idx < size), idx, tf.zeros_like(idx))
            parts.append(self.embeddings[name](idx))
        return tf.concat(parts + list(append), axis=-1)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(
            features=[_plain(f) for f in self.features],
            embedding_dim=self.embedding_dim, categorical_encoding=self.categorical_encoding,
            hash_bins=self.hash_bins, embeddings_regularizer=self.embeddings_regularizer)
        return cfg
