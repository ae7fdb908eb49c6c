"""SAR-Net (Shen et al., CIKM 2021): scenario-aware ranking with a mixture of debias experts.

"SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair Recommendation in Hundreds of
Travel Scenarios". For an example of scenario ``s`` with features ``x``:

- scenario-specific linear transformation:  ``x_s = x * w_s + b_s``  (element-wise,
  ``w_s, b_s`` in R^D per scenario);
- mixture of experts: ``num_shared_experts`` experts shared by every scenario and
  ``num_specific_experts`` experts owned by scenario ``s``, all reading ``x_s``; each expert
  is ``BN -> Dense(expert_units)`` (linear, as Scenario-Wise-Rec's ``DebiasExpertNet``);
- gate:  ``g = softmax(W_g x_s + b_g)`` over the shared and the scenario's own experts;
  ``h = sum_k g_k e_k(x_s)``;
- tower:  ``logit = MLP(tower_units)(h)``.

Defaults follow Scenario-Wise-Rec's MovieLens config (8 shared, 2 specific experts of width
16, a [32, 32] tower). Deviations: the paper's cross-scenario attention over user behaviour
sequences and its debias network over bias features (position etc.) need inputs the backbone
contract does not have (flat features only), so they are left out, as Scenario-Wise-Rec also
does; ``w_s, b_s`` start at ones / zeros (every scenario starts from the identity) instead of
Scenario-Wise-Rec's xavier / U(0, 1).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class DebiasExpert(tf.keras.layers.Layer):
    """One SAR-Net expert: optional batch norm, then an MLP whose last layer is linear."""

    def __init__(self, units: Sequence[int] = (16,), batch_norm: bool = True, activation: str = "relu",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = chk.units("DebiasExpert", "units", units)
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        self.bn = tf.keras.layers.BatchNormalization(name="bn") if self.batch_norm else None
        self.mlp = MLP(self.units, activation, output_activation=None, name="mlp")

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, D] -> [B, units[-1]]."""
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.mlp(x, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, batch_norm=self.batch_norm, activation=self.activation)
        return cfg


@register("sar_net")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class SARNet(Backbone):
    """SAR-Net: per-scenario feature transform -> shared + scenario experts, one gate -> tower."""

    def __init__(self, num_scenarios: int, num_shared_experts: int = 8, num_specific_experts: int = 2,
                 expert_units: Sequence[int] = (16,), expert_batch_norm: bool = True,
                 tower_units: Sequence[int] = (32, 32), activation: str = "relu", dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "sar_net"
        self.num_shared_experts = chk.positive_int(name, "num_shared_experts", num_shared_experts, 0)
        self.num_specific_experts = chk.positive_int(name, "num_specific_experts", num_specific_experts, 0)
        if self.num_shared_experts + self.num_specific_experts < 1:
            raise ValueError("sar_net: num_shared_experts + num_specific_experts must be >= 1, got 0 experts")
        self.expert_units = chk.units(name, "expert_units", expert_units)
        self.expert_batch_norm = bool(expert_batch_norm)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        S, ns, nk = self.num_scenarios, self.num_shared_experts, self.num_specific_experts
        expert = dict(units=self.expert_units, batch_norm=self.expert_batch_norm, activation=activation)
        self.shared_experts = [DebiasExpert(name=f"shared_expert_{i}", **expert) for i in range(ns)]
        # Flat list indexed [s * nk + k] (Keras' .keras saving does not walk nested lists).
        self.specific_experts = [DebiasExpert(name=f"s{s}_expert_{k}", **expert)
                                 for s in range(S) for k in range(nk)]
        # A softmax over a single expert is constantly 1: no gate then (it would never learn).
        self.gate = tf.keras.layers.Dense(ns + nk, name="gate") if ns + nk > 1 else None
        self.tower = MLP(self.tower_units + [1], activation, self.dropout, output_activation=None, name="tower")

    def build(self, input_shape: Any) -> None:
        """Create the per-scenario transform once the feature width D is known."""
        d = int(input_shape[-1])
        S = self.num_scenarios
        self.scenario_scale = self.add_weight(name="scenario_scale", shape=(S, d), initializer="ones")
        self.scenario_shift = self.add_weight(name="scenario_shift", shape=(S, d), initializer="zeros")
        super().build(input_shape)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the module docstring)."""
        S, nk = self.num_scenarios, self.num_specific_experts
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        xs = features * tf.gather(self.scenario_scale, sid) + tf.gather(self.scenario_shift, sid)
        experts = [e(xs, training=training) for e in self.shared_experts]
        if nk:
            # Every scenario's experts on the batch, then each example keeps its own scenario's.
            spec = tf.stack([e(xs, training=training) for e in self.specific_experts], axis=1)  # [B, S*nk, d]
            spec = tf.reshape(spec, [-1, S, nk, spec.shape[-1]])
            own = tf.gather(spec, sid, axis=1, batch_dims=1)  # [B, nk, d]
            experts = experts + tf.unstack(own, num=nk, axis=1)
        if self.gate is None:
            return self.tower(experts[0], training=training)
        stacked = tf.stack(experts, axis=1)  # [B, ns + nk, d]
        g = tf.nn.softmax(self.gate(xs), axis=-1)
        h = tf.einsum("be,bed->bd", g, stacked)
        return self.tower(h, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_shared_experts=self.num_shared_experts, num_specific_experts=self.num_specific_experts,
                   expert_units=self.expert_units, expert_batch_norm=self.expert_batch_norm,
                   tower_units=self.tower_units, activation=self.activation, dropout=self.dropout)
        return cfg
