"""The retrieve -> rank cascade: one SavedModel that answers "top k for user 42" the way a product
serves it, in one call.

``export_cascade(retrieval_run, ranking_run, output_dir)`` loads the two runs' exports (a
``python -m tfrs_lab.train retrieval`` and a ``... ranking`` run directory), composes them in a
:class:`CascadeServer` and writes ``output_dir/<version>/`` in TF Serving's layout (the retrieval
export's variables, ScaNN searcher included, travel inside it). Per request:

1. retrieval: the user's top ``candidates`` (N) items from the retrieval export's
   ``recommend_excluding``, which already drops the items the user is known to have rated (the
   history the retrieval export stores, ``export.exclude_seen``; exact for its ``export.max_exclude``
   newest) and the request's exclude list;
2. filter: the exclude list again (also past ``max_exclude``) and the allow-list, if any;
3. ranking: every surviving candidate scored by the ranking export's ``serving_default``
   (explicit: predicted rating; implicit: logit);
4. the best k by ranking score, ties in retrieval order.

Signatures (names in :mod:`tfrs_lab.export.signatures`), each returning ``item_ids`` (string
[batch, k]), ``scores`` (float32 [batch, k], the ranking score) and ``retrieval_scores`` (float32
[batch, k]); '' / -inf where fewer than k candidates survive:

* ``serving_default(user_id: string [batch])``: the top ``k`` (fixed at export);
* ``recommend_excluding(user_id [batch], exclude_item_ids string [batch, m])``: as the retrieval
  export's signature of that name, so a cascade is a drop-in replacement for a retrieval model;
* ``recommend(user_id [batch], k int32 [batch], exclude_item_ids string [batch, m],
  allow_item_ids string [batch, a])``: per-row k (1 <= k <= ``max_k`` = N; outputs are [batch,
  max k], a row's entries past its own k are '' / -inf), exclusions, and an allow-list (only these
  items; a row of only '' pads means no restriction). The allow-list filters the N candidates:
  an allowed item outside the retrieval top N is not returned (raise N for small allow-lists).

Unknown users get the retrieval export's popular items, ranked by the ranking model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError, load_config, read_yaml
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.titles import read_titles, write_item_titles
from tfrs_lab.export.verify import require_same_answers
from tfrs_lab.export.warmup import read_warmup_requests, write_warmup_records
from tfrs_lab.staging import staged_directory

__all__ = ["CASCADE_FILE", "CascadeError", "CascadeServer", "RunExport", "export_cascade", "new_version", "next_version",
           "read_run"]

logger = logging.getLogger(__name__)

CASCADE_FILE = "cascade.json"
"""``<version>/assets.extra/cascade.json``: the two source exports and the cascade's sizes."""

_RUN_CONFIG = "config.yaml"  # the run-directory contract (docs/architecture.md#run-directory)
_EXPORT_DIR = "export"


class CascadeError(ValueError):
    """Runs or settings a cascade cannot be built from; the message names the flag and the fix."""


@dataclasses.dataclass(frozen=True)
class RunExport:
    """A run directory and what the cascade needs of it."""

    run_dir: Path
    task: str
    config: object  # the run's resolved task config (RetrievalConfig / RankingConfig)
    saved_model: Path  # run_dir/export/<model_name>/<version>


def read_run(run_dir: str | Path, task: str, flag: str) -> RunExport:
    """The export of the ``task`` run at ``run_dir``; :class:`CascadeError` (naming ``flag``) for a
    missing directory, a directory that is not a run, a run of another task or one without export."""
    path = Path(run_dir).expanduser().absolute()
    fix = f"pass a `python -m tfrs_lab.train {task}` run directory"
    if not path.is_dir():
        raise CascadeError(f"{flag} {str(path)!r} is not a directory: {fix}")
    if not (path / _RUN_CONFIG).is_file():
        raise CascadeError(f"{flag} {str(path)!r} has no {_RUN_CONFIG}, so it is not a run directory: {fix}")
    try:
        raw = read_yaml(path / _RUN_CONFIG, what="run config", flag=flag)
        got = raw.get("task") if isinstance(raw, dict) else None
        if got != task:
            raise CascadeError(f"{flag} {str(path)!r} is a {got or 'task-less'} run, not a {task} run: {fix}")
        cfg = load_config(task, [path / _RUN_CONFIG])
    except ConfigError as e:
        raise CascadeError(f"{flag} {str(path)!r}: {e}") from e
    saved = path / _EXPORT_DIR / cfg.export.model_name / str(cfg.export.version)
    if not (saved / "saved_model.pb").is_file():
        raise CascadeError(f"{flag} {str(path)!r} holds no export at {_EXPORT_DIR}/{cfg.export.model_name}/"
                           f"{cfg.export.version}: {fix} that finished")
    old = sig.pre_rename_export(saved)
    if old:
        raise CascadeError(f"{flag} {str(path)!r}: " + sig.pre_rename_error(f"its export {str(saved)!r}", old))
    return RunExport(run_dir=path, task=task, config=cfg, saved_model=saved)


