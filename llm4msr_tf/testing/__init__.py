"""Fixtures for tests and examples, written through the real writers (no hand-coded formats).

- `toy`: a tiny prepared dataset (``DATA_DIR``), random knowledge (``KNOWLEDGE_DIR``) and prompt
  files, each written by the stage's own writer (`llm4msr_tf.data.writer`,
  `llm4msr_tf.knowledge.write_knowledge`, `llm4msr_tf.data.prompt_format.write_prompts`);
- `tiny_lm`: a randomly initialised 2-layer Llama saved as a local Hugging Face directory,
  usable as ``--llm hf:DIR`` in seconds, offline.
"""
from llm4msr_tf.utils.lazy import lazy_getattr

_NAMES = {
    **dict.fromkeys(("write_toy_dataset", "write_toy_knowledge", "write_random_knowledge", "write_prompt_texts"),
                    "llm4msr_tf.testing.toy"),
    "build_tiny_causal_lm": "llm4msr_tf.testing.tiny_lm",
    **dict.fromkeys(("LocalPortableCluster", "free_port"), "llm4msr_tf.testing.beam_cluster"),
}

__all__ = sorted(_NAMES)
__getattr__ = lazy_getattr(__name__, _NAMES)
