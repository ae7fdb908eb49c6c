"""Keras layers of llm4msr_tf: feature embeddings, knowledge lookup/projection, meta layer, blocks.

Every layer is registered as Keras-serializable (package ``llm4msr_tf``) and round-trips
through ``get_config`` / ``from_config``.
"""
from llm4msr_tf.layers.blocks import MLP, Experts, Gate
from llm4msr_tf.layers.embedding import FeatureEmbedding, feature_descriptions
from llm4msr_tf.layers.knowledge import KnowledgeLookup, KnowledgeProjection
from llm4msr_tf.layers.meta import KnowledgeGate, MetaDense, OutputScale

__all__ = [
    "MLP", "Experts", "Gate", "FeatureEmbedding", "feature_descriptions", "KnowledgeLookup",
    "KnowledgeProjection", "MetaDense", "KnowledgeGate", "OutputScale",
]
