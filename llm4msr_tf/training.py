"""The one training loop: tf.data from TFRecords, Keras fit with one early-stopping rule, metrics.

Input pipeline (`tfrecord_dataset`, `make_dataset` for a prepared split): the gzip files are
interleaved, records batched *then* parsed with one `tf.io.parse_example` per batch (much
cheaper than per record), cached and prefetched. For training the serialized records are
cached and re-shuffled every epoch before batching; eval/test cache the parsed batches.

`fit` is used by ``llm4msr train`` (`run_training`) and by the TFX Trainer's ``run_fn``
(`llm4msr_tf.tfx.trainer`): early stopping after ``patience`` epochs without improvement of
the eval AUC, then the best epoch's weights are restored (`BestEpoch`, also when training runs
to the last epoch). `evaluate` reports exact AUC and log loss overall and per scenario in the
one metrics schema (`llm4msr_tf.metrics.scenario_metrics`). `run_training` writes
MDIR/metrics.json, config.json, model.keras and an exported SavedModel.

Distributed training (`llm4msr_tf.distribute`) is the same loop: `run_training` creates the
strategy first, builds and compiles the model in its scope, `fit` shards the input across
workers and adds ``BackupAndRestore``; only the chief writes MDIR.
"""
import contextlib
import json
import logging
import math
import os
import shutil
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from llm4msr_tf import metrics as msr_metrics
from llm4msr_tf.metrics import METRICS_FILENAME
from llm4msr_tf.config import CONFIG_FILENAME, to_dict
from llm4msr_tf.distribute import DistributeConfig
from llm4msr_tf.models.config import ModelConfig, TrainConfig
from llm4msr_tf.utils.io import UserInputError, atomic_dir, check_output_dir, write_json

log = logging.getLogger(__name__)

SAVED_MODEL_DIRNAME = "saved_model"


def make_dataset(spec: Any, split: str, batch_size: int, training: bool = False, shuffle_buffer: int = 100_000,
                 seed: int = 0, cache: bool = True) -> tf.data.Dataset:
    """Batched dict-of-tensors dataset of a prepared split (features + label), parsed per batch.

    Args:
        spec: the `DatasetSpec` of a prepared DATA_DIR.
        split: ``train``, ``eval`` or ``test``.
        batch_size: examples per batch.
        training: shuffle the files and the records (re-shuffled every epoch).
        shuffle_buffer: records in the shuffle buffer (training only).
        seed: shuffle seed.
        cache: keep the split in memory after the first pass.

    Returns:
        A `tf.data.Dataset` of ``{feature name: tensor [B]}`` dicts.
    """
    files = spec.tfrecord_files(split)
    if not files:
        raise UserInputError(
            f"no TFRecords match {spec.tfrecord_pattern(split)}; re-run `llm4msr prepare` for {spec.data_dir}")
    return tfrecord_dataset(files, spec.feature_spec(), batch_size, training=training,
                            shuffle_buffer=shuffle_buffer, seed=seed, cache=cache)


def tfrecord_dataset(files: Sequence[str], feature_spec: Dict[str, Any], batch_size: int, training: bool = False,
                     shuffle_buffer: int = 100_000, seed: int = 0, cache: bool = True) -> tf.data.Dataset:
    """Batched, parsed dataset of gzip tf.Example TFRecord files (any feature spec, e.g. TFX Transform's).

    Args:
        files: the TFRecord files (read interleaved, in a deterministic order).
        feature_spec: the `tf.io.parse_example` spec.
        batch_size, training, shuffle_buffer, seed, cache: as in `make_dataset`.

    Returns:
        A `tf.data.Dataset` of ``{feature name: tensor}`` dicts.
    """
    files = list(files)
    if not files:
        raise ValueError("tfrecord_dataset needs at least one file")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)

    def parse(batch: tf.Tensor) -> Dict[str, tf.Tensor]:
        return tf.io.parse_example(batch, feature_spec)

    if training:
        if cache:
            ds = ds.cache()  # serialized records: still re-shuffled every epoch below
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)


