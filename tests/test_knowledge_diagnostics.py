"""Knowledge diagnostics: exact spread statistics, a ridge probe that finds planted signal and
not noise, the report on a tiny prepared dataset, and the CLI's errors."""
import json
import math
import os

import numpy as np
import pytest

import llm4msr_tf  # noqa: F401
from conftest import run_cli
from llm4msr_tf.data.config import PrepareConfig
from llm4msr_tf.data.prepare import prepare
from llm4msr_tf.data.reader import read_split
from llm4msr_tf.knowledge import diagnostics as D
from llm4msr_tf.knowledge.store import write_knowledge


def test_spread_exact_on_a_hand_case():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = D.spread(v)
    # Cosines 0, 1/sqrt2, 1/sqrt2 (each pair counted both ways).
    assert s["mean_cosine"] == pytest.approx(math.sqrt(2) / 3, abs=1e-12)
    # Centred rows (1,-2)/3, (-2,1)/3, (1,1)/3: cosines -4/5, -1/sqrt10, -1/sqrt10.
    assert s["mean_cosine_centred"] == pytest.approx((-0.8 - 2 / math.sqrt(10)) / 3, abs=1e-12)
    # mean ||v||^2 = 4/3, ||mean||^2 = 8/9.
    assert s["variance_fraction_across_keys"] == pytest.approx(1 / 3, abs=1e-12)
    # Covariance eigenvalues 1/3 and 1/9: participation ratio (4/9)^2 / (1/9 + 1/81) = 1.6.
    assert s["effective_dim"] == pytest.approx(1.6, abs=1e-12)
    assert s["dims_for_90pct_variance"] == 2 and s["keys"] == 3 and s["dim"] == 2
    # Identical vectors: cosine 1, nothing varies across keys.
    same = D.spread(np.tile([[3.0, -1.0, 2.0]], (4, 1)))
    assert same["mean_cosine"] == pytest.approx(1.0) and same["variance_fraction_across_keys"] == pytest.approx(0.0)
    assert same["effective_dim"] == 0.0
    # A zero row has cosine 0 with everything; the fast formula matches the n x n matrix.
    rng = np.random.default_rng(0)
    x = np.vstack([rng.standard_normal((9, 5)) + 2.0, np.zeros((1, 5))])
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    c = u @ u.T
    assert D.mean_pairwise_cosine(x) == pytest.approx((c.sum() - np.trace(c)) / 90, abs=1e-12)
    ln = D.layernorm_rows(x[:9])
    assert np.allclose(ln.mean(axis=1), 0) and np.allclose(ln.var(axis=1), x[:9].var(axis=1) / (x[:9].var(axis=1) + 1e-3))
    with pytest.raises(ValueError, match="at least 2"):
        D.spread(np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        D.spread(np.array([[1.0, np.nan], [0.0, 1.0]]))


@pytest.mark.parametrize("n,d", [(25, 6), (12, 30)])  # primal (d <= n) and dual (n < d) forms
def test_leave_one_out_closed_form_matches_refitting(n, d):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 4, d)
    y = (x @ rng.standard_normal(d) + rng.standard_normal(n))[:, None]
    grid = (0.01, 1.0, 100.0)
    coef, b, r = D._ridge_fit_loo(x, y, grid)
    scale = ((x - x.mean(0)) ** 2).sum() / d

    def fit(xt, yt, a):
        xm, ym = xt.mean(0), yt.mean()
        w = np.linalg.solve((xt - xm).T @ (xt - xm) + a * np.eye(d), (xt - xm).T @ (yt - ym))
        return w, ym - xm @ w

    errs = []
    for rel in grid:
        e = 0.0
        for i in range(n):
            m = np.arange(n) != i
            w, c = fit(x[m], y[m, 0], rel * scale)
            e += (y[i, 0] - x[i] @ w - c) ** 2
        errs.append(e)
    assert r[0] == int(np.argmin(errs)) and len(set(np.round(errs, 6))) == 3
    w, c = fit(x, y[:, 0], grid[r[0]] * scale)
    assert np.allclose(coef[:, 0], w) and b[0] == pytest.approx(c)


