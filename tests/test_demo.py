"""The main job (`llm4msr demo`) at a tiny size: every stage runs and every artifact is there."""
import json
import os

import numpy as np
import pytest

from conftest import run_cli

TINY = [
    "--prepare-args", "--num-users 60 --num-items 80 --interactions-per-user 25",
    "--epochs", "2", "--explain-users", "1", "--generate", "8",
]


def _png_ok(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


@pytest.mark.slow
def test_demo_tiny_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), *TINY, timeout=1800)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    # Stage headers and the closing summary screen.
    assert "[1/" in r.stdout and "LLM4MSR demo finished" in r.stdout
    for stage in ("prepare", "knowledge", "explain", "train-backbone", "train-llm4msr",
                  "train-no_scenario_meta", "train-no_user_meta", "tfx-backbone", "tfx-llm4msr"):
        assert f"] {stage}:" in r.stdout, stage

    # Artifacts of every stage.
    assert (out / "config.json").exists() and (out / "data" / "dataset.json").exists()
    manifest = json.loads((out / "knowledge" / "manifest.json").read_text())
    assert manifest["dim"] == 640 and manifest["counts"]["user"] == 60
    for v in ("backbone", "llm4msr", "no_scenario_meta", "no_user_meta"):
        m = json.loads((out / "runs" / v / "metrics.json").read_text())
        assert 0.0 <= m["test"]["overall"]["auc"] <= 1.0
    serving = json.loads((out / "serving_check.json").read_text())
    for v in ("backbone", "llm4msr"):
        assert os.path.isdir(serving[v]["saved_model"])
        assert os.path.basename(serving[v]["saved_model"]).isdigit()  # versioned layout
        assert serving[v]["examples"] > 0 and np.isfinite(serving[v]["overall"]["auc"])

    # Report: Markdown + HTML, the tables, the plots it links, explanations.
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "<table>" in html and "AUC lift" in md and "Ablations" in md
    assert "What the LLM says" in md and "Generated:" in md
    for png in ("scenario_auc.png", "training_curves.png", "knowledge_pca.png"):
        assert f"plots/{png}" in md
        assert _png_ok(out / "plots" / png), png
    summary = json.loads((out / "summary.json").read_text())
    assert summary["headline"] and "overall test AUC" in summary["headline"][0]

    # Re-running reuses every finished stage.
    r2 = run_cli("demo", "--out", str(out), *TINY, timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("reused") >= 9, r2.stdout[-3000:]


def test_demo_needs_source_for_real_datasets(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "d"), "--dataset", "movielens")
    assert r.returncode == 2
    assert "--source" in r.stderr
