"""The LLM4MSR model: feature embeddings -> user-level meta layer -> any backbone (+ scenario meta tower).

Multi-level knowledge fusion (our reading of the paper; details are config options):

- knowledge vectors of the example's scenario and user are looked up inside the model
  (`KnowledgeLookup`) and projected by trainable LayerNorm + Dense (`KnowledgeProjection`),
  so any LLM width works;
- user-level meta network, applied to the flat embeddings *before* the backbone and
  conditioned on ``c = [proj(user knowledge), proj(scenario knowledge)]`` (user knowledge
  conditioned on the scenario), in one of three forms (``user_meta_form``):
  ``lowrank`` (the paper's reading: ``user_meta_layers`` `MetaDense` layers whose low-rank
  weights are generated from ``c``, residual), ``gate`` (`KnowledgeGate`,
  ``x * 2 sigmoid(g(c))``, PEPNet's gate unit) or ``feature`` (``c`` appended to the
  embeddings, knowledge as a plain input feature as in KAR, the reference);
- scenario-level meta network: a parallel tower of `MetaDense` layers (widths
  ``scenario_tower_units``) whose weights are generated from ``proj(scenario knowledge)``;
  its logit is added to the backbone's logit.

With ``zero_init=True`` every knowledge path starts switched off (a zero-initialised output
scale on the low-rank residual and on the appended feature, a gate of exactly 1, a zero
scenario-tower logit), so LLM4MSR starts as the backbone alone and training turns the
knowledge on only as far as it helps. ``meta_dropout`` drops projected user knowledge in
training and ``meta_l2`` puts an L2 penalty on the projections and generators.

With ``use_knowledge=False`` the same inputs go through the embeddings and backbone only,
so baseline and LLM4MSR are compared on identical features.
"""
import logging
from typing import Any, Dict, Optional, Sequence

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs

from llm4msr_tf.layers.embedding import FeatureEmbedding  # noqa: F401  (registers it for from_config)
from llm4msr_tf.layers.knowledge import KnowledgeLookup, KnowledgeProjection  # noqa: F401  (registration)
from llm4msr_tf.layers.meta import KnowledgeGate, MetaDense, OutputScale

log = logging.getLogger(__name__)

_TF_DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
USER_META_FORMS = ("lowrank", "gate", "feature")


def _layer(obj: Any) -> Any:
    # Accept a layer or its serialized dict (from_config path).
    if obj is None or isinstance(obj, tf.keras.layers.Layer):
        return obj
    return tf.keras.layers.deserialize(obj)


