"""STAR (Sheng et al., CIKM 2021): star topology FCN, partitioned normalization, auxiliary network.

- Partitioned normalization (PN): normalise with batch moments in training and moving moments
  at inference (shared across scenarios, as batch norm), then scale and shift with
  ``gamma * gamma_s`` and ``beta + beta_s`` where ``gamma_s, beta_s`` belong to the example's
  scenario.
- Star FCN: each layer's weight is ``W_shared * W_s`` (element-wise) and bias
  ``b_shared + b_s``; ``W_s`` starts at ones so every scenario starts from the shared layer.
- Auxiliary network: a small MLP over [scenario indicator embedding, features] whose logit is
  added to the star network's logit (it learns scenario-level bias directly).
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.layers.blocks import MLP


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class PartitionedNormalization(tf.keras.layers.Layer):
    """Batch normalization with a shared and a per-scenario affine transform (STAR's PN)."""

    def __init__(self, num_scenarios: int, momentum: float = 0.99, epsilon: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = int(num_scenarios)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"PartitionedNormalization: momentum must be in [0, 1], got {momentum!r}")
        self.epsilon = chk.positive_float("PartitionedNormalization", "epsilon", epsilon)

    def build(self, input_shape: Any) -> None:
        """Create the weights once the input width is known."""
        d = int(input_shape[-1])
        S = self.num_scenarios
        self.gamma = self.add_weight(name="gamma", shape=(d,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(d,), initializer="zeros")
        self.gamma_s = self.add_weight(name="gamma_s", shape=(S, d), initializer="ones")
        self.beta_s = self.add_weight(name="beta_s", shape=(S, d), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(d,), initializer="zeros", trainable=False)
        self.moving_var = self.add_weight(name="moving_variance", shape=(d,), initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        if training:
            mean, var = tf.nn.moments(x, axes=[0])
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1 - m) * mean)
            self.moving_var.assign(m * self.moving_var + (1 - m) * var)
        else:
            mean, var = self.moving_mean, self.moving_var
        xhat = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        return xhat * (self.gamma * tf.gather(self.gamma_s, sid)) + (self.beta + tf.gather(self.beta_s, sid))

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_scenarios=self.num_scenarios, momentum=self.momentum, epsilon=self.epsilon)
        return cfg


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class StarDense(tf.keras.layers.Layer):
    """Star-topology dense layer: weight ``W_shared * W_s``, bias ``b_shared + b_s`` per scenario."""

    def __init__(self, units: int, num_scenarios: int, activation: Optional[str] = "relu",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_scenarios = int(num_scenarios)
        self.activation_name = activation
        self.activation = tf.keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        """Create the weights once the input width is known."""
        d = int(input_shape[-1])
        S = self.num_scenarios
        self.w_shared = self.add_weight(name="w_shared", shape=(d, self.units), initializer="glorot_uniform")
        self.b_shared = self.add_weight(name="b_shared", shape=(self.units,), initializer="zeros")
        self.w_s = self.add_weight(name="w_scenario", shape=(S, d, self.units), initializer="ones")
        self.b_s = self.add_weight(name="b_scenario", shape=(S, self.units), initializer="zeros")
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario_id: tf.Tensor) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        # All S products then a gather: S small matmuls beat a [B, d, units] per-example weight.
        y_all = tf.einsum("bi,sio->bso", x, self.w_shared[None] * self.w_s)
        y = tf.gather(y_all, sid, axis=1, batch_dims=1)
        return self.activation(y + self.b_shared + tf.gather(self.b_s, sid))

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, num_scenarios=self.num_scenarios, activation=self.activation_name)
        return cfg


@register("star")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class STAR(Backbone):
    """STAR: PN -> star FCN layers -> logit, plus an auxiliary network on the scenario indicator."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (128, 64),
                 aux_units: Sequence[int] = (32,), aux_embedding_dim: int = 8,
                 use_partitioned_norm: bool = True, activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        self.hidden_units = chk.units("star", "hidden_units", hidden_units, allow_empty=True)
        self.aux_units = chk.units("star", "aux_units", aux_units, allow_empty=True)
        self.aux_embedding_dim = chk.positive_int("star", "aux_embedding_dim", aux_embedding_dim)
        self.use_partitioned_norm = bool(use_partitioned_norm)
        self.activation = activation
        S = self.num_scenarios
        self.pn = PartitionedNormalization(S, name="pn") if self.use_partitioned_norm else None
        self.star_layers = [StarDense(u, S, activation, name=f"star_{i}") for i, u in enumerate(self.hidden_units)]
        self.star_out = StarDense(1, S, None, name="star_out")
        self.scenario_embedding = tf.keras.layers.Embedding(S, self.aux_embedding_dim, name="aux_scenario_emb")
        self.aux = MLP(self.aux_units + [1], activation, output_activation=None, name="aux")

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        x = self.pn(features, scenario_id, training=training) if self.pn is not None else features
        for layer in self.star_layers:
            x = layer(x, scenario_id)
        main = self.star_out(x, scenario_id)
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        aux_in = tf.concat([self.scenario_embedding(sid), features], axis=-1)
        return main + self.aux(aux_in, training=training)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, aux_units=self.aux_units,
                   aux_embedding_dim=self.aux_embedding_dim,
                   use_partitioned_norm=self.use_partitioned_norm, activation=self.activation)
        return cfg
