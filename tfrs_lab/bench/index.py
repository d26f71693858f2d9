"""The ``retrieval-index`` suite: ScaNN vs exact brute force on synthetic catalogues.

For each catalogue size N (default 10k, 100k, 1M items, 64 dims; clustered random unit vectors, as
learned item embeddings are) and 1,000 queries from the same distribution:

* ``brute_force``: TFRS ``BruteForce`` (exact; the reference for recall@10);
* ``scann (ours)``: :func:`tfrs_lab.export.index.build_index` with the default
  :class:`~tfrs_lab.export.index.IndexSettings` (what ``train`` exports), queried through the layer;
* ``scann leaves=L reorder=R``: the same searcher queried directly (no Keras layer call: lower
  latency than the two rows above) with several leaves-to-search and re-ordering budgets, the
  defaults included (ScaNN's per-query overrides: one build, several operating points);
* ``savedmodel (ours)``: the default index saved as a SavedModel with a ``serving_default``
  signature and called after reloading (the serving path, minus the network).

Reported per method: build seconds, resident-memory growth while building (MiB), single-query and
batched (256 queries) latency p50/p99 (ms), and recall@10 against brute force.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfrs_lab.bench import common

__all__ = ["BATCH", "bench_size", "catalogue", "DEFAULT_SIZES", "exact_top_k", "K", "NUM_QUERIES", "recall_at_k",
           "rss_mib", "run_index"]

logger = logging.getLogger(__name__)

K = 10
NUM_QUERIES = 1000
BATCH = 256
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def catalogue(n: int, dim: int, num_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 unit vectors ``(items [n, dim], queries [num_queries, dim])`` around shared centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((min(1000, max(n // 10, 1)), dim)).astype(np.float32)
    def draw(m: int) -> np.ndarray:
        v = centres[rng.integers(0, len(centres), m)] + 0.5 * rng.standard_normal((m, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    return draw(n), draw(num_queries)


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int = K, batch: int = 256) -> np.ndarray:
    """int64 [Q, k] exact top-k item rows by dot product."""
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), batch):
        scores = queries[s : s + batch] @ items.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
        out[s : s + batch] = np.take_along_axis(part, order, 1)
    return out


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` that appears in the same row of ``found``."""
    return float(np.mean([len(np.intersect1d(f, e)) / len(e) for f, e in zip(found, exact)]))


def _latencies(search, queries: np.ndarray, single: int, batches: int) -> dict[str, Any]:
    """Single-query and batched latency of ``search(q [b, d]) -> ids [b, K]``."""
    one = common.time_calls(lambda i: search(queries[i % len(queries)][None, :]), single, warmup=5)
    starts = [(i * BATCH) % max(len(queries) - BATCH + 1, 1) for i in range(batches + 2)]
    many = common.time_calls(lambda i: search(queries[starts[i % len(starts)]:][:BATCH]), batches, warmup=2)
    return {"single": common.percentiles(one), "batched": common.percentiles(many),
            "batched_per_query_ms": round(common.percentiles(many)["p50_ms"] / BATCH, 5)}


def _all_ids(search, queries: np.ndarray) -> np.ndarray:
    return np.concatenate([search(queries[s : s + BATCH]) for s in range(0, len(queries), BATCH)])


