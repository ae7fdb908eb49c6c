"""`ModelConfig` (every knob of the LLM4MSR model) and `TrainConfig` (how to train it).

Both import without TensorFlow, so the CLI can build its flags cheaply. A `ModelConfig` field
whose name is an `LLM4MSR` constructor argument reaches the model as is (`build_model` passes
such fields by name); the others (backbone name, embeddings, knowledge defaults, optimizer) are
resolved by `build_model`.
"""
import dataclasses
import json
from typing import Any, Dict, Optional, Tuple, Union

from llm4msr_tf.utils.io import UserInputError

OPTIMIZERS = ("adam", "legacy_adam")


# The paper's fusion (generated low-rank user meta weights on the raw LLM vectors, every path on
# from the start): `ModelConfig(**PAPER_FUSION)` reproduces LLM4MSR as published. ModelConfig's own
# defaults are the fusion selected on eval AUC (feature + center + zero_init).
PAPER_FUSION = {"user_meta_form": "lowrank", "zero_init": False, "knowledge_normalize": "none"}
# The fusion at the backbone's cost: the default's appended knowledge features, narrower (16 per
# level), from PCA-64 tables, and no scenario-level meta tower (the scenario knowledge still
# reaches the backbone as an appended feature). Not the default: under the quality protocol it
# scored below the default fusion on ML-100K (README "Performance" has its cost and quality).
LITE_FUSION = {"user_meta_form": "feature", "zero_init": True, "knowledge_normalize": "center",
               "projection_dim": 16, "use_scenario_meta": False, "knowledge_pca_dim": 64}


@dataclasses.dataclass
class ModelConfig:
    """Model hyper-parameters; defaults run. ``use_knowledge=False`` is the backbone-only baseline."""

    backbone: str = dataclasses.field(
        default="shared_bottom", metadata={"help": "backbone name (shared_bottom, mmoe, ple, star, sar_net, m2m, adasparse, adaptdhm, epnet, "
                               "ppnet, pepnet, hinet, m3oe, hamur, or a registered one)"})
    backbone_params: Union[str, Dict[str, Any]] = dataclasses.field(
        default="{}", metadata={"help": "backbone hyper-parameters as a JSON object, e.g. '{\"num_experts\": 8}'"})
    embedding_dim: int = dataclasses.field(default=16, metadata={"help": "width of each feature embedding"})
    categorical_encoding: str = dataclasses.field(
        default="vocab", metadata={"help": "string ids: vocab (StringLookup, OOV->0) or hash", "choices": ["vocab", "hash"]})
    hash_bins: int = dataclasses.field(default=100_000, metadata={"help": "buckets when categorical_encoding=hash"})
    exclude_features: Tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "features of the spec not to embed"})
    use_knowledge: bool = dataclasses.field(
        default=True, metadata={"help": "LLM4MSR on (knowledge + meta networks) or backbone only", "cli": False})
    use_user_meta: bool = dataclasses.field(default=True, metadata={"help": "user-level meta layer at the bottom"})
    use_scenario_meta: bool = dataclasses.field(default=True, metadata={"help": "scenario-level parallel meta tower"})
    projection_dim: int = dataclasses.field(default=64, metadata={"help": "width of projected knowledge vectors"})
    meta_rank: int = dataclasses.field(default=8, metadata={"help": "rank of generated meta weights (0 = full rank)"})
    meta_generator_units: int = dataclasses.field(default=64, metadata={"help": "hidden width of the weight generators"})
    meta_activation: str = dataclasses.field(default="relu", metadata={"help": "activation of the meta layers"})
    user_meta_layers: int = dataclasses.field(default=1, metadata={"help": "number of stacked user-level meta layers"})
    scenario_tower_units: Tuple[int, ...] = dataclasses.field(
        default=(64, 32), metadata={"help": "widths of the scenario-level meta tower"})
    # The three fusion defaults below were selected on eval AUC (benchmarks/results/fusion_screen_*;
    # README "Does the knowledge help?"); LLM4MSR(...) built directly keeps the paper's form.
    user_meta_form: str = dataclasses.field(
        default="feature", metadata={"help": "user-level meta layer: feature (projected knowledge appended to the "
                                             "input; the eval-selected default), lowrank (the paper's generated "
                                             "weights) or gate (x * 2 sigmoid(g(k)))",
                                     "choices": ["lowrank", "gate", "feature"]})
    zero_init: bool = dataclasses.field(
        default=True, metadata={"help": "start every knowledge path switched off (LLM4MSR starts as the backbone)"})
    meta_dropout: float = dataclasses.field(default=0.0, metadata={"help": "dropout on projected user knowledge"})
    meta_l2: float = dataclasses.field(default=0.0, metadata={"help": "L2 penalty on knowledge projections and generators"})
    knowledge_normalize: str = dataclasses.field(
        default="center", metadata={"help": "re-express each knowledge table relative to its keys: none, center, "
                                          "standardize or whiten (statistics stored in the model)",
                                  "choices": ["none", "center", "standardize", "whiten"]})
    knowledge_pca_dim: int = dataclasses.field(
        default=0, metadata={"help": "keep only the top principal components of each knowledge table across its "
                                     "keys (0 = all; needs --knowledge-normalize other than none)"})
    knowledge_default: str = dataclasses.field(
        default="mean", metadata={"help": "vector for unknown keys: mean or zeros", "choices": ["mean", "zeros"]})
    user_knowledge_mode: str = dataclasses.field(
        default="table", metadata={"help": "user vectors from an in-model table or from an input feature",
                                   "choices": ["table", "feature"]})
    user_knowledge_feature: str = dataclasses.field(
        default="user_knowledge", metadata={"help": "input feature holding the user vector in feature mode"})
    expected_knowledge_dim: Optional[int] = dataclasses.field(
        default=None, metadata={"help": "fail unless the knowledge manifest has this dim"})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam learning rate"})
    optimizer: str = dataclasses.field(
        default="adam", metadata={"help": "adam, or legacy_adam (same update rule, traces faster in tf_keras 2.16)",
                                  "choices": list(OPTIMIZERS)})
    per_scenario_metrics: bool = dataclasses.field(
        default=True, metadata={"help": "track AUC / log loss per scenario during fit", "cli": False})

    def __post_init__(self) -> None:
        if isinstance(self.backbone_params, str):
            try:
                params = json.loads(self.backbone_params or "{}")
            except json.JSONDecodeError as e:
                raise UserInputError(f"--backbone-params is not valid JSON ({e}): {self.backbone_params!r}") from e
            if not isinstance(params, dict):
                raise UserInputError(f"--backbone-params must be a JSON object, got {self.backbone_params!r}")
            self.backbone_params = params
        self.exclude_features = tuple(self.exclude_features)
        self.scenario_tower_units = tuple(int(u) for u in self.scenario_tower_units)


