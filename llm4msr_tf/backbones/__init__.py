"""Multi-scenario backbones and their registry (contract: see `llm4msr_tf.backbones.base`).

``get(name)`` / ``register(name)`` / ``available()`` / ``create(name, num_scenarios, **params)``.
Built in: ``shared_bottom``, ``mmoe``, ``ple``, ``star``.
"""
from llm4msr_tf.backbones.base import Backbone, available, create, get, register
from llm4msr_tf.backbones.mmoe import MMoE
from llm4msr_tf.backbones.ple import PLE
from llm4msr_tf.backbones.shared_bottom import SharedBottom
from llm4msr_tf.backbones.star import STAR, PartitionedNormalization, StarDense

__all__ = [
    "Backbone", "available", "create", "get", "register", "MMoE", "PLE", "SharedBottom", "STAR",
    "PartitionedNormalization", "StarDense",
]
