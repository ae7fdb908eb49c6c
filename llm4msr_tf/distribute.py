"""Distributed training: a `tf.distribute` strategy from a config and TF_CONFIG, sharded input, chief-only writes.

`DistributeConfig` (no TensorFlow import, so the CLI builds its flags cheaply) says how to run
the one training loop (`llm4msr_tf.training.fit`):

- ``default``: one process, TensorFlow's default strategy (what ``llm4msr train`` always did);
- ``mirrored``: `tf.distribute.MirroredStrategy` over this machine's GPUs (one CPU replica
  when there is none);
- ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy`, one process per worker,
  the cluster given by the ``TF_CONFIG`` environment variable (as TFX's Trainer on Vertex AI,
  Kubernetes' TF operators and ``tf.distribute`` expect), e.g. for two workers::

      TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                  "task": {"type": "worker", "index": 0}}' llm4msr train ... --strategy multi_worker

Semantics (the usual `tf.distribute` ones, made explicit):

- ``batch_size`` is the GLOBAL batch: each step consumes ``batch_size`` examples summed over all
  replicas (each gets ``batch_size / num_replicas``), so the learning rate needs no rescaling
  when workers are added;
- input is sharded by `tf.data` auto-sharding (``auto_shard``: ``auto`` = by file when there
  are at least as many files as workers, else by data; ``file``; ``data``; ``off``);
- the model is built and compiled inside ``strategy.scope()``; every worker runs the same
  steps; after training the weights are copied into a model outside the strategy (a
  SavedModel cannot hold functions over distributed variables), and only the chief (task
  ``chief``, or ``worker`` 0 when there is no chief) evaluates into and writes the output
  directory; the other workers write nothing;
- with a ``backup_dir`` (default for ``multi_worker``: ``OUT.backup``), Keras'
  ``BackupAndRestore`` saves the training state at every epoch end; a worker that is killed
  and restarted (with the others, as ``tf.distribute`` requires) resumes from the last
  completed epoch, and the early-stopping state (best epoch and its weights) is restored too.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional

STRATEGIES = ("default", "mirrored", "multi_worker")
AUTO_SHARD = ("auto", "file", "data", "off")
TF_CONFIG_ENV = "TF_CONFIG"
BACKUP_SUFFIX = ".backup"


@dataclasses.dataclass
class DistributeConfig:
    """How training is spread over devices and worker processes; defaults run in one process."""

    strategy: str = dataclasses.field(
        default="default",
        metadata={"help": "default (one process), mirrored (this machine's GPUs), multi_worker "
                          "(MultiWorkerMirroredStrategy over the cluster in $TF_CONFIG)",
                  "choices": list(STRATEGIES)})
    auto_shard: str = dataclasses.field(
        default="auto", metadata={"help": "tf.data auto-sharding of the input across workers",
                                  "choices": list(AUTO_SHARD)})
    backup_dir: Optional[str] = dataclasses.field(
        default=None,
        metadata={"help": "BackupAndRestore directory: a killed run resumes from its last epoch "
                          "(default: OUT.backup with --strategy multi_worker, none otherwise)"})

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"DistributeConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.auto_shard not in AUTO_SHARD:
            raise ValueError(f"DistributeConfig.auto_shard must be one of {AUTO_SHARD}, got {self.auto_shard!r}")


@dataclasses.dataclass
class TaskInfo:
    """This process's place in the cluster."""

    task_type: str = "worker"
    task_id: int = 0
    num_workers: int = 1
    num_replicas: int = 1

    @property
    def is_chief(self) -> bool:
        """True for the task that writes the outputs (``chief``, else ``worker`` 0)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready facts (for metrics.json)."""
        return {**dataclasses.asdict(self), "is_chief": self.is_chief}


def tf_config() -> Dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset)."""
    raw = os.environ.get(TF_CONFIG_ENV, "").strip()
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"${TF_CONFIG_ENV} is not valid JSON ({e}): {raw[:200]!r}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"${TF_CONFIG_ENV} must be a JSON object with 'cluster' and 'task', got {raw[:200]!r}")
    return cfg


def cluster_size(cfg: Optional[Dict[str, Any]] = None) -> int:
    """Number of chief + worker tasks in a TF_CONFIG (0 without a cluster)."""
    cfg = tf_config() if cfg is None else cfg
    cluster = cfg.get("cluster") or {}
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def resolve_strategy_name(name: str) -> str:
    """`name`, or ``multi_worker`` for ``auto``-like requests when TF_CONFIG names several tasks.

    The TFX Trainer passes ``default`` unless configured: on Vertex AI each worker of a
    multi-worker job gets a TF_CONFIG with several tasks, and then training must use
    MultiWorkerMirroredStrategy or every worker would train its own model.
    """
    if name == "default" and cluster_size() > 1:
        return "multi_worker"
    return name


def make_strategy(cfg: DistributeConfig) -> Any:
    """The `tf.distribute.Strategy` for `cfg` (create it before any other TensorFlow work).

    Raises:
        ValueError: ``multi_worker`` without a TF_CONFIG cluster, or a malformed TF_CONFIG.
    """
    import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
    import tensorflow as tf

    if cfg.strategy == "default":
        return tf.distribute.get_strategy()
    if cfg.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    conf = tf_config()
    if not cluster_size(conf):
        raise ValueError(
            f"strategy multi_worker needs ${TF_CONFIG_ENV} naming the cluster, e.g. "
            '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}')
    task = conf.get("task") or {}
    if "type" not in task or "index" not in task:
        raise ValueError(f"${TF_CONFIG_ENV} has no task {{'type', 'index'}} for this process: {conf!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def task_info(strategy: Any) -> TaskInfo:
    """Where this process sits in `strategy`'s cluster (one worker outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    if resolver is None or not resolver.cluster_spec().as_dict():
        return TaskInfo(num_replicas=replicas)
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("chief", [])) + len(spec.get("worker", []))
    return TaskInfo(str(resolver.task_type), int(resolver.task_id or 0), workers, replicas)


def resolve_auto_shard(policy: str, num_files: Optional[int], num_workers: int) -> str:
    """The policy to use: ``auto`` becomes ``file`` with at least one file per worker, else ``data``.

    (TensorFlow's own AUTO fails instead of falling back when a file-based input has fewer
    files than workers.) With an unknown file count, ``auto`` stays TensorFlow's AUTO.
    """
    if policy != "auto" or num_files is None:
        return policy
    return "file" if num_files >= max(1, num_workers) else "data"


def shard_options(policy: str) -> Any:
    """`tf.data.Options` with the auto-shard policy named `policy` (see `AUTO_SHARD`)."""
    import tensorflow as tf

    p = tf.data.experimental.AutoShardPolicy
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = {
        "auto": p.AUTO, "file": p.FILE, "data": p.DATA, "off": p.OFF}[policy]
    return opts


def shard_dataset(ds: Any, policy: str, num_files: Optional[int], info: TaskInfo) -> Any:
    """`ds` with the auto-shard policy for this cluster (unchanged on a single worker)."""
    if info.num_workers <= 1:
        return ds
    return ds.with_options(shard_options(resolve_auto_shard(policy, num_files, info.num_workers)))


def default_backup_dir(cfg: DistributeConfig, out: str) -> Optional[str]:
    """`cfg.backup_dir`, else ``OUT.backup`` for multi-worker training (None otherwise)."""
    if cfg.backup_dir:
        return cfg.backup_dir
    if cfg.strategy == "multi_worker" and out:
        return os.path.abspath(out).rstrip("/") + BACKUP_SUFFIX
    return None
