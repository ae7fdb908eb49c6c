"""`build_model`, `save_model`, `load_model`: LLM4MSR models from a dataset spec and knowledge.

`build_model` is the one place a `ModelConfig` becomes an `LLM4MSR`: every config field named
like an `LLM4MSR` constructor argument is passed by that name (`llm4msr_kwargs`), so a new
option needs a config field and a constructor argument of the same name, nothing in between.
"""
import dataclasses
import inspect
import logging
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from llm4msr_tf import backbones as _backbones
from llm4msr_tf.layers.embedding import FeatureEmbedding, feature_descriptions
from llm4msr_tf.layers.knowledge import KnowledgeLookup
from llm4msr_tf.models.config import ModelConfig
from llm4msr_tf.models.llm4msr import LLM4MSR

log = logging.getLogger(__name__)

KERAS_MODEL_FILENAME = "model.keras"

__all__ = ["ModelConfig", "LLM4MSR", "build_model", "llm4msr_kwargs", "save_model", "load_model",
           "KERAS_MODEL_FILENAME"]


def llm4msr_kwargs(config: ModelConfig) -> Dict[str, Any]:
    """The `ModelConfig` fields that are `LLM4MSR` constructor arguments, by name.

    Args:
        config: the model config.

    Returns:
        ``{name: value}`` for every config field whose name `LLM4MSR.__init__` accepts
        (``backbone`` is left out: the config holds its registry name, the model a layer).
    """
    accepted = inspect.signature(LLM4MSR.__init__).parameters
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name in accepted and f.name != "backbone"}


def _optimizer(config: ModelConfig) -> Any:
    if config.optimizer == "legacy_adam":
        return tf.keras.optimizers.legacy.Adam(config.learning_rate)
    if config.optimizer == "adam":
        return tf.keras.optimizers.Adam(config.learning_rate)
    raise ValueError(f"ModelConfig.optimizer must be one of adam, legacy_adam; got {config.optimizer!r}")


def _check_knowledge(spec: Any, config: ModelConfig, knowledge: Any) -> None:
    where = getattr(knowledge, "path", "") or "the knowledge base"
    if config.expected_knowledge_dim is not None and int(config.expected_knowledge_dim) != int(knowledge.dim):
        raise ValueError(
            f"knowledge dimension mismatch: the model expects {config.expected_knowledge_dim} but the "
            f"manifest of {where} says dim={knowledge.dim} (LLM {knowledge.llm!r}); use knowledge made "
            "by the same LLM or change expected_knowledge_dim")
    for key_type in ("scenario", "user"):
        table = knowledge.tables.get(key_type)
        if table is None:
            raise ValueError(f"{where} has no {key_type!r} vectors; recompute the knowledge")
        if len(table.keys) and table.vectors.shape[1] != int(knowledge.dim):
            raise ValueError(
                f"{key_type} vectors in {where} have width {table.vectors.shape[1]} but the manifest "
                f"says dim={knowledge.dim}; recompute the knowledge into an empty directory")
    missing = [s for s in range(spec.num_scenarios) if str(s) not in set(knowledge.tables["scenario"].keys)]
    if missing:
        log.warning("knowledge %s has no vector for scenario(s) %s of %s; they use the default vector",
                    where, missing, spec.name)


