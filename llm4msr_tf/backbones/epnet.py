"""EPNet, the embedding personalisation half of PEPNet (Chang et al., KDD 2023).

"PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior
Information". The Gate Neural Unit and EPNet's scenario gate on the embeddings:

- Gate NU:  ``x' = ReLU(W x + b)``,  ``delta = gamma * sigmoid(W' x' + b')``  in [0, gamma]
  (``gamma = 2``: a gate can amplify as well as damp);
- EPNet:  ``delta_domain = GateNU([e_s ; stop_gradient(E)])``,  ``O_ep = delta_domain * E``,
  where ``E`` is the flat feature vector [B, D] and ``e_s`` the scenario-side prior - here a
  scenario embedding learned from the id (the paper also uses per-scenario user/item
  statistics, which the contract does not carry);
- tower: ``logit = MLP(hidden_units)(O_ep)``.

Defaults follow Scenario-Wise-Rec's MovieLens config (MLP [128, 64, 32], scenario embedding 16,
Gate NU hidden width = its output width, gamma 2). Scenario-Wise-Rec's MLP has batch norm after
every layer; ours has none (as the other backbones here).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class GateNU(tf.keras.layers.Layer):
    """PEPNet's Gate Neural Unit: ``gamma * sigmoid(W' ReLU(W x + b) + b')``, width `units`."""

    def __init__(self, units: int, hidden_units: Optional[int] = None, gamma: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = chk.positive_int("GateNU", "units", units)
        self.hidden_units = chk.optional_positive_int("GateNU", "hidden_units", hidden_units)
        self.gamma = chk.positive_float("GateNU", "gamma", gamma)
        self.hidden = tf.keras.layers.Dense(self.hidden_units or self.units, activation="relu", name="hidden")
        self.out = tf.keras.layers.Dense(self.units, name="out")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """[B, C] -> gate values [B, units] in [0, gamma]."""
        return self.gamma * tf.sigmoid(self.out(self.hidden(x)))

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, hidden_units=self.hidden_units, gamma=self.gamma)
        return cfg


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class EmbeddingGate(tf.keras.layers.Layer):
    """EPNet's gate: ``GateNU([e_s ; stop_gradient(x)]) * x`` with a learned scenario embedding ``e_s``."""

    def __init__(self, num_scenarios: int, scenario_embedding_dim: int = 16, gate_hidden_units: Optional[int] = None,
                 gamma: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = chk.positive_int("EmbeddingGate", "num_scenarios", num_scenarios)
        self.scenario_embedding_dim = chk.positive_int("EmbeddingGate", "scenario_embedding_dim",
                                                       scenario_embedding_dim)
        self.gate_hidden_units = chk.optional_positive_int("EmbeddingGate", "gate_hidden_units", gate_hidden_units)
        self.gamma = chk.positive_float("EmbeddingGate", "gamma", gamma)
        self.scenario_embedding = tf.keras.layers.Embedding(
            self.num_scenarios, self.scenario_embedding_dim, name="scenario_embedding")

    def build(self, input_shape: Any) -> None:
        """Create the Gate NU once the feature width is known."""
        self.gate = GateNU(int(input_shape[-1]), self.gate_hidden_units, self.gamma, name="gate_nu")
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario_id: tf.Tensor) -> tf.Tensor:
        """[B, D] features, [B] scenario ids -> gated features O_ep [B, D]."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        e = self.scenario_embedding(sid)
        return self.gate(tf.concat([e, tf.stop_gradient(x)], axis=-1)) * x

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_scenarios=self.num_scenarios, scenario_embedding_dim=self.scenario_embedding_dim,
                   gate_hidden_units=self.gate_hidden_units, gamma=self.gamma)
        return cfg


@register("epnet")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class EPNet(Backbone):
    """EPNet: scenario-conditioned Gate NU on the feature embeddings, then one shared MLP."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (128, 64, 32),
                 scenario_embedding_dim: int = 16, gate_hidden_units: Optional[int] = None, gate_gamma: float = 2.0,
                 activation: str = "relu", dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "epnet"
        self.hidden_units = chk.units(name, "hidden_units", hidden_units, allow_empty=True)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.gate_hidden_units = chk.optional_positive_int(name, "gate_hidden_units", gate_hidden_units)
        self.gate_gamma = chk.positive_float(name, "gate_gamma", gate_gamma)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        self.ep_gate = EmbeddingGate(self.num_scenarios, self.scenario_embedding_dim, self.gate_hidden_units,
                                     self.gate_gamma, name="ep_gate")
        self.mlp = MLP(self.hidden_units + [1], activation, self.dropout, output_activation=None, name="mlp")

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        return self.mlp(self.ep_gate(features, scenario_id), training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, scenario_embedding_dim=self.scenario_embedding_dim,
                   gate_hidden_units=self.gate_hidden_units, gate_gamma=self.gate_gamma,
                   activation=self.activation, dropout=self.dropout)
        return cfg