def bench_size(n: int, dim: int, *, single: int, batches: int, savedmodel: bool, workdir: Path) -> list[dict[str, Any]]:
    """All methods on one catalogue size; one dict per method."""
    import tensorflow as tf

    from tfrs_lab.export.index import IndexSettings, build_index, scann_parameters
    from tfrs_lab.native_logs import quiet_native_stderr

    items, queries = catalogue(n, dim, NUM_QUERIES)
    exact = exact_top_k(items, queries)
    ids = np.array([str(i) for i in range(n)], dtype=object)
    rows: list[dict[str, Any]] = []

    def entry(method: str, search, build_s: float, mem: float, **extra) -> dict[str, Any]:
        found = _all_ids(search, queries)
        e = {"items": n, "dim": dim, "method": method, "build_seconds": round(build_s, 3),
             "build_memory_mib": round(mem, 1), f"recall@{K}": round(recall_at_k(found, exact), 4),
             **_latencies(search, queries, single, batches), **extra}
        logger.info("%d items, %s: recall@%d %.4f, single p50 %.3f ms, batch p50 %.2f ms", n, method, K,
                    e[f"recall@{K}"], e["single"]["p50_ms"], e["batched"]["p50_ms"])
        return e

    # exact brute force (TFRS layer), the reference
    gc.collect()
    m0, t0 = rss_mib(), time.perf_counter()
    brute = build_index(items, ids, IndexSettings(kind="brute_force"), K)
    bf_build, bf_mem = time.perf_counter() - t0, rss_mib() - m0
    rows.append(entry("brute_force", lambda q: _rows(brute(tf.constant(q), k=K)[1]), bf_build, bf_mem))
    del brute
    gc.collect()

    settings = IndexSettings()  # what `train` exports
    params = scann_parameters(n, settings)
    m0, t0 = rss_mib(), time.perf_counter()
    index = build_index(items, ids, settings, settings.k)
    sc_build, sc_mem = time.perf_counter() - t0, rss_mib() - m0
    rows.append(entry("scann (ours)", lambda q: _rows(index(tf.constant(q), k=K)[1]), sc_build, sc_mem,
                      default=True, **params))

    from scann.scann_ops.py import scann_ops

    with quiet_native_stderr(True):
        searcher = scann_ops.searcher_from_module(index._serialized_searcher)  # the same built searcher
    leaves = params["num_leaves"]
    for search_leaves, reorder in _operating_points(leaves, params["num_leaves_to_search"],
                                                    params["num_reordering_candidates"], n):
        def search(q, L=search_leaves, R=reorder):
            res = searcher.search_batched_parallel(tf.constant(q), final_num_neighbors=K,
                                                   pre_reorder_num_neighbors=R, leaves_to_search=L)
            return res.indices.numpy()
        rows.append(entry(f"scann leaves={search_leaves}/{leaves} reorder={reorder}", search, sc_build, sc_mem,
                          num_leaves=leaves, num_leaves_to_search=search_leaves, num_reordering_candidates=reorder))

    if savedmodel:
        rows.append(_savedmodel_entry(index, dim, workdir / f"scann-{n}", entry, sc_build, sc_mem))
    del index, searcher
    gc.collect()
    return rows


def _rows(ids_tensor) -> np.ndarray:
    return np.asarray([[int(x) for x in row] for row in ids_tensor.numpy()], np.int64)


def _operating_points(leaves: int, default_search: int, default_reorder: int, n: int) -> list[tuple[int, int]]:
    """(leaves to search, re-ordering candidates) pairs around the defaults, the defaults included."""
    points = set()
    for f in (0.25, 0.5, 2.0, 4.0):
        points.add((max(1, min(leaves, round(default_search * f))), default_reorder))
    for r in (K, max(K, default_reorder // 4), default_reorder * 4):
        points.add((default_search, min(r, n)))
    points.add((default_search, default_reorder))  # the default on the same (raw searcher) path
    return sorted(points)


def _savedmodel_entry(index, dim: int, path: Path, entry, build_s: float, mem: float) -> dict[str, Any]:
    """The default index behind a ``serving_default(query [b, dim]) -> item_ids, scores`` signature."""
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig

    class Server(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.index = index

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="query")])
        def serve(self, query):
            scores, ids = self.index(query, k=K)
            return {sig.ITEM_IDS: ids, sig.SCORES: scores}

    server = Server()
    t0 = time.perf_counter()
    tf.saved_model.save(server, str(path), signatures={"serving_default": server.serve})
    save_s = time.perf_counter() - t0
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    return entry("savedmodel (ours)", lambda q: _rows(loaded(query=tf.constant(q))[sig.ITEM_IDS]), build_s, mem,
                 save_seconds=round(save_s, 3), savedmodel_mib=round(size, 1))


