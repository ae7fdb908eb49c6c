"""PrepareConfig: the typed config of `llm4msr prepare` (kept light: no pandas/TensorFlow import)."""
import dataclasses
from typing import Optional, Tuple

SPLIT_METHODS = ("auto", "user-time", "global-time", "random")

DATASETS = ("synthetic", "movielens", "amazon", "kuaisar", "csv")


@dataclasses.dataclass
class PrepareConfig:
    """Everything `llm4msr prepare` needs; each field is a CLI flag (--field-name)."""

    dataset: str = dataclasses.field(default="synthetic", metadata={
        "help": "source format", "choices": DATASETS})
    source: str = dataclasses.field(default="", metadata={
        "help": "input folder or file(s), comma-separated (not needed for synthetic)"})
    out: str = dataclasses.field(default="prepared", metadata={"help": "output DATA_DIR"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace an existing --out"})
    seed: int = dataclasses.field(default=42, metadata={"help": "seed of the random split and the synthetic world"})
    split: str = dataclasses.field(default="auto", metadata={
        "help": "auto = user-time with timestamps, random without", "choices": SPLIT_METHODS})
    split_ratios: Tuple[float, ...] = dataclasses.field(default=(0.8, 0.1, 0.1), metadata={
        "help": "train eval test proportions: three numbers > 0 that sum to 1"})
    label_threshold: Optional[float] = dataclasses.field(default=None, metadata={
        "help": "rating > threshold is a positive: movielens and amazon ratings (default 3); a csv label "
                "column must hold 0/1 unless this is given"})
    scenario_by: str = dataclasses.field(default="age", metadata={
        "help": "movielens scenarios: by user age group or by genre family", "choices": ("age", "genre")})
    columns: str = dataclasses.field(default="", metadata={
        "help": "csv column mapping, e.g. scenario=domain,user=user_id,item=item_id,label=click"
                "[,timestamp=ts,categorical=a+b,numeric=c+d,title=t,categories=x+y]; "
                "empty = detect a Scenario-Wise-Rec layout"})
    encoding: str = dataclasses.field(default="utf-8", metadata={
        "help": "text encoding of csv sources (e.g. latin-1, cp1252)"})
    delimiter: str = dataclasses.field(default="auto", metadata={
        "help": "csv field separator (auto: tab for .tsv/.tab files, else sniffed from the header)"})
    meta: str = dataclasses.field(default="", metadata={
        "help": "amazon metadata file(s) (meta_*.json), comma-separated; default: meta_*.json next to the reviews"})
    min_user_interactions: int = dataclasses.field(default=1, metadata={
        "help": "drop users with fewer interactions (after all other filters)"})
    user_prompt_max_chars: int = dataclasses.field(default=400, metadata={
        "help": "character budget of a user prompt (~4 chars per token)"})
    user_prompt_id: bool = dataclasses.field(default=True, metadata={
        "help": "open each user prompt with the raw user id (\"User 42's movies ...\"); "
                "--no-user-prompt-id writes \"This user's movies ...\" so only the history differs"})
    train_keep_fraction: float = dataclasses.field(default=1.0, metadata={
        "help": "sparse regime: keep this seeded fraction (0 < f <= 1) of each user's training "
                "interactions (at least one); eval/test rows are unchanged, vocabularies and prompts "
                "come from the kept training rows only"})
    train_keep_seed: int = dataclasses.field(default=0, metadata={
        "help": "seed of --train-keep-fraction's choice of rows"})
    scenario_prompt_max_chars: int = dataclasses.field(default=1200, metadata={
        "help": "character budget of a scenario prompt"})
    rows_per_shard: int = dataclasses.field(default=500_000, metadata={"help": "TFRecord rows per file"})
    chunk_size: int = dataclasses.field(default=200_000, metadata={"help": "rows read per chunk from large sources"})
    num_users: int = dataclasses.field(default=400, metadata={"help": "synthetic: users"})
    num_items: int = dataclasses.field(default=300, metadata={"help": "synthetic: items"})
    interactions_per_user: int = dataclasses.field(default=60, metadata={
        "help": "synthetic: mean interactions per user (all scenarios)"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "show progress bars"})

# Ratings above this are positives when --label-threshold is not given (MovieLens, Amazon stars).
DEFAULT_RATING_THRESHOLD = 3.0


def rating_threshold(cfg: PrepareConfig) -> float:
    """The rating threshold of a ratings dataset: --label-threshold, else the default 3."""
    return DEFAULT_RATING_THRESHOLD if cfg.label_threshold is None else float(cfg.label_threshold)
