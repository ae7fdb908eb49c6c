"""`ExplainConfig`: every flag of `llm4msr explain`, with defaults that run (imports without TensorFlow)."""
import dataclasses
from typing import Tuple

NORMALIZE_CHOICES = ["", "none", "center", "standardize", "whiten"]


@dataclasses.dataclass
class ExplainConfig:
    """What to explain (a dataset, one or more knowledge directories, optionally a trained model) and where to write it."""

    model: str = dataclasses.field(
        default="", metadata={"help": "MODEL_DIR written by `llm4msr train` (needed for 'what the knowledge "
                                      "changes' and the cards' top items; its data and knowledge are the defaults)"})
    data: str = dataclasses.field(default="", metadata={"help": "DATA_DIR (default: the model's training data)"})
    knowledge: Tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "KNOWLEDGE_DIR(s): the scenario map is drawn for each (default: the model's)"})
    labels: Tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "a name per --knowledge dir for the tables and plots (default: each "
                                      "one's LLM), e.g. to tell two knowledge variants of one LLM apart"})
    out: str = dataclasses.field(default="explain_out", metadata={"help": "output folder"})
    name: str = dataclasses.field(
        default="explain", metadata={"help": "file stem: NAME.json, NAME.md, NAME.html, NAME_*.png"})
    split: str = dataclasses.field(default="test", metadata={"help": "split to decompose",
                                                             "choices": ["train", "eval", "test"]})
    users: Tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "user ids to write a card for (default: --auto-users picked from the split)"})
    auto_users: int = dataclasses.field(
        default=2, metadata={"help": "cards picked automatically when --users is empty (the most moved user, "
                                     "a median-history user)"})
    texts: str = dataclasses.field(
        default="", metadata={"help": "a KNOWLEDGE_DIR made with --generate whose text the cards show "
                                      "(default: the text in the model's knowledge, if any)"})
    threshold: float = dataclasses.field(
        default=0.05, metadata={"help": "a prediction is 'moved' when |p with - p without| exceeds this"})
    history_buckets: Tuple[int, ...] = dataclasses.field(
        default=(25, 50, 100, 200, 400),
        metadata={"help": "upper edges of the history-length buckets (training interactions per user)"})
    normalize: str = dataclasses.field(
        default="", metadata={"help": "normalisation before knowledge cosines (default: the model's "
                                      "knowledge_normalize, else center)", "choices": NORMALIZE_CHOICES})
    nearest: int = dataclasses.field(default=5, metadata={"help": "nearest users by knowledge on a card"})
    top_items: int = dataclasses.field(default=5, metadata={"help": "top items per scenario on a card"})
    user_pairs: int = dataclasses.field(
        default=20000, metadata={"help": "random user pairs for the user-map rank correlation"})
    limit: int = dataclasses.field(default=0, metadata={"help": "decompose only the first N rows (0 = all)"})
    batch_size: int = dataclasses.field(default=4096, metadata={"help": "examples per decompose batch"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the user-pair sample"})
