"""Dense building blocks shared by the backbones: MLP, a group of experts and a softmax gate.

Speed: layers that read the same input (every expert's first layer and every gate of MMoE, the
first PLE level) can run as one matmul with their kernels side by side (`dense_group`); the
weights stay in their own Dense layers (same variables, names and checkpoints), built under the
name scopes their own calls would use (`build_in_scope`).
"""
from typing import Any, Dict, List, Optional, Sequence

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf

PACKAGE = "llm4msr_tf"


def build_in_scope(layer: tf.keras.layers.Layer, input_shape: Any, *scopes: str) -> None:
    """Build `layer` (if not built) under ``scopes`` + its own name, as calling it there would."""
    if layer.built:
        return
    if scopes:
        with tf.name_scope(scopes[0]):
            return build_in_scope(layer, input_shape, *scopes[1:])
    with tf.name_scope(layer.name):
        layer.build(tf.TensorShape(input_shape))
    layer.built = True


def build_mlp(mlp: "MLP", input_shape: Any, *scopes: str) -> None:
    """Build an `MLP`'s Dense layers in order (under ``scopes`` + the MLP's name), as its call would."""
    shape = tf.TensorShape(input_shape)
    for layer in mlp.dense_layers:
        build_in_scope(layer, shape, *scopes, mlp.name)
        shape = shape[:-1].concatenate([layer.units])
    mlp.built = True


def dense_group(x: tf.Tensor, layers: Sequence[tf.keras.layers.Layer], fuse: bool = True) -> List[tf.Tensor]:
    """Each built Dense layer's output on the same input x, from one matmul over their kernels side by side.

    ``fuse=False`` runs them one by one (the same numbers). Backbones fuse in training only: there
    the one matmul (and its one gradient matmul) wins; at inference the per-call concat of the
    kernels costs more than it saves at small batches, while separate variables' matmuls reuse
    their prepared weights.
    """
    if len(layers) <= 1 or not fuse:
        return [layer(x) for layer in layers]
    kernel = tf.concat([layer.kernel for layer in layers], axis=1)
    y = tf.matmul(x, kernel)
    if all(layer.use_bias for layer in layers):
        y = tf.nn.bias_add(y, tf.concat([layer.bias for layer in layers], axis=0))
    elif any(layer.use_bias for layer in layers):
        raise ValueError("dense_group: every layer or none must have a bias")
    outs = tf.split(y, [layer.units for layer in layers], axis=-1)
    return [layer.activation(o) for layer, o in zip(layers, outs)]


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

    def build(self, input_shape: Any) -> None:
        """Build every expert's Dense layers under the names their own calls would give them."""
        for e in self.experts:
            build_mlp(e, input_shape)
        super().build(input_shape)

    def first_layers(self) -> List[tf.keras.layers.Layer]:
        """Every expert's first Dense layer (they all read the experts' input)."""
        return [e.dense_layers[0] for e in self.experts]

    def finish(self, first: Sequence[tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
        """The stacked outputs [B, E, d] from each expert's first-layer output (the rest of each MLP)."""
        outs = []
        for e, h in zip(self.experts, first):
            for i, layer in enumerate(e.dense_layers):
                if i:
                    h = layer(h)
                if e.dropout_layer is not None and i < len(e.dense_layers) - 1:
                    h = e.dropout_layer(h, training=training)
            outs.append(h)
        return tf.stack(outs, axis=1)

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring); in training the experts' first layers in one matmul."""
        return self.finish(dense_group(x, self.first_layers(), fuse=bool(training)), training=training)

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

    def build(self, input_shape: Any) -> None:
        """Build the logits layer for the gate input's width."""
        build_in_scope(self.logits, input_shape)
        super().build(input_shape)

    def mix(self, logits: tf.Tensor, expert_outputs: tf.Tensor) -> tf.Tensor:
        """The experts [B, E, d] mixed by ``softmax(logits)`` [B, E] -> [B, d]."""
        w = tf.nn.softmax(logits, axis=-1)
        return tf.einsum("be,bed->bd", w, expert_outputs)

    def call(self, gate_input: tf.Tensor, expert_outputs: tf.Tensor) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        return self.mix(self.logits(gate_input), expert_outputs)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts)
        return cfg
