"""The dataset spec: what `llm4msr prepare` wrote and how every later stage reads it.

`DatasetSpec.load(DATA_DIR)` reads ``DATA_DIR/dataset.json`` (format in docs/interfaces.md)
and gives the feature list, scenario names, vocabularies, TFRecord patterns and the
``tf.io`` parsing spec. TensorFlow is imported lazily so that reading a spec stays cheap.
"""
import dataclasses
import glob
import os
from typing import Any, Dict, List, Optional

from llm4msr_tf.utils.io import UserInputError, read_json, write_json

DATASET_FILENAME = "dataset.json"
SPLITS = ("train", "eval", "test")
TFRECORD_SUFFIX = ".tfrecord.gz"

CATEGORICAL = "categorical"
NUMERIC = "numeric"
_KINDS = (CATEGORICAL, NUMERIC)
_DTYPES = ("string", "int64", "float32")


@dataclasses.dataclass
class FeatureSpec:
    """One tf.Example feature: its name, kind (categorical|numeric), dtype and vocabulary."""

    name: str
    kind: str
    dtype: str
    vocab_size: Optional[int] = None
    vocab_file: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise UserInputError(f"feature {self.name!r}: kind {self.kind!r} is not one of {_KINDS}")
        if self.dtype not in _DTYPES:
            raise UserInputError(f"feature {self.name!r}: dtype {self.dtype!r} is not one of {_DTYPES}")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form used in dataset.json (unset optional fields are left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class ScenarioSpec:
    """One scenario: its id (0..S-1), short name and text description (prompt material)."""

    id: int
    name: str
    description: str = ""

    def __getitem__(self, key: str) -> Any:
        # Lets readers that treat scenarios as the JSON dicts of dataset.json keep working.
        return getattr(self, key)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form used in dataset.json."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DatasetSpec:
    """The contents of dataset.json plus the directory it was loaded from."""

    name: str
    num_scenarios: int
    scenarios: List[ScenarioSpec]
    features: List[FeatureSpec]
    label: str = "label"
    user_feature: str = "user_id"
    item_feature: str = "item_id"
    scenario_feature: str = "scenario_id"
    splits: Dict[str, Any] = dataclasses.field(default_factory=dict)
    split_method: str = "random"
    config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Knowledge vectors joined into every example (`llm4msr join-knowledge`, feature mode):
    # feature name -> {"dim", "key_type", "key_feature", "default", "knowledge_dir", "llm"}.
    # Parsed as float32 [dim]; not embedded (the model reads them as knowledge).
    knowledge_features: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    data_dir: Optional[str] = None  # where it was loaded from; not written to dataset.json

    # ---- views -------------------------------------------------------------------------
    @property
    def categorical(self) -> List[FeatureSpec]:
        """Categorical features (ids, scenario id, extra categorical), in spec order."""
        return [f for f in self.features if f.kind == CATEGORICAL]

    @property
    def numeric(self) -> List[FeatureSpec]:
        """Numeric (float) features, in spec order."""
        return [f for f in self.features if f.kind == NUMERIC]

    @property
    def feature_names(self) -> List[str]:
        """Names of every tf.Example feature except the label."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        """The FeatureSpec called `name`, or a clear error listing the valid names."""
        for f in self.features:
            if f.name == name:
                return f
        raise UserInputError(
            f"dataset {self.name!r} has no feature {name!r}; features: {self.feature_names}"
        )

    def scenario_names(self) -> List[str]:
        """Scenario names indexed by scenario id."""
        return [s.name for s in sorted(self.scenarios, key=lambda s: s.id)]

    # ---- files -------------------------------------------------------------------------
    def _resolve(self, rel: str) -> str:
        if os.path.isabs(rel) or self.data_dir is None:
            return rel
        return os.path.join(self.data_dir, rel)

    def vocab(self, name: str) -> List[str]:
        """Training-split vocabulary of a categorical feature, most frequent first.

        Int64 categoricals without a vocab file (e.g. ``scenario_id``) are ``["0", .., "n-1"]``.
        """
        f = self.feature(name)
        if f.kind != CATEGORICAL:
            raise UserInputError(f"feature {name!r} is numeric and has no vocabulary")
        if not f.vocab_file:
            if f.dtype == "int64" and f.vocab_size is not None:
                return [str(i) for i in range(int(f.vocab_size))]
            raise UserInputError(f"feature {name!r} has no vocab_file in {DATASET_FILENAME}")
        path = self._resolve(f.vocab_file)
        if not os.path.exists(path):
            raise UserInputError(
                f"vocabulary file {path} for feature {name!r} is missing; re-run `llm4msr prepare`"
            )
        with open(path, encoding="utf-8", newline="\n") as fh:
            text = fh.read()
        # One value per line; split on "\n" only (values may hold other Unicode separators).
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []

    def tfrecord_pattern(self, split: str) -> str:
        """Glob pattern of a split's gzip TFRecord files, e.g. DATA_DIR/train/*.tfrecord.gz."""
        if split not in SPLITS:
            raise UserInputError(f"unknown split {split!r}; use one of {SPLITS}")
        return os.path.join(self.data_dir or ".", split, "*" + TFRECORD_SUFFIX)

    def tfrecord_files(self, split: str) -> List[str]:
        """The sorted list of a split's TFRecord files."""
        return sorted(glob.glob(self.tfrecord_pattern(split)))

    def prompts_path(self, key_type: str) -> str:
        """Path of prompts/scenario.jsonl or prompts/user.jsonl."""
        from llm4msr_tf.data.prompt_format import prompt_path

        return prompt_path(self.data_dir or ".", key_type)

    def feature_spec(self, with_knowledge: bool = True) -> Dict[str, Any]:
        """`tf.io.parse_example` spec for every feature and the label (scalars -> [B]).

        Joined knowledge vectors (`knowledge_features`) are ``[B, dim]`` float32; leave them
        out with ``with_knowledge=False``.
        """
        import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
        import tensorflow as tf

        dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
        spec = {f.name: tf.io.FixedLenFeature([], dtypes[f.dtype]) for f in self.features}
        spec[self.label] = tf.io.FixedLenFeature([], tf.int64)
        if with_knowledge:
            for name, k in self.knowledge_features.items():
                spec[name] = tf.io.FixedLenFeature([int(k["dim"])], tf.float32)
        return spec

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The JSON form written to dataset.json."""
        return {
            "name": self.name,
            "label": self.label,
            "user_feature": self.user_feature,
            "item_feature": self.item_feature,
            "scenario_feature": self.scenario_feature,
            "num_scenarios": self.num_scenarios,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "features": [f.to_dict() for f in self.features],
            "splits": self.splits,
            "split_method": self.split_method,
            "config": self.config,
            **({"knowledge_features": self.knowledge_features} if self.knowledge_features else {}),
        }

    def save(self, data_dir: Optional[str] = None) -> str:
        """Write dataset.json into `data_dir` (default: the dir it was loaded from)."""
        d = data_dir or self.data_dir
        if d is None:
            raise UserInputError("DatasetSpec.save needs a directory")
        path = os.path.join(d, DATASET_FILENAME)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: Dict[str, Any], data_dir: Optional[str] = None) -> "DatasetSpec":
        """Build a spec from the dataset.json dict, checking the required keys."""
        where = os.path.join(data_dir, DATASET_FILENAME) if data_dir else DATASET_FILENAME
        missing = [k for k in ("name", "num_scenarios", "scenarios", "features") if k not in d]
        if missing:
            raise UserInputError(f"{where} lacks keys {missing}; re-run `llm4msr prepare`")
        try:
            features = [FeatureSpec(**f) for f in d["features"]]
            scenarios = [ScenarioSpec(**s) for s in d["scenarios"]]
        except TypeError as e:
            raise UserInputError(f"{where}: malformed feature or scenario entry ({e})") from e
        spec = cls(
            name=d["name"],
            num_scenarios=int(d["num_scenarios"]),
            scenarios=scenarios,
            features=features,
            label=d.get("label", "label"),
            user_feature=d.get("user_feature", "user_id"),
            item_feature=d.get("item_feature", "item_id"),
            scenario_feature=d.get("scenario_feature", "scenario_id"),
            splits=d.get("splits", {}),
            split_method=d.get("split_method", "random"),
            config=d.get("config", {}),
            knowledge_features=dict(d.get("knowledge_features") or {}),
            data_dir=os.path.abspath(data_dir) if data_dir else None,
        )
        for name, k in spec.knowledge_features.items():
            if not isinstance(k, dict) or int(k.get("dim") or 0) < 1:
                raise UserInputError(f"{where}: knowledge feature {name!r} needs a positive 'dim', got {k!r}")
        if len(spec.scenarios) != spec.num_scenarios:
            raise UserInputError(
                f"{where}: num_scenarios={spec.num_scenarios} but {len(spec.scenarios)} scenarios listed"
            )
        return spec

    @classmethod
    def load(cls, data_dir: str) -> "DatasetSpec":
        """Read DATA_DIR/dataset.json written by `llm4msr prepare`.

        Args:
            data_dir: the prepared dataset directory.

        Returns:
            The spec, with ``data_dir`` set so paths (vocabularies, TFRecords) resolve.
        """
        path = os.path.join(data_dir, DATASET_FILENAME)
        if not os.path.exists(path):
            raise UserInputError(
                f"{path} not found: {data_dir} is not a prepared dataset; run "
                f"`llm4msr prepare --dataset NAME --out {data_dir}` first"
            )
        return cls.from_dict(read_json(path), data_dir=data_dir)
