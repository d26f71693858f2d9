"""The retrieval task's input pipeline: batches gathered from compact interactions, never a per-row
string column.

:class:`RetrievalStream` holds the integer columns of :class:`tfrs_lab.data.interactions.Interactions`
(user and item codes, timestamps) as TF constants, the id vocabularies, and per split its rows and
their place in a :class:`~tfrs_lab.data.interactions.HistorySource`. A ``tf.data`` pipeline over row
positions (a fresh permutation each epoch, batched first, then mapped) gathers per batch exactly the
raw columns :func:`tfrs_lab.training.retrieval.feature_columns` would hold for those rows:
``user_id`` / ``movie_id`` (string [B], ``tf.gather(vocabulary, codes)``), ``timestamp`` (int64 [B]),
the MovieLens demographics where the data has them, the typed context features of your own
data by name (:func:`context_gather`: raw strings, numbers, times, vectors), ``history`` (string
[B, H], the user's previous ``history_length`` source items, most recent first, '' padded), and with
``train.sample_weight`` the rows' loss weights (``sample_weight``, float32 [B]), so the model and
its export stay string-keyed; with ``label`` each row's ``label`` (float32 [B], the rating column:
what multitask's rating head regresses). The ranking task streams from the same class (``raw``: the columns its
model reads, ``label``: the rating; :func:`tfrs_lab.training.ranking.ranking_stream`). Evaluation ranks every evaluated row over the whole catalogue in chunks
(:func:`stream_ranks`), the exclusions as views into the history source; validation during training
may rank only the rows of a fixed, seeded sample of users (:meth:`RetrievalStream.user_sample`,
``eval.validation_users``), test evaluation always ranks every rankable test row, and
:func:`rank_split` keeps the ranks so the report reuses them (:class:`SplitRanks`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfrs_lab.data.interactions import HistorySource, Interactions
from tfrs_lab.data.splits import Split
from tfrs_lab.evaluation.metrics import hit_rate, paired_target_ranks, ranking_metrics, target_ranks

__all__ = ["RetrievalStream", "context_gather", "epoch_batches", "SplitRanks", "SplitRows", "rank_split", "split_metrics", "stream_metrics", "stream_ranks"]

_CHUNK = 1 << 16  # evaluated rows per chunk: bounds queries and exclusion lists in memory


@dataclasses.dataclass(frozen=True, eq=False)
class SplitRows:
    """One split's rows (int64 ``[q]``), where each row's history ends in ``source`` (int64 ``[q]``),
    and the source itself."""

    rows: np.ndarray
    stop: np.ndarray
    source: HistorySource

    def __len__(self) -> int:
        return len(self.rows)


def context_gather(column) -> Callable[[tf.Tensor], tf.Tensor]:
    """``f(rows int64 [b]) -> values`` of a context feature (a per-row
    :class:`~tfrs_lab.data.typed.FeatureColumn`) as its serving input
    (:func:`tfrs_lab.models.features.context_signature`): categorical string [b] ('' missing),
    multi_categorical string [b, n] ('' pads), numeric float32 [b], timestamp int64 [b], dense
    float32 [b, size]."""
    t = column.spec.type
    if t in ("categorical", "multi_categorical"):
        strings = tf.constant(column.row_strings().astype(str))
        codes = tf.constant(np.asarray(column.codes, np.int32))
        if t == "categorical":
            return lambda r: tf.gather(strings, tf.gather(codes, r))
        offsets = tf.constant(np.asarray(column.offsets, np.int64))

        def multi(r: tf.Tensor) -> tf.Tensor:
            at = tf.ragged.range(tf.gather(offsets, r), tf.gather(offsets, r + 1))
            return tf.gather(strings, tf.gather(codes, at)).to_tensor("")

        return multi
    values = tf.constant(np.asarray(column.values))
    return lambda r: tf.gather(values, r)


def epoch_batches(n: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """The positions ``0 .. n - 1`` in a new random order every epoch, in batches of ``batch_size``
    (the last smaller): elements ``(epoch, step, positions)``: ``epoch`` int64 scalar, the epoch's
    key (drawn afresh each time the dataset is iterated, by ``Dataset.random(seed)``: the same seed
    gives the same sequence of epochs, also on every worker of a cluster), ``step`` int64 scalar, the
    batch's index in the epoch, ``positions`` int64 [b]. The order is a stateless shuffle keyed on
    (epoch, seed); what else a batch draws (the ranking task's negatives) keys on (epoch, step).
    Memory: one int64 [n] permutation per epoch."""

    def epoch(s: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([s, tf.constant(seed, tf.int64)]))
        return tf.data.Dataset.range(0, n, batch_size).map(lambda a: (s, a // batch_size, order[a:a + batch_size]))

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(epoch)


class RetrievalStream:
    """Batches of the retrieval task's raw features from :class:`Interactions` (module docstring).

    Args:
        data: the interactions. split: the run's split.
        history_length: H, items per history; 0 when the query tower reads none (no ``history`` key).
        weights: float32 ``[n]`` each row's loss weight (``tfrs_lab.training.common.sample_weights``),
            batched as ``sample_weight``; None: no such key (every row weighs 1).
        raw: the per-row raw columns batched besides the ids (``timestamp`` and keys of
            :attr:`Interactions.extra`, in this order); None: ``timestamp`` and every ``extra``
            column (what the retrieval towers read). The ranking task passes those its model reads.
        label: batch ``label`` (float32 [B], :meth:`labels_of`: the rating column), as the ranking
            task and multitask's rating head train on.
    """

    def __init__(self, data: Interactions, split: Split, history_length: int,
                 weights: np.ndarray | None = None, *, raw: Sequence[str] | None = None,
                 label: bool = False) -> None:
        self.data, self.length = data, history_length
        self.weight = None if weights is None else tf.constant(np.asarray(weights, np.float32))
        self.label = tf.constant(self.labels_of(None)) if label else None
        self.user = tf.constant(np.asarray(data.user, np.int32))
        self.item = tf.constant(np.asarray(data.item, np.int32))
        raw = ("timestamp", *data.extra) if raw is None else tuple(raw)
        self.raw = {k: tf.constant(np.asarray(data.timestamp, np.int64) if k == "timestamp" else data.extra[k])
                    for k in raw}
        self.context = {name: context_gather(f) for name, f in data.features.items() if f.spec.side == "context"}
        self.user_ids = tf.constant(data.user_ids.astype(str))
        self.item_ids = tf.constant(data.item_ids.astype(str))
        self.parts: dict[str, SplitRows] = {}
        for names, source_rows in ((("train", "validation"), split.train),
                                   (("test",), np.concatenate([split.train, split.validation]))):
            source, stop = data.history_source(source_rows)
            for name in names:  # only the split rows' stops are kept
                rows = getattr(split, name)
                self.parts[name] = SplitRows(rows, stop[rows], source)
            del stop
        self._graphs: dict[str, tuple] = {}

    # ------------------------------------------------------------------ features

    def _constants(self, name: str) -> tuple:
        """(rows, stops, source items, source user starts) of ``parts[name]`` as TF constants, made
        once (a source shared by two splits once)."""
        if name not in self._graphs:
            p = self.parts[name]
            shared = next((g[2:] for n, g in self._graphs.items() if self.parts[n].source is p.source), None)
            # eager constants even when first asked inside a tf.function (a parameter-server worker's
            # dataset_fn builds the training batches): later eager batches share them
            with tf.init_scope():
                self._graphs[name] = (tf.constant(p.rows), tf.constant(p.stop),
                                      *(shared or (tf.constant(p.source.items), tf.constant(p.source.user_start))))
        return self._graphs[name]

    def batch_fn(self, name: str):
        """``f(positions int64 [b]) -> features``: the raw columns of rows ``parts[name].rows[positions]``."""
        rows, stops, items, user_start = self._constants(name)
        length = self.length

        def features(positions: tf.Tensor) -> dict[str, tf.Tensor]:
            r = tf.gather(rows, positions)
            u = tf.gather(self.user, r)
            out = {"user_id": tf.gather(self.user_ids, u), "movie_id": tf.gather(self.item_ids, tf.gather(self.item, r)),
                   **{k: tf.gather(v, r) for k, v in self.raw.items()},
                   **{k: gather(r) for k, gather in self.context.items()}}
            if self.label is not None:
                out["label"] = tf.gather(self.label, r)
            if self.weight is not None:
                out["sample_weight"] = tf.gather(self.weight, r)
            if length:
                stop = tf.gather(stops, positions)
                start = tf.gather(user_start, u)
                at = stop[:, None] - 1 - tf.range(length, dtype=tf.int64)[None, :]  # [b, H], newest first
                codes = tf.gather(items, tf.maximum(at, 0))
                out["history"] = tf.where(at >= start[:, None], tf.gather(self.item_ids, codes), "")
            return out

        return features

    def features(self, name: str, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The raw columns (numpy; strings as bytes) of ``parts[name].rows[positions]``: for tests and samples."""
        return {k: v.numpy() for k, v in self.batch_fn(name)(tf.constant(np.asarray(positions, np.int64))).items()}

    def user_fn(self, name: str) -> Callable[[tf.Tensor], tf.Tensor]:
        """``f(positions int64 [b]) -> int64 [b]``: the user codes of rows ``parts[name].rows[positions]``."""
        rows = self._constants(name)[0]
        return lambda positions: tf.cast(tf.gather(self.user, tf.gather(rows, positions)), tf.int64)

    def training_dataset(self, batch_size: int, seed: int, name: str = "train") -> tf.data.Dataset:
        """Batches of ``parts[name]`` in a new random order every epoch (seeded: the same run gives
        the same epochs, :func:`epoch_batches`), the last batch smaller; mapped in parallel, order
        kept, prefetched."""
        gather = self.batch_fn(name)
        ds = epoch_batches(len(self.parts[name]), batch_size, seed)
        return ds.map(lambda epoch, step, positions: gather(positions),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def batches(self, name: str, positions: np.ndarray, batch_size: int = 4096) -> tf.data.Dataset:
        """Batches of ``parts[name].rows[positions]`` in that order."""
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(positions, np.int64)).batch(batch_size)
        return ds.map(self.batch_fn(name), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def queries(self, model, name: str, positions: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """float32 [len(positions), d]: the query vectors of those rows."""
        out = [model.query_embedding(b).numpy() for b in self.batches(name, positions, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, model.hp.embedding_dim), np.float32)

    # ------------------------------------------------------------------ what evaluation reads

    def targets(self, name: str) -> np.ndarray:
        """int64 [q]: each row's item code (its catalogue row when < ``data.num_catalogue``)."""
        return self.data.item[self.parts[name].rows].astype(np.int64)

    def users(self, name: str) -> np.ndarray:
        """int64 [q]: each row's user code."""
        return self.data.user[self.parts[name].rows].astype(np.int64)

    def labels(self, name: str) -> np.ndarray:
        """float32 [q]: each row's ``label`` (:meth:`labels_of`)."""
        return self.labels_of(self.parts[name].rows)

    def labels_of(self, rows: np.ndarray | None) -> np.ndarray:
        """float32 [len(rows)] (None: every row, [n]): the rating column of those rows (1.0 when the
        data has none)."""
        rating, n = self.data.rating, self.data.num_ratings if rows is None else len(rows)
        if rating is None:
            return np.ones(n, np.float32)
        return np.asarray(rating if rows is None else rating[rows], np.float32)

    def seen(self, name: str, positions: np.ndarray) -> list[np.ndarray]:
        """The catalogue rows each of those rows' users has in its history source (what a ranking excludes)."""
        p = self.parts[name]
        return p.source.seen(self.data.user[p.rows[positions]].astype(np.int64), self.data.num_catalogue)

    def rankable(self, name: str) -> np.ndarray:
        """Positions of the rows whose item is in the catalogue (the others cannot be ranked)."""
        return np.flatnonzero(self.targets(name) < self.data.num_catalogue)

    def user_sample(self, name: str, max_users: int, seed: int) -> tuple[np.ndarray, int, int]:
        """The rankable rows of a fixed sample of split ``name``'s users: (positions int64 [q'] in
        row order, users sampled, users in the split). Every user when the split has at most
        ``max_users``; otherwise ``max_users`` distinct users drawn without replacement by
        ``numpy.random.default_rng(seed)`` (the same seed and split, the same sample)."""
        keep = self.rankable(name)
        users = self.users(name)[keep]
        distinct = np.unique(users)
        if len(distinct) <= max_users:
            return keep, len(distinct), len(distinct)
        chosen = np.sort(np.random.default_rng(seed).choice(distinct, size=max_users, replace=False))
        return keep[np.isin(users, chosen)], max_users, len(distinct)


def stream_ranks(model, stream: RetrievalStream, name: str, *, exclude: bool, plain: bool = True,
                 batch_size: int = 1024, positions: np.ndarray | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Per chunk of the rankable rows of split ``name`` (or of ``positions``, rankable positions
    such as :meth:`RetrievalStream.user_sample`'s): (positions, ranks over the whole catalogue
    or None without ``plain``, ranks with the seen items excluded or None without ``exclude``)."""
    items = model.catalogue_embeddings()
    targets = stream.targets(name)
    keep = stream.rankable(name) if positions is None else np.asarray(positions, np.int64)
    for s in range(0, len(keep), _CHUNK):
        positions = keep[s:s + _CHUNK]
        queries, chunk_targets = stream.queries(model, name, positions), targets[positions]
        plain_ranks = excluded = None
        if plain and exclude:  # both from one scoring of the catalogue
            plain_ranks, excluded = paired_target_ranks(queries, items, chunk_targets, stream.seen(name, positions),
                                                        batch_size=batch_size)
        elif plain:
            plain_ranks = target_ranks(queries, items, chunk_targets, batch_size=batch_size)
        elif exclude:
            excluded = target_ranks(queries, items, chunk_targets, exclude=stream.seen(name, positions),
                                    batch_size=batch_size)
        yield positions, plain_ranks, excluded


@dataclasses.dataclass(frozen=True, eq=False)
class SplitRanks:
    """The ranks one evaluation pass computed: ``positions`` int64 [q] (rankable rows of the
    split, row order), ``plain`` int64 [q] 0-based ranks over the whole catalogue (None when not
    needed), ``excluded`` int64 [q] ranks with the user's history-source items excluded (None when
    not needed). ``protocol`` and ``seen_excluded`` say which the metrics read."""

    name: str
    protocol: str
    positions: np.ndarray
    plain: np.ndarray | None
    excluded: np.ndarray | None

    @property
    def ranks(self) -> np.ndarray:
        """The ranks the protocol's headline metrics read (``excluded`` for leave-last-out,
        ``plain`` otherwise): what ``report.html``'s recall@K curve shows."""
        return self.excluded if self.protocol == "leave-last-out" else self.plain


def rank_split(model, stream: RetrievalStream, name: str, *, protocol: str, batch_size: int = 1024,
               seen_excluded: bool = False, positions: np.ndarray | None = None) -> SplitRanks:
    """One pass of :func:`stream_ranks` over split ``name`` (all its rankable rows, or
    ``positions``), joined: the ranks :func:`split_metrics` turns into metrics."""
    llo = protocol == "leave-last-out"
    chunks = list(stream_ranks(model, stream, name, exclude=llo or seen_excluded, plain=not llo,
                               batch_size=batch_size, positions=positions))

    def joined(i: int) -> np.ndarray | None:
        if chunks and chunks[0][i] is None:
            return None
        return np.concatenate([c[i] for c in chunks]) if chunks else np.zeros(0, np.int64)

    return SplitRanks(name, protocol, joined(0), None if llo else joined(1),
                      joined(2) if llo or seen_excluded else None)


def split_metrics(ranks: SplitRanks, ks: tuple[int, ...]) -> dict[str, float]:
    """``leave-last-out`` -> ``recall@K``, ``ndcg@K``, ``mrr`` of the excluded ranks; otherwise
    ``hit_rate@K`` of the plain ranks (and ``hit_rate_seen_excluded@K`` when ranked with exclusions)."""
    if ranks.protocol == "leave-last-out":
        return ranking_metrics(ranks.excluded, ks)
    metrics = hit_rate(ranks.plain, ks)
    if ranks.excluded is not None:
        metrics.update({k.replace("hit_rate@", "hit_rate_seen_excluded@"): v
                        for k, v in hit_rate(ranks.excluded, ks).items()})
    return metrics


def stream_metrics(model, stream: RetrievalStream, name: str, *, protocol: str, ks: tuple[int, ...],
                   batch_size: int = 1024, seen_excluded: bool = False,
                   positions: np.ndarray | None = None) -> dict[str, float]:
    """:func:`tfrs_lab.training.evaluate.evaluate` of split ``name``'s rows (or of ``positions``),
    streamed: ``hash`` -> ``hit_rate@K`` (and ``hit_rate_seen_excluded@K`` with ``seen_excluded``);
    ``leave-last-out`` -> ``recall@K``, ``ndcg@K``, ``mrr`` with the user's history-source items excluded."""
    return split_metrics(rank_split(model, stream, name, protocol=protocol, batch_size=batch_size,
                                    seen_excluded=seen_excluded, positions=positions), ks)
