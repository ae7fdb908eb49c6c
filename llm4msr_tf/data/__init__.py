"""Data layer: `llm4msr prepare` adapters, TFRecord writer, prompts and the dataset spec.

Later stages read a prepared directory only through `DatasetSpec.load(DATA_DIR)`.
"""
from llm4msr_tf.data.spec import (  # noqa: F401
    DATASET_FILENAME,
    SPLITS,
    DatasetSpec,
    FeatureSpec,
    ScenarioSpec,
)

__all__ = ["DatasetSpec", "FeatureSpec", "ScenarioSpec", "SPLITS", "DATASET_FILENAME"]
