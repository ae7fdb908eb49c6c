"""M3oE (Zhang et al., SIGIR 2024): STAR-style fusion, then shared and domain experts balanced by learned weights.

"M3oE: Multi-Domain Multi-Task Mixture-of Experts Recommendation Framework". The single-task
(CTR) form benchmarked by Scenario-Wise-Rec, for an example of scenario ``s``:

- multi-domain fusion (STAR layer + skip):
  ``u = MLP_ln(x (W_shared * W_s) + b_shared + b_s) + MLP_ln'(x)``, where ``MLP_ln`` is
  ``Dense -> LayerNorm -> ReLU`` layers (``star_units``);
- experts: ``num_experts`` shared experts ``F_i(u)`` and one expert per scenario ``D_j(u)``
  (``MLP_ln(expert_units)`` each);
- domain balance:  ``D~_s = w_bal D_s + (1 - w_bal) / (S - 1) * sum_{j != s} D_j``;
- fusion:  ``f_s = sum_i g_{s,i} F_i(u) + w_exp D~_s``,  ``g_s = softmax(W_s stop_gradient(u))``;
- tower:  ``logit = Dense(1)(ReLU(LN(Dense(tower_units)(f_s))))`` (one tower per scenario).

``w_bal = sigmoid(theta_bal)``, ``w_exp = sigmoid(theta_exp)`` are learned scalars (their
logits start at ``bal_init`` / ``exp_init``). Defaults follow Scenario-Wise-Rec's MovieLens
config (fcn_dims [128, 64, 64, 32] -> star_units [128, 64], expert_units [32]; 4 experts;
exp_d = bal_d = 1; tower width 32). Deviations: the paper learns the balance weights with a
bi-level AutoML search; like Scenario-Wise-Rec, we learn them jointly with the rest. The
scenario factor ``W_s`` starts at ones (STAR's init) instead of xavier. Experts and towers run
as `ExpertBank`s (one matmul per layer for all of them).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.backbones.star import StarDense
from llm4msr_tf.layers.expert_bank import ExpertBank


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class LayerNormMLP(tf.keras.layers.Layer):
    """``Dense -> LayerNorm -> activation`` for every width in `units` (M3oE's ``Mlp_N``)."""

    def __init__(self, units: Sequence[int], activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = chk.units("LayerNormMLP", "units", units, allow_empty=True)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)
        self.dense_layers = [tf.keras.layers.Dense(u, name=f"dense_{i}") for i, u in enumerate(self.units)]
        self.norms = [tf.keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_{i}") for i in range(len(self.units))]

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """[B, D] -> [B, units[-1]] (identity when `units` is empty)."""
        for dense, norm in zip(self.dense_layers, self.norms):
            x = self.act(norm(dense(x)))
        return x

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation)
        return cfg


@register("m3oe")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class M3oE(Backbone):
    """M3oE: STAR fusion + skip -> shared experts (per-scenario gates) + balanced domain experts -> towers."""

    def __init__(self, num_scenarios: int, star_units: Sequence[int] = (128, 64), expert_units: Sequence[int] = (32,),
                 num_experts: int = 4, tower_units: int = 32, exp_init: float = 1.0, bal_init: float = 1.0,
                 activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "m3oe"
        self.star_units = chk.units(name, "star_units", star_units)
        self.expert_units = chk.units(name, "expert_units", expert_units)
        self.num_experts = chk.positive_int(name, "num_experts", num_experts)
        self.tower_units = chk.positive_int(name, "tower_units", tower_units)
        self.exp_init = float(exp_init)
        self.bal_init = float(bal_init)
        self.activation = activation
        S = self.num_scenarios
        self.star = StarDense(self.star_units[0], S, None, name="star")
        self.star_mlp = LayerNormMLP(self.star_units[1:], activation, name="star_mlp")
        self.skip = LayerNormMLP([self.star_units[-1]], activation, name="skip")
        # The shared experts then one per scenario, in one bank (one matmul per layer for all).
        self.experts = ExpertBank(self.num_experts + S, self.expert_units, activation, norm="layer",
                                  epsilon=1e-5, name="experts")
        self.gates = tf.keras.layers.Dense(S * self.num_experts, name="gates")  # S softmax gates at once
        # Per-scenario towers: Dense -> LN -> ReLU -> Dense(1), each reading its own scenario's f_s.
        self.towers = ExpertBank(S, [self.tower_units, 1], activation, output_activation=None, norm="layer",
                                 epsilon=1e-5, name="towers")

    def build(self, input_shape: Any) -> None:
        """Create the two balance logits."""
        self.exp_logit = self.add_weight(name="exp_logit", shape=(),
                                         initializer=tf.keras.initializers.Constant(self.exp_init))
        self.bal_logit = self.add_weight(name="bal_logit", shape=(),
                                         initializer=tf.keras.initializers.Constant(self.bal_init))
        super().build(input_shape)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        S = self.num_scenarios
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        u = self.star_mlp(self.star(features, sid)) + self.skip(features)
        every = self.experts(u)  # [B, E + S, d]
        shared, domain = every[:, :self.num_experts], every[:, self.num_experts:]
        w_bal, w_exp = tf.sigmoid(self.bal_logit), tf.sigmoid(self.exp_logit)
        if S > 1:
            others = (tf.reduce_sum(domain, axis=1, keepdims=True) - domain) / float(S - 1)
            balanced = w_bal * domain + (1.0 - w_bal) * others  # [B, S, d]: row j is D~_j
        else:
            balanced = domain
        g = tf.nn.softmax(tf.reshape(self.gates(tf.stop_gradient(u)), [-1, S, self.num_experts]), axis=-1)
        fused = tf.einsum("bse,bed->bsd", g, shared) + w_exp * balanced  # f_s for every scenario s
        return self.select(self.towers(fused), scenario_id)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(star_units=self.star_units, expert_units=self.expert_units, num_experts=self.num_experts,
                   tower_units=self.tower_units, exp_init=self.exp_init, bal_init=self.bal_init,
                   activation=self.activation)
        return cfg
