"""Report helpers: PCA matches sklearn, plots are real PNGs, Markdown/HTML rendering."""
import numpy as np
import pytest

from llm4msr_tf import report


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 1, 0.5, 0.1, 0.1])
    ours = report.pca_2d(x)
    ref = PCA(n_components=2).fit_transform(x)
    for k in range(2):
        sign = np.sign(ours[:, k] @ ref[:, k])
        np.testing.assert_allclose(ours[:, k] * sign, ref[:, k], atol=1e-8)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    auc = {"backbone": {"s0": 0.7, "overall": 0.71}, "llm4msr": {"s0": 0.72, "overall": 0.73}}
    p1 = report.plot_scenario_auc(auc, str(tmp_path / "auc.png"))
    p2 = report.plot_training_curves(
        {"backbone": {"loss": [0.7, 0.6], "val_auc": [0.6, 0.65]}}, str(tmp_path / "curves.png")
    )
    rng = np.random.default_rng(1)
    p3 = report.plot_knowledge_projection(
        rng.normal(size=(20, 8)), [0, 1] * 10, rng.normal(size=(2, 8)), ["a", "b"],
        str(tmp_path / "pca.png"),
    )
    for p in (p1, p2, p3):
        assert _is_png(p) and (tmp_path / p).stat().st_size > 5000


def test_markdown_table_and_html(tmp_path):
    t = report.markdown_table(["model", "auc"], [["x", 0.123456], ["y", float("nan")]])
    assert t.splitlines()[2] == "| x | 0.1235 |"
    assert "n/a" in t
    paths = report.write_report(str(tmp_path), "# T\n\n" + t, title="T")
    html = open(paths["html"]).read()
    assert "<table>" in html and "<td>0.1235</td>" in html
    assert open(paths["md"]).read().startswith("# T")


@pytest.mark.parametrize("n", [1, 3])
def test_pca_small_inputs(n):
    assert report.pca_2d(np.ones((n, 1))).shape == (n, 2)