@dataclasses.dataclass
class TrainConfig:
    """How to train: data, knowledge, output, epochs and input-pipeline settings."""

    data: str = dataclasses.field(default="", metadata={"help": "prepared data dir (llm4msr prepare --out)"})
    knowledge: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "knowledge dir (llm4msr knowledge --out); omit with --no-knowledge"})
    out: str = dataclasses.field(default="", metadata={"help": "output model dir MDIR"})
    epochs: int = dataclasses.field(default=10, metadata={"help": "maximum epochs"})
    batch_size: int = dataclasses.field(default=1024, metadata={"help": "training batch size"})
    eval_batch_size: int = dataclasses.field(default=4096, metadata={"help": "eval/test batch size"})
    patience: int = dataclasses.field(default=2, metadata={"help": "early stopping patience on eval AUC (epochs)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "random seed (weights, shuffling, dropout)"})
    shuffle_buffer: int = dataclasses.field(default=100_000, metadata={"help": "training shuffle buffer (records)"})
    cache: bool = dataclasses.field(default=True, metadata={"help": "cache the splits in memory"})
    steps_per_epoch: Optional[int] = dataclasses.field(
        default=None, metadata={"help": "cap on training steps per epoch (default: the whole split)"})
    export: bool = dataclasses.field(default=True, metadata={"help": "also export a serving SavedModel"})
    progress: str = dataclasses.field(
        default="bar", metadata={"help": "Keras progress: bar, epoch or none", "choices": ["bar", "epoch", "none"]})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace an existing --out dir"})
    # Knowledge from another dataset or a stale run otherwise trains silently on default vectors.
    min_user_knowledge_coverage: float = dataclasses.field(
        default=0.5, metadata={"help": "least fraction of the training users with a user vector in --knowledge"})
    on_low_knowledge_coverage: str = dataclasses.field(
        default="warn", metadata={"help": "below --min-user-knowledge-coverage: warn or fail",
                                  "choices": ["warn", "fail"]})
