"""The quality benchmark's protocol: rates chosen on eval only, the random control at the real
knowledge's rate, paired-by-seed deltas, resume; and one real sweep on tiny data."""
import json

import numpy as np
import pytest

from benchmarks import quality


def _run(seed, backbone, knowledge, lr, eval_auc, test_auc, stage="lr_search", fusion="default"):
    return {"seed": seed, "backbone": backbone, "knowledge": knowledge, "fusion": fusion, "lr": lr,
            "stage": stage, "best_eval_auc": eval_auc,
            "test": {"auc": test_auc, "log_loss": 0.5, "per_scenario": {"0": {"auc": test_auc, "log_loss": 0.5}}}}


def test_rate_is_chosen_on_eval_never_on_test_and_deltas_are_paired():
    none = quality.NO_FUSION
    runs = [
        # backbone alone: eval prefers 1e-3, test would prefer 3e-3 -> 1e-3 must be chosen
        _run(0, "mmoe", "none", 1e-3, 0.80, 0.70, fusion=none), _run(0, "mmoe", "none", 3e-3, 0.79, 0.90, fusion=none),
        _run(1, "mmoe", "none", 1e-3, 0.80, 0.72, "seeds", none), _run(2, "mmoe", "none", 1e-3, 0.80, 0.71, "seeds", none),
        # a seed-1 run at the unchosen rate must be ignored
        _run(1, "mmoe", "none", 3e-3, 0.99, 0.99, "seeds", none),
        _run(0, "mmoe", "llm", 1e-3, 0.81, 0.60), _run(0, "mmoe", "llm", 3e-3, 0.82, 0.74),
        _run(1, "mmoe", "llm", 3e-3, 0.82, 0.77, "seeds"), _run(2, "mmoe", "llm", 3e-3, 0.82, 0.75, "seeds"),
        _run(0, "mmoe", "random", 3e-3, 0.80, 0.71, "seeds"), _run(1, "mmoe", "random", 3e-3, 0.80, 0.72, "seeds"),
        _run(2, "mmoe", "random", 3e-3, 0.80, 0.70, "seeds"),
    ]
    assert quality.chosen_lr(runs, ("mmoe", "none", none), 0) == 1e-3
    assert quality.chosen_lr(runs, ("mmoe", "llm", "default"), 0) == 3e-3
    rows = {r["knowledge"]: r for r in quality.aggregate(runs, 1)}
    assert rows["none"]["lr"] == 1e-3 and rows["none"]["seeds"] == [0, 1, 2]
    assert rows["none"]["auc"]["mean"] == pytest.approx(0.71)
    assert rows["none"]["lr_search"] == {"0.001": 0.80, "0.003": 0.79}
    d = rows["llm"]["delta_auc_vs_alone"]
    diffs = np.array([0.74 - 0.70, 0.77 - 0.72, 0.75 - 0.71])
    assert d["mean"] == pytest.approx(diffs.mean()) and d["std"] == pytest.approx(diffs.std(ddof=1))
    assert d["beyond_2sd"] is True and rows["llm"]["delta_auc_vs_backbone"] == pytest.approx(diffs.mean())
    r = rows["llm"]["delta_auc_vs_random"]
    assert r["mean"] == pytest.approx(np.mean([0.03, 0.05, 0.05])) and r["seeds"] == [0, 1, 2]
    assert "delta_auc_vs_random" not in rows["random"] and rows["random"]["lr"] == 3e-3
    md = quality.markdown({"dataset": "toy", "split_method": "random", "train_rows": 10, "epochs": 3, "patience": 2,
                           "batch_size": 4, "num_scenarios": 1, "lrs": [1e-3, 3e-3], "llms": ["llm"],
                           "summary": list(rows.values()), "seeds": [0, 1, 2]})
    assert "| mmoe | llm | default | 0.003 | 3 |" in md and "**>2σ**" in md


def test_early_stop_counts_epochs_without_improvement():
    stop = quality.EarlyStop(2)
    assert stop.update(0, 0.5) == (True, False)
    assert stop.update(1, 0.4) == (False, False)
    assert stop.update(2, 0.6) == (True, False)
    assert stop.update(3, 0.6) == (False, False)  # equal is no improvement
    assert stop.update(4, 0.59) == (False, True)
    assert stop.best == 0.6 and stop.best_epoch == 2


def test_bad_fusion_and_flags_are_clear_errors():
    from llm4msr_tf.utils.io import UserInputError

    assert quality.parse_fusions([]) == {"default": {}}
    assert quality.parse_fusions(['g={"user_meta_form": "gate"}']) == {"g": {"user_meta_form": "gate"}}
    with pytest.raises(UserInputError, match="unknown: \\['no_such_field'\\]"):
        quality.parse_fusions(['g={"no_such_field": 1}'])
    with pytest.raises(UserInputError, match="NAME=JSON"):
        quality.parse_fusions(["gate"])
    with pytest.raises(SystemExit):
        quality.parse_args(["--patience", "0"])


