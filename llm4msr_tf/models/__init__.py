"""LLM4MSR models: `ModelConfig`, the `LLM4MSR` Keras model, `build_model`, save/load helpers.

    model = build_model(spec, ModelConfig(backbone="mmoe"), knowledge=kb)
    model.fit(train_ds, validation_data=eval_ds)          # compiled with Adam(learning_rate)
    model(features)  # {"logit": [B, 1], "probability": [B, 1]}

The configs import without TensorFlow; everything else loads TensorFlow on first use, so
that the CLI (and `llm4msr --help`) can read the configs cheaply.
"""
import importlib
from typing import Any

from llm4msr_tf.models.config import ModelConfig, TrainConfig

_LAZY = {
    "LLM4MSR": "llm4msr_tf.models.llm4msr",
    "build_model": "llm4msr_tf.models.build",
    "save_model": "llm4msr_tf.models.build",
    "load_model": "llm4msr_tf.models.build",
    "KERAS_MODEL_FILENAME": "llm4msr_tf.models.build",
}

__all__ = ["ModelConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the TensorFlow-backed names on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llm4msr_tf.models' has no attribute {name!r}")