def next_version(output_dir: str | Path) -> int:
    """1 + the highest numbered version under ``output_dir`` (1 when there is none)."""
    path = Path(output_dir)
    versions = [int(p.name) for p in path.iterdir() if p.name.isdigit()] if path.is_dir() else []
    return max(versions, default=0) + 1


def new_version(base: Path, version: int | None) -> int:
    """The version to write under the model's base path ``base``: ``version``, or one above the
    highest there; :class:`CascadeError` for a ``base`` that is a file, a non-positive version or
    one that exists already."""
    if base.exists() and not base.is_dir():
        raise CascadeError(f"--output-dir {str(base)!r} is a file: pass a directory (the model's base path)")
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise CascadeError(f"--version must be a positive integer, got {version}")
    if (base / str(version)).exists():
        raise CascadeError(f"--output-dir {str(base)!r} already holds version {version}: pass another --version")
    return version


def _data_identity(cfg) -> dict:
    """What a run's data is, without where it lives or how it is split."""
    data = cfg.data
    return {"dataset": data.dataset, "data_zip": Path(data.data_zip).name if data.data_zip else None,
            "synthetic": dataclasses.asdict(data.synthetic) if data.dataset == "synthetic" else None,
            "source": repr(data.source) if data.source is not None else None}


def _check_compatible(retrieval: RunExport, ranking: RunExport) -> None:
    """Same catalogue (the exports' title files) or, without titles, the same data."""
    movies_r, movies_k = read_titles(retrieval.saved_model), read_titles(ranking.saved_model)
    if movies_r and movies_k:
        only_r, only_k = sorted(set(movies_r) - set(movies_k)), sorted(set(movies_k) - set(movies_r))
        if only_r or only_k:
            example = f"item {(only_r or only_k)[0]!r} only in the {'retrieval' if only_r else 'ranking'} run"
            raise CascadeError(f"--ranking {str(ranking.run_dir)!r} has another catalogue than --retrieval "
                               f"{str(retrieval.run_dir)!r} ({len(movies_k)} vs {len(movies_r)} items, {example}): "
                               "train both on the same data")
        return
    a, b = _data_identity(retrieval.config), _data_identity(ranking.config)
    if a != b:
        differs = next(key for key in a if a[key] != b[key])
        raise CascadeError(f"--ranking {str(ranking.run_dir)!r} was trained on other data than --retrieval "
                           f"{str(retrieval.run_dir)!r} (data.{differs}: {b[differs]!r} vs {a[differs]!r}): "
                           "train both on the same data")


