"""Validation of what a user hands a stage: config values and knowledge coverage, before work starts.

Each `check_*` raises `UserInputError` (a `ValueError`) naming the field's flag and a value that
works, so a bad setting fails in a second instead of after a long run (or, worse, silently:
``--epochs 0`` used to write an untrained model). Importing this module loads no TensorFlow.
"""
import dataclasses
import logging
import math
from typing import Any, Dict, Iterable, Optional

from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

COVERAGE_ACTIONS = ("warn", "fail")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require_int(cfg: Any, name: str, minimum: int = 1, optional: bool = False) -> None:
    """`cfg.<name>` must be an int >= minimum (None allowed when `optional`)."""
    v = getattr(cfg, name)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise UserInputError(f"{_flag(name)} must be an integer >= {minimum}, got {v!r}")


def require_ints(cfg: Any, name: str, minimum: int = 1, allow_empty: bool = True) -> None:
    """Every entry of the sequence `cfg.<name>` must be an int >= minimum."""
    vals = list(getattr(cfg, name) or ())
    if not vals and not allow_empty:
        raise UserInputError(f"{_flag(name)} needs at least one value")
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, int) or v < minimum]
    if bad:
        raise UserInputError(f"{_flag(name)} values must be integers >= {minimum}, got {vals}")


def require_number(cfg: Any, name: str, low: float = -math.inf, high: float = math.inf,
                   low_open: bool = False) -> None:
    """`cfg.<name>` must be a finite number in [low, high] (or (low, high] when `low_open`)."""
    v = getattr(cfg, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v <= high and (
        v > low if low_open else v >= low)
    if not ok:
        lo = "(" if low_open else "["
        raise UserInputError(f"{_flag(name)} must be a number in {lo}{low:g}, {high:g}], got {v!r}")


def check_train_config(cfg: Any) -> None:
    """Refuse TrainConfig values that cannot train (zero epochs, empty batches, bad coverage bound)."""
    for name in ("epochs", "batch_size", "eval_batch_size", "patience", "shuffle_buffer"):
        if hasattr(cfg, name):
            require_int(cfg, name, 1)
    if hasattr(cfg, "steps_per_epoch"):
        require_int(cfg, "steps_per_epoch", 1, optional=True)
    if hasattr(cfg, "min_user_knowledge_coverage"):
        require_number(cfg, "min_user_knowledge_coverage", 0.0, 1.0)
    action = getattr(cfg, "on_low_knowledge_coverage", "warn")
    if action not in COVERAGE_ACTIONS:
        raise UserInputError(f"--on-low-knowledge-coverage must be one of {COVERAGE_ACTIONS}, got {action!r}")
    check_choices(cfg)


def check_model_config(cfg: Any) -> None:
    """Refuse ModelConfig widths, ranks and rates that cannot build or train a model."""
    for name, minimum in (("embedding_dim", 1), ("hash_bins", 1), ("projection_dim", 1), ("meta_rank", 0),
                          ("meta_generator_units", 1), ("user_meta_layers", 0)):
        if hasattr(cfg, name):
            require_int(cfg, name, minimum)
    if hasattr(cfg, "expected_knowledge_dim"):
        require_int(cfg, "expected_knowledge_dim", 1, optional=True)
    if hasattr(cfg, "scenario_tower_units"):
        require_ints(cfg, "scenario_tower_units", 1, allow_empty=not getattr(cfg, "use_scenario_meta", False))
    if hasattr(cfg, "learning_rate"):
        require_number(cfg, "learning_rate", 0.0, 10.0, low_open=True)
    if hasattr(cfg, "meta_dropout"):
        require_number(cfg, "meta_dropout", 0.0, 1.0)
        if cfg.meta_dropout == 1.0:
            raise UserInputError("--meta-dropout must be below 1 (1 drops all user knowledge), got 1")
    if hasattr(cfg, "meta_l2"):
        require_number(cfg, "meta_l2", 0.0)
    if hasattr(cfg, "knowledge_pca_dim"):
        require_int(cfg, "knowledge_pca_dim", 0)
        if cfg.knowledge_pca_dim and getattr(cfg, "knowledge_normalize", "none") == "none":
            raise UserInputError(f"--knowledge-pca-dim {cfg.knowledge_pca_dim} needs --knowledge-normalize center, "
                                 "standardize or whiten (PCA is taken of the normalised table)")
    check_choices(cfg)


def check_choices(cfg: Any) -> None:
    """Every field with fixed choices holds one of them.

    argparse checks flags typed on the command line; values from a ``--model-config`` file or a
    saved config.json reach the dataclass without it.
    """
    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise UserInputError(f"{_flag(f.name)} must be one of {list(choices)}, got {getattr(cfg, f.name)!r}")


def check_knowledge_config(cfg: Any) -> None:
    """Refuse KnowledgeConfig values the Beam job cannot run with."""
    for name, minimum in (("batch_size", 1), ("max_length", 1), ("sort_window", 1), ("generate", 0),
                          ("num_shards", 0), ("direct_num_workers", 1), ("threads", 0)):
        if hasattr(cfg, name):
            require_int(cfg, name, minimum)


def user_knowledge_coverage(knowledge: Any, users: Iterable[str]) -> Dict[str, Any]:
    """How many of `users` (e.g. the training vocabulary) have a user vector in `knowledge`."""
    users = [str(u) for u in users]
    table = knowledge.tables.get("user")
    covered = sum(1 for u in users if table is not None and u in table)
    return {"users": len(users), "covered": covered,
            "fraction": (covered / len(users)) if users else 1.0}


def check_user_coverage(knowledge: Any, spec: Any, min_fraction: float, action: str = "warn",
                        model_cfg: Optional[Any] = None) -> Optional[Dict[str, Any]]:
    """Warn (or fail) when user knowledge covers fewer than `min_fraction` of the training users.

    Knowledge from another dataset or a stale run would otherwise give every user the default
    vector without a word. Skipped (None) when the model does not look user vectors up by key.

    Args:
        knowledge: the loaded `KnowledgeBase`.
        spec: the `DatasetSpec` (its user vocabulary is the training users).
        min_fraction: the least acceptable covered fraction, 0..1.
        action: ``warn`` (log a warning) or ``fail`` (raise `UserInputError`).
        model_cfg: the `ModelConfig`, to skip the check when user knowledge is unused.

    Returns:
        ``{"users", "covered", "fraction"}`` or None when not applicable.
    """
    if model_cfg is not None and (not getattr(model_cfg, "use_user_meta", True)
                                  or getattr(model_cfg, "user_knowledge_mode", "table") != "table"):
        return None
    try:
        users = spec.vocab(spec.user_feature)
    except (OSError, UserInputError) as e:  # e.g. a remote DATA_DIR the trainer cannot list
        log.warning("user-knowledge coverage not checked: cannot read the training users (%s)", e)
        return None
    cov = user_knowledge_coverage(knowledge, users)
    if cov["fraction"] + 1e-12 < float(min_fraction):
        where = getattr(knowledge, "path", "") or "the knowledge base"
        msg = (f"user knowledge in {where} covers {cov['covered']} of {cov['users']} training users "
               f"({cov['fraction']:.1%}, below --min-user-knowledge-coverage {float(min_fraction):g}); the others "
               "get the default vector: run `llm4msr knowledge` on this DATA_DIR's prompts")
        if action == "fail":
            raise UserInputError(msg)
        log.warning("%s (or pass --on-low-knowledge-coverage fail to stop)", msg)
    return cov
