"""`PipelineConfig`: the TFX pipeline's settings, composed of a `TrainConfig` and a `ModelConfig`.

Training and model fields are not redeclared here: the Trainer gets exactly the configs that
``llm4msr train`` uses, so both paths train with the same loop, early-stopping rule and model.
Only what is specific to TFX (roots, Evaluator thresholds, Beam, images) lives in this class.
Importing this module loads no TensorFlow or TFX (the CLI reads it to build its flags).
"""
import dataclasses
import json
from llm4msr_tf.distribute import DistributeConfig
from llm4msr_tf.models.config import ModelConfig, TrainConfig
from llm4msr_tf.tfx import constants as C
from llm4msr_tf.tfx.trainer import MODULE_FILE
from llm4msr_tf.utils.io import UserInputError

BEAM_MODES = ("in_memory", "multi_threading", "multi_processing")


def _pipeline_train_config() -> TrainConfig:
    # Fewer epochs than `llm4msr train` by default: TFX traces the model again per run.
    return TrainConfig(epochs=3, progress="epoch")


def _pipeline_model_config() -> ModelConfig:
    # The legacy Adam traces its train step ~2.5x faster than tf_keras 2.16's new Adam (measured:
    # 37 s vs 89 s for the first step on 2 busy cores); same update rule.
    return ModelConfig(backbone="mmoe", optimizer="legacy_adam")


@dataclasses.dataclass
class PipelineConfig:
    """Everything `llm4msr pipeline` needs; each field (and each train / model field) is a CLI flag."""

    train: TrainConfig = dataclasses.field(
        default_factory=_pipeline_train_config,
        # The Trainer writes to TFX's own model directories and always exports.
        metadata={"skip": ("out", "export", "overwrite", "progress")})
    model: ModelConfig = dataclasses.field(default_factory=_pipeline_model_config)
    # The Trainer's tf.distribute strategy (`custom_config["distribute"]`); on Vertex AI each worker
    # gets $TF_CONFIG, and "default" then becomes multi_worker when it names several tasks.
    # BackupAndRestore goes under the Trainer's model_run dir (one per execution, shared by its workers).
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig,
                                                     metadata={"skip": ("backup_dir",)})
    pipeline_root: str = dataclasses.field(
        default="pipeline_out/root", metadata={"help": "TFX pipeline root (artifacts, SQLite metadata)"}
    )
    serving_dir: str = dataclasses.field(
        default="pipeline_out/serving", metadata={"help": "Pusher target: SERVING_DIR/<model-name>/<version>/"}
    )
    pipeline_name: str = dataclasses.field(default=C.PIPELINE_NAME, metadata={"help": "TFX pipeline name"})
    model_name: str = dataclasses.field(default=C.MODEL_NAME, metadata={"help": "model name under SERVING_DIR"})
    model_overrides: str = dataclasses.field(
        default="", metadata={"help": "JSON object of ModelConfig fields applied last, e.g. '{\"embedding_dim\": 16}'"}
    )
    min_auc: float = dataclasses.field(
        default=0.5, metadata={"help": "bless only if overall AUC on the test split is at least this"}
    )
    max_auc_drop: float = dataclasses.field(
        default=0.01, metadata={"help": "bless only if AUC drops by at most this vs the latest blessed model"}
    )
    beam_mode: str = dataclasses.field(
        default="in_memory", metadata={"help": "DirectRunner running mode", "choices": list(BEAM_MODES)}
    )
    beam_workers: int = dataclasses.field(default=1, metadata={"help": "DirectRunner workers"})
    beam_args: str = dataclasses.field(
        default="", metadata={"help": "extra Beam args as one string, e.g. --beam-args='--runner=DataflowRunner ...'"}
    )
    enable_cache: bool = dataclasses.field(
        default=True, metadata={"help": "reuse outputs of components whose inputs did not change"}
    )
    module_file: str = dataclasses.field(
        default=MODULE_FILE, metadata={"help": "TFX module file (preprocessing_fn, run_fn)"}
    )
    compile_only: str = dataclasses.field(
        default="", metadata={"help": "write a KubeflowV2 / Vertex JSON spec to this path instead of running"}
    )
    image: str = dataclasses.field(
        default="gcr.io/tfx-oss-public/tfx:1.16.0",
        metadata={"help": "container image for --compile-only (must have llm4msr_tf installed)"},
    )

    def resolved_model(self) -> ModelConfig:
        """The model config with `model_overrides` applied (a bad JSON object is a clear error)."""
        try:
            overrides = json.loads(self.model_overrides) if self.model_overrides else {}
        except json.JSONDecodeError as e:
            raise UserInputError(f"--model-overrides is not valid JSON ({e}); pass a JSON object") from e
        if not isinstance(overrides, dict):
            raise UserInputError("--model-overrides must be a JSON object, e.g. '{\"embedding_dim\": 16}'")
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UserInputError(f"--model-overrides: unknown ModelConfig field(s) {unknown}")
        return dataclasses.replace(self.model, **overrides)
