"""LLM4MSR models: `ModelConfig`, `TrainConfig`, the `LLM4MSR` Keras model, `build_model`, save/load.

    model = build_model(spec, ModelConfig(backbone="mmoe"), knowledge=kb)
    model.fit(train_ds, validation_data=eval_ds)          # compiled with Adam(learning_rate)
    model(features)  # {"logit": [B, 1], "probability": [B, 1]}

The configs import without TensorFlow; everything else loads TensorFlow on first use, so
that the CLI (and `llm4msr --help`) can read the configs cheaply.
"""
from llm4msr_tf.models.config import LITE_FUSION, PAPER_FUSION, ModelConfig, TrainConfig
from llm4msr_tf.utils.lazy import lazy_getattr

_LAZY = {
    "LLM4MSR": "llm4msr_tf.models.llm4msr",
    **dict.fromkeys(("build_model", "save_model", "load_model", "KERAS_MODEL_FILENAME"), "llm4msr_tf.models.build"),
}

__all__ = ["LITE_FUSION", "ModelConfig", "PAPER_FUSION", "TrainConfig", *_LAZY]
__getattr__ = lazy_getattr(__name__, _LAZY)
