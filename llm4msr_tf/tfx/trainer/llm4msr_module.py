"""TFX user module for LLM4MSR: the Transform `preprocessing_fn` and the Trainer `run_fn`.

Transform turns every string categorical feature into a vocabulary index computed on the
training split (``<name>_xf``, int64, 0 = out of vocabulary, so a serving request with an
unseen id is handled by the exported graph), and passes the raw ``user_id`` (string) and
``scenario_id`` (int64) through unchanged: the model looks knowledge vectors up by those raw
keys. The Trainer builds a transformed `DatasetSpec` (the ``_xf`` features declared int64 with
the Transform vocabulary sizes), builds the model from the pipeline's `ModelConfig` with
`llm4msr_tf.models.build_model`, trains it with the one training loop
(`llm4msr_tf.training.fit`: early stopping on the eval AUC, best epoch restored) from the
pipeline's `TrainConfig`, and exports a SavedModel whose ``serving_default`` takes serialized
RAW tf.Example (the Transform graph is inside).

Both functions read their settings from the component's ``custom_config`` (written by
`llm4msr_tf.tfx.runner.build`); the knowledge directory is only read, never recomputed. TFX
packages every ``.py`` file next to this one, so this file imports only the installed
``llm4msr_tf`` package.
"""
import dataclasses
import logging
import os
from typing import Any, Dict, List

# TFX loads this file by path, not as part of the package: pin Keras 2 before TensorFlow loads.
import llm4msr_tf  # noqa: F401
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from llm4msr_tf.config import from_dict
from llm4msr_tf.data.spec import CATEGORICAL, NUMERIC, DatasetSpec, FeatureSpec
from llm4msr_tf.models.config import ModelConfig, TrainConfig
from llm4msr_tf.utils.io import write_json

log = logging.getLogger("llm4msr_tf.tfx.trainer")

XF_SUFFIX = "_xf"
PARITY_DIRNAME = "parity"
PARITY_EXAMPLES = "examples.tfrecord"
PARITY_PREDICTIONS = "probability.npy"


def _raw_spec(custom_config: Dict[str, Any]) -> DatasetSpec:
    """The raw dataset spec carried in custom_config (a copy of dataset.json)."""
    return DatasetSpec.from_dict(custom_config["dataset_spec"], data_dir=custom_config.get("data_dir"))


def _flat(x: tf.Tensor) -> tf.Tensor:
    # SchemaGen(infer_feature_shape=True) gives scalar features shape [1]: make them [B].
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """Vocabulary-index string categoricals, pass raw keys, numerics, knowledge vectors and the label through."""
    spec = _raw_spec(custom_config)
    out: Dict[str, tf.Tensor] = {}
    for f in spec.categorical:
        x = _flat(inputs[f.name])
        if f.dtype == "string":
            # +1 so OOV (-1) becomes index 0, the model's convention for unknown values.
            out[f.name + XF_SUFFIX] = (
                tft.compute_and_apply_vocabulary(x, default_value=-1, vocab_filename=f.name) + 1
            )
        else:
            out[f.name] = tf.cast(x, tf.int64)
    for f in spec.numeric:
        out[f.name] = tf.cast(_flat(inputs[f.name]), tf.float32)
    # Raw keys for the knowledge lookup inside the model (same path in training and serving).
    out[spec.user_feature] = _flat(inputs[spec.user_feature])
    out[spec.scenario_feature] = tf.cast(_flat(inputs[spec.scenario_feature]), tf.int64)
    # Knowledge vectors joined into the examples (`llm4msr join-knowledge`, feature mode) pass
    # through unchanged: the model normalises them itself, in training and serving alike.
    for name, k in spec.knowledge_features.items():
        if name in inputs:
            out[name] = tf.reshape(tf.cast(inputs[name], tf.float32), [-1, int(k["dim"])])
    if spec.label in inputs:
        out[spec.label] = tf.cast(_flat(inputs[spec.label]), tf.int64)
    return out


def transformed_spec(raw: DatasetSpec, tft_output: tft.TFTransformOutput) -> DatasetSpec:
    """The spec the model is built on: `_xf` int64 indices with Transform vocabulary sizes."""
    feats: List[FeatureSpec] = []
    for f in raw.features:
        if f.kind == CATEGORICAL and f.dtype == "string":
            size = int(tft_output.vocabulary_size_by_name(f.name))
            feats.append(FeatureSpec(f.name + XF_SUFFIX, CATEGORICAL, "int64", vocab_size=size))
        elif f.kind == CATEGORICAL:
            feats.append(FeatureSpec(f.name, CATEGORICAL, "int64", vocab_size=f.vocab_size))
        else:
            feats.append(FeatureSpec(f.name, NUMERIC, "float32"))
    return dataclasses.replace(raw, features=feats)


