"""``report.html`` of train runs: content on a tiny real run, and the statistics worked out by hand."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tfrs_lab.train import main
from tfrs_lab.evaluation.metrics import beyond_accuracy
from tfrs_lab.training import report

TINY = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=100", "--set", "data.synthetic.num_movies=60",
        "--set", "data.synthetic.ratings_per_user=15", "--set", "export.k=20", "--set", "export.max_exclude=20",
        "--set", "export.verify=false"]


def test_recall_curve_by_hand():
    curve = report.recall_curve(np.array([0, 2, 5, 150]), max_k=100)
    assert curve.shape == (100,)
    assert curve[0] == 0.25 and curve[1] == 0.25 and curve[2] == 0.5  # K = 1, 2, 3
    assert curve[5] == 0.75 and curve[99] == 0.75


def test_beyond_accuracy_by_hand():
    counts = np.arange(20, 0, -1)  # item 0 most popular; the top 10 % are items 0 and 1
    recs = np.array([[0, 5, 6], [1, 0, 7]])
    categories = np.zeros((20, 2))
    categories[[0, 1], 0] = 1.0  # items 0 and 1: category A; item 5: category B; others: none
    categories[5, 1] = 1.0
    stats = beyond_accuracy(recs, counts, k=2, item_categories=categories)  # top 2: {0, 5} and {1, 0}
    assert stats["coverage@2"] == pytest.approx(3 / 20)
    assert stats["popular_share@2"] == pytest.approx(3 / 4)
    # percentiles: item 0 -> 1, item 1 -> 18/19, item 5 -> 14/19
    assert stats["popularity_percentile@2"] == pytest.approx((1 + 14 / 19 + 18 / 19 + 1) / 4)
    share = (counts + 1.0) / (counts.sum() + 20)
    assert stats["novelty@2"] == pytest.approx(-np.log2(share[[0, 5, 1, 0]]).mean())
    assert stats["diversity@2"] == pytest.approx(0.5)  # {0, 5}: different (1); {1, 0}: same category (0)


def test_beyond_accuracy_lands_in_metrics_json_of_a_run(tmp_path):
    """Every top-K task's metrics.json carries the beyond-accuracy keys (through the shared run loop)."""
    out = tmp_path / "run"
    assert main(["retrieval", "--dataset", "synthetic", "--epochs", "1", "--set", "export.index=brute_force",
                 "--set", "export.verify=false", "--output-dir", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0 < m["coverage@10"] <= 1 and 0 <= m["popular_share@10"] <= 1 and 0 <= m["diversity@10"] <= 1
    assert 0 <= m["popularity_percentile@10"] <= 1 and m["novelty@10"] > 0


def test_popularity_ranks_respect_exclusions():
    counts = np.array([5.0, 4.0, 3.0, 2.0])
    ranks = report.popularity_ranks(counts, np.array([2, 2]), [np.array([], np.int64), np.array([0, 1])])
    assert ranks.tolist() == [2, 0]


def test_top_k_rows_best_first_without_excluded():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert report.top_k_rows(scores.copy(), 2).tolist() == [[1, 3]]
    assert report.top_k_rows(scores.copy(), 2, [np.array([1])]).tolist() == [[3, 2]]
    assert report.top_k_rows(scores.copy(), 100).tolist() == [[1, 3, 2, 0]]  # k > catalogue: all of it


@pytest.fixture(scope="module")
def llo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["retrieval", *TINY, "--split", "leave-last-out", "--epochs", "1", "--output-dir", str(out)]) == 0
    return out


def _cell(html: str, metric: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(metric)}</td>(.*?)</tr>", html)
    assert row, metric
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_report_of_a_train_run(llo_run):
    page = (llo_run / "report.html").read_text()
    metrics = json.loads((llo_run / "metrics.json").read_text())
    assert "retrieval on synthetic (leave-last-out split)" in page
    # test metrics next to a popularity baseline ranked on the same test rows with the same exclusions
    assert "popularity (same test rows)" in page
    model, popularity = _cell(page, "recall@10")
    assert float(model) == pytest.approx(metrics["recall@10"], abs=1e-4)  # the report's ranks are the run's
    assert 0.0 <= float(popularity) <= 1.0
    # the curves figure is embedded (self-contained page)
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # coverage and popularity bias of the top 10, and example users with titles
    coverage, share, percentile, novelty = (float(x) for x in re.search(
        r"<tr><td>model</td><td>([0-9.]+)</td><td>([0-9.]+)</td><td>([0-9.]+)</td><td>([0-9.]+)</td></tr>", page).groups())
    assert 0.0 < coverage <= 1.0 and 0.0 <= share <= 1.0 and 0.0 <= percentile <= 1.0 and novelty > 0
    # the page shows the same beyond-accuracy figures metrics.json records
    assert coverage == pytest.approx(metrics["coverage@10"], abs=1e-4)
    assert share == pytest.approx(metrics["popular_share@10"], abs=1e-4)
    assert page.count("Synthetic Movie") >= 10


def test_report_works_from_plain_inputs(tmp_path):
    """The entry point a new trainer calls: plain arrays, no model."""
    rng = np.random.default_rng(0)
    path = report.write_report(
        tmp_path, {"task": "autoencoder", "dataset": "synthetic", "split": "leave-last-out", "recall@10": 0.5},
        history={"loss": [3.0, 2.0], "val_recall@10": [0.3, 0.4]}, ranks=rng.integers(0, 50, 30),
        targets=rng.integers(0, 50, 30), exclude=[np.array([], np.int64)] * 30,
        recommendations=rng.integers(0, 50, (3, 10)), recommendation_users=np.array(["a", "b", "c"]),
        item_counts=rng.integers(1, 9, 50), titles=np.array([f"title {i}" for i in range(50)]))
    page = path.read_text()
    assert path.name == "report.html" and "autoencoder on synthetic" in page
    assert "data:image/png;base64," in page and "title " in page and "popularity (same test rows)" in page
