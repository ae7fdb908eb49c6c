"""MMoE (Ma et al., KDD 2018) for scenarios: shared experts, one softmax gate and tower per scenario."""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP, Experts, Gate, build_in_scope, build_mlp, dense_group


@register("mmoe")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class MMoE(Backbone):
    """Multi-gate mixture of experts: experts shared by all scenarios, a gate per scenario."""

    def __init__(self, num_scenarios: int, num_experts: int = 4, expert_units: Sequence[int] = (64,),
                 tower_units: Sequence[int] = (32,), activation: str = "relu", dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "mmoe"
        self.num_experts = chk.positive_int(name, "num_experts", num_experts)
        self.expert_units = chk.units(name, "expert_units", expert_units)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        self.experts = Experts(self.num_experts, self.expert_units, activation, dropout, name="experts")
        self.gates = [Gate(self.num_experts, name=f"gate_{s}") for s in range(self.num_scenarios)]
        self.towers = [MLP(self.tower_units + [1], activation, dropout, output_activation=None,
                           name=f"tower_{s}") for s in range(self.num_scenarios)]

    FUSE = True  # one matmul for the layers that read the same input, in training

    def build(self, input_shape: Any) -> None:
        """Build the experts and gates (call() reads their kernels directly), in the order their
        calls would (so a seed gives the same initial weights as calling them one by one)."""
        build_in_scope(self.experts, input_shape)
        expert_shape = tf.TensorShape(input_shape)[:-1].concatenate([self.expert_units[-1]])
        for gate, tower in zip(self.gates, self.towers):
            build_in_scope(gate, input_shape)
            build_mlp(tower, expert_shape)
        super().build(input_shape)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring).

        Every expert's first layer and every gate read the features: in training one matmul for
        all of them (`dense_group`).
        """
        first = dense_group(features, self.experts.first_layers() + [g.logits for g in self.gates],
                            fuse=bool(training) and self.FUSE)
        e = self.experts.finish(first[:self.num_experts], training=training)  # [B, E, d]
        outs = [tower(gate.mix(logits, e), training=training)
                for gate, logits, tower in zip(self.gates, first[self.num_experts:], self.towers)]
        return self.select(tf.stack(outs, axis=1), scenario_id)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts, expert_units=self.expert_units,
                   tower_units=self.tower_units, activation=self.activation, dropout=self.dropout)
        return cfg
