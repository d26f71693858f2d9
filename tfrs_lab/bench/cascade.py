"""``python -m tfrs_lab.bench cascade``: the retrieve -> rank cascade against retrieval alone, on the
hash test split of the retrieval run's data, through the two SavedModels as they serve.

Quality: ``hit_rate@k`` = share of test ratings whose item is in the user's top k, the user's train
and validation items excluded in both (passed as ``exclude_item_ids``: retrieval's
``recommend_excluding``, the cascade's ``recommend``), as ``hit_rate_seen_excluded@K`` in
``metrics.json`` defines it. Latency: one user per call, in-process (no server), the same two
signatures with the same exclusion lists, after a warm-up.

Measure with a retrieval run exported with ``export.exclude_seen=false`` (its stored history holds
the test ratings too, which would hide every test item) and without the ``history`` query feature
(the export's history is the user's latest items of *all* splits, test included). The runs are the
caller's; the cascade is built into ``<output-dir>/model/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["run_cascade_bench"]


def _padded(rows: list[list[str]]) -> np.ndarray:
    width = max(1, max(len(r) for r in rows))
    return np.array([r + [""] * (width - len(r)) for r in rows], dtype=object)


def run_cascade_bench(retrieval_run: str | Path, ranking_run: str | Path, output_dir: str | Path, *,
                      candidates: int | None = None, k: int = 10, latency_users: int = 200,
                      batch_size: int = 128) -> tuple[dict, str]:
    """Builds the cascade of the two runs and measures it against retrieval alone; writes
    ``output_dir/results.json`` and returns ``(results, table)``."""
    import tensorflow as tf

    from tfrs_lab.data.splits import hash_split
    from tfrs_lab.export import signatures as sig
    from tfrs_lab.export.cascade import CascadeError, export_cascade, read_run
    from tfrs_lab.training.runner import load_data

    retrieval = read_run(retrieval_run, "retrieval", "--cascade-retrieval")
    if retrieval.config.export.exclude_seen:
        raise CascadeError("--cascade-retrieval: its export excludes every rated item, test ones included: "
                           "train it with --set export.exclude_seen=false for this measurement")
    out = Path(output_dir)
    model = export_cascade(retrieval_run, ranking_run, out / "model", candidates=candidates, k=k, verify=False)
    if retrieval.config.export.index == "scann":
        import scann  # noqa: F401

    data = load_data(retrieval.config)
    split = hash_split(data.ratings)
    users, movies = data.ratings["user_id"].astype(str), data.ratings["movie_id"].astype(str)
    known: dict[str, list[str]] = {}
    for row in np.concatenate([split.train, split.validation]):
        known.setdefault(users[row], []).append(movies[row])
    test_users = sorted(set(users[split.test]))
    fns = {"retrieval": tf.saved_model.load(str(retrieval.saved_model)).signatures[sig.EXCLUDE_SEEN],
           "cascade": tf.saved_model.load(str(model)).signatures[sig.RECOMMEND]}

    def ask(name: str, batch: list[str]) -> np.ndarray:
        exclude = tf.constant(_padded([known.get(u, []) for u in batch]))
        ids = tf.constant(batch)
        if name == "retrieval":
            found = fns[name](**{sig.USER_ID: ids, sig.EXCLUDE_ITEM_IDS: exclude})
        else:
            found = fns[name](**{sig.USER_ID: ids, sig.EXCLUDE_ITEM_IDS: exclude, sig.K: tf.fill([len(batch)], k),
                                 sig.ALLOW_ITEM_IDS: tf.fill([len(batch), 1], "")})
        return found[sig.ITEM_IDS].numpy()[:, :k].astype(str)

    results: dict = {"retrieval_run": str(retrieval.run_dir), "ranking_run": str(Path(ranking_run).absolute()),
                     "candidates": candidates or retrieval.config.export.k, "k": k,
                     "test_ratings": int(len(split.test)), "test_users": len(test_users)}
    for name in fns:
        top: dict[str, set[str]] = {}
        for start in range(0, len(test_users), batch_size):
            batch = test_users[start:start + batch_size]
            top.update(zip(batch, map(set, ask(name, batch))))
        hits = [movies[row] in top[users[row]] for row in split.test]
        results[f"{name}_hit_rate@{k}"] = float(np.mean(hits))
        sample = test_users[:latency_users]
        for user in sample[:10]:  # warm-up
            ask(name, [user])
        times = []
        for user in sample:
            started = time.perf_counter()
            ask(name, [user])
            times.append((time.perf_counter() - started) * 1e3)
        results[f"{name}_latency_ms_p50"] = float(np.percentile(times, 50))
        results[f"{name}_latency_ms_p95"] = float(np.percentile(times, 95))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = "\n".join(f"{name:10s} hit_rate@{k} {results[f'{name}_hit_rate@{k}']:.4f}  latency p50 "
                      f"{results[f'{name}_latency_ms_p50']:.2f} ms  p95 {results[f'{name}_latency_ms_p95']:.2f} ms"
                      for name in fns)
    return results, table