def _export(model: tf.keras.Model, raw: DatasetSpec, export_dir: str, transform_dir: str,
            warmup: List[bytes]) -> None:
    """SavedModel with the Transform graph: serving_default(serialized raw tf.Example)."""
    from llm4msr_tf.serving.export import export_saved_model

    # verify=False: the Evaluator loads and runs this SavedModel next and the Pusher only
    # ships it when blessed, so a second reload here would only cost time.
    export_saved_model(model, raw, export_dir, warmup_examples=warmup,
                       transform_output_dir=transform_dir, verify=False)


def _raw_examples(raw: DatasetSpec, n: int = 64) -> List[bytes]:
    """The first `n` serialized RAW test examples (eval if there is no test split)."""
    serialized: List[bytes] = []
    for path in raw.tfrecord_files("test") or raw.tfrecord_files("eval"):
        for rec in tf.data.TFRecordDataset(path, compression_type="GZIP").take(n - len(serialized)):
            serialized.append(bytes(rec.numpy()))
        if len(serialized) >= n:
            break
    return serialized


def _with_knowledge_features(serialized: List[bytes], raw: DatasetSpec, kb: Any) -> List[bytes]:
    """Add the joined knowledge features the raw examples lack (warmup and parity requests).

    When the pipeline joins user vectors itself (`JoinKnowledge`), the examples in DATA_DIR do
    not carry them, but every request to the SavedModel must: fill each from the knowledge
    base as the join does (the user's vector, else the mean of the user vectors or zeros).
    """
    missing = {n: k for n, k in raw.knowledge_features.items()
               if serialized and n not in tf.train.Example.FromString(serialized[0]).features.feature}
    if not missing:
        return serialized
    if kb is None or "user" not in kb.tables:
        raise ValueError(f"the examples lack knowledge feature(s) {sorted(missing)} and no user knowledge was loaded")
    users = kb.tables["user"]
    defaults = {n: (np.zeros(users.dim, np.float32) if k.get("default") == "zeros"
                    else users.vectors.astype(np.float64).mean(0).astype(np.float32)) for n, k in missing.items()}
    out = []
    for s in serialized:
        ex = tf.train.Example.FromString(s)
        f = ex.features.feature[raw.user_feature]
        vals = f.bytes_list.value or f.int64_list.value
        key = vals[0].decode("utf-8") if isinstance(vals[0], bytes) else str(int(vals[0]))
        for name in missing:
            vec = np.asarray(users.get(key, defaults[name]), np.float32)
            ex.features.feature[name].float_list.value[:] = vec.tolist()
        out.append(ex.SerializeToString())
    return out


def _parity(model: tf.keras.Model, raw: DatasetSpec, tft_output: tft.TFTransformOutput,
            serialized: List[bytes], out_dir: str) -> None:
    """Record the in-memory model's predictions on raw examples (Transform run eagerly here)
    so a test can check the pushed SavedModel, loaded elsewhere, gives the same numbers."""
    raw_feature_spec = tft_output.raw_feature_spec()
    raw_feature_spec.pop(raw.label, None)
    parsed = tf.io.parse_example(tf.constant(serialized), raw_feature_spec)
    transformed = dict(tft_output.transform_features_layer()(parsed))
    prob = model(transformed, training=False)["probability"].numpy()
    os.makedirs(out_dir, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(out_dir, PARITY_EXAMPLES)) as w:
        for s in serialized:
            w.write(s)
    np.save(os.path.join(out_dir, PARITY_PREDICTIONS), prob.astype(np.float32))


def _files(patterns: List[str]) -> List[str]:
    """The transformed example files matching TFX's split patterns."""
    files = [f for p in patterns for f in sorted(tf.io.gfile.glob(p))]
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return files


