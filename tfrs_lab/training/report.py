"""``report.html``: a self-contained run report written next to ``metrics.json`` by every trainer.

One call per trainer, just before ``rundir.write_metrics``::

    report.write_report(stage, metrics, history=model.history.history, **report.factorized_inputs(...))

:func:`write_report` takes plain arrays, so any trainer can feed it:

* ``history``: Keras ``History.history`` (per-epoch ``loss`` and the ``val_*`` metrics that
  ``ValidationEarlyStopping`` adds) → training/validation curves;
* ``ranks`` (int [Q], 0-based rank of each test target over the catalogue) → recall@K for K = 1…100
  and the same for a popularity baseline computed here from ``targets``/``exclude``/``item_counts``
  (same split, same exclusions, so it is directly comparable);
* ``recommendations`` (int [U, K] catalogue rows, best first, one row per example user) →
  catalogue coverage, popularity bias (share of top-K items among the 10 % most popular training
  items, with popularity's own share for reference) and example recommendations with ``titles``.

The page embeds its PNG figure as base64, so the file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfrs_lab.evaluation.metrics import beyond_accuracy, ranks_from_scores

__all__ = ["catalogue_titles", "EXAMPLE_USERS", "factorized_inputs", "first_per_user", "MAX_K", "popularity_ranks",
           "pyplot", "ranked_inputs", "recall_curve", "REPORT_FILE", "scored_inputs", "TOP_K", "top_k_rows",
           "write_report"]

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
MAX_K = 100
TOP_K = 10
EXAMPLE_USERS = 5


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed; imported lazily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def top_k_rows(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """int64 [B, k] highest-scoring columns of ``scores`` float [B, M] (modified when ``exclude``
    is given: excluded columns are set to -inf), best first."""
    k = min(k, scores.shape[1])
    if exclude is not None:
        for row, e in enumerate(exclude):
            scores[row, np.asarray(e, np.int64)] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def factorized_inputs(queries: np.ndarray, items: np.ndarray, targets: np.ndarray, *, users: np.ndarray,
                      exclude: Sequence[np.ndarray] | None = None, item_counts: np.ndarray,
                      titles: np.ndarray | None = None, batch_size: int = 1024) -> dict[str, Any]:
    """:func:`write_report` inputs of a model that scores by ``queries @ items.T``.

    Args:
      queries: float [Q, d] one query per test target; items: float [M, d] catalogue vectors.
      targets: int [Q] catalogue row of each target; users: str [Q] user of each query.
      exclude: optional per-query catalogue rows removed from the ranking (leave-last-out).
      item_counts: [M] training interactions per catalogue row; titles: str [M].
    """
    queries, items = np.asarray(queries, np.float32), np.asarray(items, np.float32)
    ranks = np.empty(len(targets), np.int64)
    recs = []
    first = first_per_user(users)
    for s in range(0, len(targets), batch_size):
        e = slice(s, min(s + batch_size, len(targets)))
        scores = queries[e] @ items.T
        ex = None if exclude is None else exclude[e]
        ranks[e] = ranks_from_scores(scores.copy(), targets[e], ex)
        take = first[(first >= e.start) & (first < e.stop)] - e.start
        if len(take):
            recs.append(top_k_rows(scores[take], MAX_K, None if ex is None else [ex[i] for i in take]))
    return {"ranks": ranks, "targets": np.asarray(targets), "exclude": exclude,
            "recommendations": np.concatenate(recs) if recs else np.zeros((0, MAX_K), np.int64),
            "recommendation_users": np.asarray(users)[first], "item_counts": item_counts, "titles": titles}


def ranked_inputs(ranks: np.ndarray, targets: np.ndarray, *, users: np.ndarray, first_queries: np.ndarray,
                  items: np.ndarray, exclude: Sequence[np.ndarray] | None = None, item_counts: np.ndarray,
                  titles: np.ndarray | None = None, batch_size: int = 1024) -> dict[str, Any]:
    """:func:`write_report` inputs from ranks an evaluation already computed (no second ranking of
    the test rows): only each user's first row is scored, for its top-:data:`MAX_K` recommendations.

    Args:
      ranks: int [Q] 0-based rank of each target; targets: int [Q] its catalogue row; users: [Q].
      first_queries: float [U, d] the query vectors of rows :func:`first_per_user` ``(users)``, in
        that order; items: float [M, d] catalogue vectors (scores are ``queries @ items.T``).
      exclude: optional per-row catalogue rows the ranks excluded (leave-last-out).
      item_counts: [M] training interactions per catalogue row; titles: str [M].
    """
    first = first_per_user(users)
    queries, items = np.asarray(first_queries, np.float32), np.asarray(items, np.float32)
    recs = [top_k_rows(queries[s:s + batch_size] @ items.T, MAX_K,
                       None if exclude is None else [exclude[i] for i in first[s:s + batch_size]])
            for s in range(0, len(first), batch_size)]
    return {"ranks": np.asarray(ranks), "targets": np.asarray(targets), "exclude": exclude,
            "recommendations": np.concatenate(recs) if recs else np.zeros((0, MAX_K), np.int64),
            "recommendation_users": np.asarray(users)[first], "item_counts": item_counts, "titles": titles}


def first_per_user(users: np.ndarray) -> np.ndarray:
    """int [U]: the index of each user's first row in ``users`` (in row order)."""
    _, first = np.unique(np.asarray(users).astype(str), return_index=True)
    return np.sort(first)


