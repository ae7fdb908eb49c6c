"""AdaSparse (Yang et al., CIKM 2022): domain-adaptive pruning of the neurons of one shared MLP.

"AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain Click-Through Rate
Prediction". A scenario embedding ``e_s`` (learned here from the scenario id) drives a
*pruner* in front of every layer ``l`` of a shared network (the input included):

    v_l   = W_l [e_s ; h_l]                        (no bias)
    pi_l  = binarization: sigmoid(alpha * v_l)
            scaling:      beta * sigmoid(v_l)
            fusion:       beta * sigmoid(alpha * v_l)
    pi_l  = pi_l * 1[pi_l >= epsilon]              (neurons under epsilon are pruned: 0)
    h_l   = pi_l * h_l

then ``h_{l+1} = Dropout(act(BN(W h_l + b)))`` on ``[e_s ; pruned input]`` for the first layer,
and ``logit = w^T h_L + b``. ``alpha`` (the soft-sign sharpness) grows by ``delta_alpha`` after
every training step, so the binarization form tends to a hard {0, 1} mask.

Defaults follow Scenario-Wise-Rec's MovieLens config (form fusion, epsilon 1e-2, alpha 1,
delta_alpha 1e-4, beta 2, MLP [32, 32] with BN, ReLU and dropout 0.2). Deviations:
Scenario-Wise-Rec multiplies by ``sign(pi - epsilon)``, which turns pruned neurons into
*negated* ones (-pi) and gives the binarization form no gradient; we zero them, as the paper's
pruning describes. The paper's optional sparsity-ratio regulariser is not included.
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register

FORMS = ("binarization", "scaling", "fusion")


@register("adasparse")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class AdaSparse(Backbone):
    """AdaSparse: one MLP whose neurons are re-weighted / pruned per example from the scenario."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (32, 32), form: str = "fusion",
                 epsilon: float = 1e-2, beta: float = 2.0, alpha: float = 1.0, delta_alpha: float = 1e-4,
                 scenario_embedding_dim: int = 16, batch_norm: bool = True, activation: str = "relu",
                 dropout: float = 0.2, **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "adasparse"
        self.hidden_units = chk.units(name, "hidden_units", hidden_units)
        self.form = chk.choice(name, "form", form, FORMS)
        self.epsilon = chk.positive_float(name, "epsilon", epsilon, allow_zero=True)
        self.beta = chk.positive_float(name, "beta", beta)
        self.alpha = chk.positive_float(name, "alpha", alpha)
        self.delta_alpha = chk.positive_float(name, "delta_alpha", delta_alpha, allow_zero=True)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        self.scenario_embedding = tf.keras.layers.Embedding(
            self.num_scenarios, self.scenario_embedding_dim, name="scenario_embedding")
        self.dense_layers = [tf.keras.layers.Dense(u, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)]
        self.norms = [tf.keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(len(self.hidden_units))] \
            if self.batch_norm else []
        self.act = tf.keras.activations.get(activation)
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None
        self.out = tf.keras.layers.Dense(1, name="logit")

    def build(self, input_shape: Any) -> None:
        """Create one pruner per layer input (the features first) and the annealed alpha."""
        widths = [int(input_shape[-1])] + self.hidden_units
        self.pruners = [tf.keras.layers.Dense(w, use_bias=False, name=f"pruner_{i}") for i, w in enumerate(widths)]
        # Non-trainable: saved with the weights, so a reloaded model prunes as the trained one did.
        self.alpha_var = self.add_weight(name="alpha", shape=(), trainable=False,
                                         initializer=tf.keras.initializers.Constant(self.alpha))
        super().build(input_shape)

    def factors(self, e: tf.Tensor, h: tf.Tensor, layer: int) -> tf.Tensor:
        """The weighting factors pi_l [B, width] of layer `layer`'s input `h` (0 = pruned)."""
        v = self.pruners[layer](tf.concat([e, h], axis=-1))
        if self.form == "binarization":
            pi = tf.sigmoid(self.alpha_var * v)
        elif self.form == "scaling":
            pi = self.beta * tf.sigmoid(v)
        else:
            pi = self.beta * tf.sigmoid(self.alpha_var * v)
        return pi * tf.cast(pi >= self.epsilon, pi.dtype)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        e = self.scenario_embedding(sid)
        h = tf.concat([e, self.factors(e, features, 0) * features], axis=-1)
        for i, dense in enumerate(self.dense_layers):
            h = dense(h)
            if self.norms:
                h = self.norms[i](h, training=training)
            h = self.act(h)
            if self.drop is not None:
                h = self.drop(h, training=training)
            h = self.factors(e, h, i + 1) * h
        if training and self.delta_alpha:
            self.alpha_var.assign_add(self.delta_alpha)
        return self.out(h)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, form=self.form, epsilon=self.epsilon, beta=self.beta,
                   alpha=self.alpha, delta_alpha=self.delta_alpha,
                   scenario_embedding_dim=self.scenario_embedding_dim, batch_norm=self.batch_norm,
                   activation=self.activation, dropout=self.dropout)
        return cfg