def test_probe_finds_linear_signal_and_not_noise():
    rng = np.random.default_rng(2)
    n, d = 300, 40
    x = rng.standard_normal((n, d)) * 5 + 10  # scale and offset must not matter
    y = np.c_[x @ rng.standard_normal(d), x[:, 0] - 2 * x[:, 1] + 0.01 * rng.standard_normal(n),
              rng.standard_normal(n)]
    y[::3, 1] = np.nan  # a fact known for only some users: that target uses its own rows
    res = D.ridge_cv(x, y, folds=5, seed=0)
    assert res["r2"][0] > 0.99 and res["r2"][1] > 0.99
    assert res["n"] == [n, n - 100, n]
    assert -0.1 < res["r2"][2] < 0.02  # pure noise target: nothing to find
    noise = D.ridge_cv(rng.standard_normal((n, d)), y, folds=5, seed=0)
    assert all(-0.1 < r < 0.03 for r in noise["r2"])
    assert all(len(a) == 5 and set(a) <= set(D.ALPHA_GRID) for a in res["alpha_rel"])
    assert [len(f) for f in res["r2_folds"]] == [5, 5, 5] and min(res["r2_folds"][0]) > 0.98
    # Paired per-fold SE of a difference: zero against itself, positive against noise features.
    assert D.paired_fold_se(res, res) == 0.0 and D.paired_fold_se(res, noise) > 0
    # Ridge with an intercept does not care about centring; it does about per-row LayerNorm.
    cen = D.ridge_cv(D.transform(x, "centred"), y, folds=5, seed=0)
    assert np.allclose(cen["r2"], res["r2"], atol=1e-9)
    # Too few users with a fact for K folds: no R^2 rather than a meaningless one.
    few = D.ridge_cv(x[:9], y[:9], folds=5)
    assert few["r2"] == [None, None, None] and few["n"] == [9, 6, 9]
    with pytest.raises(ValueError, match="folds must be >= 2"):
        D.ridge_cv(x, y, folds=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    data = str(root / "data")
    prepare(PrepareConfig(dataset="synthetic", out=data, num_users=60, num_items=40, interactions_per_user=50,
                          progress=False))
    return root, data


def _write(root, data, name, make):
    users = sorted(read_split(data, "train")["user_id"].unique())
    vecs = make(users)
    recs = [{"key_type": "user", "key": u, "vector": v} for u, v in zip(users, vecs)]
    rng = np.random.default_rng(5)
    recs += [{"key_type": "scenario", "key": str(s), "vector": rng.standard_normal(vecs.shape[1])} for s in range(3)]
    return write_knowledge(str(root / name), recs, {"llm": "test", "pooling": "mean"})


def test_report_on_tiny_data_finds_planted_eval_fact(tiny):
    root, data = tiny
    ev = read_split(data, "eval")
    rate = ev.groupby("user_id")["label"].mean()
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((1, 16))

    def planted(users):  # a table that linearly encodes each user's eval positive rate
        r = rate.reindex(users).fillna(rate.mean()).to_numpy()[:, None]
        return 100.0 + r @ mix + 1e-3 * rng.standard_normal((len(users), 16))

    kdir = _write(root, data, "planted", planted)
    cfg = D.DiagnosticsConfig(knowledge=kdir, data=data, min_rows=1, bag_dim=8)
    rep = D.knowledge_report(kdir, data, cfg)
    ev_block = rep["probe"]["eval"]
    j = ev_block["targets"].index("pos_rate")
    assert ev_block["features"]["knowledge"]["raw"]["r2"][j] > 0.99
    assert ev_block["features"]["random"]["raw"]["r2"][j] < 0.1
    assert rep["summary"]["eval_r2_gain_beyond_ids_counts"] > 0.0
    assert rep["summary"]["eval_r2_gain_beyond_ids_counts_se"] >= 0.0
    # The planted table is nearly rank one around a large offset: cosine ~1 raw, spread after centring.
    sp = rep["spread"]["user"]["knowledge"]["raw"]
    assert sp["mean_cosine"] > 0.99 and sp["variance_fraction_across_keys"] < 1e-3 and sp["effective_dim"] < 1.1
    assert rep["spread"]["scenario"]["knowledge"]["raw"]["keys"] == 3
    assert {"pos_rate[search]", "share[deals]", "log_rows"} <= set(ev_block["targets"])
    md = D.to_markdown(rep)
    assert "| pos_rate |" in md and "checked: identical" in md
    paths = D.write_report(rep, str(root / "rep"))
    assert [os.path.basename(p) for p in paths] == ["rep.json", "rep.md"]
    assert json.load(open(paths[0]))["summary"] == json.loads(json.dumps(rep["summary"]))


def test_cli_report_and_one_line_errors(tiny, tmp_path):
    root, data = tiny
    kdir = _write(root, data, "noise", lambda users: np.random.default_rng(0).standard_normal((len(users), 8)))
    out = tmp_path / "r.md"
    r = run_cli("knowledge-report", "--knowledge", kdir, "--data", data, "--out", str(out), "--min-rows", "1",
                "--bag-dim", "4", "--no-train-facts", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "probe on eval facts" in r.stdout and out.exists() and not (tmp_path / "r.json").exists()
    for args, msg in (
        (["--knowledge", str(tmp_path / "missing"), "--data", data], "does not exist"),
        (["--knowledge", kdir, "--data", str(tmp_path / "nodata")], "does not exist"),
        (["--data", data], "required"),
    ):
        r = run_cli("knowledge-report", *args, timeout=600)
        assert r.returncode == 2, r.stderr
        assert msg in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _tiny_ml100k(root, users=40, movies=25, seed=0):
    """A MovieLens-100K-format folder (u.data, u.item, u.user) small enough to prepare in a second."""
    rng = np.random.default_rng(seed)
    d = root / "ml-100k"
    d.mkdir()
    lines = []
    for u in range(1, users + 1):
        for m in rng.choice(np.arange(1, movies + 1), size=20, replace=False):
            lines.append(f"{u}\t{m}\t{rng.integers(1, 6)}\t{800000000 + rng.integers(0, 10**6)}")
    (d / "u.data").write_text("\n".join(lines) + "\n")
    items = []
    for m in range(1, movies + 1):
        flags = ["0"] * 19
        flags[1 + m % 18] = "1"
        items.append(f"{m}|Movie {m} (199{m % 10})|01-Jan-1995||http://x|" + "|".join(flags))
    (d / "u.item").write_text("\n".join(items) + "\n")
    (d / "u.user").write_text("\n".join(f"{u}|{18 + u}|{'MF'[u % 2]}|student|0000{u}" for u in range(1, users + 1)) + "\n")
    return str(root)


def test_benchmark_screen_records_commands_and_resumes(tmp_path):
    from benchmarks import knowledge_probe as KP

    data_root = _tiny_ml100k(tmp_path)
    work, out = tmp_path / "work", tmp_path / "results"
    data_dir = work / "data" / "ml100k-genre-noid"
    argv = ["--dataset", "ml-100k", "--data-root", data_root, "--work-dir", str(work), "--out-dir", str(out),
            "--runs", "genre/noid/minilm/auto", "age/default/minilm/auto", "--no-encode"]
    assert KP.main(argv) == 0
    doc = json.load(open(out / "knowledge_probe_ml100k.json"))
    assert [r["status"] for r in doc["runs"]] == ["missing knowledge (run without --no-encode)"] * 2
    assert "--no-user-prompt-id" in doc["runs"][0]["commands"]["prepare"]
    prompts = [json.loads(line)["prompt"] for line in open(data_dir / "prompts" / "user.jsonl")]
    assert all(p.startswith("This user's movies") for p in prompts)
    # Stand-in knowledge where the benchmark looks for it (no LLM in a unit test), then resume.
    _write(work / "know", str(data_dir), "ml100k-genre-noid--minilm-auto",
           lambda users: np.random.default_rng(1).standard_normal((len(users), 12)))
    assert KP.main(argv) == 0
    doc = json.load(open(out / "knowledge_probe_ml100k.json"))
    run = doc["runs"][0]
    assert run["status"] == "ok" and doc["runs"][1]["status"].startswith("missing")
    assert run["commands"]["knowledge"].startswith("llm4msr knowledge --data ") and "--pooling auto" in run["commands"]["knowledge"]
    assert run["summary"]["eval_best_r2/random"] < 0.2 and "user_mean_cosine" in run["summary"]
    md = (out / "knowledge_probe_ml100k.md").read_text()
    assert "| genre | noid | minilm | auto |" in md and "Not run: `age/default/minilm/auto`" in md
    with pytest.raises(ValueError, match="SCENARIO_BY/PROMPT_VARIANT"):
        KP.parse_run("genre/verbose/minilm")


def test_report_out_replaces_only_earlier_reports(tmp_path):
    """--out may replace a report written before, never another file, and never lands in an input."""
    from llm4msr_tf.utils.io import write_json

    stem = tmp_path / "rep"
    assert D.check_report_out(str(stem)) == [str(stem) + ".json", str(stem) + ".md"]
    write_json(str(stem) + ".json", {"spread": {}, "probe": {}, "alpha_grid_relative": [1.0]})
    (tmp_path / "rep.md").write_text(D.MARKDOWN_HEADER + "x (last pooling, dim 2) on y\n")
    assert D.check_report_out(str(stem)) == [str(stem) + ".json", str(stem) + ".md"]  # ours: replaceable
    (tmp_path / "notes.md").write_text("# my notes\n")
    (tmp_path / "manifest.json").write_text('{"llm": "x"}')
    for out in ("notes.md", "manifest.json"):
        with pytest.raises(ValueError, match=f"{out} exists and is not a knowledge report"):
            D.check_report_out(str(tmp_path / out))
    with pytest.raises(ValueError, match="lies in the input --knowledge"):
        D.check_report_out(str(tmp_path / "k" / "r.json"), protected={"--knowledge": str(tmp_path / "k")})
    assert (tmp_path / "notes.md").read_text() == "# my notes\n"