def run_index(output_dir: Path, *, sizes: Sequence[int] = DEFAULT_SIZES, dim: int = 64, single: int = 200,
              batches: int = 10, savedmodel: bool = True) -> tuple[dict[str, Any], str]:
    """Runs every catalogue size; writes ``results.json`` and ``recall_vs_latency.png``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"suite": "retrieval-index", "machine": common.machine(), "k": K,
                               "num_queries": NUM_QUERIES, "batch": BATCH, "dim": dim, "rows": []}
    with tempfile.TemporaryDirectory(prefix="tfrs-lab-index-") as tmp:
        for n in sizes:
            logger.info("retrieval-index: %d items x %d dims", n, dim)
            results["rows"] += bench_size(n, dim, single=single, batches=batches, savedmodel=savedmodel,
                                          workdir=Path(tmp))
    results["defaults"] = {}
    for n in sizes:
        size_rows = [r for r in results["rows"] if r["items"] == n]
        bf = next(r for r in size_rows if r["method"] == "brute_force")
        ours = next(r for r in size_rows if r.get("default"))
        results["defaults"][str(n)] = {
            f"recall@{K}": ours[f"recall@{K}"],
            "single_speedup": round(bf["single"]["p50_ms"] / ours["single"]["p50_ms"], 2),
            "batched_speedup": round(bf["batched"]["p50_ms"] / ours["batched"]["p50_ms"], 2)}
    _plot(output_dir / "recall_vs_latency.png", results)
    results["plots"] = [str(output_dir / "recall_vs_latency.png")]
    common.write_results(output_dir, results)
    table_rows = [{"method": f"{r['items']:>8d} {r['method']}", "build_s": r["build_seconds"],
                   "mem_MiB": r["build_memory_mib"], f"recall@{K}": r[f"recall@{K}"],
                   "single_p50_ms": r["single"]["p50_ms"], "single_p99_ms": r["single"]["p99_ms"],
                   "batch256_p50_ms": r["batched"]["p50_ms"], "batch256_p99_ms": r["batched"]["p99_ms"]}
                  for r in results["rows"]]
    table = common.format_table(table_rows, list(table_rows[0])[1:] if table_rows else [])
    for n, d in results["defaults"].items():
        table += (f"\nour defaults at {int(n):,} items: recall@{K} {d[f'recall@{K}']:.3f}, speed-up over brute force "
                  f"{d['single_speedup']:.1f}x single query, {d['batched_speedup']:.1f}x batched")
    return results, table


def _plot(path: Path, results: dict[str, Any]) -> None:
    plt = common.pyplot()
    sizes = sorted({r["items"] for r in results["rows"]})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, mode in zip(axes, ("single", "batched")):
        for c, n in zip(colors, sizes):
            rows = [r for r in results["rows"] if r["items"] == n]
            pts = sorted((r[mode]["p50_ms"], r[f"recall@{K}"]) for r in rows if r["method"].startswith("scann"))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=".", color=c)
            front, best = [], -1.0  # Pareto frontier: the best recall reachable at each latency
            for x, y in pts:
                if y > best:
                    front.append((x, y))
                    best = y
            ax.plot([p[0] for p in front], [p[1] for p in front], color=c, label=f"ScaNN, {n:,} items (frontier)")
            for r in rows:
                style = {"brute_force": "s", "scann (ours)": "*", "savedmodel (ours)": "D"}.get(r["method"])
                if style:
                    ax.scatter([r[mode]["p50_ms"]], [r[f"recall@{K}"]], marker=style, color=c, s=60 if style == "*" else 30,
                               edgecolors="black", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(f"{'single-query' if mode == 'single' else f'batch of {BATCH}'} latency p50 (ms, log)")
        ax.set_ylabel(f"recall@{K} vs brute force")
        ax.set_title(f"{mode}: ■ brute force, ★ our default, ◆ SavedModel")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
