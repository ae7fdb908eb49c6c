"""Shared-Bottom: one MLP shared by all scenarios, then one tower per scenario."""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP


@register("shared_bottom")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class SharedBottom(Backbone):
    """Shared-Bottom multi-task/multi-scenario model: shared MLP -> per-scenario tower -> logit."""

    def __init__(self, num_scenarios: int, bottom_units: Sequence[int] = (128, 64),
                 tower_units: Sequence[int] = (32,), activation: str = "relu",
                 dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "shared_bottom"
        self.bottom_units = chk.units(name, "bottom_units", bottom_units, allow_empty=True)
        self.tower_units = chk.units(name, "tower_units", tower_units, allow_empty=True)
        self.activation = activation
        self.dropout = chk.fraction(name, "dropout", dropout)
        self.bottom = MLP(self.bottom_units, activation, dropout, name="bottom")
        self.towers = [MLP(self.tower_units + [1], activation, dropout, output_activation=None,
                           name=f"tower_{s}") for s in range(self.num_scenarios)]

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        h = self.bottom(features, training=training)
        stacked = tf.stack([t(h, training=training) for t in self.towers], axis=1)  # [B, S, 1]
        return self.select(stacked, scenario_id)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(bottom_units=self.bottom_units, tower_units=self.tower_units,
                   activation=self.activation, dropout=self.dropout)
        return cfg
