"""SAR-Net (Shen et al., CIKM 2021): scenario-aware ranking with a mixture of debias experts.

"SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair Recommendation in Hundreds of
Travel Scenarios". For an example of scenario ``s`` with features ``x``:

- scenario-specific linear transformation:  ``x_s = x * w_s + b_s``  (element-wise,
  ``w_s, b_s`` in R^D per scenario);
- mixture of experts: ``num_shared_experts`` experts shared by every scenario and
  ``num_specific_experts`` experts owned by scenario ``s``, all reading ``BN(x_s)``; each expert
  is ``Dense(expert_units)`` with a linear last layer (Scenario-Wise-Rec's ``DebiasExpertNet``
  is ``BN -> Linear(16)``);
- gate:  ``g = softmax(W_g x_s + b_g)`` over the shared and the scenario's own experts;
  ``h = sum_k g_k e_k(x_s)``;
- tower:  ``logit = MLP(tower_units)(h)``.

Defaults follow Scenario-Wise-Rec's MovieLens config (8 shared, 2 specific experts of width
16, a [32, 32] tower). Deviations: the paper's cross-scenario attention over user behaviour
sequences and its debias network over bias features (position etc.) need inputs the backbone
contract does not have (flat features only), so they are left out, as Scenario-Wise-Rec also
does; ``w_s, b_s`` start at ones / zeros (every scenario starts from the identity) instead of
Scenario-Wise-Rec's xavier / U(0, 1). Scenario-Wise-Rec gives every expert its own BN of the
same input: the batch statistics are then identical and each BN's scale and shift fold into
the expert's Dense, so one BN feeds all experts here (same function class, 1 norm instead of
``8 + 2 S``); all experts run as one `ExpertBank` matmul.
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP
from llm4msr_tf.layers.expert_bank import ExpertBank


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
        self.bn = tf.keras.layers.BatchNormalization(name="expert_bn") if self.expert_batch_norm else None
        # All experts in one bank: the ns shared ones, then scenario s's own at ns + s * nk + k.
        self.experts = ExpertBank(ns + S * nk, self.expert_units, activation, output_activation=None,
                                  name="experts")
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
        S, ns, nk = self.num_scenarios, self.num_shared_experts, self.num_specific_experts
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        xs = features * tf.gather(self.scenario_scale, sid) + tf.gather(self.scenario_shift, sid)
        xn = self.bn(xs, training=training) if self.bn is not None else xs
        every = self.experts(xn, training=training)  # [B, ns + S*nk, d]
        stacked = every[:, :ns]
        if nk:
            # Every scenario's experts on the batch, then each example keeps its own scenario's.
            spec = tf.reshape(every[:, ns:], [-1, S, nk, every.shape[-1]])
            stacked = tf.concat([stacked, tf.gather(spec, sid, axis=1, batch_dims=1)], axis=1)  # [B, ns + nk, d]
        if self.gate is None:
            return self.tower(stacked[:, 0], training=training)
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
