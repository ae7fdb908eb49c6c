"""Multi-scenario backbones and their registry (contract: see `llm4msr_tf.backbones.base`).

``get(name)`` / ``register(name)`` / ``available()`` / ``create(name, num_scenarios, **params)``.
Built in: ``shared_bottom``, ``mmoe``, ``ple``, ``star`` and the zoo ``sar_net``, ``m2m``,
``adasparse``, ``adaptdhm``, ``epnet``, ``ppnet``, ``pepnet``, ``hinet``, ``m3oe``, ``hamur``
(one module each; the module docstring names the paper and the equations).
"""
from llm4msr_tf.backbones.base import Backbone, available, create, get, register
from llm4msr_tf.backbones.mmoe import MMoE
from llm4msr_tf.backbones.ple import PLE
from llm4msr_tf.backbones.shared_bottom import SharedBottom
from llm4msr_tf.backbones.star import STAR, PartitionedNormalization, StarDense
# The zoo (issue 18); star first: adaptdhm and m3oe reuse StarDense.
from llm4msr_tf.backbones.adaptdhm import AdaptDHM
from llm4msr_tf.backbones.adasparse import AdaSparse
from llm4msr_tf.backbones.epnet import EPNet, GateNU
from llm4msr_tf.backbones.hamur import HAMUR
from llm4msr_tf.backbones.hinet import HiNet
from llm4msr_tf.backbones.m2m import M2M
from llm4msr_tf.backbones.m3oe import M3oE
from llm4msr_tf.backbones.pepnet import PEPNet
from llm4msr_tf.backbones.ppnet import PPNet
from llm4msr_tf.backbones.sar_net import SARNet

__all__ = [
    "Backbone", "available", "create", "get", "register", "MMoE", "PLE", "SharedBottom", "STAR",
    "PartitionedNormalization", "StarDense", "AdaptDHM", "AdaSparse", "EPNet", "GateNU", "HAMUR", "HiNet",
    "M2M", "M3oE", "PEPNet", "PPNet", "SARNet",
]