def test_sweep_runs_the_protocol_and_resumes(tmp_path):
    from llm4msr_tf.testing import toy

    spec = toy.write_toy_dataset(str(tmp_path / "data"), rows={"train": 600, "eval": 200, "test": 200})
    toy.write_random_knowledge(str(tmp_path / "k"), spec, dim=8)
    argv = ["--data-dir", str(tmp_path / "data"), "--knowledge-dirs", f"toy={tmp_path / 'k'}", "--llms", "toy",
            "--backbones", "shared_bottom", "--lrs", "0.001", "0.01", "--seeds", "0", "1", "--epochs", "2",
            "--patience", "1", "--batch-size", "128", "--out-dir", str(tmp_path / "out"), "--name", "q",
            "--fusion", 'gate={"user_meta_form": "gate", "zero_init": true, "knowledge_normalize": "center",'
                        ' "projection_dim": 4, "meta_generator_units": 4, "scenario_tower_units": [4]}']
    assert quality.main(argv) == 0
    doc = json.loads((tmp_path / "out" / "q.json").read_text())
    assert not doc["errors"]
    keys = sorted((r["knowledge"], r["stage"], r["seed"], r["lr"]) for r in doc["runs"])
    alone_lr = quality.chosen_lr(doc["runs"], ("shared_bottom", "none", "-"), 0)
    toy_lr = quality.chosen_lr(doc["runs"], ("shared_bottom", "toy", "gate"), 0)
    assert keys == sorted([("none", "lr_search", 0, 0.001), ("none", "lr_search", 0, 0.01),
                           ("toy", "lr_search", 0, 0.001), ("toy", "lr_search", 0, 0.01),
                           ("none", "seeds", 1, alone_lr), ("toy", "seeds", 1, toy_lr),
                           ("random", "seeds", 0, toy_lr), ("random", "seeds", 1, toy_lr)])
    for r in doc["runs"]:
        keras_auc = [h["eval_auc_keras"] for h in r["history"]]
        assert 1 <= r["epochs_run"] == len(keras_auc) <= 2
        assert keras_auc[r["best_epoch"] - 1] == max(keras_auc)  # the best eval epoch's weights were kept
        # the selection metric is the exact eval AUC of those weights (sklearn agrees)
        assert r["best_eval_auc"] == r["eval"]["auc"] and abs(r["best_eval_auc"] - max(keras_auc)) < 0.02
    rand = [r for r in doc["runs"] if r["knowledge"] == "random"]
    assert all(r["random_of"] == "toy" and r["knowledge_dim"] == 8 for r in rand)
    rows = {r["knowledge"]: r for r in doc["summary"]}
    assert rows["toy"]["delta_auc_vs_random"]["seeds"] == [0, 1] and rows["toy"]["fusion"] == "gate"
    assert (tmp_path / "out" / "q.png").read_bytes()[:4] == b"\x89PNG"
    # A rerun finds every run done and trains nothing.
    before = (tmp_path / "out" / "q.json").read_text()
    assert quality.main(argv) == 0
    assert len(json.loads((tmp_path / "out" / "q.json").read_text())["runs"]) == len(json.loads(before)["runs"])


def test_backbone_major_finishes_each_backbones_rows_before_the_next(tmp_path):
    from llm4msr_tf.testing import toy

    spec = toy.write_toy_dataset(str(tmp_path / "data"), rows={"train": 300, "eval": 100, "test": 100})
    toy.write_random_knowledge(str(tmp_path / "k"), spec, dim=8)
    argv = ["--data-dir", str(tmp_path / "data"), "--knowledge-dirs", f"toy={tmp_path / 'k'}", "--llms", "toy",
            "--backbones", "shared_bottom", "mmoe", "--lrs", "0.01", "--seeds", "0", "--epochs", "1",
            "--patience", "1", "--batch-size", "128", "--out-dir", str(tmp_path / "out"), "--name", "q",
            "--backbone-major", "--fusion", 'small={"projection_dim": 4, "scenario_tower_units": [4]}']
    assert quality.main(argv) == 0
    doc = json.loads((tmp_path / "out" / "q.json").read_text())
    assert not doc["errors"]
    order = [(r["backbone"], r["knowledge"], r["stage"], r["seed"]) for r in doc["runs"]]
    each = [("none", "lr_search", 0), ("toy", "lr_search", 0), ("random", "seeds", 0)]
    # Every stage of shared_bottom (rate search, control) runs before mmoe's first run; the default
    # order would run both backbones' searches before either control.
    assert order == [("shared_bottom", *k) for k in each] + [("mmoe", *k) for k in each]
