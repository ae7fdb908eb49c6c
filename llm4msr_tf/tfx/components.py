"""The LLM4MSR TFX pipeline factory: components only, no runner (see `llm4msr_tf.tfx.runner`).

ImportExampleGen (train/eval/test kept as given by `llm4msr prepare`) [-> JoinKnowledge, in
feature mode when the examples do not carry the user vector yet] -> StatisticsGen ->
SchemaGen -> ExampleValidator -> Transform -> Trainer -> Evaluator (TFMA, overall and per
scenario, validated against the latest blessed model) -> Pusher (TF Serving layout
``SERVING_DIR/<model_name>/<version>/``).
"""
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from tfx import v1 as tfx

from llm4msr_tf.tfx import constants as C


def eval_config(label_key: str, scenario_key: str, min_auc: float, max_auc_drop: float) -> tfma.EvalConfig:
    """TFMA config: AUC, log loss, calibration, counts; overall and sliced by scenario.

    Thresholds sit in `per_slice_thresholds` for the overall slice only (plain thresholds
    would apply to every scenario slice). The change threshold compares with the latest
    blessed model; on the first run there is none and only the absolute AUC bound applies.
    """
    overall = tfma.SlicingSpec()
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": float(min_auc)}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -float(max_auc_drop)},
        ),
    )
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(
            class_name="AUC",
            per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[overall], threshold=auc_threshold)
            ],
        ),
        tfma.MetricConfig(class_name="BinaryCrossEntropy", config='{"name": "log_loss"}'),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=label_key,
                prediction_key=C.PREDICTION_KEY,
            )
        ],
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[scenario_key])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        # The model's compiled Keras metrics expect transformed features; TFMA would call
        # the model on raw ones. Our metrics above are computed from serving_default.
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_dir: str,
    module_file: str,
    serving_dir: str,
    dataset_spec: Dict[str, Any],
    trainer_config: Dict[str, Any],
    model_name: str = C.MODEL_NAME,
    min_auc: float = 0.5,
    max_auc_drop: float = 0.01,
    beam_pipeline_args: Optional[List[str]] = None,
    metadata_connection_config: Any = None,
    enable_cache: bool = True,
    join_knowledge: Optional[Dict[str, Any]] = None,
) -> tfx.dsl.Pipeline:
    """Build the LLM4MSR TFX pipeline (components only; a runner executes or compiles it).

    Args:
        pipeline_name: the TFX pipeline name (MLMD context).
        pipeline_root: where component outputs go.
        data_dir: the prepared DATA_DIR (its train/eval/test TFRecords are imported as given).
        module_file: the user module with ``preprocessing_fn`` and ``run_fn``.
        serving_dir: the Pusher writes ``SERVING_DIR/<model_name>/<version>/``.
        dataset_spec: the prepared ``dataset.json`` as a dict.
        trainer_config: the rest of the Trainer's ``custom_config``: ``{"train": TrainConfig
            dict, "model": ModelConfig dict}`` (`llm4msr_tf.tfx.config.trainer_custom_config`).
        model_name: the served model name.
        min_auc: the Evaluator blesses only at least this overall AUC on the test split.
        max_auc_drop: ... and at most this AUC drop against the latest blessed model.
        beam_pipeline_args: Beam options of the Beam-based components.
        metadata_connection_config: MLMD connection (LocalDagRunner); None for KubeflowV2.
        enable_cache: reuse outputs of components whose inputs did not change.
        join_knowledge: the `JoinKnowledge` parameters (``knowledge_dir``, ``user_feature``,
            ``dim``, ``feature``, ``default``) to join user vectors into the examples right after
            ImportExampleGen (feature mode); None: the examples are used as imported.

    Returns:
        The `tfx.dsl.Pipeline`.
    """
    input_config = tfx.proto.Input(
        splits=[tfx.proto.Input.Split(name=s, pattern=f"{s}/*.tfrecord.gz") for s in C.SPLITS]
    )
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_dir, input_config=input_config
    ).with_id(C.EXAMPLE_GEN)
    examples = example_gen.outputs["examples"]
    nodes: List[Any] = [example_gen]
    if join_knowledge:
        from llm4msr_tf.tfx.join_component import JoinKnowledge

        join = JoinKnowledge(examples=examples, **join_knowledge).with_id(C.JOIN_KNOWLEDGE)
        examples = join.outputs["joined_examples"]
        nodes.append(join)
    statistics_gen = tfx.components.StatisticsGen(examples=examples).with_id(C.STATISTICS_GEN)
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    ).with_id(C.SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(C.EXAMPLE_VALIDATOR)

    common_config = {"dataset_spec": dataset_spec, "data_dir": data_dir}
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        module_file=module_file,
        custom_config=common_config,
        # Vocabularies from the training split only, so eval/test see true OOV rates.
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=list(C.SPLITS)),
    ).with_id(C.TRANSFORM)
    trainer = tfx.components.Trainer(
        module_file=module_file,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={**common_config, **trainer_config},
    ).with_id(C.TRAINER)

    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(C.BASELINE_RESOLVER)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(
            dataset_spec.get("label", "label"), dataset_spec.get("scenario_feature", "scenario_id"),
            min_auc, max_auc_drop,
        ),
        example_splits=[C.EVAL_SPLIT],
    ).with_id(C.EVALUATOR)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{serving_dir.rstrip('/')}/{model_name}"
            )
        ),
    ).with_id(C.PUSHER)

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=nodes + [
            statistics_gen, schema_gen, example_validator, transform, trainer, baseline, evaluator, pusher,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
