"""The ``retrieval`` task: data -> split -> vocabularies -> two-tower model -> evaluation -> export.

Trains under every ``train.distribution`` (``tfrs_lab.training.distribute``; docs/distributed.md).

The task (and multitask, built on its towers) streams its batches (:mod:`tfrs_lab.training.stream`)
from compact :class:`~tfrs_lab.data.interactions.Interactions`: your own data straight from the
prepared dataset (:meth:`RetrievalTask.streams`), typed features included, MovieLens encoded once.
The in-memory columns below (:func:`split_columns`, :class:`RetrievalState`) remain for the
pipeline Evaluator and ``reindex``; both give the same features for the same rows.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.config import RetrievalConfig, RetrievalModelConfig
from tfrs_lab.data.features import RAW_QUERY_FEATURES, Vocabularies, movie_rows
from tfrs_lab.data.history import latest_history, recent_history
from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.retrieval import export_retrieval
from tfrs_lab.export.tables import ItemTable, latest_items
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.training import distribute, report
from tfrs_lab.evaluation.metrics import EARLY_STOPPING_METRIC, metric_ks
from tfrs_lab.training.common import sample_weights
from tfrs_lab.training.evaluate import evaluate, known_rows, query_embeddings
from tfrs_lab.training.stream import RetrievalStream, SplitRanks, rank_split, split_metrics, stream_metrics
from tfrs_lab.training.task import RunContext, Task, Trained

__all__ = ["AUTO_HISTORY_RANGE", "AUTO_HISTORY_SUPPORT", "auto_history_length", "resolve_history_length",
           "AUTO_OPTIMIZER_MAX_PARAMETERS", "auto_optimizer", "id_table_parameters", "resolve_optimizer",
           "RetrievalState", "RetrievalTask", "StreamState", "TASK", "streamed_tables", "concat_columns", "hyperparameters", "feature_columns", "seen_table", "serving_user_table", "split_columns"]

logger = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


@dataclasses.dataclass
class RetrievalState:
    """Per-split raw columns and the history each evaluated split may see."""

    hp: RetrievalModelConfig
    cols: dict[str, Columns]
    ks: tuple[int, ...]

    @functools.cached_property
    def test_history(self) -> Columns:
        """Train + validation columns: what test rows may see (built once; evaluation, the
        report and a re-evaluation all use it)."""
        return concat_columns(self.cols["train"], self.cols["validation"])


@dataclasses.dataclass
class StreamState:
    """The streamed task's state: the batches of every split, the metric cut-offs and the ranks of
    the latest test evaluation (``test_ranks``, which ``report.html`` reuses instead of ranking the
    test rows again)."""

    hp: RetrievalModelConfig
    stream: RetrievalStream
    ks: tuple[int, ...]
    test_ranks: SplitRanks | None = None


def streamed_tables(data: Interactions, vocab: Vocabularies, hp: RetrievalModelConfig,
                    width: int) -> tuple[dict[str, np.ndarray | ItemTable], ItemTable]:
    """:func:`serving_user_table` and :func:`seen_table` from the sequence index, as int32 item codes
    (never a string per entry: at 25M the seen table has 162k x 500 entries): (the user table [U + 1]
    each, its ``history`` an :class:`ItemTable` [U + 1, history_length]; the seen table
    :class:`ItemTable` [U + 1, w]) for the vocabulary's users, row 0 the unknown user (all pads)."""
    counts = np.diff(data.sequence_offsets)
    w = max(1, min(width, int(counts.max()) if len(counts) else 1))
    known = latest_items(data, vocab.user_ids, w)
    table: dict[str, np.ndarray | ItemTable] = dict(vocab.user_table)
    if "history" in hp.query_features:
        table["history"] = latest_items(data, vocab.user_ids, hp.history_length)
    return table, known