def recall_curve(ranks: np.ndarray, max_k: int = MAX_K) -> np.ndarray:
    """float [max_k]: share of ranks < K for K = 1 … max_k."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return np.zeros(max_k)
    hist = np.bincount(np.minimum(ranks, max_k), minlength=max_k + 1)[:max_k]
    return np.cumsum(hist) / len(ranks)


def popularity_ranks(item_counts: np.ndarray, targets: np.ndarray, exclude: Sequence[np.ndarray] | None,
                     chunk: int = 1 << 16) -> np.ndarray:
    """int64 [Q]: ranks of ``targets`` when everyone gets the catalogue by training popularity
    (same exclusions, same pessimistic tie rule as :func:`ranks_from_scores`), without a [Q, M]
    score matrix: the items scoring at least the target's count, less the target itself and the
    distinct excluded items (never the target) that score at least it. O(Q log M + exclusions)."""
    counts = np.asarray(item_counts, np.float64)
    targets = np.asarray(targets, np.int64)
    at_least = len(counts) - np.searchsorted(np.sort(counts), counts[targets], side="left")
    out = (at_least - 1).astype(np.int64)
    if exclude is None:
        return out
    for s in range(0, len(targets), chunk):
        lists = [np.asarray(e, np.int64) for e in exclude[s:s + chunk]]
        sizes = np.fromiter((len(e) for e in lists), np.int64, count=len(lists))
        if not sizes.sum():
            continue
        rows = np.repeat(np.arange(s, s + len(lists)), sizes)
        pairs = np.unique(rows * len(counts) + np.concatenate(lists))  # each excluded item once per row
        rows, cols = pairs // len(counts), pairs % len(counts)
        drop = (cols != targets[rows]) & (counts[cols] >= counts[targets[rows]])
        out[s:s + len(lists)] -= np.bincount(rows[drop] - s, minlength=len(lists))
    return out


def write_report(run_dir: Path, metrics: Mapping[str, Any], *, history: Mapping[str, Sequence[float]] | None = None,
                 ranks: np.ndarray | None = None, targets: np.ndarray | None = None,
                 exclude: Sequence[np.ndarray] | None = None, recommendations: np.ndarray | None = None,
                 recommendation_users: np.ndarray | None = None, item_counts: np.ndarray | None = None,
                 titles: np.ndarray | None = None, ranks_note: str = "", peers: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """Writes ``run_dir/report.html`` from plain inputs (all optional except ``metrics``); returns its path.

    Args:
      metrics: what goes into ``metrics.json``.
      history: per-epoch series (``loss``, ``val_<metric>`` …).
      ranks: int [Q] 0-based test ranks of the model; with ``targets`` (int [Q]), ``exclude`` and
        ``item_counts`` a popularity baseline is ranked the same way.
      recommendations: int [U, K] catalogue rows, best first; ``recommendation_users`` str [U].
      item_counts: [M] training interactions per catalogue row; ``titles`` str [M].
      ranks_note: a line shown under the recall@K figure (e.g. "sample of 200 test ratings").
      peers: extra ``{method: {metric: value}}`` shown next to the test metrics.
    """
    peers = dict(peers or {})
    curves: dict[str, np.ndarray] = {}
    if ranks is not None:
        name = "recall" if exclude is not None else "hit_rate"
        curves["model"] = recall_curve(ranks)
        own = {f"{name}@{k}": float(curves["model"][k - 1]) for k in (10, 50, 100)}
        if any(k not in metrics for k in own):  # e.g. a rating model: its ranks come from a sample
            peers = {"tfrs_lab (report's ranks)": own, **peers}
        if targets is not None and item_counts is not None:
            curves["popularity"] = recall_curve(popularity_ranks(item_counts, targets, exclude))
            peers.setdefault("popularity (same test rows)", {
                f"{name}@{k}": float(curves["popularity"][k - 1]) for k in (10, 50, 100)})
    stats: dict[str, dict[str, float]] = {}
    if recommendations is not None and item_counts is not None and len(recommendations):
        stats["model"] = beyond_accuracy(recommendations, item_counts, TOP_K)
        pop_top = np.argsort(-np.asarray(item_counts, np.float64), kind="stable")[:TOP_K]
        stats["popularity"] = beyond_accuracy(np.tile(pop_top, (len(recommendations), 1)), item_counts, TOP_K)
    figure = _figure(history or {}, curves)
    page = _html(metrics, peers, figure, ranks_note, stats, recommendations, recommendation_users, titles)
    path = Path(run_dir) / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    logger.info("report: %s", path.name)
    return path


def _figure(history: Mapping[str, Sequence[float]], curves: Mapping[str, np.ndarray]) -> str | None:
    """Base64 PNG: training loss, validation metrics per epoch, recall@K (one figure: cheap to draw)."""
    series = {k: list(v) for k, v in history.items() if len(v)}
    panels = []
    if "loss" in series:
        panels.append(("training loss", {"loss": series["loss"]}, "epoch"))
    val = {k: v for k, v in series.items() if k.startswith("val_") and not k.startswith("val_neg_")}
    if val:
        panels.append(("validation metrics", val, "epoch"))
    if curves:
        panels.append(("test recall (hit rate) @K, K = 1…100", curves, "K"))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, lines, xlabel) in zip(axes[0], panels):
        for name, ys in lines.items():
            xs = np.arange(1, len(ys) + 1)
            ax.plot(xs, ys, marker="." if xlabel == "epoch" else None, label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _html(metrics, peers, figure, ranks_note, stats, recommendations, users, titles) -> str:
    e = html.escape
    title = f"{metrics.get('task', 'run')} on {metrics.get('dataset', '?')} ({metrics.get('split', '?')} split)"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
           "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
           "td:first-child,th:first-child{text-align:left}</style></head><body>", f"<h1>{e(title)}</h1>"]
    out.append("<h2>Test metrics</h2>")
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float))]
    keys += sorted({k for p in peers.values() for k in p} - set(keys))
    cols = ["tfrs_lab (this run)", *peers]
    out.append("<table><tr><th>metric</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
    for k in keys:
        cells = [_fmt(metrics[k]) if k in metrics else ""] + [_fmt(peers[p][k]) if k in peers[p] else "" for p in peers]
        out.append(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    if figure:
        out.append("<h2>Curves</h2>")
        out.append(f"<img alt='training and validation curves, recall@K' src='data:image/png;base64,{figure}'>")
        if ranks_note:
            out.append(f"<p>{e(ranks_note)}</p>")
    if stats:
        out.append(f"<h2>Recommendations (top {TOP_K})</h2><table><tr><th></th><th>catalogue coverage</th>"
                   "<th>share from the 10% most popular items</th><th>mean popularity percentile</th>"
                   "<th>novelty (bits)</th></tr>")
        for name, s in stats.items():
            out.append(f"<tr><td>{e(name)}</td><td>{s[f'coverage@{TOP_K}']:.4f}</td>"
                       f"<td>{s[f'popular_share@{TOP_K}']:.4f}</td><td>{s[f'popularity_percentile@{TOP_K}']:.4f}</td>"
                       f"<td>{s[f'novelty@{TOP_K}']:.2f}</td></tr>")
        out.append("</table>")
    if recommendations is not None and users is not None and len(recommendations):
        out.append(f"<h2>Example recommendations</h2><table><tr><th>user</th><th>top {TOP_K}</th></tr>")
        for u, row in list(zip(users, recommendations))[:EXAMPLE_USERS]:
            names = [str(titles[i]) if titles is not None else str(i) for i in row[:TOP_K]]
            out.append(f"<tr><td>{e(str(u))}</td><td style='text-align:left'>{e('; '.join(names))}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- trainer adapters


def catalogue_titles(data, movie_ids: np.ndarray) -> np.ndarray:
    """str [M]: the title of each of ``movie_ids`` (catalogue order) from ``data.movies``."""
    title_of = dict(zip(data.movies["movie_id"], data.movies["movie_title"]))
    return np.array([str(title_of.get(m, m)) for m in movie_ids], dtype=object)


def scored_inputs(blocks: Iterable[tuple[int, np.ndarray]], targets: np.ndarray, *, users: np.ndarray,
                  exclude: Sequence[np.ndarray] | None, item_counts: np.ndarray, titles: np.ndarray | None,
                  ranks_note: str = "") -> dict[str, Any]:
    """:func:`write_report` inputs of a model that scores whole catalogue rows.

    Args:
      blocks: ``(start, scores float [b, M])`` for the queries ``start:start + b`` of ``targets``.
      targets: int [Q] catalogue row of each query's target; users: str [Q] one query per user.
      exclude: optional per-query catalogue rows removed from the ranking.
    """
    ranks = np.empty(len(targets), np.int64)
    recs = np.empty((len(targets), min(MAX_K, len(item_counts))), np.int64)  # tiny catalogues: all of it
    for s, scores in blocks:
        e = slice(s, s + len(scores))
        ex = None if exclude is None else exclude[e]
        ranks[e] = ranks_from_scores(scores.copy(), targets[e], ex)
        recs[e] = top_k_rows(scores, MAX_K, ex)
    return {"ranks": ranks, "targets": targets, "exclude": exclude, "recommendations": recs,
            "recommendation_users": users, "item_counts": item_counts, "titles": titles, "ranks_note": ranks_note}
