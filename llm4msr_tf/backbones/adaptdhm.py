"""AdaptDHM (Li et al., 2022): route each example to a learned cluster, then a shared x cluster FCN.

"AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR Prediction"
(arXiv 2211.12105). Instead of trusting the predefined scenarios for routing, a *distribution
adaptation module* clusters the inputs and each cluster gets its own sub-network:

- input ``z = [e_s ; x]`` with ``e_s`` a scenario embedding learned from the id (Scenario-Wise-Rec
  also feeds the domain indicator's embedding as a feature), so the scenario is one signal
  among the features;
- dynamic routing on ``z' = stop_gradient(z)`` against unit-norm centres ``C`` [K, D]:
  ``r = softmax(z' C^T)``; in training, ``routing_iterations`` times:
  ``C <- normalize(beta C + (1 - beta) r^T z')`` and ``r`` is recomputed; the example goes to
  ``k = argmax r`` (at inference the centres are fixed);
- hierarchical FCN: every layer's weight is ``W_shared * W_k`` (element-wise) with bias
  ``b_shared + b_k`` (the STAR layer with clusters for scenarios); ``logit`` from cluster ``k``.

Defaults follow Scenario-Wise-Rec's MovieLens config (FCN [64, 64], 3 clusters, beta 0.9,
3 routing iterations). Deviations: ``W_k`` starts at ones (each cluster starts as the shared
network, as in STAR) where Scenario-Wise-Rec draws both factors from xavier; layers have
biases (Scenario-Wise-Rec creates but never adds them). The centres are non-trainable weights,
so they are saved and served with the model.
"""
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401
import tensorflow as tf

from llm4msr_tf.backbones import _checks as chk
from llm4msr_tf.backbones.base import Backbone, register
from llm4msr_tf.backbones.star import StarDense


@register("adaptdhm")
@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class AdaptDHM(Backbone):
    """AdaptDHM: dynamic-routing clusters over the inputs -> shared x cluster-specific FCN."""

    def __init__(self, num_scenarios: int, hidden_units: Sequence[int] = (64, 64), num_clusters: int = 3,
                 beta: float = 0.9, routing_iterations: int = 3, scenario_embedding_dim: int = 16,
                 activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(num_scenarios, **kwargs)
        name = "adaptdhm"
        self.hidden_units = chk.units(name, "hidden_units", hidden_units, allow_empty=True)
        self.num_clusters = chk.positive_int(name, "num_clusters", num_clusters)
        self.beta = float(beta)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"adaptdhm: beta (the centre update momentum) must be in [0, 1], got {beta!r}")
        self.routing_iterations = chk.positive_int(name, "routing_iterations", routing_iterations)
        self.scenario_embedding_dim = chk.positive_int(name, "scenario_embedding_dim", scenario_embedding_dim)
        self.activation = activation
        K = self.num_clusters
        self.scenario_embedding = tf.keras.layers.Embedding(
            self.num_scenarios, self.scenario_embedding_dim, name="scenario_embedding")
        self.fcn = [StarDense(u, K, activation, name=f"fcn_{i}") for i, u in enumerate(self.hidden_units)]
        self.fcn_out = StarDense(1, K, None, name="fcn_out")

    def build(self, input_shape: Any) -> None:
        """Create the cluster centres (random unit vectors) once the input width is known."""
        d = int(input_shape[-1]) + self.scenario_embedding_dim

        def unit_rows(shape: Any, dtype: Any = None) -> tf.Tensor:
            return tf.math.l2_normalize(tf.keras.initializers.RandomNormal()(shape, dtype), axis=1)

        self.centers = self.add_weight(name="centers", shape=(self.num_clusters, d), initializer=unit_rows,
                                       trainable=False)
        super().build(input_shape)

    def route(self, z: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Cluster index [B] of each input row (updates the centres in training)."""
        z = tf.stop_gradient(z)
        if training:
            c = self.centers
            for _ in range(self.routing_iterations):
                r = tf.nn.softmax(tf.matmul(z, c, transpose_b=True), axis=-1)  # [B, K]
                c = tf.math.l2_normalize(self.beta * c + (1.0 - self.beta) * tf.matmul(r, z, transpose_a=True), axis=1)
            self.centers.assign(c)
            scores = tf.matmul(z, c, transpose_b=True)
        else:
            scores = tf.matmul(z, self.centers, transpose_b=True)
        return tf.argmax(scores, axis=-1, output_type=tf.int32)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Forward pass (equations in the module docstring)."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        z = tf.concat([self.scenario_embedding(sid), features], axis=-1)
        cluster = self.route(z, training=training)
        h = z
        for layer in self.fcn:
            h = layer(h, cluster)
        return self.fcn_out(h, cluster)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(hidden_units=self.hidden_units, num_clusters=self.num_clusters, beta=self.beta,
                   routing_iterations=self.routing_iterations,
                   scenario_embedding_dim=self.scenario_embedding_dim, activation=self.activation)
        return cfg