class BestEpoch(tf.keras.callbacks.Callback):
    """Early stopping on a monitored metric that always restores the best epoch's weights.

    With a ``state_dir`` (inside a BackupAndRestore directory) the state (best value and epoch,
    patience counter, best weights) is saved at every epoch end and read back at the start of
    a resumed run, so a run killed and restarted stops and restores exactly as one that was not.
    Only the chief (``write_state``) writes it.
    """

    STATE_FILE = "best_epoch.json"
    WEIGHTS_FILE = "best_weights.npz"

    def __init__(self, monitor: str = "val_auc", patience: int = 2, state_dir: Optional[str] = None,
                 write_state: bool = True) -> None:
        super().__init__()
        self.monitor, self.patience = monitor, int(patience)
        self.best, self.best_epoch, self.best_weights, self.wait = -math.inf, -1, None, 0
        self.epoch_seconds: list = []
        self.state_dir, self.write_state = state_dir, bool(write_state)
        self.resumed_from_state = False
        self._t0 = 0.0

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        """Read the saved state of an interrupted run, if there is one."""
        path = os.path.join(self.state_dir, self.STATE_FILE) if self.state_dir else ""
        if not path or not os.path.exists(path):
            return
        with open(path) as f:
            st = json.load(f)
        self.best, self.best_epoch, self.wait = float(st["best"]), int(st["best_epoch"]), int(st["wait"])
        with np.load(os.path.join(self.state_dir, self.WEIGHTS_FILE)) as z:
            self.best_weights = [z[f"w{i}"] for i in range(len(z.files))]
        self.resumed_from_state = True
        log.info("resumed early-stopping state: best %s=%.4f at epoch %d", self.monitor, self.best,
                 self.best_epoch + 1)

    def _save_state(self) -> None:
        if not (self.state_dir and self.write_state and self.best_weights is not None):
            return
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = os.path.join(self.state_dir, ".tmp-" + self.WEIGHTS_FILE)
        np.savez(tmp, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
        os.replace(tmp, os.path.join(self.state_dir, self.WEIGHTS_FILE))
        write_json(os.path.join(self.state_dir, self.STATE_FILE),
                   {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait})

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """Start the epoch timer."""
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """Track the best epoch and stop after `patience` epochs without improvement."""
        self.epoch_seconds.append(time.perf_counter() - self._t0)
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"early stopping monitors {self.monitor!r}, which fit did not report")
        if value > self.best:
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                log.info("early stopping after epoch %d: %s did not improve for %d epochs",
                         epoch + 1, self.monitor, self.patience)
                self.model.stop_training = True
        self._save_state()

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        """Restore the best epoch's weights."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            log.info("restored weights of epoch %d (%s=%.4f)", self.best_epoch + 1, self.monitor, self.best)


class GlobalMetrics(tf.keras.callbacks.Callback):
    """Exact global metric values in the epoch logs of multi-worker training (+ one log line per epoch).

    A tfrs model's train step returns its metrics next to its losses, so Keras cannot match
    them to ``model.metrics`` and, under MultiWorkerMirroredStrategy, SUMS every worker's local
    result (an AUC of 1.3 with two workers). This callback reads each metric in cross-replica
    context instead (aggregated over all workers) for training (just before validation resets
    the metrics) and validation, and writes the values into the logs that early stopping and
    the history see; every worker then takes the same early-stopping decision.
    """

    def __init__(self, is_chief: bool = True) -> None:
        super().__init__()
        self.is_chief = bool(is_chief)
        self._in_epoch, self._train, self._t0 = False, {}, 0.0

    def _results(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for m in self.model.metrics:
            r = m.result()
            if isinstance(r, dict):
                out.update({k: float(v) for k, v in r.items()})
            else:
                out[m.name] = float(r)
        return out

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """Mark the start of a training epoch."""
        self._in_epoch, self._train, self._t0 = True, {}, time.perf_counter()

    def on_test_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        """Validation is about to reset the metrics: read the training ones now."""
        if self._in_epoch:
            self._train = self._results()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """Replace the summed per-worker values with the global ones."""
        self._in_epoch = False
        if logs is None:
            return
        for k, v in self._train.items():
            if k in logs:
                logs[k] = v
        for k, v in self._results().items():
            if "val_" + k in logs:
                logs["val_" + k] = v
        if self.is_chief:
            log.info("epoch %d: loss %.4f auc %.4f val_auc %.4f val_log_loss %.4f (%.1fs)", epoch + 1,
                     logs.get("loss", float("nan")), logs.get("auc", float("nan")),
                     logs.get("val_auc", float("nan")), logs.get("val_log_loss", float("nan")),
                     time.perf_counter() - self._t0)


def predict(model: Any, ds: tf.data.Dataset) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the model over a labelled dataset.

    Args:
        model: an `LLM4MSR` (or a model with ``label_key``, ``scenario_feature`` and a
            ``{"probability"}`` output).
        ds: batches of feature dicts that include the label.

    Returns:
        ``(labels, probabilities, scenario ids)`` as 1-D numpy arrays, in dataset order.
    """

    @tf.function
    def step(batch: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        out = model(batch, training=False)
        return (tf.reshape(batch[model.label_key], [-1]), tf.reshape(out["probability"], [-1]),
                tf.reshape(batch[model.scenario_feature], [-1]))

    ys, ps, ss = [], [], []
    for batch in ds:
        y, p, s = step(batch)
        ys.append(y.numpy())
        ps.append(p.numpy())
        ss.append(s.numpy())
    if not ys:
        raise UserInputError("the evaluation split is empty; re-run `llm4msr prepare` with more data")
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(ss)


def evaluate(model: Any, spec: Any, ds: tf.data.Dataset) -> Dict[str, Any]:
    """Exact AUC and log loss of `model` on a dataset, overall and per scenario.

    Args:
        model: see `predict`.
        spec: the `DatasetSpec` (number and names of the scenarios).
        ds: a labelled dataset.

    Returns:
        `llm4msr_tf.metrics.scenario_metrics` of the predictions: ``overall``, ``scenarios``
        (keys ``"0"``..), each ``{auc, log_loss, rows, positives}``, and ``mean_scenario_auc``.
    """
    y, p, s = predict(model, ds)
    return msr_metrics.scenario_metrics(y, p, s, spec.num_scenarios, spec.scenario_names())


def fit(model: Any, spec: Any, train_cfg: TrainConfig, *, train_ds: Optional[tf.data.Dataset] = None,
        eval_ds: Optional[tf.data.Dataset] = None, callbacks: Sequence[Any] = (),
        distribute: Optional[DistributeConfig] = None, backup_dir: Optional[str] = None) -> Dict[str, Any]:
    """Train a compiled model with early stopping on the eval AUC; the best epoch's weights are kept.

    Distributed training needs nothing else here: build and compile the model inside
    ``strategy.scope()`` (`run_training` does) and Keras runs every step on the strategy's
    replicas; ``train_cfg.batch_size`` is the global batch (`llm4msr_tf.distribute`).

    Args:
        model: a compiled model whose ``fit`` reports ``val_auc`` (an `LLM4MSR` does).
        spec: the `DatasetSpec` (split sizes for the throughput figure; the splits to read when
            no datasets are given).
        train_cfg: epochs, patience, batch sizes, seed, shuffling, caching, progress.
        train_ds: a ready training dataset (default: `make_dataset` of the train split).
        eval_ds: a ready eval dataset (default: `make_dataset` of the eval split).
        callbacks: more Keras callbacks (e.g. TensorBoard).
        distribute: how the input is sharded across workers (``auto_shard``; default: auto), for
            the datasets made here (ready ones: `llm4msr_tf.distribute.shard_dataset`).
        backup_dir: Keras ``BackupAndRestore`` directory; a run killed mid-epoch and started
            again resumes after the last completed epoch, early-stopping state included.

    Returns:
        Fit facts: ``epochs_run`` (in this call), ``initial_epoch`` (0, or where a resumed run
        started), ``best_epoch`` (1-based), ``best_val_auc``, ``fit_seconds``, ``epoch_seconds``,
        ``train_examples_per_second_steady``, the Keras ``history`` and ``distribute`` (task,
        workers, replicas).
    """
    from llm4msr_tf.distribute import shard_dataset, task_info

    distribute = distribute or DistributeConfig()
    info = task_info(model.distribute_strategy)
    # Ready datasets come sharded by their maker (it knows the files); ours are sharded here.
    if train_ds is None:
        train_ds = shard_dataset(
            make_dataset(spec, "train", train_cfg.batch_size, training=True, shuffle_buffer=train_cfg.shuffle_buffer,
                         seed=train_cfg.seed, cache=train_cfg.cache),
            distribute.auto_shard, len(spec.tfrecord_files("train")), info)
    if eval_ds is None:
        eval_ds = shard_dataset(make_dataset(spec, "eval", train_cfg.eval_batch_size, cache=train_cfg.cache),
                                distribute.auto_shard, len(spec.tfrecord_files("eval")), info)
    best = BestEpoch("val_auc", train_cfg.patience,
                     state_dir=os.path.join(backup_dir, "best_epoch") if backup_dir else None,
                     write_state=info.is_chief)
    extra = [tf.keras.callbacks.BackupAndRestore(backup_dir)] if backup_dir else []
    verbose = {"bar": 1, "epoch": 2, "none": 0}[train_cfg.progress]
    first = []
    if info.num_workers > 1:
        # Keras' progress line would show every worker's metrics summed; GlobalMetrics logs
        # the exact ones instead.
        first, verbose = [GlobalMetrics(is_chief=info.is_chief and train_cfg.progress != "none")], 0
    t0 = time.perf_counter()
    # BestEpoch before BackupAndRestore: its state is saved first, so a kill between the two
    # re-runs an epoch the early-stopping state already saw rather than losing one.
    history = model.fit(train_ds, validation_data=eval_ds, epochs=train_cfg.epochs,
                        steps_per_epoch=train_cfg.steps_per_epoch, callbacks=[*first, best, *extra, *callbacks],
                        verbose=verbose)
    seconds = time.perf_counter() - t0
    if backup_dir and info.is_chief:
        # BackupAndRestore removed its checkpoint; the early-stopping state goes with it.
        shutil.rmtree(os.path.join(backup_dir, "best_epoch"), ignore_errors=True)
    rows = int((spec.splits.get("train") or {}).get("rows") or 0)
    if train_cfg.steps_per_epoch:
        rows = min(rows or 10 ** 12, train_cfg.steps_per_epoch * train_cfg.batch_size)
    # Steady state: epochs after the first (which includes tracing and filling the cache).
    later = best.epoch_seconds[1:]
    return {
        "epochs_run": len(history.history.get("loss", [])),
        "initial_epoch": int(history.epoch[0]) if history.epoch else 0,
        "best_epoch": best.best_epoch + 1,
        "best_val_auc": best.best,
        "fit_seconds": seconds,
        "epoch_seconds": best.epoch_seconds,
        "train_examples_per_second_steady": (rows / float(np.mean(later))) if later and rows else None,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "distribute": {"strategy": distribute.strategy, "auto_shard": distribute.auto_shard, **info.to_dict()},
    }


def check_knowledge_feature(spec: Any, feature: str, dim: int, knowledge_dir: str = "KNOWLEDGE_DIR") -> None:
    """Feature mode reads the user vector from the examples: they must carry it, at the knowledge's width."""
    kf = spec.knowledge_features.get(feature)
    where = spec.data_dir or "the dataset"
    if kf is None:
        raise UserInputError(
            f"user_knowledge_mode=feature reads {feature!r} from every example, but {where} has no such feature "
            f"(knowledge features: {sorted(spec.knowledge_features) or 'none'}); run `llm4msr join-knowledge "
            f"--data {where} --knowledge {knowledge_dir} --out NEW_DATA_DIR` and train on NEW_DATA_DIR")
    if int(kf["dim"]) != int(dim):
        raise UserInputError(
            f"{where}: knowledge feature {feature!r} is {kf['dim']}-d but {knowledge_dir} holds {dim}-d vectors; "
            "join the same knowledge the model is trained with (`llm4msr join-knowledge`)")


def run_training(train_cfg: TrainConfig, model_cfg: ModelConfig, dist_cfg: Optional[DistributeConfig] = None,
                 callbacks: Sequence[Any] = ()) -> Dict[str, Any]:
    """Train, evaluate on test and save one model (what ``llm4msr train`` runs).

    With ``dist_cfg.strategy = "multi_worker"`` every worker process runs this same call (one
    TF_CONFIG each); only the chief writes ``train_cfg.out``.

    Args:
        train_cfg: data, knowledge and output directories and how to train.
        model_cfg: the model.
        dist_cfg: the `tf.distribute` strategy, input sharding and backup directory.
        callbacks: more Keras callbacks for `fit`.

    Returns:
        The dict written to ``OUT/metrics.json``: dataset, model, backbone, knowledge, seed,
        params, ``test`` metrics (`evaluate`), knowledge lookup counts, the fit facts and the
        exported SavedModel's directory name.
    """
    from llm4msr_tf.data.spec import DatasetSpec
    from llm4msr_tf.distribute import default_backup_dir, make_strategy, task_info
    from llm4msr_tf.models import build_model, save_model
    from llm4msr_tf.serving.export import export_saved_model
    from llm4msr_tf.serving.warmup import read_examples

    from llm4msr_tf.checks import check_model_config, check_train_config, check_user_coverage

    if not train_cfg.data or not train_cfg.out:
        raise ValueError("TrainConfig.data (a prepared DATA_DIR) and TrainConfig.out are required")
    check_train_config(train_cfg)
    check_model_config(model_cfg)
    # The inputs are never overwritten, and --out must be ours to replace: checked before any work.
    protected = {"--data": train_cfg.data, "--knowledge": train_cfg.knowledge if model_cfg.use_knowledge else None}
    check_output_dir(train_cfg.out, "model", train_cfg.overwrite, protected)
    dist_cfg = dist_cfg or DistributeConfig()
    # Then: MultiWorkerMirroredStrategy must exist before any other TensorFlow work.
    strategy = make_strategy(dist_cfg)
    info = task_info(strategy)
    spec = DatasetSpec.load(train_cfg.data)
    kb = None
    coverage = None
    if model_cfg.use_knowledge:
        if not train_cfg.knowledge:
            raise ValueError("ModelConfig.use_knowledge is True but TrainConfig.knowledge (a KNOWLEDGE_DIR) "
                             "is empty; set one, or use_knowledge=False for the backbone alone")
        from llm4msr_tf import knowledge as kn

        kb = kn.load(train_cfg.knowledge, expected_dim=model_cfg.expected_knowledge_dim)
        if model_cfg.user_knowledge_mode == "feature":
            check_knowledge_feature(spec, model_cfg.user_knowledge_feature, kb.dim, train_cfg.knowledge)
        coverage = check_user_coverage(kb, spec, train_cfg.min_user_knowledge_coverage,
                                       train_cfg.on_low_knowledge_coverage, model_cfg)
    tf.keras.utils.set_random_seed(train_cfg.seed)
    backup_dir = default_backup_dir(dist_cfg, train_cfg.out)
    # Only the chief writes OUT (atomically); the other workers write nothing.
    out_ctx = (atomic_dir(train_cfg.out, overwrite=train_cfg.overwrite, kind="model", protected=protected)
               if info.is_chief else contextlib.nullcontext(None))
    with out_ctx as tmp:
        with strategy.scope():
            model = build_model(spec, model_cfg, knowledge=kb)
        try:
            facts = fit(model, spec, train_cfg, distribute=dist_cfg, backup_dir=backup_dir, callbacks=callbacks)
            check_finite_history(facts["history"])
            if dist_cfg.strategy != "default":
                # The trained weights in a model outside the strategy: a SavedModel cannot hold
                # functions over distributed variables, and what is evaluated and saved is then
                # exactly what a single process would have (no collective ops left to join).
                plain = build_model(spec, model_cfg, knowledge=kb, compile=False)
                plain.set_weights(model.get_weights())  # every worker: reading weights may be collective
                model = plain
            if not info.is_chief:
                return {**facts, "dataset": spec.name, "model": model.name, "saved_model": None}
            if model.use_knowledge:
                model.reset_knowledge_stats()
            test_ds = make_dataset(spec, "test", train_cfg.eval_batch_size, cache=False)
            test = evaluate(model, spec, test_ds)
        except tf.errors.OpError as e:
            bad = find_unreadable_shard(spec)
            if bad is None:
                raise
            raise UserInputError(f"{bad[0]} is unreadable ({bad[1]}); re-run `llm4msr prepare` for "
                                 f"{spec.data_dir}") from e
        result: Dict[str, Any] = {
            "dataset": spec.name,
            "model": model.name,
            "backbone": model_cfg.backbone,
            "use_knowledge": model_cfg.use_knowledge,
            "knowledge_llm": kb.llm if kb is not None else None,
            "knowledge_dim": kb.dim if kb is not None else None,
            "seed": train_cfg.seed,
            "params": int(model.count_params()),
            "test": test,
            "knowledge_lookups_on_test": model.knowledge_stats() if model.use_knowledge else {},
            "user_knowledge_coverage": coverage,
            **facts,
        }
        result["saved_model"] = None
        if info.is_chief:  # the other workers have nothing left to share: they write nothing
            save_model(model, tmp)
            if train_cfg.export:
                # Real eval examples become TF Serving warmup requests (the first live request is then fast).
                export_saved_model(model, spec, os.path.join(tmp, SAVED_MODEL_DIRNAME),
                                   warmup_examples=read_examples(spec, "eval", 64))
                result["saved_model"] = SAVED_MODEL_DIRNAME
            write_json(os.path.join(tmp, METRICS_FILENAME), result)
            write_json(os.path.join(tmp, CONFIG_FILENAME), {"train": to_dict(train_cfg), "model": to_dict(model_cfg),
                                                            "distribute": to_dict(dist_cfg)})
    if info.is_chief and backup_dir and os.path.isdir(backup_dir) and not os.listdir(backup_dir):
        os.rmdir(backup_dir)
    return result


def check_finite_history(history: Dict[str, Sequence[float]]) -> None:
    """Refuse a training run whose loss became NaN/inf: its weights are garbage, not a model."""
    loss = list(history.get("loss", []))
    bad = [i + 1 for i, v in enumerate(loss) if not math.isfinite(v)]
    if bad:
        raise UserInputError(
            f"training diverged: the loss is {loss[bad[0] - 1]} from epoch {bad[0]} on; nothing was saved. "
            "Lower --learning-rate, or check the inputs for extreme values")


def find_unreadable_shard(spec: Any) -> Optional[Tuple[str, str]]:
    """(path, reason) of the first TFRecord file of the dataset that cannot be read to the end."""
    for split in ("train", "eval", "test"):
        for path in spec.tfrecord_files(split):
            try:
                for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                    pass
            except tf.errors.OpError as e:
                return path, f"{type(e).__name__}: {e.message.splitlines()[0] if e.message else ''}".rstrip(": ")
    return None


def summary_table(result: Dict[str, Any]) -> str:
    """A short per-scenario table of test AUC / log loss for the CLI."""
    t = result["test"]
    lines = [f"{result['model']} on {result['dataset']} (test; best epoch {result['best_epoch']} of "
             f"{result['epochs_run']}, {result['fit_seconds']:.0f}s)",
             f"{'scenario':<28}{'rows':>9}{'AUC':>9}{'logloss':>9}"]
    for sid, b in t["scenarios"].items():
        lines.append(f"{(sid + ' ' + b.get('name', ''))[:27]:<28}{b['rows']:>9}{b['auc']:>9.4f}{b['log_loss']:>9.4f}")
    o = t["overall"]
    lines.append(f"{'overall':<28}{o['rows']:>9}{o['auc']:>9.4f}{o['log_loss']:>9.4f}")
    return "\n".join(lines)
