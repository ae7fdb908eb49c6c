"""`JoinKnowledge`: the TFX component of `llm4msr join-knowledge` (feature mode inside the pipeline).

ImportExampleGen -> **JoinKnowledge** -> StatisticsGen ... : every split of the imported
examples gets the user's knowledge vector as one more float feature, joined by user id with a
Beam `CoGroupByKey` (`llm4msr_tf.knowledge.join.join_split`, the same code as the CLI), so
statistics, schema, Transform, the Trainer and the Evaluator all see the feature and the pushed
SavedModel reads it from each request. It runs on the pipeline's Beam runner
(``beam_pipeline_args``: DirectRunner here, Dataflow/Flink/Spark through ``--beam-args``).

The output is an ``Examples`` artifact in ImportExampleGen's layout (``Split-NAME/*.gz``,
gzipped ``tf.Example``); its custom properties record, per split, the rows and how many of
them had no vector (``rows_SPLIT``, ``unknown_users_SPLIT``), and ``join_stats.json`` beside the
splits says the same with the knowledge directory and the default used.
"""
import json
import os
from typing import Optional

import apache_beam as beam
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from llm4msr_tf.knowledge.join import join_split, knowledge_side, read_stats

STATS_FILENAME = "join_stats.json"
_COPIED_PROPERTIES = ("payload_format", "file_format")


@tfx.dsl.components.component(use_beam=True)
def JoinKnowledge(  # noqa: N802 (TFX component names are classes)
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    joined_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    knowledge_dir: tfx.dsl.components.Parameter[str],
    user_feature: tfx.dsl.components.Parameter[str],
    dim: tfx.dsl.components.Parameter[int],
    feature: tfx.dsl.components.Parameter[str] = "user_knowledge",
    default: tfx.dsl.components.Parameter[str] = "mean",
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Add each user's knowledge vector (float [dim], as `llm4msr knowledge` wrote it) as `feature`.

    Args:
        examples: gzipped tf.Example splits (ImportExampleGen's output).
        joined_examples: the same splits, one more feature each, one output file per input file.
        knowledge_dir: a KNOWLEDGE_DIR with user vectors (local path or remote URI).
        user_feature: the examples' user id feature (the knowledge keys).
        dim: the vector width (the knowledge manifest's ``dim``).
        feature: the added feature's name (``ModelConfig.user_knowledge_feature``).
        default: vector of users without one: ``mean`` of the user vectors, or ``zeros``.
        beam_pipeline: the Beam pipeline TFX makes from the pipeline's ``beam_pipeline_args``.
    """
    splits = artifact_utils.decode_split_names(examples.split_names)
    joined_examples.split_names = examples.split_names
    for name in _COPIED_PROPERTIES:
        if examples.has_custom_property(name):
            joined_examples.set_string_custom_property(name, examples.get_string_custom_property(name))
    stats_paths = {s: os.path.join(joined_examples.uri, f".join-stats-{s}") for s in splits}
    with beam_pipeline as p:
        vectors, default_vec = knowledge_side(p, knowledge_dir, default, int(dim))
        for split in splits:
            src = artifact_utils.get_split_uri([examples], split)
            shards = len(tf.io.gfile.glob(os.path.join(src, "*"))) or 1
            join_split(p, split, os.path.join(src, "*"), os.path.join(joined_examples.uri, f"Split-{split}",
                                                                      "data_tfrecord"),
                       shards, stats_paths[split], vectors, default_vec, user_feature, feature, int(dim),
                       out_suffix=".gz")
    stats = {}
    for split, path in stats_paths.items():
        stats[split] = read_stats(path)
        tf.io.gfile.remove(path)
        joined_examples.set_int_custom_property(f"rows_{split}", stats[split]["rows"])
        joined_examples.set_int_custom_property(f"unknown_users_{split}", stats[split]["unknown"])
    with tf.io.gfile.GFile(os.path.join(joined_examples.uri, STATS_FILENAME), "w") as f:
        json.dump({"feature": feature, "dim": int(dim), "knowledge_dir": knowledge_dir, "default": default,
                   "splits": stats}, f, indent=2)


def read_join_stats(examples_uri: str) -> Optional[dict]:
    """The ``join_stats.json`` of a JoinKnowledge output, or None for other examples."""
    path = os.path.join(examples_uri, STATS_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
