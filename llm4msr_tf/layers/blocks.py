"""Dense building blocks shared by the backbones: MLP, a group of experts and a softmax gate."""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf

PACKAGE = "llm4msr_tf"


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MLP(tf.keras.layers.Layer):
    """A stack of Dense layers (activation, optional dropout); the last layer can be linear."""

    def __init__(
        self,
        units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        output_activation: Optional[str] = "same",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        # "same" keeps the hidden activation on the last layer; None makes it linear (logits).
        self.output_activation = output_activation
        self.dense_layers = []
        for i, u in enumerate(self.units):
            last = i == len(self.units) - 1
            act = activation if (not last or output_activation == "same") else output_activation
            self.dense_layers.append(tf.keras.layers.Dense(u, activation=act, name=f"dense_{i}"))
        self.dropout_layer = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        for i, layer in enumerate(self.dense_layers):
            x = layer(x)
            if self.dropout_layer is not None and i < len(self.dense_layers) - 1:
                x = self.dropout_layer(x, training=training)
        return x

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation, dropout=self.dropout,
                   output_activation=self.output_activation)
        return cfg


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class Experts(tf.keras.layers.Layer):
    """`num_experts` independent MLPs on the same input; returns their outputs stacked [B, E, d]."""

    def __init__(self, num_experts: int, units: Sequence[int], activation: str = "relu",
                 dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.experts = [
            MLP(self.units, activation=activation, dropout=dropout, name=f"expert_{i}")
            for i in range(self.num_experts)
        ]

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        return tf.stack([e(x, training=training) for e in self.experts], axis=1)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts, units=self.units, activation=self.activation,
                   dropout=self.dropout)
        return cfg


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class Gate(tf.keras.layers.Layer):
    """Softmax gate: mixes stacked expert outputs [B, E, d] with weights computed from an input."""

    def __init__(self, num_experts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.logits = tf.keras.layers.Dense(self.num_experts, name="gate_logits")

    def call(self, gate_input: tf.Tensor, expert_outputs: tf.Tensor) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        w = tf.nn.softmax(self.logits(gate_input), axis=-1)  # [B, E]
        return tf.einsum("be,bed->bd", w, expert_outputs)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts)
        return cfg