def feature_columns(data: MovieLensData, rows: np.ndarray, hp: RetrievalModelConfig,
                    history_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Raw columns the model reads for ``rows``: ids, timestamp, available user features, and
    (when the query tower uses it) each row's recent history taken from ``history_rows``."""
    names = ["user_id", "movie_id", *RAW_QUERY_FEATURES]
    cols = {n: data.ratings[n][rows] for n in names if n in data.ratings}
    if "history" in hp.query_features:
        cols["history"] = recent_history(data.ratings, history_rows, rows, hp.history_length)
    return cols


AUTO_HISTORY_SUPPORT = 1000
"""Training interactions the items of an ``auto`` history should hold together (:func:`auto_history_length`)."""
AUTO_HISTORY_RANGE = (10, 50)
"""The smallest and largest history :func:`auto_history_length` picks."""


def auto_history_length(train_items: np.ndarray) -> int:
    """``model.history_length: auto``: the history length for data whose training rows hold ``train_items``.

    The query tower averages the embeddings of the user's last ``H`` items. Where every item is seen
    often (ML-100K, synthetic: about 50 training rows per item) its embedding is well trained and a
    short, recent history is best; where most items are seen a handful of times (Last.fm: about 5)
    a longer history averages out their noise. The rule takes ``H`` so that the history's items hold
    about :data:`AUTO_HISTORY_SUPPORT` training rows together, ``H = round(SUPPORT / (rows per
    distinct item))``, clipped to :data:`AUTO_HISTORY_RANGE`. Its constants were fitted to the
    validation winners of ``bench select`` (docs/tuning.md#selection-on-validation).

    Args:
      train_items: the item id (or code) of every **training** row, any dtype, ``[n]``; never
        validation or test rows.

    Returns:
      the history length, an int in ``AUTO_HISTORY_RANGE``.
    """
    items = np.asarray(train_items)
    lo, hi = AUTO_HISTORY_RANGE
    if items.size == 0:
        return lo
    distinct = len(np.unique(items))  # the one O(n log n) pass (20M rows at 25M): done once per run
    length = int(np.clip(round(AUTO_HISTORY_SUPPORT * distinct / items.size), lo, hi))
    logger.info("model.history_length: auto = %d (%d training rows, %d distinct items)", length, items.size, distinct)
    return length


def resolve_history_length(cfg: RetrievalConfig, data: MovieLensData | Interactions, train: np.ndarray):
    """``cfg`` with ``model.history_length: auto`` replaced by :func:`auto_history_length` of the
    training rows ``train`` (row indices into ``data``); any other ``cfg`` as is."""
    if cfg.model.history_length != "auto":
        return cfg
    items = data.item[train] if isinstance(data, Interactions) else data.ratings["movie_id"][train]
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, history_length=auto_history_length(items)))


AUTO_OPTIMIZER_MAX_PARAMETERS = 2_000_000
"""Id-table parameters (rows x ``model.id_embedding_dim`` of the user and item id embeddings) up to
which ``train.optimizer: auto`` picks ``adam``; above it ``lazy_adam`` (:func:`auto_optimizer`)."""


def id_table_parameters(cfg: RetrievalConfig, data: MovieLensData | Interactions, train: np.ndarray) -> int:
    """The parameters of the model's id embedding tables for training rows ``train`` (row indices
    into ``data``): ``(U + 1 + M + 1) * model.id_embedding_dim``, U the distinct users of the training
    rows, M the catalogue, each with its unknown row: the rows Keras's ``Adam`` rewrites every step."""
    if isinstance(data, Interactions):  # codes: one O(n) count, no string per row
        users = int(np.count_nonzero(np.bincount(data.user[train], minlength=len(data.user_ids))))
        items = data.num_catalogue
    else:
        users = len(set(data.ratings["user_id"][train].tolist()))
        items = len(data.movies["movie_id"])
    return (users + 1 + items + 1) * cfg.model.id_embedding_dim


def auto_optimizer(parameters: int) -> str:
    """``train.optimizer: auto``: ``adam`` for id tables of at most :data:`AUTO_OPTIMIZER_MAX_PARAMETERS`
    parameters, ``lazy_adam`` above.

    ``adam`` won the validation selection on every data set (ML-100K both protocols, Last.fm,
    synthetic: +0.1 to +2 %), but Keras's ``Adam`` decays both moments and rewrites every row of the
    id tables each step, so its cost per example grows with the tables while ``lazy_adam``'s (the
    rows a batch touches only) does not. Measured on retrieval's real step at batch 256
    (docs/tuning.md#retrieval-optimizer-a-size-rule): ``adam`` adds about 17 µs of CPU per example
    per million id-table parameters while ``lazy_adam`` stays at 21-24 µs; the threshold (2M, 31k
    rows at dimension 64) is where ``adam``'s extra cost reaches about one ``lazy_adam`` step (2.2x
    its CPU per example; Last.fm's 1.25M: 1.8x; 25M-sized tables, 14M: 12.6x).

    Args:
      parameters: :func:`id_table_parameters` of the run.

    Returns:
      ``"adam"`` or ``"lazy_adam"``.
    """
    return "adam" if parameters <= AUTO_OPTIMIZER_MAX_PARAMETERS else "lazy_adam"


