"""Foundation: Keras 2 pinning, CLI surface, typed configs, atomic output, Bazel targets."""
import dataclasses
import os
import shutil
import subprocess
from typing import Optional, Tuple

import pytest

from conftest import PROJECT_ROOT, run_cli, run_py
from llm4msr_tf import config as cfgmod
from llm4msr_tf.utils.io import UserInputError, atomic_dir


def test_import_pins_keras2_without_env():
    r = run_py(
        "import llm4msr_tf, tensorflow as tf, tf_keras; "
        "print(tf.keras.__name__, tf_keras.__version__, tf.keras.layers.Dense.__module__)"
    )
    assert r.returncode == 0, r.stderr
    name, version, dense_mod = r.stdout.strip().splitlines()[-1].split()
    assert name.startswith("tf_keras") and version.startswith("2.16"), r.stdout
    assert dense_mod.startswith("tf_keras"), dense_mod


def test_import_after_keras3_tensorflow_fails_clearly():
    r = run_py("import tensorflow as tf; tf.keras.layers; import llm4msr_tf")
    assert r.returncode != 0
    assert "Keras 3" in r.stderr and "import llm4msr_tf before tensorflow" in r.stderr


def test_cli_help_lists_only_registered_commands():
    from llm4msr_tf.cli import COMMAND_MODULES, build_parser

    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)
    assert len(names) == len(COMMAND_MODULES)
    for name in names:
        assert name in r.stdout
    for name in names:
        h = run_cli(name, "--help")
        assert h.returncode == 0, (name, h.stderr)


def test_info_reports_keras2():
    import json

    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["tf.keras"].startswith("keras2 (tf_keras 2.16")
    assert info["tensorflow"] == "2.16.2"
    assert info["tfx"] == "1.16.0"


@dataclasses.dataclass
class _Cfg:
    out: str = "x"
    size: int = 3
    rate: float = 0.5
    flag: bool = True
    name: Optional[str] = None
    dims: Tuple[int, ...] = (4, 2)
    mode: str = dataclasses.field(default="a", metadata={"choices": ["a", "b"], "help": "mode"})


def test_dataclass_flags_round_trip(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    cfgmod.add_dataclass_args(p, _Cfg)
    a = p.parse_args(["--size", "7", "--no-flag", "--dims", "8", "4", "1", "--mode", "b"])
    c = cfgmod.dataclass_from_args(_Cfg, a)
    assert c == _Cfg(size=7, flag=False, dims=(8, 4, 1), mode="b")
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "zzz"])
    cfgmod.save_config(c, str(tmp_path))
    assert cfgmod.load_config(_Cfg, str(tmp_path)) == c
    with pytest.raises(UserInputError, match="unknown config field"):
        cfgmod.from_dict(_Cfg, {"bogus": 1})


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(str(target)) as d:
            open(os.path.join(d, "half"), "w").write("x")
            raise RuntimeError("boom")
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    with atomic_dir(str(target)) as d:
        open(os.path.join(d, "done"), "w").write("x")
    assert (target / "done").exists()
    with pytest.raises(UserInputError, match="already exists"):
        with atomic_dir(str(target)):
            pass


def test_bazel_query_lists_targets():
    bazel = shutil.which("bazel")
    if bazel is None:
        pytest.skip("bazel not installed (CI installs Debian's bazel-bootstrap via .ci/run)")
    r = subprocess.run(
        [bazel, "query", "//..."], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    targets = set(r.stdout.split())
    assert {"//:llm4msr_tf", "//:llm4msr", "//:pipeline"} <= targets
    test_files = [f for f in os.listdir(os.path.join(PROJECT_ROOT, "tests")) if f.startswith("test_")]
    for f in test_files:
        assert f"//:{f[:-3]}" in targets
