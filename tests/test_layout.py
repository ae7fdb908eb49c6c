"""The house: every module imports, no import cycles (module- or function-level), light entry
points, a small public surface, `pipeline/` uses only the library, build files list real files."""
import ast
import json
import os
import sys

import pytest

from conftest import PROJECT_ROOT, run_py

PACKAGE = os.path.join(PROJECT_ROOT, "llm4msr_tf")


def _modules():
    """{module name: file} of every module of the package, from the source tree."""
    out = {}
    for dirpath, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), PROJECT_ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(dirpath, f)
    return out


def _imports(path, name, modules):
    """Package modules `name` imports anywhere in its file (top level and inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from pkg import name` the package.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycles_even_inside_functions():
    modules = _modules()
    graph = {m: _imports(p, m, modules) for m, p in modules.items()}
    # A package's __init__ re-exporting its submodules is not a cycle: drop package -> own submodule.
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_in_a_fresh_process():
    names = sorted(_modules())
    code = (
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "bad = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as e:\n"
        "        bad[n] = repr(e)\n"
        "print('RESULT ' + json.dumps(bad))\n"
    )
    r = run_py(code, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.split("RESULT ", 1)[1]) == {}


def test_package_and_cli_start_without_tensorflow():
    r = run_py(
        "import sys, llm4msr_tf\n"
        "light = [m for m in ('tensorflow', 'torch', 'apache_beam', 'tfx') if m in sys.modules]\n"
        "from llm4msr_tf.cli import build_parser\n"
        "build_parser()\n"
        "cli = [m for m in ('tensorflow', 'torch', 'apache_beam', 'tfx') if m in sys.modules]\n"
        "print('RESULT', light, cli, 'TF_USE_LEGACY_KERAS=' + __import__('os').environ['TF_USE_LEGACY_KERAS'])"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("RESULT", 1)[1].split() == ["[]", "[]", "TF_USE_LEGACY_KERAS=1"]


def test_public_surface_is_small_and_lazy():
    import llm4msr_tf

    expected = {"LLM4MSR", "ModelConfig", "TrainConfig", "build_model", "load_model", "save_model",
                "load_knowledge", "backbones", "fit", "evaluate", "make_dataset", "DatasetSpec",
                "export_saved_model"}
    assert set(llm4msr_tf.__all__) == expected
    r = run_py(
        "import sys, llm4msr_tf\n"
        "before = 'tensorflow' in sys.modules\n"
        "from llm4msr_tf import LLM4MSR, ModelConfig, build_model, load_knowledge, backbones, fit\n"
        "from llm4msr_tf.models import LLM4MSR as M\n"
        "from llm4msr_tf.knowledge import load\n"
        "print('RESULT', before, LLM4MSR is M, load_knowledge is load, callable(backbones.get))"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split("RESULT", 1)[1].split() == ["False", "True", "True", "True"]


def test_pipeline_project_imports_only_the_library():
    """pipeline/ is the TFX project a team copies: stdlib, llm4msr_tf and its own configs only."""
    folder = os.path.join(PROJECT_ROOT, "pipeline")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".py"))
    assert {"configs.py", "local_runner.py", "kubeflow_v2_runner.py"} <= set(files)
    assert "__init__.py" not in files  # not an installable package
    for f in files:
        tree = ast.parse(open(os.path.join(folder, f), encoding="utf-8").read())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                top = n.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("llm4msr_tf", "configs"), (f, n)


def test_pipeline_runners_build_their_configs(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(LLM4MSR_DATA_DIR=str(tmp_path / "d"), LLM4MSR_KNOWLEDGE_DIR="", LLM4MSR_BACKBONE="star",
               LLM4MSR_GCS_BUCKET="b")
    for script, root in (("local_runner.py", "pipeline_out/root"), ("kubeflow_v2_runner.py", "gs://b/llm4msr/root")):
        r = subprocess.run([sys.executable, os.path.join(PROJECT_ROOT, "pipeline", script), "--print-config"],
                           capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        cfg = json.loads(r.stdout)
        assert cfg["train"]["data"] == str(tmp_path / "d") and cfg["train"]["knowledge"] is None
        assert cfg["model"]["backbone"] == "star" and cfg["model"]["use_knowledge"] is False
        assert cfg["pipeline_root"] == root


def test_setup_and_build_name_only_files_that_exist():
    setup = open(os.path.join(PROJECT_ROOT, "setup.py")).read()
    tree = ast.parse(setup)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    include = ast.literal_eval(kw["packages"].keywords[0].value)
    assert include == ["llm4msr_tf", "llm4msr_tf.*"]  # no generic top-level package in site-packages
    if "package_data" in kw:
        for pkg, patterns in ast.literal_eval(kw["package_data"]).items():
            import glob

            for p in patterns:
                assert glob.glob(os.path.join(PROJECT_ROOT, pkg.replace(".", os.sep), p)), (pkg, p)
    runtime = [r.split("=")[0].split("<")[0].split(">")[0] for r in ast.literal_eval(kw["install_requires"])]
    assert "scikit-learn" not in runtime  # tests and benchmarks only
    build = open(os.path.join(PROJECT_ROOT, "BUILD")).read()
    for pattern in ("tests/fixtures", "configs/*.json"):
        assert pattern not in build, pattern


@pytest.mark.parametrize("field", ["meta_rank", "projection_dim", "user_meta_layers", "meta_activation"])
def test_model_config_fields_reach_llm4msr_by_name(field, tmp_path_factory):
    """build_model passes every ModelConfig field named like an LLM4MSR argument, unchanged."""
    import inspect

    from llm4msr_tf.models import LLM4MSR, ModelConfig, build_model
    from llm4msr_tf.models.build import llm4msr_kwargs
    from llm4msr_tf.testing import toy

    accepted = set(inspect.signature(LLM4MSR.__init__).parameters)
    cfg_fields = {f for f in ModelConfig.__dataclass_fields__}
    assert set(llm4msr_kwargs(ModelConfig())) == (accepted & cfg_fields) - {"backbone"}
    value = {"meta_rank": 3, "projection_dim": 12, "user_meta_layers": 2, "meta_activation": "tanh"}[field]
    root = tmp_path_factory.mktemp("flow")
    spec = toy.write_toy_dataset(str(root / "d"), rows={"train": 40, "eval": 10, "test": 10})
    kb = toy.write_toy_knowledge(str(root / "k"), dim=8)
    model = build_model(spec, ModelConfig(embedding_dim=4, **{field: value}), knowledge=kb, compile=False)
    assert model.get_config()[field] == value
