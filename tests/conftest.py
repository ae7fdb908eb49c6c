"""Shared pytest fixtures: paths to the real datasets, tiny temp dirs, subprocess helpers."""
import os
import subprocess
import sys

import pytest

import llm4msr_tf  # noqa: F401  (pins Keras 2 before any test imports TensorFlow)
from llm4msr_tf.config import default_data_root

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavier test (real LLM, TFX pipeline); CI runs it")


@pytest.fixture(scope="session")
def data_root() -> str:
    """Root of the shared real datasets ($LLM4MSR_DATA_ROOT, default ../shared/data)."""
    return default_data_root(PROJECT_ROOT)


@pytest.fixture(scope="session")
def shared_dataset(data_root):
    """Return a function that gives a dataset folder or skips with a clear reason."""

    def _get(name: str) -> str:
        path = os.path.join(data_root, name)
        if not os.path.isdir(path):
            pytest.skip(f"shared dataset {name!r} not found at {path}; set LLM4MSR_DATA_ROOT")
        return path

    return _get


def run_py(code: str, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter of this venv (for import-order and parity tests)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
        timeout=timeout,
    )


def run_cli(*args: str, timeout=1800, env_extra=None) -> subprocess.CompletedProcess:
    """Run the `llm4msr` console script of this venv in a fresh process."""
    exe = os.path.join(os.path.dirname(sys.executable), "llm4msr")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_extra or {})
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=timeout
    )


def prepared_ml100k(tmp_path_factory, shared_dataset) -> str:
    """Real ML-100K through `llm4msr prepare`, once per pytest run (shared by several test files)."""
    out = tmp_path_factory.getbasetemp() / "ml100k-prepared"
    if not (out / "dataset.json").exists():
        p = run_cli("prepare", "--dataset", "movielens", "--source", shared_dataset("ml-100k"),
                    "--out", str(out), "--overwrite", "--no-progress")
        assert p.returncode == 0, p.stderr[-3000:]
    return str(out)
