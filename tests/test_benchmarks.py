"""Benchmark harness: `llm4msr bench` at a tiny size writes valid results; report and helpers are exact."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import PROJECT_ROOT, run_cli

# benchmarks/ is a top-level folder of the checkout, not part of the installed package.
sys.path.insert(0, PROJECT_ROOT)


@pytest.fixture(scope="module")
def quick_throughput(tmp_path_factory):
    """Run `llm4msr bench train_throughput --quick` once into a temp results folder."""
    out = tmp_path_factory.mktemp("results")
    work = tmp_path_factory.mktemp("work")
    proc = run_cli("bench", "train_throughput", "--quick", "--no-report", "--out-dir", str(out),
                   "--work-dir", str(work), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, work, proc


@pytest.mark.slow
def test_bench_throughput_writes_json_png_markdown(quick_throughput):
    out, work, proc = quick_throughput
    doc = json.loads((out / "train_throughput.json").read_text())
    assert doc["command"].startswith("llm4msr bench train_throughput --quick")
    assert doc["machine"]["nproc"] == os.cpu_count() and doc["machine"]["cpu_model"]
    assert doc["versions"]["torch-rechub"] and doc["versions"]["tensorflow"]
    libs = {(r["library"], r["knowledge"]) for r in doc["results"]}
    assert libs == {("torch-rechub", False), ("llm4msr_tf", False), ("llm4msr_tf", True)}
    for r in doc["results"]:
        assert r["examples_per_s"] > 0 and r["timed_steps"] == 4 and r["warmup_steps"] == 2
        if r["library"] == "llm4msr_tf":  # --rounds 2: the best of two alternating rounds is kept
            assert len(r["rounds_examples_per_s"]) == 2
            assert round(r["examples_per_s"], 1) == max(r["rounds_examples_per_s"])
    peer = next(r for r in doc["results"] if r["library"] == "torch-rechub")
    assert peer["model"] == "MMOE" and peer["process"].startswith("separate")
    s = {x["model"]: x for x in doc["summary"]}
    assert s["mmoe"]["ratio_ours_over_peer"] == pytest.approx(
        s["mmoe"]["ours_examples_per_s"] / peer["examples_per_s"], rel=0.02)
    assert s["llm4msr+mmoe"]["peer_examples_per_s"] == pytest.approx(peer["examples_per_s"], abs=0.051)
    png = (out / "train_throughput.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "train_throughput.md").read_text()
    assert "| llm4msr+mmoe |" in md and "ours/peer" in md and doc["command"] in md


@pytest.mark.slow
def test_encode_indices_matches_vocab_and_oov(quick_throughput):
    from benchmarks.common import encode_indices, load_arrays
    from llm4msr_tf.data.spec import DatasetSpec

    _, work, _ = quick_throughput
    data_dir = os.path.join(str(work), "data", "synthetic")
    spec = DatasetSpec.load(data_dir)
    arrays = load_arrays(data_dir, "test", limit=50)
    arrays[spec.user_feature][0] = b"never-seen-user"
    enc = encode_indices(spec, arrays)
    vocab = spec.vocab(spec.user_feature)
    assert enc[spec.user_feature][0] == 0
    for raw, idx in zip(arrays[spec.user_feature][1:], enc[spec.user_feature][1:]):
        assert idx == 0 or vocab[idx - 1] == raw.decode()
    assert enc[spec.label].dtype == np.int64 and len(enc[spec.label]) == 50
    np.testing.assert_array_equal(enc[spec.scenario_feature], arrays[spec.scenario_feature])


def _quality_doc(llm, runs):
    return {"benchmark": "quality", "dataset": "toy", "split_method": "random", "num_scenarios": 2,
            "scenario_names": ["a", "b"], "train_rows": 10, "epochs": 3, "patience": 0, "batch_size": 4,
            "seeds": [0, 1], "llms": [llm], "command": f"llm4msr bench quality --args '--llms {llm}'",
            "runs": runs}


def _run(seed, backbone, knowledge, auc):
    return {"seed": seed, "backbone": backbone, "knowledge": knowledge,
            "test": {"auc": auc, "log_loss": 0.5, "per_scenario": {"0": {"auc": auc, "log_loss": 0.5},
                                                                 "1": {"auc": auc - 0.1, "log_loss": 0.6}}}}


def test_report_merges_quality_and_rewrites_only_its_readme_section(tmp_path):
    from benchmarks import report
    from llm4msr_tf.utils.io import write_json

    write_json(str(tmp_path / "quality_a.json"), _quality_doc("minilm", [
        _run(0, "mmoe", "none", 0.70), _run(1, "mmoe", "none", 0.72),
        _run(0, "mmoe", "minilm", 0.74), _run(1, "mmoe", "minilm", 0.76)]))
    peer = [dict(_run(s, "mmoe", "none", 0.60), library="torch-rechub") for s in (0, 1)]
    write_json(str(tmp_path / "quality_b.json"), _quality_doc("gemma3-270m", [
        _run(0, "mmoe", "gemma3-270m", 0.69), _run(1, "mmoe", "gemma3-270m", 0.69)] + peer))
    merged = report.merged_quality(str(tmp_path))
    assert len(merged) == 1
    rows = {r["knowledge"]: r for r in merged[0]["summary"]}
    assert set(rows) == {"none", "minilm", "gemma3-270m", "torch-rechub"}
    assert rows["none"]["auc"]["mean"] == pytest.approx(0.71)  # the peer's "none" runs stay apart
    assert rows["torch-rechub"]["auc"]["mean"] == pytest.approx(0.60)
    assert rows["none"]["auc"]["std"] == pytest.approx(np.std([0.70, 0.72], ddof=1))
    assert rows["minilm"]["delta_auc_vs_backbone"] == pytest.approx(0.04)
    assert rows["gemma3-270m"]["delta_auc_vs_backbone"] == pytest.approx(-0.02)
    assert rows["minilm"]["per_scenario"]["1"]["auc"]["mean"] == pytest.approx(0.65)

    readme = tmp_path / "README.md"
    readme.write_text("# P\n\nintro\n\n<!-- perf:start -->\nold\n<!-- perf:end -->\n\n## Other\nkeep me\n")
    out = report.build(str(tmp_path))
    assert "-0.0200" in out["full"] and "+0.0400" in out["full"]
    assert (tmp_path / "quality_toy_merged.png").exists() and "](quality_toy_merged.png)" in out["full"]
    report.update_readme(out["readme"], str(readme))
    text = readme.read_text()
    assert "old" not in text and "keep me" in text and text.startswith("# P\n\nintro\n")
    assert text.count("<!-- perf:start -->") == 1 and "mmoe 0.7100" in text and "torch-rechub alone 0.6000" in text
    assert report.update_readme(out["readme"], str(readme)) is False  # idempotent


def test_report_never_merges_quality_sweeps_of_different_protocols(tmp_path):
    # An older sweep capped at fewer epochs must not be averaged into the newest one.
    from benchmarks import report
    from llm4msr_tf.utils.io import write_json

    old = dict(_quality_doc("minilm", [_run(0, "mmoe", "none", 0.50), _run(0, "mmoe", "minilm", 0.99),
                                       _run(1, "mmoe", "minilm", 0.99)]),
               finished_utc="2026-01-01T00:00:00Z", epochs=10)
    new = dict(_quality_doc("minilm", [_run(0, "mmoe", "none", 0.70), _run(1, "mmoe", "none", 0.72),
                                       _run(0, "mmoe", "minilm", 0.69), _run(1, "mmoe", "minilm", 0.70)]),
               finished_utc="2026-02-01T00:00:00Z", epochs=30)
    write_json(str(tmp_path / "quality_old.json"), old)
    write_json(str(tmp_path / "quality_new.json"), new)
    (merged,) = report.merged_quality(str(tmp_path))
    assert merged["epochs"] == 30 and merged["superseded"] == ["quality_old.json"]
    rows = {r["knowledge"]: r for r in merged["summary"]}
    assert rows["none"]["auc"]["mean"] == pytest.approx(0.71)
    assert rows["minilm"]["auc"]["mean"] == pytest.approx(0.695)
    assert report.losses(merged["summary"]) == ["mmoe + minilm -0.0150"]
    out = report.build(str(tmp_path))
    assert "at most 30 epochs" in out["readme"]
    assert "LLM4MSR is below the backbone alone for: mmoe + minilm -0.0150." in out["readme"]


def test_report_links_a_single_sweeps_own_plot_instead_of_copying_it(tmp_path):
    # One sweep behind a table: its own PNG is linked, and a merged copy left from before goes.
    from benchmarks import report
    from llm4msr_tf.utils.io import write_json

    write_json(str(tmp_path / "quality_one.json"), _quality_doc("minilm", [
        _run(0, "mmoe", "none", 0.70), _run(0, "mmoe", "minilm", 0.74)]))
    (tmp_path / "quality_one.png").write_bytes(b"png of the sweep")
    (tmp_path / "quality_toy_merged.png").write_bytes(b"stale copy")
    out = report.build(str(tmp_path))
    assert "![test AUC](quality_one.png)" in out["full"] and "_merged.png" not in out["full"]
    assert not (tmp_path / "quality_toy_merged.png").exists()
    assert (tmp_path / "quality_one.png").read_bytes() == b"png of the sweep"


def test_report_rebuilds_the_zoo_table_from_complete_backbones_only(tmp_path):
    # A backbone gets a row once alone, real knowledge and the random control have every seed;
    # the differences are paired by seed, and only the marked block of the README changes.
    from benchmarks import report
    from benchmarks.quality import aggregate

    aucs = {("epnet", "none"): [0.810, 0.812, 0.811], ("epnet", "minilm"): [0.813, 0.815, 0.812],
            ("epnet", "random"): [0.809, 0.811, 0.812], ("star", "none"): [0.80, 0.81, 0.80],
            ("star", "minilm"): [0.81, 0.81]}  # star: two seeds of three so far
    runs = [dict(_run(s, b, k, a), fusion="-" if k == "none" else "default", lr=1e-3, best_eval_auc=a)
            for (b, k), v in aucs.items() for s, a in enumerate(v)]
    doc = dict(_quality_doc("minilm", runs), seeds=[0, 1, 2], backbones=["epnet", "star", "m2m"],
               summary=aggregate(runs, 2))
    table = report.zoo_llm_table(doc)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    d_alone = np.array(aucs[("epnet", "minilm")]) - np.array(aucs[("epnet", "none")])
    d_rand = np.array(aucs[("epnet", "minilm")]) - np.array(aucs[("epnet", "random")])
    assert rows == [f"| `epnet` | .8110 ± .0010 | .8133 ± .0015 | .8107 ± .0015 | "
                    f"{d_alone.mean():+.4f} ± {d_alone.std(ddof=1):.4f} | {d_rand.mean():+.4f} ± {d_rand.std(ddof=1):.4f} |"]
    assert "still to run: `star`, `m2m`" in table
    assert report.zoo_llm_table(dict(doc, summary=[])) is None
    assert report._pm({"mean": 0.00046, "std": 0.00004}, signed=True) == "+0.0005 ± < 0.0001"

    readme = tmp_path / "README.md"
    readme.write_text("# P\n<!-- perf:start -->\nold\n<!-- perf:end -->\n"
                      "<!-- zoo-llm:start -->\nold zoo\n<!-- zoo-llm:end -->\nafter\n")
    assert report.update_readme("perf", str(readme), zoo=table)
    text = readme.read_text()
    assert "old zoo" not in text and rows[0] in text and text.endswith("<!-- zoo-llm:end -->\nafter\n")
    assert report.update_readme("perf", str(readme), zoo=table) is False


def test_report_summarises_knowledge_and_serving_results(tmp_path):
    from benchmarks import report
    from llm4msr_tf.utils.io import write_json

    point = {"batch_size": 8, "prompts_per_s": 2.5, "tokens_per_s": 250.0, "fraction_of_matmul": 0.4}
    write_json(str(tmp_path / "knowledge.json"), {
        "command": "python benchmarks/knowledge.py --data D", "note": "",
        "llms": [{"llm": "minilm", "best": point, "sweep": [point], "speedup_best_batched_vs_naive": 5.0,
                  "naive_loop": {"prompts_per_s": 0.5}},
                 {"llm": "minilm", "variant": "bf16", "best": dict(point, fraction_of_matmul=1.3), "sweep": [point]}],
        "beam_job": [{"llm": "minilm", "prompts": 40, "prompts_per_s_wall": 2.0, "prompts_per_s_in_llm": 2.4},
                     {"llm": "minilm", "variant": "bf16", "prompts": 40, "prompts_per_s_wall": 3.0,
                      "prompts_per_s_in_llm": 4.0, "fraction_of_matmul_in_llm": 1.2, "fraction_of_matmul_wall": 0.9}]})
    timing = {"p50_ms": 2.0, "p99_ms": 4.0, "examples_per_s": 500.0}
    write_json(str(tmp_path / "serving.json"), {
        "command": "python -m benchmarks.serving", "backbone": "mmoe", "dataset": "ml-100k",
        "method": "in-process", "knowledge": "random",
        "results": [{"batch_size": 1, "backbone": timing, "llm4msr": dict(timing, p50_ms=3.0),
                     "llm4msr_overhead": {"p50_ratio": 1.5}}]})
    out = report.build(str(tmp_path))
    assert "minilm 2.50 prompts/s at batch 8 (5.0x a one-prompt-at-a-time loop)" in out["readme"]
    assert "mmoe batch 1 p50 2.00 ms alone vs 3.00 ms with LLM4MSR (1.50x)" in out["readme"]
    assert "| minilm | 8 | 2.50 | 250 | 0.40 |" in out["full"]
    assert "minilm (bf16) 2.50 prompts/s at batch 8 (1.30 of the fp32 matmul rate)" in out["readme"]
    assert "Beam job (minilm (bf16)): 40 prompts, 3.00 prompts/s wall, 4.00 prompts/s in the LLM (1.20 of the fp32 " \
           "matmul rate in the LLM, 0.90 end to end)" in out["full"]
    assert "| mmoe | 1 | 2.0 | 4.0 | 3.0 | 4.0 | 1.50 | - | - | 500 | 500 |" in out["full"]
    assert "40 prompts, 2.00 prompts/s wall" in out["full"]


@pytest.mark.slow
def test_quality_peer_trains_torch_rechub_under_the_same_protocol(quick_throughput, tmp_path):
    # The peer's quality rows come from a real torch-rechub MMOE trained on the same split with
    # early stopping on eval AUC; they must not collide with our backbone-alone rows.
    from benchmarks import quality

    _, work, _ = quick_throughput
    proc = run_cli("bench", "quality", "--no-report", "--args",
                   f"--dataset synthetic --work-dir {work} --out-dir {tmp_path} --backbones mmoe --llms "
                   "--seeds 0 --lrs 0.001 --epochs 3 --patience 1 --batch-size 256 --peer --name q", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "q.json").read_text())
    assert not doc["errors"]
    runs = {quality.variant(r): r for r in doc["runs"]}
    assert set(runs) == {"none", "torch-rechub"}
    peer, ours = runs["torch-rechub"], runs["none"]
    assert peer["library"] == "torch-rechub" and peer["peer_model"] == "MMOE" and peer["knowledge"] == "none"
    for r, key in ((peer, "eval_auc"), (ours, "eval_auc_keras")):
        hist = [h[key] for h in r["history"]]
        assert 1 <= r["epochs_run"] == len(hist) <= 3
        assert hist[r["best_epoch"] - 1] == pytest.approx(max(hist))  # the best-eval weights were kept
        assert 0.5 < r["test"]["auc"] < 1 and set(r["test"]["per_scenario"]) == {"0", "1", "2"}
    assert peer["best_eval_auc"] == pytest.approx(max(h["eval_auc"] for h in peer["history"]))
    assert ours["best_eval_auc"] == ours["eval"]["auc"]  # exact AUC of the restored weights
    rows = {r["knowledge"]: r for r in doc["summary"]}
    assert rows["torch-rechub"]["library"] == "torch-rechub" and "delta_auc_vs_backbone" not in rows["torch-rechub"]
    md = (tmp_path / "q.md").read_text()
    assert "| mmoe | torch-rechub (backbone alone) | - | 0.001 | 1 |" in md and "| mmoe | none | - | 0.001 | 1 |" in md


def test_bench_unknown_name_is_a_clear_error(capsys):
    from llm4msr_tf.cli import main

    assert main(["bench", "no_such_bench", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark(s) ['no_such_bench']" in err and "train_throughput" in err


def test_steady_rate_counts_steps_and_syncs():
    from benchmarks.common import steady_rate

    calls, synced = [], []
    stats = steady_rate(lambda i: calls.append(i) or i, warmup=3, steps=10, batch_size=8, sync=synced.append)
    assert calls == list(range(13))  # 3 warm-up + 5 windows x 2 timed steps
    assert stats["timed_steps"] == 10 and stats["warmup_steps"] == 3 and len(stats["window_rates"]) == 5
    assert synced[0] == 2 and len(synced) == 6
    assert stats["examples_per_s"] > 0


@pytest.mark.slow
def test_serving_scale_measures_each_mode_in_a_fresh_child(tmp_path):
    """Tiny serving_scale run: the feature-mode model does not grow with users, the table does,
    and the child's peak RSS is its own (not the parent's pages shared before exec)."""
    import subprocess

    out, work = tmp_path / "results", tmp_path / "work"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.serving_scale", "--dataset", "synthetic",
                           "--users", "200", "20000", "--dim", "64", "--out-dir", str(out), "--work-dir", str(work)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "serving_scale.json").read_text())
    rows = {(r["users"], r["mode"]): r for r in doc["results"]}
    assert set(rows) == {(200, "table"), (200, "feature"), (20000, "table"), (20000, "feature")}
    # 20k users x 64 floats folded into the table model (>= 20000 * 64 * 4 bytes more than 200 users).
    assert rows[(20000, "table")]["saved_model_mib"] - rows[(200, "table")]["saved_model_mib"] >= 19800 * 64 * 4 / 2**20
    assert abs(rows[(20000, "feature")]["saved_model_mib"] - rows[(200, "feature")]["saved_model_mib"]) < 0.05
    for r in rows.values():
        assert r["request_bytes_per_example"] > 0 and r["load_s"] > 0
        assert 50 < r["peak_rss_mib"] < 3000 and r["p50_ms"]["1"] > 0 and r["p50_ms"]["64"] > 0
    feat = rows[(200, "feature")]["request_bytes_per_example"] - rows[(200, "table")]["request_bytes_per_example"]
    assert feat >= 64 * 4  # the request carries the 64-d vector
    assert "| 20,000 | table |" in (out / "serving_scale.md").read_text()


def test_backbone_params_resolve_the_embedding_dim_placeholder_for_every_benchmark_backbone():
    """quality.py and train_throughput.py build every zoo backbone with concrete widths (M2M's
    field_dim follows --embedding-dim; a raw "embedding_dim" string once failed every M2M run)."""
    from benchmarks.train_throughput import BACKBONES, backbone_params
    from llm4msr_tf import backbones

    assert backbone_params("m2m", 12) == {"field_dim": 12}
    for name in BACKBONES:
        params = backbone_params(name, 8)
        assert "embedding_dim" not in params.values(), (name, params)
        backbones.create(name, 3, **params)  # the backbone's own checks accept them
