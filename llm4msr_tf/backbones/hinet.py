"""HiNet (Zhou et al., ICDE 2023): hierarchical scenario then task information extraction.

"HiNet: Novel Multi-Scenario & Multi-Task Learning with Hierarchical Information Extraction"
(Meituan; official TF1 code github.com/mrchor/HiNet). With ``x = BN(features)``:

- subexpert integration (SEI):  ``SEI(x) = sum_j g_j MLP_j(x)``,  ``g = softmax(W_g x + b_g)``
  over ``n`` subexperts;
- scenario extraction layer:
  - scenario-shared expert:  ``E_sh = SEI_shared(x)``;
  - scenario-specific expert: ``E_s = SEI_s(x)`` for the example's scenario ``s``;
  - scenario-aware attentive network (SAN): ``a = softmax(MLP_a(e_s))`` over the scenarios,
    ``E_san = sum_{j != s} a_j SEI_j(x)`` (other scenarios' experts, weighted by attention
    from a scenario embedding ``e_s`` learned from the id);
  - ``z = [E_san ; E_s ; E_sh]``;
- task extraction layer: a CGC block (Tang et al. 2020) on ``z`` with ``num_task_experts``
  task-specific and ``num_task_shared_experts`` shared experts and a softmax gate; one task
  (CTR) here, so one gate and one tower: ``logit = MLP(tower_units)(CGC(z))``.

Defaults follow the official code (5 shared and 5 specific subexperts of [128, 64], SAN gate
[128, 64], 2 + 2 CGC experts of [128, 64], tower [128, 64], input batch norm). Deviations: its
gates put a ReLU before the softmax; ours are linear logits (as the paper's equations);
dropout defaults to 0 (the official 0.5 is ``dropout=0.5``); the SAN weights of the other
scenarios are not renormalised after the own scenario is masked out, as in the official code.
All subexperts of all scenarios run as one `ExpertBank` (one matmul per layer).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP
from llm4msr_tf.layers.expert_bank import ExpertBank


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class SubexpertIntegration(tf.keras.layers.Layer):
    """HiNet's SEI module for `num_groups` groups at once: each group mixes its own
    `num_subexperts` MLPs with its own softmax gate on the shared input -> [B, G, units[-1]]."""

    def __init__(self, num_groups: int = 1, num_subexperts: int = 5, units: Sequence[int] = (128, 64),
                 activation: str = "relu", dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_groups = chk.positive_int("SubexpertIntegration", "num_groups", num_groups)
        self.num_subexperts = chk.positive_int("SubexpertIntegration", "num_subexperts", num_subexperts)
        self.units = chk.units("SubexpertIntegration", "units", units)
        self.activation = activation
        self.dropout = chk.fraction("SubexpertIntegration", "dropout", dropout)
        G, n = self.num_groups, self.num_subexperts
        self.experts = ExpertBank(G * n, self.units, activation, dropout=self.dropout, name="subexperts")
        # A softmax over one subexpert is constantly 1: no gate (it would never learn).
        self.gates = tf.keras.layers.Dense(G * n, name="gates") if n > 1 else None

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, D] -> [B, G, units[-1]]."""
        G, n = self.num_groups, self.num_subexperts
        e = self.experts(x, training=training)  # [B, G*n, d]
        e = tf.reshape(e, [-1, G, n, e.shape[-1]])
        if self.gates is None:
            return e[:, :, 0]
        g = tf.nn.softmax(tf.reshape(self.gates(x), [-1, G, n]), axis=-1)
        return tf.einsum("bgn,bgnd->bgd", g, e)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_groups=self.num_groups, num_subexperts=self.num_subexperts, units=self.units,
                   activation=self.activation, dropout=self.dropout)
        return cfg


