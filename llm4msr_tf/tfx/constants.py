"""Names shared by the pipeline factory, its runners, the CLI and the tests (one place)."""

PIPELINE_NAME = "llm4msr"
MODEL_NAME = "llm4msr"
METADATA_FILENAME = "metadata.sqlite"
SPLITS = ("train", "eval", "test")

# Component ids, in DAG order; the runners, the CLI summary and the tests refer to these.
EXAMPLE_GEN = "ImportExampleGen"
JOIN_KNOWLEDGE = "JoinKnowledge"  # feature mode only, between ImportExampleGen and StatisticsGen
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
TRAINER = "Trainer"
BASELINE_RESOLVER = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
COMPONENT_IDS = (
    EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR, TRANSFORM, TRAINER,
    BASELINE_RESOLVER, EVALUATOR, PUSHER,
)

# What the Evaluator reads from the model's serving_default outputs.
PREDICTION_KEY = "probability"
EVAL_SPLIT = "test"