@tf.keras.utils.register_keras_serializable(package="llm4msr_tf")
class LLM4MSR(tfrs.models.Model):
    """Any multi-scenario backbone plus LLM4MSR's user- and scenario-level meta networks.

    ``model(features)`` takes a dict of raw parsed tf.Example tensors (each [B]; the label may
    be present and is ignored) and returns ``{"logit": [B, 1], "probability": [B, 1]}``.
    Training uses a ``tfrs.tasks.Ranking`` task (binary cross-entropy from logits) with AUC
    and log loss, overall and per scenario (``auc_s{k}``, ``log_loss_s{k}``).
    """

    def __init__(
        self,
        embedding: Any,
        backbone: Any,
        num_scenarios: int,
        user_knowledge: Any = None,
        scenario_knowledge: Any = None,
        use_knowledge: bool = True,
        use_user_meta: bool = True,
        use_scenario_meta: bool = True,
        projection_dim: int = 64,
        meta_rank: int = 8,
        meta_generator_units: int = 64,
        meta_activation: str = "relu",
        user_meta_layers: int = 1,
        scenario_tower_units: Sequence[int] = (64, 32),
        label_key: str = "label",
        user_feature: str = "user_id",
        scenario_feature: str = "scenario_id",
        user_knowledge_feature: str = "user_knowledge",
        per_scenario_metrics: bool = True,
        user_meta_form: str = "lowrank",
        zero_init: bool = False,
        meta_dropout: float = 0.0,
        meta_l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if user_meta_form not in USER_META_FORMS:
            raise ValueError(f"user_meta_form {user_meta_form!r} is not one of {USER_META_FORMS}")
        if not 0.0 <= float(meta_dropout) < 1.0:
            raise ValueError(f"meta_dropout must be in [0, 1), got {meta_dropout}")
        if float(meta_l2) < 0:
            raise ValueError(f"meta_l2 must be >= 0, got {meta_l2}")
        self.user_meta_form = user_meta_form
        self.zero_init = bool(zero_init)
        self.meta_dropout = float(meta_dropout)
        self.meta_l2 = float(meta_l2)
        self.embedding = _layer(embedding)
        self.backbone = _layer(backbone)
        self.num_scenarios = int(num_scenarios)
        self.use_knowledge = bool(use_knowledge)
        self.use_user_meta = bool(use_user_meta) and self.use_knowledge
        self.use_scenario_meta = bool(use_scenario_meta) and self.use_knowledge
        self.projection_dim = int(projection_dim)
        self.meta_rank = int(meta_rank)
        self.meta_generator_units = int(meta_generator_units)
        self.meta_activation = meta_activation
        self.user_meta_layers = int(user_meta_layers)
        self.scenario_tower_units = [int(u) for u in scenario_tower_units]
        self.label_key = label_key
        self.user_feature = user_feature
        self.scenario_feature = scenario_feature
        self.user_knowledge_feature = user_knowledge_feature
        self.per_scenario_metrics = bool(per_scenario_metrics)
        self.user_knowledge = _layer(user_knowledge) if self.use_user_meta else None
        needs_scenario = self.use_user_meta or self.use_scenario_meta
        self.scenario_knowledge = _layer(scenario_knowledge) if needs_scenario else None
        if self.use_user_meta and self.user_knowledge is None:
            raise ValueError("use_user_meta=True needs user_knowledge (a KnowledgeLookup); pass one "
                             "or set use_user_meta=False / use_knowledge=False")
        if needs_scenario and self.scenario_knowledge is None:
            raise ValueError("LLM4MSR meta networks need scenario_knowledge (a KnowledgeLookup); pass one "
                             "or set use_knowledge=False for the backbone alone")
        if self.use_user_meta and self.user_knowledge.dim != self.scenario_knowledge.dim:
            raise ValueError(
                f"user knowledge dim {self.user_knowledge.dim} != scenario knowledge dim "
                f"{self.scenario_knowledge.dim}; both must come from the same knowledge directory")
        meta_kw = dict(rank=self.meta_rank, generator_units=self.meta_generator_units,
                       activation=meta_activation, l2=self.meta_l2)
        if needs_scenario:
            self.scenario_projection = KnowledgeProjection(self.projection_dim, l2=self.meta_l2,
                                                           name="scenario_projection")
        if self.use_user_meta:
            self.user_projection = KnowledgeProjection(self.projection_dim, l2=self.meta_l2, name="user_projection")
            self.user_dropout = tf.keras.layers.Dropout(self.meta_dropout) if self.meta_dropout > 0 else None
            if user_meta_form == "lowrank":
                # zero_init: the residual branch is scaled by a zero-initialised alpha (the meta
                # layer starts as the identity); otherwise act(...) + x as before.
                self.user_meta = [MetaDense(None, residual=not self.zero_init, name=f"user_meta_{i}", **meta_kw)
                                  for i in range(self.user_meta_layers)]
                self.user_meta_scale = [OutputScale(0.0, name=f"user_meta_scale_{i}")
                                        for i in range(self.user_meta_layers)] if self.zero_init else []
            elif user_meta_form == "gate":
                self.user_meta = [KnowledgeGate(self.meta_generator_units, zero_init=self.zero_init, l2=self.meta_l2,
                                                name=f"user_meta_{i}") for i in range(self.user_meta_layers)]
            else:
                self.user_meta = []
                self.user_feature_scale = OutputScale(0.0 if self.zero_init else 1.0, name="user_feature_scale")
        if self.use_scenario_meta:
            self.scenario_tower = [MetaDense(u, name=f"scenario_meta_{i}", **meta_kw)
                                   for i, u in enumerate(self.scenario_tower_units)]
            self.scenario_logit = tf.keras.layers.Dense(
                1, kernel_initializer="zeros" if self.zero_init else "glorot_uniform", name="scenario_meta_logit")
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc"),
                     tf.keras.metrics.BinaryCrossentropy(from_logits=True, name="log_loss")])
        if self.per_scenario_metrics:
            # Two flat lists (Keras' .keras saving does not walk nested containers).
            self.scenario_auc = [tf.keras.metrics.AUC(from_logits=True, name=f"auc_s{s}")
                                 for s in range(self.num_scenarios)]
            self.scenario_log_loss = [tf.keras.metrics.BinaryCrossentropy(from_logits=True, name=f"log_loss_s{s}")
                                      for s in range(self.num_scenarios)]

    # ---- forward ------------------------------------------------------------------------
    def scenario_ids(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        """The scenario ids [B] (int64), checked to lie in 0..S-1 inside the graph."""
        if self.scenario_feature not in features:
            raise ValueError(f"input feature {self.scenario_feature!r} (the scenario id) is missing")
        sid = tf.cast(tf.reshape(features[self.scenario_feature], [-1]), tf.int64)
        msg = (f"{self.scenario_feature} outside 0..{self.num_scenarios - 1}: the model was built "
               f"for num_scenarios={self.num_scenarios} (dataset spec); check the input data")
        tf.debugging.assert_greater_equal(sid, tf.constant(0, tf.int64), message=msg)
        tf.debugging.assert_less(sid, tf.constant(self.num_scenarios, tf.int64), message=msg)
        return sid

    def user_knowledge_input(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        """What the user lookup reads: the raw user id, or the vector feature in feature mode."""
        name = self.user_knowledge_feature if self.user_knowledge.mode == "feature" else self.user_feature
        if name not in features:
            raise ValueError(f"input feature {name!r} is missing (needed for user knowledge)")
        return features[name]

    def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
        """Forward pass (shapes in the class docstring)."""
        sid = self.scenario_ids(features)
        x = self.embedding(features)
        if self.scenario_knowledge is not None:
            # Scenario knowledge has only S distinct rows: project it (and, in the scenario
            # tower, generate weights) once per scenario, then gather per example.
            sk_all = self.scenario_projection(
                self.scenario_knowledge(tf.range(self.num_scenarios, dtype=tf.int64)))  # [S, P]
            sk = tf.gather(sk_all, sid)
        if self.use_user_meta:
            x = self.apply_user_meta(x, self.user_condition(features, sk, training=training))
        logit = self.backbone(x, sid, training=training)
        if self.use_scenario_meta:
            h = x
            for layer in self.scenario_tower:
                h = layer([h, sk_all, sid])
            logit = logit + self.scenario_logit(h)
        logit = tf.reshape(logit, [-1, 1])
        return {"logit": logit, "probability": tf.sigmoid(logit)}

    def user_condition(self, features: Dict[str, tf.Tensor], sk: tf.Tensor,
                       training: Optional[bool] = None) -> tf.Tensor:
        """``[proj(user knowledge), proj(scenario knowledge)]`` [B, 2P], what the user meta layer reads."""
        uk = self.user_projection(self.user_knowledge(self.user_knowledge_input(features)))
        if self.user_dropout is not None:
            uk = self.user_dropout(uk, training=training)
        return tf.concat([uk, sk], axis=-1)

    def apply_user_meta(self, x: tf.Tensor, cond: tf.Tensor) -> tf.Tensor:
        """The user-level meta layer(s) on the flat embeddings x [B, D] given the condition [B, 2P]."""
        if self.user_meta_form == "feature":
            return tf.concat([x, self.user_feature_scale(cond)], axis=-1)
        for i, layer in enumerate(self.user_meta):
            y = layer([x, cond])
            x = x + self.user_meta_scale[i](y) if self.user_meta_form == "lowrank" and self.zero_init else y
        return x

    def compute_loss(self, inputs: Any, training: bool = False) -> tf.Tensor:
        """Ranking loss of a labelled batch; also updates the per-scenario metrics."""
        features = inputs
        if self.label_key not in features:
            raise ValueError(f"training examples lack the label feature {self.label_key!r}")
        labels = tf.cast(tf.reshape(features[self.label_key], [-1, 1]), tf.float32)
        logit = self(features, training=training)["logit"]
        if self.per_scenario_metrics:
            sid = tf.reshape(tf.cast(features[self.scenario_feature], tf.int64), [-1, 1])
            for s, (auc, ll) in enumerate(zip(self.scenario_auc, self.scenario_log_loss)):
                w = tf.cast(tf.equal(sid, s), tf.float32)
                auc.update_state(labels, logit, sample_weight=w)
                ll.update_state(labels, logit, sample_weight=w)
        return self.task(labels=labels, predictions=logit)

    # ---- knowledge bookkeeping ---------------------------------------------------------------
    def knowledge_stats(self) -> Dict[str, Dict[str, int]]:
        """Unknown / total lookups per key type since the last reset (new users, missing scenarios)."""
        out = {}
        for name, layer in (("user", self.user_knowledge), ("scenario", self.scenario_knowledge)):
            if layer is not None and layer.mode == "table":
                out[name] = {"unknown": int(layer.unknown_count.numpy()), "lookups": int(layer.lookup_count.numpy())}
        return out

    def reset_knowledge_stats(self) -> None:
        """Zero the unknown-key counters of the knowledge lookups."""
        for layer in (self.user_knowledge, self.scenario_knowledge):
            if layer is not None and layer.mode == "table":
                layer.unknown_count.assign(0)
                layer.lookup_count.assign(0)

    # ---- serialization -----------------------------------------------------------------------
    def dummy_inputs(self, batch_size: int = 2) -> Dict[str, tf.Tensor]:
        """A tiny valid input batch (used to create the variables before loading weights)."""
        out: Dict[str, tf.Tensor] = {}
        for f in self.embedding.features:
            dt = _TF_DTYPES[f["dtype"]]
            out[f["name"]] = tf.zeros([batch_size], dt) if dt != tf.string else tf.fill([batch_size], "")
        out[self.scenario_feature] = tf.zeros([batch_size], tf.int64)
        if self.user_knowledge is not None:
            if self.user_knowledge.mode == "feature":
                out[self.user_knowledge_feature] = tf.zeros([batch_size, self.user_knowledge.dim])
            elif self.user_feature not in out:
                out[self.user_feature] = tf.fill([batch_size], "")
        return out

    def get_build_config(self) -> Dict[str, Any]:
        """What Keras stores so that loading can recreate the variables."""
        return {"built_with_dummy_inputs": True}

    def build_from_config(self, config: Dict[str, Any]) -> None:
        """Create every variable (one call on dummy inputs) before weights are loaded."""
        self(self.dummy_inputs(), training=False)
        if self.use_knowledge:
            self.reset_knowledge_stats()

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        ser = tf.keras.layers.serialize
        return {
            "name": self.name,
            "embedding": ser(self.embedding),
            "backbone": ser(self.backbone),
            "num_scenarios": self.num_scenarios,
            "user_knowledge": ser(self.user_knowledge) if self.user_knowledge is not None else None,
            "scenario_knowledge": ser(self.scenario_knowledge) if self.scenario_knowledge is not None else None,
            "use_knowledge": self.use_knowledge,
            "use_user_meta": self.use_user_meta,
            "use_scenario_meta": self.use_scenario_meta,
            "projection_dim": self.projection_dim,
            "meta_rank": self.meta_rank,
            "meta_generator_units": self.meta_generator_units,
            "meta_activation": self.meta_activation,
            "user_meta_layers": self.user_meta_layers,
            "scenario_tower_units": list(self.scenario_tower_units),
            "label_key": self.label_key,
            "user_feature": self.user_feature,
            "scenario_feature": self.scenario_feature,
            "user_knowledge_feature": self.user_knowledge_feature,
            "per_scenario_metrics": self.per_scenario_metrics,
            "user_meta_form": self.user_meta_form,
            "zero_init": self.zero_init,
            "meta_dropout": self.meta_dropout,
            "meta_l2": self.meta_l2,
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any], custom_objects: Any = None) -> "LLM4MSR":
        """Rebuild from `get_config` output."""
        return cls(**config)