def resolve_optimizer(cfg: RetrievalConfig, data: MovieLensData | Interactions, train: np.ndarray):
    """``cfg`` with ``train.optimizer: auto`` replaced by :func:`auto_optimizer` of the id tables that
    the training rows ``train`` (row indices into ``data``) give; any other ``cfg`` as is."""
    if cfg.train.optimizer != "auto":
        return cfg
    parameters = id_table_parameters(cfg, data, train)
    name = auto_optimizer(parameters)
    logger.info("train.optimizer: auto = %s (id tables %d parameters; adam up to %d)", name, parameters,
                AUTO_OPTIMIZER_MAX_PARAMETERS)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer=name))


def hyperparameters(cfg: RetrievalConfig, has_user_features: bool) -> RetrievalModelConfig:
    """``cfg.model`` without the demographic query features the dataset does not have.

    Raises:
      ValueError: ``model.history_length`` is still ``auto`` (resolve it first with
        :func:`resolve_history_length`; :func:`tfrs_lab.training.runner.run_task` does).
    """
    m = cfg.model
    if m.history_length == "auto":
        raise ValueError("model.history_length: auto is resolved from the training rows first "
                         "(resolve_history_length)")
    query = m.query_features
    if not has_user_features:
        dropped = [f for f in query if f in ("age", "gender", "occupation")]
        if dropped:
            logger.warning("%s has no user demographics: ignoring model.query_features %s",
                           cfg.data.dataset, ", ".join(dropped))
        query = tuple(f for f in query if f not in dropped)
    return dataclasses.replace(m, query_features=query)


def split_columns(data: MovieLensData, split: Split, hp: RetrievalModelConfig) -> dict[str, dict[str, np.ndarray]]:
    """Columns of each split. Histories come from earlier splits only: train rows see train rows,
    validation rows see train rows, test rows see train and validation rows."""
    known = {"train": split.train, "validation": split.train,
             "test": np.concatenate([split.train, split.validation])}
    return {name: feature_columns(data, getattr(split, name), hp, known[name]) for name in known}