def run_fn(fn_args: Any) -> None:
    """Train on Transform output with `llm4msr_tf.training.fit`, export, record metrics and parity."""
    from llm4msr_tf.models import build_model
    from llm4msr_tf.metrics import METRICS_FILENAME
    from llm4msr_tf.training import evaluate, fit, tfrecord_dataset

    from llm4msr_tf.distribute import (DistributeConfig, default_backup_dir, make_strategy,
                                       resolve_strategy_name, shard_dataset, task_info)

    cc = dict(fn_args.custom_config or {})
    raw = _raw_spec(cc)
    train_cfg, model_cfg = from_dict(TrainConfig, cc["train"]), from_dict(ModelConfig, cc["model"])
    dist_cfg = from_dict(DistributeConfig, cc.get("distribute") or {})
    # Vertex AI / Kubeflow give every worker of a multi-worker Trainer a $TF_CONFIG naming the
    # cluster: there "default" must become multi_worker, or each worker would train its own model.
    dist_cfg = dataclasses.replace(dist_cfg, strategy=resolve_strategy_name(dist_cfg.strategy))
    if dist_cfg.strategy == "multi_worker" and not dist_cfg.backup_dir:
        dist_cfg.backup_dir = os.path.join(fn_args.model_run_dir, "backup")
    strategy = make_strategy(dist_cfg)  # before any other TensorFlow work (MultiWorkerMirroredStrategy)
    info = task_info(strategy)
    log.info("Trainer strategy %s: task %s %d of %d worker(s), %d replica(s); global batch %d",
             dist_cfg.strategy, info.task_type, info.task_id, info.num_workers, info.num_replicas,
             train_cfg.batch_size)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = transformed_spec(raw, tft_output)
    feature_spec = tft_output.transformed_feature_spec()
    tf.keras.utils.set_random_seed(train_cfg.seed)
    train_files, eval_files = _files(fn_args.train_files), _files(fn_args.eval_files)
    train_ds = tfrecord_dataset(train_files, feature_spec, train_cfg.batch_size, training=True,
                                shuffle_buffer=train_cfg.shuffle_buffer, seed=train_cfg.seed, cache=train_cfg.cache)
    eval_ds = tfrecord_dataset(eval_files, feature_spec, train_cfg.eval_batch_size, cache=train_cfg.cache)
    train_ds = shard_dataset(train_ds, dist_cfg.auto_shard, len(train_files), info)
    eval_ds = shard_dataset(eval_ds, dist_cfg.auto_shard, len(eval_files), info)
    kb = None
    if model_cfg.use_knowledge:
        from llm4msr_tf.knowledge import load

        kb = load(train_cfg.knowledge, expected_dim=model_cfg.expected_knowledge_dim)
        log.info("knowledge %s: dim %d, llm %s", train_cfg.knowledge, kb.dim, kb.llm)
        from llm4msr_tf.checks import check_user_coverage

        check_user_coverage(kb, spec, train_cfg.min_user_knowledge_coverage, train_cfg.on_low_knowledge_coverage,
                            model_cfg)
    with strategy.scope():
        model = build_model(spec, model_cfg, knowledge=kb)
    callbacks = [tf.keras.callbacks.TensorBoard(fn_args.model_run_dir, update_freq="epoch")] if info.is_chief else []
    facts = fit(model, spec, train_cfg, train_ds=train_ds, eval_ds=eval_ds, distribute=dist_cfg,
                backup_dir=default_backup_dir(dist_cfg, ""), callbacks=callbacks)
    if dist_cfg.strategy != "default":
        # The trained weights in a model outside the strategy: a SavedModel cannot hold functions
        # over distributed variables (the same step as `llm4msr train`); every worker reads them.
        plain = build_model(spec, model_cfg, knowledge=kb, compile=False)
        plain.set_weights(model.get_weights())
        model = plain
    if not info.is_chief:
        # TFX gives every worker the same serving_model_dir: only the chief writes it.
        log.info("worker %s %d done; the chief exports", info.task_type, info.task_id)
        return

    # The chief's eval dataset is its shard when several workers trained: score the whole split.
    full_eval = eval_ds if info.num_workers <= 1 else tfrecord_dataset(
        eval_files, feature_spec, train_cfg.eval_batch_size, cache=False)
    examples = _with_knowledge_features(_raw_examples(raw), raw, kb)
    _export(model, raw, fn_args.serving_model_dir, fn_args.transform_output, examples)
    _parity(model, raw, tft_output, examples, os.path.join(fn_args.model_run_dir, PARITY_DIRNAME))
    # The same metrics.json schema as `llm4msr train` writes (eval split: the test split is the
    # Evaluator's).
    metrics = {
        "dataset": raw.name, "model": model.name, "backbone": model_cfg.backbone,
        "use_knowledge": model_cfg.use_knowledge, "knowledge_llm": kb.llm if kb is not None else None,
        "knowledge_dim": kb.dim if kb is not None else None, "seed": train_cfg.seed,
        "params": int(model.count_params()), "eval": evaluate(model, spec, full_eval), **facts,
        "transformed_spec": spec.to_dict(), "parity_examples": len(examples),
        "config": {"train": cc["train"], "model": cc["model"], "distribute": dataclasses.asdict(dist_cfg)},
    }
    write_json(os.path.join(fn_args.model_run_dir, METRICS_FILENAME), metrics)
    steady = facts["train_examples_per_second_steady"]
    log.info("trained %d epoch(s) in %.1fs (best epoch %d, eval AUC %.4f; steady state %s train examples/s "
             "incl. eval pass); exported to %s", facts["epochs_run"], facts["fit_seconds"], facts["best_epoch"],
             metrics["eval"]["overall"]["auc"], f"{steady:,.0f}" if steady else "n/a", fn_args.serving_model_dir)
