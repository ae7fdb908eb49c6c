"""PEPNet (Chang et al., KDD 2023): EPNet's embedding gate feeding PPNet's gated tower.

"PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior
Information". The two halves together (equations in `epnet` and `ppnet`):

    O_ep      = GateNU_ep([e_s ; stop_gradient(E)]) * E                  (EPNet, scenario prior)
    delta_l   = GateNU_l([e'_s ; stop_gradient(O_ep)])                    (PPNet gates)
    H_1 = O_ep,   H_{l+1} = act((delta_l * H_l) W_l + b_l),   logit from the last layer

``e_s`` (EPNet's domain prior) and ``e'_s`` (PPNet's prior) are two scenario embeddings
learned from the id; the paper's PPNet prior is user / item / author id embeddings, which the
flat contract cannot single out, so the whole gated vector is used under stop-gradient, as the
paper's ``∅(O_ep)`` term.

One tower by default (``tower_per_scenario=False``): PEPNet has one tower per *task*, and the
scenario already personalises both gates; ``True`` gives each scenario its own gated tower.
Defaults: tower [128, 64, 32], scenario embeddings 16 wide, gamma 2 (Scenario-Wise-Rec's
EPNet / PPNet MovieLens configs; Scenario-Wise-Rec has no combined PEPNet).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import register
from llm4msr_tf.backbones.epnet import EmbeddingGate
from llm4msr_tf.backbones.ppnet import PPNet


@register("pepnet")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class PEPNet(PPNet):
    """PEPNet: scenario-gated embeddings (EPNet) -> tower(s) with per-layer Gate NUs (PPNet)."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (128, 64, 32),
                 scenario_embedding_dim: int = 16, gate_gamma: float = 2.0, gate_stop_gradient: bool = True,
                 tower_per_scenario: bool = False, ep_gate_hidden_units: Optional[int] = None,
                 activation: str = "relu", dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(num_scenarios, hidden_units=hidden_units, scenario_embedding_dim=scenario_embedding_dim,
                         gate_gamma=gate_gamma, gate_stop_gradient=gate_stop_gradient,
                         tower_per_scenario=tower_per_scenario, activation=activation, dropout=dropout, **kwargs)
        self.ep_gate_hidden_units = chk.optional_positive_int("pepnet", "ep_gate_hidden_units", ep_gate_hidden_units)
        self.ep_gate = EmbeddingGate(self.num_scenarios, self.scenario_embedding_dim, self.ep_gate_hidden_units,
                                     self.gate_gamma, name="ep_gate")

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        o_ep = self.ep_gate(features, scenario_id)
        return self.towers_logit(o_ep, self.prior(o_ep, scenario_id), scenario_id, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(ep_gate_hidden_units=self.ep_gate_hidden_units)
        return cfg