def concat_columns(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def seen_table(data: MovieLensData, vocab: Vocabularies, width: int) -> np.ndarray:
    """str [U + 1, w]: each known user's newest ``w = min(width, most ratings of one user)`` movies
    among *all* known ratings, '' padded; row 0 (the unknown user) empty: what ``serving_default``
    excludes."""
    counts = np.unique(data.ratings["user_id"], return_counts=True)[1]
    w = max(1, min(width, int(counts.max()) if len(counts) else 1))
    known = latest_history(data.ratings, np.arange(data.num_ratings), vocab.user_ids, w)
    return np.concatenate([np.full((1, w), "", dtype=object), known])


def serving_user_table(data: MovieLensData, vocab: Vocabularies, hp: RetrievalModelConfig) -> dict[str, np.ndarray]:
    """What ``serving_default`` looks up per user index ([U + 1] rows; row 0 = unknown user):
    the training-time demographics and, when used, the user's latest ``history_length`` movies
    among *all* known ratings (the freshest history the exported model can have)."""
    table = dict(vocab.user_table)
    if "history" in hp.query_features:
        everything = np.arange(len(data.ratings["user_id"]))
        known = latest_history(data.ratings, everything, vocab.user_ids, hp.history_length)
        table["history"] = np.concatenate([np.full((1, hp.history_length), "", dtype=object), known])
    return table


def _query_probe(model, features):
    """The output a single-device copy must reproduce: query embeddings [B, D] of ``features``."""
    return model.query_embedding(features)


class RetrievalTask(Task):
    """Two-tower retrieval (TFRS ``Retrieval`` task, in-batch softmax) with a ScaNN export."""

    name = "retrieval"

    def streams(self, cfg: RetrievalConfig) -> bool:
        """Your own data reaches retrieval (and multitask, built on its towers) as
        :class:`Interactions` (never converted to strings per row) on the splits computed from
        codes, warm-started runs included."""
        return cfg.split_name in STREAMED_SPLITS

    def resolve_data_config(self, cfg: RetrievalConfig, data: MovieLensData | Interactions,
                            split: Split) -> RetrievalConfig:
        """``model.history_length: auto`` → :func:`auto_history_length` of the training rows;
        ``train.optimizer: auto`` → :func:`auto_optimizer` of the id tables they give."""
        return resolve_optimizer(resolve_history_length(cfg, data, split.train), data, split.train)

    def vocabulary_fit(self, cfg: RetrievalConfig, has_user_features: bool) -> dict[str, Any]:
        m = cfg.model
        return dict(has_user_features=has_user_features, title_vocab_size=m.title_vocab_size,
                    title_max_tokens=m.title_max_tokens, timestamp_buckets=m.timestamp_buckets)

    # Hooks a task built on these towers (multitask) overrides; retrieval's own behaviour below.
    def stream_label(self, data: Interactions, split: Split, hp: RetrievalModelConfig) -> bool:
        """Whether the stream batches each row's ``label`` (:class:`RetrievalStream`: the rating
        column); retrieval: no."""
        return False

    def build_model(self, vocab: Vocabularies, hp: RetrievalModelConfig, stream: RetrievalStream) -> RetrievalModel:
        """A fresh, untrained model (built inside the distribution strategy's scope)."""
        return RetrievalModel(vocab, hp)

    def validation_metrics(self, model: RetrievalModel, state: StreamState, cfg: RetrievalConfig, protocol: str,
                           positions: np.ndarray) -> dict[str, float]:
        """The metrics of one validation pass over the validation rows ``positions`` (a fixed sample of
        users: ``eval.validation_users``); :meth:`monitor` names one of them."""
        return stream_metrics(model, state.stream, "validation", protocol=protocol, ks=state.ks,
                              batch_size=cfg.eval.batch_size, positions=positions)

    def monitor(self, cfg: RetrievalConfig, protocol: str) -> str:
        """The validation metric early stopping maximises."""
        return EARLY_STOPPING_METRIC[protocol]

    def model_shape(self, cfg: RetrievalConfig, has_user_features: bool) -> dict[str, Any] | None:
        if self.name != "retrieval":  # a task built on these towers (multitask) has weights these keys miss
            return None
        m = hyperparameters(cfg, has_user_features)
        return {f"model.{f}": getattr(m, f) for f in (
            "embedding_dim", "id_embedding_dim", "feature_embedding_dim", "tower_layers", "query_features",
            "candidate_features", "timestamp_buckets", "title_vocab_size", "title_max_tokens")}

    def train(self, ctx: RunContext) -> Trained:
        cfg, split, vocab, dist = ctx.cfg, ctx.split, ctx.vocab, ctx.distribution
        data = Interactions.of(ctx.data)
        hp = hyperparameters(cfg, data.has_user_features)
        weights = None
        if cfg.train.sample_weight != "none":
            if data.rating is None:
                raise DataError(f"train.sample_weight={cfg.train.sample_weight}: {data.dataset} has no rating / weight "
                                "column: name one (--columns ...,rating=COLUMN) or set train.sample_weight=none")
            weights = sample_weights(data.rating, cfg.train.sample_weight, split.train)
        stream = RetrievalStream(data, split, hp.history_length if "history" in hp.query_features else 0, weights,
                                 label=self.stream_label(data, split, hp))
        state = StreamState(hp, stream, metric_ks(split.protocol, cfg.eval.ks))
        sample = stream.features("train", np.arange(min(2, len(split.train))))
        steps = -(-len(split.train) // cfg.train.batch_size)
        with dist.strategy.scope():
            model = self.build_model(vocab, hp, stream)
            model.compile(optimizer=ctx.optimizer(steps))
            if ctx.warm_start is not None:  # continue from the previous run's weights
                ctx.warm_start.restore(model, lambda: self.build_model(vocab, hp, stream), sample)
        train_ds, fit_kwargs = distribute.fit_dataset(
            dist, lambda batch: stream.training_dataset(batch, cfg.train.seed), len(split.train), cfg.train.batch_size)
        # validation: the rows of a fixed sample of users, the same every epoch (eval.validation_users)
        validated, sampled, total = stream.user_sample("validation", cfg.eval.validation_users, cfg.train.seed)

        def validate() -> dict[str, float]:
            return self.validation_metrics(model, state, cfg, split.protocol, validated)

        fit = ctx.fit(model, train_ds, steps_per_epoch=steps, validate=validate,
                      monitor=self.monitor(cfg, split.protocol),
                      fit_kwargs=fit_kwargs)
        model = distribute.finish_training(  # distributed: evaluate and export a single-device copy
            dist, model, lambda: self.build_model(vocab, hp, stream), sample, ctx.stage, _query_probe)
        counts = {"sampled_validation_users": sampled, "total_validation_users": total,
                  "sampled_validation_rows": len(validated)}
        return Trained(model, state, [fit], len(split.train), len(split.train),
                       metrics={"optimizer": cfg.train.optimizer, **({} if cfg.train.include_validation else counts)})

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        s = trained.state
        if isinstance(s, StreamState):  # every rankable test row; the ranks are kept for the report
            s.test_ranks = rank_split(trained.model, s.stream, "test", protocol=ctx.split.protocol,
                                      batch_size=ctx.cfg.eval.batch_size, seen_excluded=True)
            return split_metrics(s.test_ranks, s.ks)
        return evaluate(trained.model, ctx.vocab, s.cols["test"], protocol=ctx.split.protocol, ks=s.ks,
                        history=s.test_history, batch_size=ctx.cfg.eval.batch_size, seen_excluded=True)

    def export_arguments(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        """The keyword arguments of :func:`tfrs_lab.export.retrieval.export_retrieval` after the model
        and the export directory (index settings, user table, popularity, seen table …)."""
        cfg, vocab, s = ctx.cfg, ctx.vocab, trained.state
        x = cfg.export
        settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
        counts = vocab.item_counts[1:].astype(np.float64)
        if isinstance(s, StreamState):
            recall_queries = s.stream.queries(trained.model, "test", np.arange(min(1000, len(ctx.split.test))))
            user_table, known = streamed_tables(s.stream.data, vocab, s.hp, x.max_exclude)
        else:
            recall_queries = query_embeddings(trained.model, {k: v[:1000] for k, v in s.cols["test"].items()})
            user_table = serving_user_table(ctx.data, vocab, s.hp)
            known = seen_table(ctx.data, vocab, x.max_exclude)  # excluded by default, and what ``explain`` cites
        return dict(user_table=user_table,
                    popularity=counts / max(counts.sum(), 1.0), titles=ctx.data.movies["movie_title"],
                    model_name=x.model_name, version=x.version, settings=settings,
                    sample_users=[str(u) for u in vocab.user_ids[:8]], recall_queries=recall_queries,
                    seen=known if x.exclude_seen else None, history=known, verify=x.verify)

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        x = ctx.cfg.export
        logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
        result = export_retrieval(trained.model, export_dir, **self.export_arguments(ctx, trained))
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}

    def report_inputs(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        """A two-tower model scored on the test rows, as :meth:`evaluate` does (streamed: the ranks
        :meth:`evaluate` computed, reused; only each test user's first row is scored again, for its
        top-K recommendations)."""
        vocab, s, model = ctx.vocab, trained.state, trained.model
        titles = report.catalogue_titles(ctx.data, vocab.movie_ids)
        if isinstance(s, StreamState):
            if s.test_ranks is None:  # the run loop evaluates first; a caller that did not, does now
                self.evaluate(ctx, trained)
            r, stream = s.test_ranks, s.stream
            codes = stream.users("test")[r.positions]
            first = report.first_per_user(codes)
            exclude = stream.seen("test", r.positions) if ctx.split.protocol == "leave-last-out" else None
            return report.ranked_inputs(
                r.ranks, stream.targets("test")[r.positions], users=stream.data.user_ids[codes],
                first_queries=stream.queries(model, "test", r.positions[first]), items=model.catalogue_embeddings(),
                exclude=exclude, item_counts=vocab.item_counts[1:], titles=titles)
        columns = s.cols["test"]
        targets = movie_rows(vocab, columns["movie_id"])
        keep = targets >= 0
        columns = {k: v[keep] for k, v in columns.items()}
        exclude = None
        if ctx.split.protocol == "leave-last-out":
            exclude = known_rows(vocab, columns["user_id"], s.test_history)
        return report.factorized_inputs(query_embeddings(model, columns), model.catalogue_embeddings(),
                                        targets[keep], users=columns["user_id"], exclude=exclude,
                                        item_counts=vocab.item_counts[1:], titles=titles)


TASK = RetrievalTask()