@register("hinet")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class HiNet(Backbone):
    """HiNet: scenario extraction (shared SEI, own SEI, SAN over the others) -> CGC -> tower."""

    def __init__(self, num_scenarios: int, num_shared_subexperts: int = 5, num_specific_subexperts: int = 5,
                 subexpert_units: Sequence[int] = (128, 64), scenario_embedding_dim: int = 16,
                 san_units: Sequence[int] = (128, 64), num_task_experts: int = 2, num_task_shared_experts: int = 2,
                 task_expert_units: Sequence[int] = (128, 64), tower_units: Sequence[int] = (128, 64),
                 input_batch_norm: bool = True, activation: str = "relu", dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "hinet"
        self.num_shared_subexperts = chk.positive_int(name, "num_shared_subexperts", num_shared_subexperts)
        self.num_specific_subexperts = chk.positive_int(name, "num_specific_subexperts", num_specific_subexperts)
        self.subexpert_units = chk.units(name, "subexpert_units", subexpert_units)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.san_units = chk.units(name, "san_units", san_units, allow_empty=True)
        self.num_task_experts = chk.positive_int(name, "num_task_experts", num_task_experts, 0)
        self.num_task_shared_experts = chk.positive_int(name, "num_task_shared_experts", num_task_shared_experts, 0)
        if self.num_task_experts + self.num_task_shared_experts < 1:
            raise ValueError("hinet: num_task_experts + num_task_shared_experts must be >= 1, got 0 experts")
        self.task_expert_units = chk.units(name, "task_expert_units", task_expert_units)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.input_batch_norm = bool(input_batch_norm)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        S = self.num_scenarios
        sei = dict(units=self.subexpert_units, activation=activation, dropout=self.dropout)
        self.input_bn = tf.keras.layers.BatchNormalization(name="input_bn") if self.input_batch_norm else None
        self.shared_sei = SubexpertIntegration(1, self.num_shared_subexperts, name="shared_sei", **sei)
        # Every scenario's SEI as one grouped module (one matmul per layer for all S x n subexperts).
        self.specific_sei = SubexpertIntegration(S, self.num_specific_subexperts, name="specific_sei", **sei)
        self.scenario_embedding = tf.keras.layers.Embedding(S, self.scenario_embedding_dim, name="scenario_embedding")
        self.san = MLP(self.san_units + [S], activation, output_activation=None, name="san")
        n_task = self.num_task_experts + self.num_task_shared_experts
        # One task: its specific and the shared CGC experts read the same z and share one gate.
        self.task_experts = ExpertBank(n_task, self.task_expert_units, activation, dropout=self.dropout,
                                       name="task_experts")
        self.task_gate = tf.keras.layers.Dense(n_task, name="task_gate") if n_task > 1 else None
        self.tower = MLP(self.tower_units + [1], activation, self.dropout, output_activation=None, name="tower")

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        S = self.num_scenarios
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        x = self.input_bn(features, training=training) if self.input_bn is not None else features
        shared = self.shared_sei(x, training=training)[:, 0]
        spec = self.specific_sei(x, training=training)  # [B, S, d]
        own = tf.gather(spec, sid, axis=1, batch_dims=1)
        attn = tf.nn.softmax(self.san(self.scenario_embedding(sid), training=training), axis=-1)  # [B, S]
        attn = attn * (1.0 - tf.one_hot(sid, S, dtype=attn.dtype))
        transfer = tf.einsum("bs,bsd->bd", attn, spec)
        z = tf.concat([transfer, own, shared], axis=-1)
        e = self.task_experts(z, training=training)
        h = tf.einsum("be,bed->bd", tf.nn.softmax(self.task_gate(z), axis=-1), e) if self.task_gate is not None \
            else e[:, 0]
        return self.tower(h, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_shared_subexperts=self.num_shared_subexperts,
                   num_specific_subexperts=self.num_specific_subexperts, subexpert_units=self.subexpert_units,
                   scenario_embedding_dim=self.scenario_embedding_dim, san_units=self.san_units,
                   num_task_experts=self.num_task_experts, num_task_shared_experts=self.num_task_shared_experts,
                   task_expert_units=self.task_expert_units, tower_units=self.tower_units,
                   input_batch_norm=self.input_batch_norm, activation=self.activation, dropout=self.dropout)
        return cfg
