"""M2M (Zhang et al., WSDM 2022): expert views mixed by meta attention, then a meta tower.

"Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach for Advertiser
Modeling". A scenario embedding ``e_s`` (learned here from the scenario id) is turned into a
*scenario knowledge* vector ``k_s = MLP_k(e_s)`` and a *task view* ``t_s = MLP_t(e_s)``; the
meta units generate weights from ``k_s``:

- encoder: a Transformer encoder over the feature tokens (``num_transformer_layers`` post-LN
  layers, ``num_heads`` heads, feed-forward width ``transformer_ff_units``), flattened to
  ``z`` [B, D];
- expert views: ``E_i = LeakyReLU(W_i z + b_i)``, ``i = 1..num_experts`` (width ``expert_units``);
- meta attention: ``a_i = v^T LeakyReLU([E_i ; t_s] W_a(k_s) + b_a(k_s))``,
  ``alpha = softmax(a)``, ``R = sum_i alpha_i E_i`` where ``W_a(k_s)`` [2d, 2d] and
  ``b_a(k_s)`` [2d] are linear functions of ``k_s`` (the meta unit) and ``v`` starts at ones;
- meta tower (``meta_tower_layers`` residual meta units):
  ``R <- LeakyReLU(R W_l(k_s) + b_l(k_s)) + R``;
- output: ``logit = MLP(tower_units)(R)``.

Tokens: the backbone contract gives a flat [B, D] vector, so ``field_dim`` says how to cut it
into tokens: set it to the model's ``embedding_dim`` (every feature embedding is that wide) to
attend over features, as the ready configs do. ``field_dim=None`` treats the whole vector as
one token (attention over a single token reduces to a linear map plus the feed-forward block).

Defaults follow Scenario-Wise-Rec's MovieLens config (4 experts of width 16, 2 encoder layers
with 4 heads and feed-forward 16, a [64, 32] output MLP, LeakyReLU 0.1). Deviations: the paper
encodes advertiser behaviour sequences, which the contract does not carry, so the encoder
reads the feature tokens; Scenario-Wise-Rec runs a full encoder-decoder ``nn.Transformer`` on
the [B, D] matrix, which attends across the *batch* - we use an encoder over each example's own
tokens. Generated weights are linear in ``k_s`` (Scenario-Wise-Rec adds BN + LeakyReLU). As
``k_s`` depends only on the scenario, the generated weights are computed once per scenario, each
example is multiplied by all S of them in one matmul and keeps its own scenario's product (same
result, far faster than per-example weight matrices).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP
from llm4msr_tf.layers.expert_bank import ExpertBank


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class TransformerEncoderBlock(tf.keras.layers.Layer):
    """One post-LN Transformer encoder layer (PyTorch's default): attention + feed-forward, residuals."""

    def __init__(self, num_heads: int = 4, ff_units: int = 16, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = chk.positive_int("TransformerEncoderBlock", "num_heads", num_heads)
        self.ff_units = chk.positive_int("TransformerEncoderBlock", "ff_units", ff_units)
        self.dropout = chk.fraction("TransformerEncoderBlock", "dropout", dropout)

    def build(self, input_shape: Any) -> None:
        """Create the sub-layers once the token width is known."""
        width = int(input_shape[-1])
        self.attention = tf.keras.layers.MultiHeadAttention(
            self.num_heads, max(1, width // self.num_heads), dropout=self.dropout, name="attention")
        self.norm1 = tf.keras.layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.ff1 = tf.keras.layers.Dense(self.ff_units, activation="relu", name="ff1")
        self.ff2 = tf.keras.layers.Dense(width, name="ff2")
        self.norm2 = tf.keras.layers.LayerNormalization(epsilon=1e-5, name="norm2")
        super().build(input_shape)

    def call(self, tokens: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, T, w] -> [B, T, w]."""
        h = self.norm1(tokens + self.attention(tokens, tokens, training=training))
        return self.norm2(h + self.ff2(self.ff1(h)))

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_heads=self.num_heads, ff_units=self.ff_units, dropout=self.dropout)
        return cfg


@register("m2m")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class M2M(Backbone):
    """M2M: Transformer encoder -> expert views -> meta attention -> residual meta tower -> MLP."""

    def __init__(self, num_scenarios: int, num_experts: int = 4, expert_units: int = 16,
                 field_dim: Optional[int] = None, num_transformer_layers: int = 2, num_heads: int = 4,
                 transformer_ff_units: int = 16, scenario_embedding_dim: int = 16, meta_tower_layers: int = 1,
                 tower_units: Sequence[int] = (64, 32), leaky_slope: float = 0.1, dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "m2m"
        self.num_experts = chk.positive_int(name, "num_experts", num_experts)
        self.expert_units = chk.positive_int(name, "expert_units", expert_units)
        self.field_dim = chk.optional_positive_int(name, "field_dim", field_dim)
        self.num_transformer_layers = chk.positive_int(name, "num_transformer_layers", num_transformer_layers, 0)
        self.num_heads = chk.positive_int(name, "num_heads", num_heads)
        self.transformer_ff_units = chk.positive_int(name, "transformer_ff_units", transformer_ff_units)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.meta_tower_layers = chk.positive_int(name, "meta_tower_layers", meta_tower_layers, 0)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.leaky_slope = chk.positive_float(name, "leaky_slope", leaky_slope, allow_zero=True)
        self.dropout = chk.fraction(name, "dropout", dropout)
        d, S = self.expert_units, self.num_scenarios
        self.encoder = [TransformerEncoderBlock(self.num_heads, self.transformer_ff_units, self.dropout,
                                                name=f"encoder_{i}") for i in range(self.num_transformer_layers)]
        self.experts = ExpertBank(self.num_experts, [d], output_activation=None, name="experts")  # one matmul
        self.scenario_embedding = tf.keras.layers.Embedding(S, self.scenario_embedding_dim, name="scenario_embedding")
        self.knowledge_mlp = tf.keras.layers.Dense(d, name="scenario_knowledge")
        self.task_mlp = tf.keras.layers.Dense(d, name="task_view")
        # Meta units: weights and biases generated (linearly) from the scenario knowledge.
        self.attention_w = tf.keras.layers.Dense(4 * d * d, name="meta_attention_w")
        self.attention_b = tf.keras.layers.Dense(2 * d, name="meta_attention_b")
        self.tower_w = [tf.keras.layers.Dense(d * d, name=f"meta_tower_w_{i}") for i in range(self.meta_tower_layers)]
        self.tower_b = [tf.keras.layers.Dense(d, name=f"meta_tower_b_{i}") for i in range(self.meta_tower_layers)]
        self.output_mlp = MLP(self.tower_units + [1], "relu", self.dropout, output_activation=None, name="output_mlp")

    def build(self, input_shape: Any) -> None:
        """Check the token layout and create the attention vector v."""
        width = int(input_shape[-1])
        if self.field_dim is not None and width % self.field_dim:
            raise ValueError(
                f"m2m: field_dim={self.field_dim} does not divide the feature width {width}; set field_dim to "
                "the model's embedding_dim (each feature embedding is that wide) or to None (one token)")
        self.v = self.add_weight(name="attention_v", shape=(2 * self.expert_units,), initializer="ones")
        super().build(input_shape)

    def _act(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.leaky_relu(x, alpha=self.leaky_slope)

    @staticmethod
    def _own(per_scenario: tf.Tensor, sid: tf.Tensor) -> tf.Tensor:
        """[B, S, ...] -> [B, ...]: each example's own scenario slice."""
        return tf.gather(per_scenario, sid, axis=1, batch_dims=1)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        d, S = self.expert_units, self.num_scenarios
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        width = features.shape[-1]
        z = features
        if self.encoder:
            fd = self.field_dim or width
            tokens = tf.reshape(features, [-1, width // fd, fd])
            for block in self.encoder:
                tokens = block(tokens, training=training)
            z = tf.reshape(tokens, [-1, width])
        experts = self._act(self.experts(z))  # [B, E, d]
        # Everything generated from the scenario is computed per scenario, then gathered.
        e_all = self.scenario_embedding(tf.range(S))  # [S, e]
        k_all = self._act(self.knowledge_mlp(e_all))  # [S, d]
        t = tf.gather(self._act(self.task_mlp(e_all)), sid)  # [B, d]
        w_att = tf.reshape(self.attention_w(k_all), [S, 2 * d, 2 * d])
        b_att = tf.gather(self.attention_b(k_all), sid)  # [B, 2d]
        meta_in = tf.concat([experts, tf.repeat(t[:, None, :], self.num_experts, axis=1)], axis=-1)
        # x W(k_s) for every scenario in one plain matmul, then each example keeps its own s: on
        # CPU this beats a batched matmul of B tiny per-example matrices by far.
        h = self._own(tf.einsum("bei,sio->bseo", meta_in, w_att), sid)  # [B, E, 2d]
        h = self._act(h + b_att[:, None, :])
        alpha = tf.nn.softmax(tf.einsum("beo,o->be", h, self.v), axis=-1)
        r = tf.einsum("be,bed->bd", alpha, experts)
        for wl, bl in zip(self.tower_w, self.tower_b):
            w = tf.reshape(wl(k_all), [S, d, d])
            r = self._act(self._own(tf.einsum("bi,sio->bso", r, w), sid) + tf.gather(bl(k_all), sid)) + r
        return self.output_mlp(r, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts, expert_units=self.expert_units, field_dim=self.field_dim,
                   num_transformer_layers=self.num_transformer_layers, num_heads=self.num_heads,
                   transformer_ff_units=self.transformer_ff_units,
                   scenario_embedding_dim=self.scenario_embedding_dim, meta_tower_layers=self.meta_tower_layers,
                   tower_units=self.tower_units, leaky_slope=self.leaky_slope, dropout=self.dropout)
        return cfg