def build_model(spec: Any, config: Optional[ModelConfig] = None, knowledge: Any = None,
                backbone: Optional[tf.keras.layers.Layer] = None, compile: bool = True) -> LLM4MSR:
    """Build (and compile) an LLM4MSR model for a dataset spec.

    Args:
        spec: the prepared dataset's `llm4msr_tf.data.DatasetSpec` (features, scenarios, label).
        config: the model config (default: `ModelConfig()`).
        knowledge: a `llm4msr_tf.knowledge.KnowledgeBase`; needed unless ``config.use_knowledge``
            is False (the backbone-only baseline on the same inputs).
        backbone: a ready layer that replaces ``config.backbone`` (e.g. a user subclass of
            `llm4msr_tf.backbones.Backbone`).
        compile: compile with ``config.optimizer`` at ``config.learning_rate``.

    Returns:
        The `LLM4MSR` model with every variable created.

    Raises:
        ValueError: unknown backbone, missing or mismatching knowledge.
    """
    config = config or ModelConfig()
    S = int(spec.num_scenarios)
    if backbone is None:
        backbone = _backbones.create(config.backbone, S, **dict(config.backbone_params))
    embedding = FeatureEmbedding(
        feature_descriptions(spec, exclude=config.exclude_features,
                             with_vocab=config.categorical_encoding == "vocab"),
        embedding_dim=config.embedding_dim, categorical_encoding=config.categorical_encoding,
        hash_bins=config.hash_bins, name="embedding")
    user_kl = scenario_kl = None
    if config.use_knowledge:
        if knowledge is None:
            raise ValueError(
                "LLM4MSR needs knowledge vectors: pass knowledge=llm4msr_tf.knowledge.load(KNOWLEDGE_DIR), "
                "or set ModelConfig.use_knowledge=False to train the backbone alone")
        _check_knowledge(spec, config, knowledge)
        norm, pca = config.knowledge_normalize, int(config.knowledge_pca_dim)
        scenario_kl = KnowledgeLookup.from_keyed_vectors(
            knowledge.tables["scenario"], "scenario", default=config.knowledge_default, normalize=norm,
            pca_dim=pca) \
            if len(knowledge.tables["scenario"].keys) else KnowledgeLookup(
                (), knowledge.dim, "scenario", default="zeros", name="scenario_knowledge")
        if config.user_knowledge_mode == "feature":
            # The normalisation is fitted on the knowledge base's user vectors and kept in the model.
            user_kl = KnowledgeLookup((), knowledge.dim, "user", mode="feature", normalize=norm, pca_dim=pca,
                                      fit_vectors=knowledge.tables["user"].vectors
                                      if len(knowledge.tables["user"].keys) else None,
                                      name="user_knowledge")
        else:
            user_kl = KnowledgeLookup.from_keyed_vectors(
                knowledge.tables["user"], "user", default=config.knowledge_default, normalize=norm,
                pca_dim=pca) \
                if len(knowledge.tables["user"].keys) else KnowledgeLookup(
                    (), knowledge.dim, "user", default="zeros", name="user_knowledge")
    model = LLM4MSR(
        **llm4msr_kwargs(config), embedding=embedding, backbone=backbone, num_scenarios=S,
        user_knowledge=user_kl, scenario_knowledge=scenario_kl, label_key=spec.label,
        user_feature=spec.user_feature, scenario_feature=spec.scenario_feature,
        name="llm4msr" if config.use_knowledge else f"{config.backbone}_only")
    # Create every variable now, so summary(), saving and weight loading work before fit.
    model(model.dummy_inputs(), training=False)
    if config.use_knowledge:
        model.reset_knowledge_stats()
    if compile:
        model.compile(optimizer=_optimizer(config))
    log.info("built %s: backbone=%s knowledge=%s params=%d", model.name, type(model.backbone).__name__,
             config.use_knowledge, model.count_params())
    return model


def save_model(model: LLM4MSR, path: str) -> str:
    """Save config + weights as a single Keras file (``.keras``); `load_model` restores it.

    Args:
        model: the model to save.
        path: a ``.keras`` file, or a directory that gets ``model.keras``.

    Returns:
        The file written.
    """
    if not path.endswith(".keras"):
        path = os.path.join(path, KERAS_MODEL_FILENAME)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    return path


def load_model(path: str, custom_objects: Any = None) -> LLM4MSR:
    """Load a model written by `save_model` (uncompiled; for prediction, export or more training).

    Args:
        path: a ``.keras`` file or a directory holding ``model.keras``.
        custom_objects: extra Keras objects (e.g. a user backbone class) needed to rebuild it.

    Returns:
        The `LLM4MSR` model with its saved weights.
    """
    if os.path.isdir(path):
        path = os.path.join(path, KERAS_MODEL_FILENAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; train a model with `llm4msr train` first")
    return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)
