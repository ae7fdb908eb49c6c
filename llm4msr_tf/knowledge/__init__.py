"""Knowledge stage: frozen-LLM knowledge vectors for scenarios and users (LLM4MSR stage one).

The public surface the model stage uses is `load(KNOWLEDGE_DIR)` -> `KnowledgeBase`;
`write_knowledge` writes the same format without an LLM (fixtures, external vectors).
The LLM encoders (`llm4msr_tf.knowledge.encoders`) and the Beam job
(`llm4msr_tf.knowledge.job`) import torch / transformers / Beam only when used, so importing
this package stays cheap.
"""
from llm4msr_tf.knowledge.store import (
    KEY_TYPES,
    MANIFEST_FILENAME,
    POOLINGS,
    KeyedVectors,
    KnowledgeBase,
    KnowledgeRecord,
    iter_records,
    load,
    random_like,
    read_manifest,
    write_knowledge,
)

__all__ = [
    "KEY_TYPES",
    "MANIFEST_FILENAME",
    "POOLINGS",
    "KeyedVectors",
    "KnowledgeBase",
    "KnowledgeRecord",
    "iter_records",
    "load",
    "random_like",
    "read_manifest",
    "write_knowledge",
]
