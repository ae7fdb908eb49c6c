"""PPNet, the parameter personalisation half of PEPNet (Chang et al., KDD 2023).

"PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior
Information" (PPNet itself first ran in Kuaishou's ranking). Every layer of a DNN tower has its
input scaled by a Gate NU (``gamma * sigmoid(W' ReLU(W p + b) + b')``, see
`llm4msr_tf.backbones.epnet.GateNU`) of personalised priors:

    delta_l   = GateNU_l(p),   p = [e_s ; stop_gradient(x)]
    O_l       = delta_l * H_l                     (H_1 = x, the flat features [B, D])
    H_{l+1}   = act(O_l W_l + b_l),   l = 1..L;   logit = O_{L+1} w + b

What the gate reads (the paper's user / item / author id embeddings are not separable inside
the contract's flat vector): ``p`` is the learned scenario embedding ``e_s`` and the whole
feature vector under stop-gradient (``gate_stop_gradient=True``, as PEPNet's ``∅(O_ep)``), so
the gates adapt the tower without pulling the embeddings toward the gates' objective; set
``gate_stop_gradient=False`` to let the gate gradients reach the embeddings too.

``tower_per_scenario=True`` (the default here, as Scenario-Wise-Rec's PPNet) gives each
scenario its own gated tower (PEPNet's towers are per task; with one task, the scenario is the
natural unit); ``False`` shares one tower and lets ``e_s`` in the gates carry the scenario.

Defaults follow Scenario-Wise-Rec's MovieLens config (tower [128, 64, 32], gamma 2).
Deviations: Scenario-Wise-Rec gates each layer's *output* and feeds its tower the gate input;
we gate each layer's input (the final layer's too), as the paper's equations do, and feed the
features. All towers and their gates run as `ExpertBank`s (one matmul per layer for all).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.expert_bank import ExpertBank


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class PPTowers(tf.keras.layers.Layer):
    """`num_towers` DNN towers whose every layer input is scaled by a Gate NU of the prior ``p``.

    All towers run together: per layer one `ExpertBank` for the towers' Gate NUs (on ``p``) and
    one for their dense layers. [B, D] input (or [B, T, D], one per tower), [B, P] prior ->
    logits [B, T, 1].
    """

    def __init__(self, num_towers: int = 1, hidden_units: Sequence[int] = (128, 64, 32), gamma: float = 2.0,
                 activation: str = "relu", dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_towers = chk.positive_int("PPTowers", "num_towers", num_towers)
        self.hidden_units = chk.units("PPTowers", "hidden_units", hidden_units, allow_empty=True)
        self.gamma = chk.positive_float("PPTowers", "gamma", gamma)
        self.activation = activation
        self.dropout = chk.fraction("PPTowers", "dropout", dropout)
        T = self.num_towers
        self.dense_layers = [ExpertBank(T, [u], activation, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)]
        self.dense_layers.append(ExpertBank(T, [1], output_activation=None, name="logit"))
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape: Any) -> None:
        """One Gate NU (hidden width = output width, as Scenario-Wise-Rec's) per tower and layer input."""
        widths = [int(input_shape[-1])] + self.hidden_units
        self.gates = [ExpertBank(self.num_towers, [w, w], "relu", output_activation=None, name=f"gate_{i}")
                      for i, w in enumerate(widths)]
        super().build(input_shape)

    def call(self, h: tf.Tensor, prior: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, D] (or [B, T, D]) input, [B, P] prior -> logits [B, T, 1]."""
        if h.shape.rank == 2:
            h = h[:, None, :]
        for i, (gate, dense) in enumerate(zip(self.gates, self.dense_layers)):
            delta = self.gamma * tf.sigmoid(gate(prior))  # [B, T, width of this layer's input]
            h = dense(delta * h)
            if self.drop is not None and i < len(self.hidden_units):
                h = self.drop(h, training=training)
        return h

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_towers=self.num_towers, hidden_units=self.hidden_units, gamma=self.gamma,
                   activation=self.activation, dropout=self.dropout)
        return cfg


@register("ppnet")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class PPNet(Backbone):
    """PPNet: gated DNN tower(s), gates from [scenario embedding ; stop_gradient(features)]."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (128, 64, 32),
                 scenario_embedding_dim: int = 16, gate_gamma: float = 2.0, gate_stop_gradient: bool = True,
                 tower_per_scenario: bool = True, activation: str = "relu", dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "ppnet"
        self.hidden_units = chk.units(name, "hidden_units", hidden_units, allow_empty=True)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.gate_gamma = chk.positive_float(name, "gate_gamma", gate_gamma)
        self.gate_stop_gradient = bool(gate_stop_gradient)
        self.tower_per_scenario = bool(tower_per_scenario)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        self.scenario_embedding = tf.keras.layers.Embedding(
            self.num_scenarios, self.scenario_embedding_dim, name="scenario_embedding")
        n = self.num_scenarios if self.tower_per_scenario else 1
        self.towers = PPTowers(n, self.hidden_units, self.gate_gamma, activation, self.dropout, name="towers")

    def prior(self, x: tf.Tensor, scenario_id: tf.Tensor) -> tf.Tensor:
        """The gates' input ``[e_s ; x]`` (x under stop-gradient unless gate_stop_gradient=False)."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        x = tf.stop_gradient(x) if self.gate_stop_gradient else x
        return tf.concat([self.scenario_embedding(sid), x], axis=-1)

    def towers_logit(self, h: tf.Tensor, prior: tf.Tensor, scenario_id: tf.Tensor,
                     training: Optional[bool] = None) -> tf.Tensor:
        """The example's own scenario tower (or the one shared tower) on input `h`."""
        logits = self.towers(h, prior, training=training)  # [B, T, 1]
        return logits[:, 0] if self.towers.num_towers == 1 else self.select(logits, scenario_id)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        return self.towers_logit(features, self.prior(features, scenario_id), scenario_id, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, scenario_embedding_dim=self.scenario_embedding_dim,
                   gate_gamma=self.gate_gamma, gate_stop_gradient=self.gate_stop_gradient,
                   tower_per_scenario=self.tower_per_scenario, activation=self.activation, dropout=self.dropout)
        return cfg
