"""`prepare`: source logs -> DATA_DIR (TFRecords, vocabularies, prompts, dataset.json).

Shared by every adapter: split, vocabularies from the training split, TFRecord writing,
prompts from the training split, per-split/per-scenario counts and the summary table.
Everything is written into a temporary directory renamed into place at the end, so a
failed run leaves no half-written DATA_DIR.
"""
import logging
import math
import os
import time
from typing import Callable, Dict

import numpy as np
import pandas as pd

from llm4msr_tf.config import save_config, to_dict
from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, USER, LoadedData
from llm4msr_tf.data.prompt_format import write_prompts
from llm4msr_tf.data.prompts import build_scenario_prompts, build_user_prompts
from llm4msr_tf.data.spec import SPLITS, DatasetSpec
from llm4msr_tf.data.config import DATASETS, PrepareConfig  # noqa: F401  (re-exported)
from llm4msr_tf.data.split import assign_splits, check_ratios, keep_per_user, resolve_method
from llm4msr_tf.data.writer import build_features, write_examples
from llm4msr_tf.utils.io import UserInputError, atomic_dir, check_output_dir

log = logging.getLogger(__name__)

def _adapter(name: str) -> Callable[[PrepareConfig], LoadedData]:
    if name == "synthetic":
        from llm4msr_tf.data.adapters.synthetic import load
    elif name == "movielens":
        from llm4msr_tf.data.adapters.movielens import load
    elif name == "amazon":
        from llm4msr_tf.data.adapters.amazon import load
    elif name == "kuaisar":
        from llm4msr_tf.data.adapters.kuaisar import load
    elif name == "csv":
        from llm4msr_tf.data.adapters.csv_table import load
    else:
        raise UserInputError(f"--dataset {name!r} is unknown; use one of {DATASETS}")
    return load


