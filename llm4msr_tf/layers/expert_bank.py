"""`ExpertBank`: many same-shaped MLPs (experts, per-scenario towers, gates) run as one.

The zoo's backbones hold tens of parallel sub-networks (HiNet: 5 shared + 5 per scenario + 4
task experts; SAR-Net: 8 + 2 per scenario; per-scenario towers and gates). As separate Keras
layers each costs a matmul, a bias add and an activation launch per layer; stacked, every layer
of the bank is one matmul: ``[B, D] x [D, E*out]`` when all experts read the same input, one
batched matmul when each expert has its own input ``[B, E, D]``.

Each layer is ``Dense -> (norm) -> activation (-> dropout)`` per expert with its own weights;
``norm`` is ``None``, ``"layer"`` (LayerNorm over the units, per-expert scale and shift) or
``"batch"`` (batch norm per expert and unit, moving statistics at inference), applied to every
layer that has an activation. ``output_activation=None`` makes the last layer linear (and
un-normalised), e.g. for logits.
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf

PACKAGE = "llm4msr_tf"
NORMS = (None, "layer", "batch")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ExpertBank(tf.keras.layers.Layer):
    """`num_experts` independent MLPs of widths `units`: [B, D] or [B, E, D] -> [B, E, units[-1]]."""

    def __init__(self, num_experts: int, units: Sequence[int], activation: str = "relu",
                 output_activation: Optional[str] = "same", norm: Optional[str] = None, dropout: float = 0.0,
                 momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"ExpertBank: num_experts must be >= 1, got {num_experts!r}")
        self.num_experts = int(num_experts)
        self.units = [int(u) for u in units]
        if not self.units or min(self.units) < 1:
            raise ValueError(f"ExpertBank: units must be a non-empty list of positive widths, got {units!r}")
        if norm not in NORMS:
            raise ValueError(f"ExpertBank: norm must be one of {list(NORMS)}, got {norm!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"ExpertBank: dropout must be in [0, 1), got {dropout!r}")
        self.activation = activation
        self.output_activation = output_activation
        self.norm = norm
        self.dropout = float(dropout)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def _layer_activation(self, i: int) -> Optional[str]:
        last = i == len(self.units) - 1
        return self.activation if (not last or self.output_activation == "same") else self.output_activation

    def build(self, input_shape: Any) -> None:
        """Per-expert kernels [E, in, out] (glorot-uniform per expert), biases and norm parameters."""
        shape = tf.TensorShape(input_shape)
        if shape.rank == 3 and shape[1] is not None and int(shape[1]) != self.num_experts:
            raise ValueError(f"ExpertBank: a [B, E, D] input needs E = num_experts = {self.num_experts}, "
                             f"got {shape.as_list()}")
        E, d = self.num_experts, int(shape[-1])
        self.kernels, self.biases, self.gammas, self.betas, self.moving = [], [], [], [], []
        for i, u in enumerate(self.units):
            limit = (6.0 / (d + u)) ** 0.5  # glorot-uniform of each expert's own [d, u] matrix
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(E, d, u),
                                                initializer=tf.keras.initializers.RandomUniform(-limit, limit)))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(E, u), initializer="zeros"))
            if self.norm is not None and self._layer_activation(i) is not None:
                self.gammas.append(self.add_weight(name=f"gamma_{i}", shape=(E, u), initializer="ones"))
                self.betas.append(self.add_weight(name=f"beta_{i}", shape=(E, u), initializer="zeros"))
                if self.norm == "batch":
                    self.moving.append((
                        self.add_weight(name=f"moving_mean_{i}", shape=(E, u), initializer="zeros", trainable=False),
                        self.add_weight(name=f"moving_variance_{i}", shape=(E, u), initializer="ones",
                                        trainable=False)))
            d = u
        super().build(input_shape)

    def _normalize(self, h: tf.Tensor, k: int, training: Optional[bool]) -> tf.Tensor:
        if self.norm == "layer":
            mean, var = tf.nn.moments(h, axes=[-1], keepdims=True)
        elif training:
            mean, var = tf.nn.moments(h, axes=[0])
            mm, mv = self.moving[k]
            m = self.momentum
            mm.assign(m * mm + (1 - m) * mean)
            mv.assign(m * mv + (1 - m) * var)
        else:
            mean, var = self.moving[k]
        return (h - mean) * tf.math.rsqrt(var + self.epsilon) * self.gammas[k] + self.betas[k]

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, D] (every expert reads it) or [B, E, D] (one input per expert) -> [B, E, units[-1]]."""
        h = x
        k = 0
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            # "bi,eio" is a single [B, D] x [D, E*out] matmul; "bei,eio" one batched matmul over E.
            h = tf.einsum("bi,eio->beo" if h.shape.rank == 2 else "bei,eio->beo", h, w) + b
            act = self._layer_activation(i)
            if act is None:
                continue
            if self.norm is not None:
                h = self._normalize(h, k, training)
                k += 1
            h = tf.keras.activations.get(act)(h)
            if self.drop is not None and i < len(self.units) - 1:
                h = self.drop(h, training=training)
        return h

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_experts=self.num_experts, units=self.units, activation=self.activation,
                   output_activation=self.output_activation, norm=self.norm, dropout=self.dropout,
                   momentum=self.momentum, epsilon=self.epsilon)
        return cfg


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class StackedBatchNorm(tf.keras.layers.Layer):
    """Batch norm of [B, E, d] with statistics and scale/shift per (expert, unit): E norms as one."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Any) -> None:
        """Parameters of shape [E, d]."""
        shape = (int(input_shape[-2]), int(input_shape[-1]))
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros", trainable=False)
        self.moving_var = self.add_weight(name="moving_variance", shape=shape, initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, h: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """[B, E, d] -> [B, E, d]: batch moments in training, moving moments at inference."""
        if training:
            mean, var = tf.nn.moments(h, axes=[0])
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1 - m) * mean)
            self.moving_var.assign(m * self.moving_var + (1 - m) * var)
        else:
            mean, var = self.moving_mean, self.moving_var
        return (h - mean) * tf.math.rsqrt(var + self.epsilon) * self.gamma + self.beta

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, epsilon=self.epsilon)
        return cfg