class CascadeServer(tf.Module):
    """The exported object: the two loaded exports and the cascade's signatures."""

    def __init__(self, retrieval, ranking, *, candidates: int, k: int, score_output: str) -> None:
        """``retrieval``, ``ranking``: the loaded SavedModels (``tf.saved_model.load``);
        ``candidates`` (N): retrieval candidates per request (at most the retrieval export's k);
        ``k``: ``serving_default``'s answers (1 <= k <= N); ``score_output``: the ranking
        ``serving_default`` output to rank by (``rating`` or ``score``)."""
        super().__init__()
        self.retrieval = retrieval
        self.ranking = ranking
        self.candidates = int(candidates)
        self.k = int(k)
        self.max_k = int(candidates)
        self.score_output = score_output

    def cascade(self, user_id: tf.Tensor, k: tf.Tensor, exclude_item_ids: tf.Tensor,
                allow_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """user_id [B], k int32 [B], exclude [B, m], allow [B, a] -> item_ids, scores,
        retrieval_scores, each [B, max(k)]."""
        batch = tf.shape(user_id)[0]
        checks = [
            tf.debugging.assert_equal(tf.shape(k)[0], batch, message=f"{sig.K} needs one value per {sig.USER_ID}"),
            tf.debugging.assert_greater_equal(k, 1, message=f"{sig.K} must be between 1 and {self.max_k}"),
            tf.debugging.assert_less_equal(k, self.max_k, message=f"{sig.K} must be between 1 and {self.max_k} "
                                                                  "(the number of candidates)"),
        ]
        with tf.control_dependencies(checks):
            found = self.retrieval.serve_excluding(user_id, exclude_item_ids)
        ids = found[sig.ITEM_IDS][:, : self.candidates]  # [B, N]
        retrieval_scores = found[sig.SCORES][:, : self.candidates]
        excluded = tf.reduce_any(tf.equal(ids[:, :, None], exclude_item_ids[:, None, :]), axis=-1)
        allow_given = tf.not_equal(allow_item_ids, "")  # [B, a]
        allowed = tf.reduce_any(tf.equal(ids[:, :, None], allow_item_ids[:, None, :]) & allow_given[:, None, :],
                                axis=-1)
        unrestricted = tf.logical_not(tf.reduce_any(allow_given, axis=1, keepdims=True))  # [B, 1]
        keep = tf.not_equal(ids, "") & tf.logical_not(excluded) & (allowed | unrestricted)
        shape = tf.shape(ids)
        ranked = self.ranking.serve(tf.repeat(user_id, shape[1]), tf.reshape(ids, [-1]))[self.score_output]
        scores = tf.where(keep, tf.reshape(ranked, shape), tf.constant(-np.inf, tf.float32))
        width = tf.minimum(tf.reduce_max(k), shape[1])
        top, pos = tf.math.top_k(scores, k=width)
        within = tf.math.is_finite(top) & (tf.range(width)[None, :] < k[:, None])
        minus_inf = tf.fill(tf.shape(top), tf.constant(-np.inf, tf.float32))
        return {sig.ITEM_IDS: tf.where(within, tf.gather(ids, pos, batch_dims=1), ""),
                sig.SCORES: tf.where(within, top, minus_inf),
                sig.RETRIEVAL_SCORES: tf.where(within, tf.gather(retrieval_scores, pos, batch_dims=1), minus_inf)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = tf.shape(user_id)[0]
        none = tf.fill([batch, 1], "")
        return self.cascade(user_id, tf.fill([batch], self.k), none, none)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID),
                                  tf.TensorSpec([None, None], tf.string, name=sig.EXCLUDE_ITEM_IDS)])
    def serve_excluding(self, user_id: tf.Tensor, exclude_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = tf.shape(user_id)[0]
        return self.cascade(user_id, tf.fill([batch], self.k), exclude_item_ids, tf.fill([batch, 1], ""))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID),
                                  tf.TensorSpec([None], tf.int32, name=sig.K),
                                  tf.TensorSpec([None, None], tf.string, name=sig.EXCLUDE_ITEM_IDS),
                                  tf.TensorSpec([None, None], tf.string, name=sig.ALLOW_ITEM_IDS)])
    def recommend(self, user_id: tf.Tensor, k: tf.Tensor, exclude_item_ids: tf.Tensor,
                  allow_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.cascade(user_id, k, exclude_item_ids, allow_item_ids)


def _sample_users(retrieval: RunExport) -> list[str]:
    """Known user ids from the retrieval export's warm-up records (at most 8), plus an unknown one."""
    path = retrieval.saved_model / "assets.extra" / sig.WARMUP_FILE
    users: list[str] = []
    for _, inputs in read_warmup_requests(path):
        for u in np.asarray(inputs.get(sig.USER_ID, [])).reshape(-1):
            text = u.decode() if isinstance(u, bytes) else str(u)
            if text not in users:
                users.append(text)
    return users[:8] + ["<unknown-user>"]


def export_cascade(retrieval_run: str | Path, ranking_run: str | Path, output_dir: str | Path, *,
                   candidates: int | None = None, k: int = 10, version: int | None = None,
                   model_name: str | None = None, verify: bool = True) -> Path:
    """Writes the cascade of two runs as ``output_dir/<version>/`` and returns that directory.

    Args:
      retrieval_run: a ``python -m tfrs_lab.train retrieval`` run directory.
      ranking_run: a ``python -m tfrs_lab.train ranking`` run directory on the same catalogue.
      output_dir: the model's base path (what ``tfrs_lab.serving.start --model NAME=DIR`` serves).
      candidates: retrieval candidates per request, N (default: the retrieval export's ``export.k``,
        which is also its maximum); also the largest ``k`` the ``recommend`` signature takes.
      k: what ``serving_default`` returns (1 <= k <= N).
      version: the version directory (default: one above the highest under ``output_dir``).
      model_name: the served model name its warm-up records carry (default: ``output_dir``'s name).
      verify: reload in a fresh process and require the same answers before publishing.

    Raises :class:`CascadeError` before writing anything for a bad run directory, runs of the
    wrong task or on different catalogues, ``k``/``candidates`` out of range, or an existing version.
    """
    retrieval = read_run(retrieval_run, "retrieval", "--retrieval")
    ranking = read_run(ranking_run, "ranking", "--ranking")
    _check_compatible(retrieval, ranking)
    most = retrieval.config.export.k
    n = most if candidates is None else int(candidates)
    if not 1 <= n <= most:
        raise CascadeError(f"--candidates must be between 1 and {most} (the retrieval export's export.k), got {n}: "
                           f"pass a smaller --candidates or train retrieval with --set export.k={max(n, 1)}")
    if not 1 <= k <= n:
        raise CascadeError(f"--k must be between 1 and --candidates ({n}), got {k}")
    out = Path(output_dir).expanduser().absolute()
    version = new_version(out, version)
    if not retrieval.config.export.exclude_seen:
        logger.warning("the retrieval run was exported with export.exclude_seen=false: the cascade does not "
                       "exclude the items users rated (pass them as exclude_item_ids)")

    import_scann = retrieval.config.export.index == "scann"
    if import_scann:
        import scann  # noqa: F401  (registers the ScaNN ops the retrieval export needs)
    loaded_retrieval = tf.saved_model.load(str(retrieval.saved_model))
    loaded_ranking = tf.saved_model.load(str(ranking.saved_model))
    outputs = list(loaded_ranking.signatures[sig.SERVING_DEFAULT].structured_outputs)
    if len(outputs) != 1 or outputs[0] not in (sig.RATING, sig.SCORE):
        raise CascadeError(f"--ranking {str(ranking.run_dir)!r}: its export answers {outputs}, not "
                           f"{sig.RATING!r} or {sig.SCORE!r}: re-train it with this version")
    server = CascadeServer(loaded_retrieval, loaded_ranking, candidates=n, k=k, score_output=outputs[0])

    users = _sample_users(retrieval)
    rows = len(users)
    probe = {sig.USER_ID: users, sig.K: np.array([k] * rows, np.int32),
             sig.EXCLUDE_ITEM_IDS: [[""]] * rows, sig.ALLOW_ITEM_IDS: [[""]] * rows}
    name = model_name or out.name
    with staged_directory(out / str(version)) as tmp:
        tf.saved_model.save(server, str(tmp), options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
                            signatures={sig.SERVING_DEFAULT: server.serve, sig.EXCLUDE_SEEN: server.serve_excluding,
                                        sig.RECOMMEND: server.recommend})
        write_warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, name,
                             [{sig.USER_ID: users[:1]}, {sig.USER_ID: users}], more={sig.RECOMMEND: [probe]})
        titles = read_titles(retrieval.saved_model)
        if titles:
            write_item_titles(tmp, list(titles), list(titles.values()))
        (tmp / "assets.extra" / CASCADE_FILE).write_text(json.dumps({
            "retrieval": str(retrieval.saved_model), "ranking": str(ranking.saved_model), "candidates": n, "k": k,
            "max_k": server.max_k, "ranking_output": outputs[0],
            "exclude_seen": bool(retrieval.config.export.exclude_seen)}, indent=2) + "\n")
        if verify:
            require_same_answers(tmp, server.serve(tf.constant(users)), inputs={sig.USER_ID: users},
                                 import_scann=import_scann, compare_scores=True)
            here = server.recommend(*(tf.constant(probe[key]) for key in
                                      (sig.USER_ID, sig.K, sig.EXCLUDE_ITEM_IDS, sig.ALLOW_ITEM_IDS)))
            require_same_answers(tmp, here, inputs={key: np.asarray(v).tolist() for key, v in probe.items()},
                                 import_scann=import_scann, signature=sig.RECOMMEND, compare_scores=True)
    logger.info("exported the cascade %s/%d: retrieval top %d -> %s -> top %d", name, version, n, outputs[0], k)
    return out / str(version)
