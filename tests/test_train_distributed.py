"""Multi-worker training for real: two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG
with two free 127.0.0.1 ports) train ML-100K; worker 1 is killed mid-epoch, the job is started
again (as a cluster manager does), resumes after the last completed epoch (BackupAndRestore)
and finishes; only the chief wrote the model, whose SavedModel loads and scores."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import prepared_ml100k
from llm4msr_tf.testing.beam_cluster import free_port

# A worker that kills itself (SIGKILL: no clean-up of any kind) in the middle of epoch 2.
KILLED_WORKER = r'''
import json, os, signal, sys
import llm4msr_tf
import tensorflow as tf
from llm4msr_tf.config import from_dict
from llm4msr_tf.distribute import DistributeConfig
from llm4msr_tf.models.config import ModelConfig, TrainConfig
from llm4msr_tf.training import run_training

cfg = json.loads(sys.argv[1])
kill = int(json.loads(os.environ["TF_CONFIG"])["task"]["index"]) == 1


class KillMidEpoch(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if kill and self.epoch == 1 and batch == 3:
            print("KILLING", os.getpid(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


run_training(from_dict(TrainConfig, cfg["train"]), from_dict(ModelConfig, cfg["model"]),
             DistributeConfig(strategy="multi_worker"), callbacks=[KillMidEpoch()])
'''

EPOCHS, STEPS = 3, 8


def _env(ports, index):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                   "task": {"type": "worker", "index": index}})
    return env


def _wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_two_workers_killed_worker_resumes_and_chief_exports(tmp_path_factory, shared_dataset, tmp_path):
    data = prepared_ml100k(tmp_path_factory, shared_dataset)
    out = str(tmp_path / "model")
    flags = ["--data", data, "--no-knowledge", "--backbone", "shared_bottom", "--epochs", str(EPOCHS),
             "--steps-per-epoch", str(STEPS), "--batch-size", "1024", "--patience", "5",
             "--optimizer", "legacy_adam", "--progress", "epoch", "--out", out]
    cfg = {"train": {"data": data, "out": out, "epochs": EPOCHS, "steps_per_epoch": STEPS, "batch_size": 1024,
                     "patience": 5, "progress": "epoch"},
           "model": {"backbone": "shared_bottom", "use_knowledge": False, "optimizer": "legacy_adam"}}

    # Run 1: worker 1 dies in epoch 2; the chief cannot go on alone and is stopped (or fails).
    ports = [free_port(), free_port()]
    logs = [open(tmp_path / f"run1_w{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", KILLED_WORKER, json.dumps(cfg)], env=_env(ports, i),
                              stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
    try:
        assert procs[1].wait(timeout=400) == -signal.SIGKILL, (tmp_path / "run1_w1.log").read_text()[-3000:]
        try:
            procs[0].wait(timeout=20)  # the coordination service may fail it by itself...
        except subprocess.TimeoutExpired:
            procs[0].kill()  # ... else the cluster manager restarts the whole job
    finally:
        _wait_all(procs, 30)
        for f in logs:
            f.close()
    assert "KILLING" in (tmp_path / "run1_w1.log").read_text()
    assert not os.path.exists(out), "a killed run must not leave a model directory"
    assert os.path.isdir(out + ".backup"), "epoch 1's backup is missing"

    # Run 2: both workers start again through the CLI (new ports) and resume from the backup.
    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    ports = [free_port(), free_port()]
    t0 = time.monotonic()
    procs = [subprocess.Popen([exe, "train", *flags, "--strategy", "multi_worker"], env=_env(ports, i),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [None, None]
    try:
        for i, p in enumerate(procs):
            outs[i], _ = p.communicate(timeout=400)
    finally:
        _wait_all(procs, 30)
    wall = time.monotonic() - t0
    assert [p.returncode for p in procs] == [0, 0], (outs[0] or "")[-3000:] + (outs[1] or "")[-3000:]
    assert "worker 1 of 2 workers done" in outs[1]

    metrics = json.load(open(os.path.join(out, "metrics.json")))
    d = metrics["distribute"]
    assert d["strategy"] == "multi_worker" and d["num_workers"] == 2 and d["is_chief"]
    # Resumed after epoch 1: this run trained epochs 2 and 3 only.
    assert metrics["initial_epoch"] == 1 and metrics["epochs_run"] == EPOCHS - 1
    assert 0.0 < metrics["best_val_auc"] <= 1.0 and 0.5 < metrics["test"]["overall"]["auc"] <= 1.0
    assert not os.path.exists(out + ".backup")  # removed after a finished run
    # Only the chief wrote (worker 1 would have written the same files to the same OUT).
    assert sorted(os.listdir(out)) == [".llm4msr-artifact.json", "config.json", "metrics.json", "model.keras",
                                       "saved_model"]

    import llm4msr_tf  # noqa: F401
    import tensorflow as tf

    served = tf.saved_model.load(os.path.join(out, metrics["saved_model"]))
    files = sorted(tf.io.gfile.glob(os.path.join(data, "test", "*.tfrecord.gz")))
    raw = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(256)]
    prob = served.signatures["serving_default"](examples=tf.constant(raw))["probability"].numpy()
    assert prob.shape == (256, 1) and np.isfinite(prob).all() and ((prob > 0) & (prob < 1)).all()
    print(f"\nresumed two-worker run (2 epochs x {STEPS} steps + eval + test + export): {wall:.1f}s wall")
