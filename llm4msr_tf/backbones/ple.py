"""PLE (Tang et al., RecSys 2020) for scenarios: shared + scenario-specific experts, progressive levels.

Each level (a CGC block) has ``num_shared_experts`` shared experts and ``num_specific_experts``
per scenario. Scenario s's gate mixes its own experts and the shared ones; below the last
level a shared gate mixes all experts to feed the next level's shared branch.
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP, Experts, Gate, build_in_scope, build_mlp, dense_group


@register("ple")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class PLE(Backbone):
    """Progressive layered extraction: ``num_levels`` CGC levels, then one tower per scenario."""

    def __init__(self, num_scenarios: int, num_levels: int = 2, num_shared_experts: int = 2,
                 num_specific_experts: int = 1, expert_units: Sequence[int] = (64,),
                 tower_units: Sequence[int] = (32,), activation: str = "relu", dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "ple"
        self.num_levels = chk.positive_int(name, "num_levels", num_levels)
        self.num_shared_experts = chk.positive_int(name, "num_shared_experts", num_shared_experts, 0)
        self.num_specific_experts = chk.positive_int(name, "num_specific_experts", num_specific_experts, 0)
        if self.num_shared_experts + self.num_specific_experts < 1:
            # Each gate mixes shared + specific experts: with none there is nothing to mix.
            raise ValueError(f"{name}: num_shared_experts + num_specific_experts must be >= 1, got "
                             f"{self.num_shared_experts} + {self.num_specific_experts}")
        self.expert_units = chk.units(name, "expert_units", expert_units)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        S, ns, nk = self.num_scenarios, self.num_shared_experts, self.num_specific_experts
        self.shared_experts, self.specific_experts, self.specific_gates, self.shared_gates = [], [], [], []
        for lvl in range(self.num_levels):
            self.shared_experts.append(Experts(ns, self.expert_units, activation, dropout, name=f"l{lvl}_shared"))
            # Flat lists indexed [lvl * S + s]: Keras' .keras saving does not walk nested lists.
            self.specific_experts.extend(Experts(nk, self.expert_units, activation, dropout,
                                                 name=f"l{lvl}_s{s}") for s in range(S))
            self.specific_gates.extend(Gate(nk + ns, name=f"l{lvl}_gate_s{s}") for s in range(S))
            if lvl < self.num_levels - 1:
                self.shared_gates.append(Gate(S * nk + ns, name=f"l{lvl}_gate_shared"))
        self.towers = [MLP(self.tower_units + [1], activation, dropout, output_activation=None,
                           name=f"tower_{s}") for s in range(S)]

    FUSE = True  # one matmul for the layers that read the same input, in training

    def build(self, input_shape: Any) -> None:
        """Build every expert, gate and tower (call() reads their kernels directly), in the order
        their calls would (so a seed gives the same initial weights as calling them one by one)."""
        S = self.num_scenarios
        inner = tf.TensorShape(input_shape)[:-1].concatenate([self.expert_units[-1]])
        for lvl in range(self.num_levels):
            shape = input_shape if lvl == 0 else inner
            build_in_scope(self.shared_experts[lvl], shape)
            for s in range(S):
                build_in_scope(self.specific_experts[lvl * S + s], shape)
            for s in range(S):
                build_in_scope(self.specific_gates[lvl * S + s], shape)
            if lvl < self.num_levels - 1:
                build_in_scope(self.shared_gates[lvl], shape)
        for tower in self.towers:
            build_mlp(tower, inner)
        super().build(input_shape)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring).

        In training, layers that read the same input run as one matmul (`dense_group`): on the
        first level every expert and gate reads the features; on later levels each scenario's
        experts and gate read its input.
        """
        S = self.num_scenarios
        fuse = bool(training) and self.FUSE
        spec_in = [features] * S
        shared_in = features
        for lvl in range(self.num_levels):
            shared_x = self.shared_experts[lvl]
            spec_x = [self.specific_experts[lvl * S + s] for s in range(S)]
            gates = [self.specific_gates[lvl * S + s] for s in range(S)]
            shared_gate = self.shared_gates[lvl] if lvl < self.num_levels - 1 else None
            shared_layers = shared_x.first_layers() + ([shared_gate.logits] if shared_gate else [])
            spec_layers = [x.first_layers() + [g.logits] for x, g in zip(spec_x, gates)]
            if lvl == 0:  # one matmul for everything
                flat = dense_group(features, shared_layers + [l for group in spec_layers for l in group], fuse=fuse)
                shared_out, pos = flat[:len(shared_layers)], len(shared_layers)
                spec_out = []
                for group in spec_layers:
                    spec_out.append(flat[pos:pos + len(group)])
                    pos += len(group)
            else:
                shared_out = dense_group(shared_in, shared_layers, fuse=fuse)
                spec_out = [dense_group(x_in, group, fuse=fuse) for x_in, group in zip(spec_in, spec_layers)]
            ns = shared_x.num_experts
            shared_e = shared_x.finish(shared_out[:ns], training=training) if ns else None  # [B, ns, d]
            spec_e = [x.finish(o[:-1], training=training) if x.num_experts else None for x, o in zip(spec_x, spec_out)]
            new_spec = [g.mix(o[-1], tf.concat([e for e in (spec_e[s], shared_e) if e is not None], axis=1))
                        for s, (g, o) in enumerate(zip(gates, spec_out))]
            if shared_gate is not None:
                shared_in = shared_gate.mix(shared_out[-1], tf.concat(
                    [e for e in spec_e + [shared_e] if e is not None], axis=1))
            spec_in = new_spec
        outs = [self.towers[s](spec_in[s], training=training) for s in range(S)]
        return self.select(tf.stack(outs, axis=1), scenario_id)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_levels=self.num_levels, num_shared_experts=self.num_shared_experts,
                   num_specific_experts=self.num_specific_experts, expert_units=self.expert_units,
                   tower_units=self.tower_units, activation=self.activation, dropout=self.dropout)
        return cfg