def check_config(cfg: PrepareConfig) -> None:
    """Refuse flag values that cannot work, naming the flag."""
    checks = [
        (cfg.user_prompt_max_chars >= 150, "--user-prompt-max-chars must be >= 150 (room for the question)"),
        (cfg.scenario_prompt_max_chars >= 200, "--scenario-prompt-max-chars must be >= 200"),
        (cfg.rows_per_shard >= 1, "--rows-per-shard must be >= 1"),
        (cfg.chunk_size >= 1, "--chunk-size must be >= 1"),
        (cfg.min_user_interactions >= 0, "--min-user-interactions must be >= 0"),
        (cfg.num_users >= 1 and cfg.num_items >= 1, "--num-users and --num-items must be >= 1"),
        (cfg.interactions_per_user >= 1, "--interactions-per-user must be >= 1"),
        (cfg.label_threshold is None or math.isfinite(cfg.label_threshold),
         "--label-threshold must be a finite number"),
        (cfg.seed >= 0, f"--seed must be an integer >= 0 (numpy seeds the split with it), got {cfg.seed}"),
        (cfg.train_keep_seed >= 0, f"--train-keep-seed must be an integer >= 0, got {cfg.train_keep_seed}"),
        (0.0 < cfg.train_keep_fraction <= 1.0,
         f"--train-keep-fraction must be in (0, 1] (the share of each user's training rows kept), "
         f"got {cfg.train_keep_fraction!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserInputError(msg)
    check_ratios(cfg.split_ratios)
    if cfg.encoding:
        import codecs

        try:
            codecs.lookup(cfg.encoding)
        except LookupError:
            raise UserInputError(f"--encoding {cfg.encoding!r} is not a known text encoding "
                                 "(e.g. utf-8, latin-1, cp1252)") from None


def source_paths(cfg: PrepareConfig) -> list:
    """Every input path prepare reads (--source entries, --meta files): --out must not hold them."""
    return [p.strip() for v in (cfg.source, cfg.meta) for p in (v or "").split(",") if p.strip()]


def load_source(cfg: PrepareConfig) -> LoadedData:
    """Run the adapter for cfg.dataset and apply the shared filters and clean-ups."""
    check_config(cfg)
    if cfg.dataset != "synthetic" and not cfg.source:
        raise UserInputError(f"--dataset {cfg.dataset} needs --source PATH (the folder or file to read)")
    data = _adapter(cfg.dataset)(cfg)
    f = data.frame
    if cfg.min_user_interactions > 1:
        counts = f[USER].value_counts()
        keep = f[USER].isin(counts.index[counts >= cfg.min_user_interactions]).to_numpy()
        data.dropped["users below --min-user-interactions"] = int((~keep).sum())
        f = f.loc[keep].reset_index(drop=True)
    # Vocabulary files hold one value per line: newlines inside values would shift them.
    for col in (USER, ITEM, *data.categorical):
        f[col] = _clean_strings(f[col])
    for col in data.numeric:
        f[col] = f[col].astype("float32")
    f[SCENARIO] = f[SCENARIO].astype("int64")
    f[LABEL] = f[LABEL].astype("int64")
    data.frame = f.reset_index(drop=True)
    data.validate()
    return data


def check_label_classes(labels: np.ndarray, source: str, cfg: PrepareConfig) -> None:
    """Refuse training labels of one class: no model can be trained or evaluated on them."""
    pos = int(np.sum(labels))
    if pos == 0 or pos == len(labels):
        which = "positives" if pos == 0 else "negatives"
        how = (f" with --label-threshold {cfg.label_threshold:g} (label = value > threshold)"
               if cfg.label_threshold is not None else "")
        raise UserInputError(
            f"the training split of {source} has no {which}{how} ({len(labels)} interactions, {pos} positive); "
            "check the label column" + (" and --label-threshold" if cfg.label_threshold is not None else ""))


def _clean_strings(col: pd.Series) -> pd.Categorical:
    """String categorical with no newlines (vocab files are line-based) and no empty values.

    Works on the distinct values only, so million-row columns stay cheap.
    """
    c = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col.astype(str))
    cats = pd.Index(c.categories).astype(str)
    clean = cats.str.replace("[\r\n]", " ", regex=True)
    clean = clean.where(clean != "", "unknown")
    codes = np.asarray(c.codes)
    if (codes >= 0).all() and clean.equals(pd.Index(c.categories)) and clean.is_unique:
        return c
    values = np.array(list(clean) + ["unknown"], dtype=object)
    return pd.Categorical(values[np.where(codes < 0, len(values) - 1, codes)])


def _counts(frame: pd.DataFrame, num_scenarios: int) -> Dict[str, object]:
    sc = frame[SCENARIO].to_numpy()
    lab = frame[LABEL].to_numpy()
    rows = np.bincount(sc, minlength=num_scenarios)
    pos = np.bincount(sc, weights=lab, minlength=num_scenarios).astype(int)
    return {
        "rows": int(len(frame)),
        "positives": int(lab.sum()),
        "users": int(frame[USER].nunique()),
        "items": int(frame[ITEM].nunique()),
        "per_scenario": {str(i): {"rows": int(rows[i]), "positives": int(pos[i])} for i in range(num_scenarios)},
    }


def summary_table(spec: DatasetSpec) -> str:
    """A one-screen table of rows / positives per split and scenario."""
    names = spec.scenario_names()
    w = max([len("scenario")] + [len(n) for n in names]) + 2
    lines = [f"{spec.name}: {spec.num_scenarios} scenarios, split={spec.split_method}",
             f"{'split':<7}{'scenario':<{w}}{'rows':>10}{'positives':>11}{'pos rate':>10}"]
    for split in SPLITS:
        st = spec.splits.get(split)
        if not st:
            continue
        for sid, name in enumerate(names):
            c = st["per_scenario"][str(sid)]
            rate = c["positives"] / c["rows"] if c["rows"] else 0.0
            lines.append(f"{split:<7}{name:<{w}}{c['rows']:>10}{c['positives']:>11}{rate:>10.1%}")
        rate = st["positives"] / st["rows"] if st["rows"] else 0.0
        lines.append(f"{split:<7}{'(all)':<{w}}{st['rows']:>10}{st['positives']:>11}{rate:>10.1%}")
    return "\n".join(lines)


def prepare(cfg: PrepareConfig) -> DatasetSpec:
    """Load cfg.source with its adapter and write DATA_DIR atomically; returns the spec."""
    t0 = time.time()
    check_config(cfg)
    protected = {"--source/--meta": source_paths(cfg)}
    # Fail before the (possibly long) load, not after it; atomic_dir checks again at the end.
    out = check_output_dir(cfg.out, "data", cfg.overwrite, protected)
    data = load_source(cfg)
    frame = data.frame
    method = resolve_method(cfg.split, data.has_timestamps)
    split = assign_splits(frame, method, cfg.split_ratios, cfg.seed)
    S = len(data.scenarios)
    log.info("%s: %d interactions, %d users, %d items, %d scenarios; split=%s",
             data.name, len(frame), frame[USER].nunique(), frame[ITEM].nunique(), S, method)
    sizes = np.bincount(split, minlength=len(SPLITS))
    empty = [name for name, n in zip(SPLITS, sizes) if n == 0]
    if empty:
        raise UserInputError(
            f"the {'/'.join(empty)} split(s) would be empty ({dict(zip(SPLITS, sizes.tolist()))} of "
            f"{len(frame)} interactions, --split {method}, --split-ratios {list(cfg.split_ratios)}); "
            + ("a user-time split keeps users with fewer than 3 interactions wholly in train: " if method == "user-time"
               else "") + "use more data, larger eval/test ratios or --split random")
    check_label_classes(frame.loc[split == 0, LABEL].to_numpy(), data.source_desc(), cfg)
    # Sparse regime: drop training rows only, so eval/test are the rows of the full split.
    keep = np.ones(len(frame), dtype=bool)
    train_rows_full = int((split == 0).sum())
    if cfg.train_keep_fraction < 1.0:
        tr = np.flatnonzero(split == 0)
        keep[tr[~keep_per_user(frame[USER].iloc[tr], cfg.train_keep_fraction, cfg.train_keep_seed)]] = False
    train = frame.loc[(split == 0) & keep]
    if cfg.train_keep_fraction < 1.0:
        # The full training split had both classes; say it is the sparse keep that lost one.
        pos = int(train[LABEL].sum())
        if pos == 0 or pos == len(train):
            raise UserInputError(
                f"--train-keep-fraction {cfg.train_keep_fraction:g} keeps {len(train)} of {train_rows_full} "
                f"training interactions of {data.source_desc()} and they hold no "
                f"{'positives' if pos == 0 else 'negatives'}; use a larger --train-keep-fraction "
                "or another --train-keep-seed")
    rng = np.random.default_rng(cfg.seed + 1)
    with atomic_dir(out, overwrite=cfg.overwrite, kind="data", protected=protected) as tmp:
        features = build_features(train, S, data.categorical, data.numeric, os.path.join(tmp, "vocab"))
        splits_info = {}
        for k, name in enumerate(SPLITS):
            idx = np.flatnonzero(split == k)
            # Shuffle within a split so readers with small shuffle buffers see mixed users and scenarios.
            # The permutation is drawn over the full split before left-out training rows are
            # removed, so eval/test are written in the same order with or without them.
            perm = rng.permutation(idx) if len(idx) else idx
            part = frame.iloc[perm[keep[perm]]]
            write_examples(part, features, os.path.join(tmp, name), rows_per_shard=cfg.rows_per_shard,
                           progress=cfg.progress, desc=f"write {name}")
            splits_info[name] = _counts(part, S)
        sp = build_scenario_prompts(train, data.items, data.scenarios, cfg.scenario_prompt_max_chars,
                                    item_noun=data.item_noun)
        up = build_user_prompts(train, data.items, data.scenarios, cfg.user_prompt_max_chars,
                                item_noun=data.item_noun, progress=cfg.progress, text_column=data.text_column,
                                include_user_id=cfg.user_prompt_id)
        write_prompts(tmp, sp + up)
        config = to_dict(cfg)
        config["split_resolved"] = method  # user-time | global-time | random
        config["source_rows"] = data.source_rows
        config["dropped"] = data.dropped
        config["source_files"] = data.source_files
        config["train_keep"] = {
            "fraction": float(cfg.train_keep_fraction), "seed": int(cfg.train_keep_seed),
            "train_rows_full": train_rows_full, "train_rows_kept": int(len(train)),
            "train_users": int(train[USER].nunique()),
        }
        config["prompts"] = {
            "scenario": len(sp), "user": len(up),
            "user_truncated": int(sum(p.truncated for p in up)),
            "user_mean_chars": float(np.mean([len(p.prompt) for p in up])) if up else 0.0,
        }
        spec = DatasetSpec(
            name=data.name, num_scenarios=S, scenarios=data.scenarios, features=features,
            splits=splits_info, split_method="time" if method.endswith("time") else "random",
            config=config,
        )
        spec.save(tmp)
        save_config(cfg, tmp)
    spec.data_dir = out
    log.info("wrote %s in %.1fs", out, time.time() - t0)
    return spec
