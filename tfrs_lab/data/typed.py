"""Typed feature columns of your own data (``data.source.features``; docs/own-data.md#typed-features).

Each :class:`~tfrs_lab.data.spec.FeatureSpec` is read from its table once and encoded into compact
arrays aligned with the prepared dataset's codes (:class:`FeatureColumn`): per item code (items
table), per user code (users table) or per interaction row (interactions table). Shapes: N = items,
users or interaction rows, V = vocabulary entries, L = ``max_tokens``, S = ``size``.

* ``categorical``: ``vocabulary`` object [V] (most frequent first, ties by value) with ``counts``
  int64 [V]; ``codes`` int32 [N]: 0 = missing, ``i + 1`` = ``vocabulary[i]``.
* ``multi_categorical``: the same vocabulary; ``offsets`` int64 [N + 1] and ``codes`` int32 [nnz]
  (CSR: entry e's values are ``codes[offsets[e]:offsets[e + 1]]``, each ``i + 1``).
* ``text``: ``vocabulary`` the words (most frequent first, at most ``max_size`` or 20000) with
  counts; ``codes`` int32 [N, L] token ids (0 pads, 1 = a word outside the vocabulary, ``i + 2`` =
  ``vocabulary[i]``), tokenised as :func:`tfrs_lab.data.features.encode_titles` does.
* ``numeric``: ``values`` float32 [N] (NaN = missing); ``stats``: ``mean`` / ``std`` of the
  normalised values (``log``: of ``log1p(max(x, 0))``), ``boundaries`` (quantiles, ``buckets``).
* ``timestamp``: ``values`` int64 [N] unix seconds (missing: the mean); ``stats`` ``mean``,
  ``std``, ``min``, ``max``, ``boundaries``.
* ``dense``: ``values`` float32 [N, S] (missing: zeros).

Vocabularies and statistics are fitted on the whole table (the items or users table, every kept
interaction row), not on a split. Models read them through :meth:`FeatureColumn.for_model`
(:class:`ModelFeature`: tables indexed like the model's lookups, row 0 the unknown entity) and
never import this module. Bad values raise :class:`DataError` (one line: file, line, column, the
setting and the fix).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tfrs_lab.data.features import _TOKEN
from tfrs_lab.data.filesystem import local_file
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.readers import (_categories, _frame_table, _ids, _is_missing, _iso_times, _numbers, _Raw,
                                   _read_file_table, _read_tfrecord, _table_raw, resolve_paths)
from tfrs_lab.data.spec import FeatureSpec, SourceSpec
from tfrs_lab.data.vectorised import (_decoded, _fast_iso_times, _fast_numbers, _is_text, category_strings,
                                      dense_rows, split_lists)

__all__ = ["FeatureColumn", "ModelFeature", "Part", "TEXT_VOCABULARY", "TableParts", "Values", "column_of", "column_stats",
           "convert", "count_values", "encode_features", "encode_values", "feature_entry", "feature_needed",
           "fit_vocabulary", "frame_part", "interaction_part", "interaction_values", "load_features", "merge_counts",
           "offsets_of", "read_part", "save_features", "save_vocabulary", "side_features"]

TEXT_VOCABULARY = 20000
"""Words kept in a text feature's vocabulary when ``max_size`` is 0."""
_TIME_BUCKETS = 10
_MAX_VALUES = 64  # a multi-categorical entity's values the model pools over (the first ones)


@dataclasses.dataclass(frozen=True, eq=False)
class ModelFeature:
    """What a model needs of one typed feature (duck-typed by :mod:`tfrs_lab.models.features`).

    ``rows``: for item / user features the values per model index (row 0 = the unknown entity):
    categorical int32 [N + 1] codes into ``vocabulary`` (0 = out of vocabulary or missing; with
    ``hash_buckets`` the raw codes, hashed by the model); multi_categorical int32 [N + 1, P] (0 pads);
    text int32 [N + 1, L]; numeric float32 [N + 1] (NaN missing); timestamp int64 [N + 1]; dense
    float32 [N + 1, S]. None for context features (read from the batch by name).
    ``vocabulary``: the kept values (lookup) or every value (``hash_buckets``), str.
    """

    name: str
    type: str
    side: str
    rows: np.ndarray | None
    vocabulary: tuple[str, ...] = ()
    hash_buckets: int = 0
    text_vocabulary_size: int = 0
    normalize: str = "none"
    mean: float = 0.0
    std: float = 1.0
    minimum: float = 0.0
    maximum: float = 0.0
    boundaries: tuple[float, ...] = ()
    size: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureColumn:
    """One typed feature encoded (module docstring). ``spec`` is its entry of ``data.source.features``."""

    spec: FeatureSpec
    vocabulary: np.ndarray  # object [V] of str
    counts: np.ndarray  # int64 [V]
    codes: np.ndarray | None = None
    offsets: np.ndarray | None = None
    values: np.ndarray | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def kept(self) -> int:
        """Vocabulary entries that get their own embedding row (``min_count``, ``max_size``)."""
        k = int((self.counts >= self.spec.min_count).sum())
        return min(k, self.spec.max_size) if self.spec.max_size and self.spec.type != "text" else k

    def _mapped(self, codes: np.ndarray) -> np.ndarray:
        """Codes as the model's embedding reads them: outside the kept vocabulary -> 0 (hashing: as is)."""
        return codes if self.spec.hash_buckets else np.where(codes <= self.kept(), codes, 0).astype(np.int32)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The values of entities ``index`` (int64 [k]; -1 = unknown: missing values) in the model's
        layout (:class:`ModelFeature` ``rows``)."""
        index = np.asarray(index, np.int64)
        known = index >= 0
        at = np.where(known, index, 0)
        t = self.spec.type
        if t == "categorical":
            return np.where(known, self._mapped(np.asarray(self.codes)[at]), 0).astype(np.int32)
        if t == "text":
            return np.where(known[:, None], np.asarray(self.codes)[at], 0).astype(np.int32)
        if t == "multi_categorical":
            lengths = np.diff(np.asarray(self.offsets))[at] * known
            width = max(1, min(_MAX_VALUES, int(lengths.max()) if len(lengths) else 1))
            out = np.zeros((len(index), width), np.int32)
            for row, (e, n) in enumerate(zip(at, lengths)):
                n = min(int(n), width)
                start = int(self.offsets[e])
                out[row, :n] = self._mapped(np.asarray(self.codes[start:start + n]))
            return out
        if t == "numeric":
            return np.where(known, np.asarray(self.values)[at], np.nan).astype(np.float32)
        if t == "timestamp":
            return np.where(known, np.asarray(self.values)[at], int(self.stats["mean"])).astype(np.int64)
        return np.where(known[:, None], np.asarray(self.values)[at], 0.0).astype(np.float32)  # dense

    def for_model(self, index: np.ndarray | None) -> ModelFeature:
        """The :class:`ModelFeature` of this column; ``index`` int64 [N + 1]: the code of each model
        index (-1 = unknown; row 0 is), or None for a context feature."""
        s, st = self.spec, self.stats
        vocab: tuple[str, ...] = ()
        if s.type in ("categorical", "multi_categorical"):
            vocab = tuple(str(v) for v in (self.vocabulary if s.hash_buckets else self.vocabulary[: self.kept()]))
        return ModelFeature(
            name=s.name, type=s.type, side=s.side, rows=None if index is None else self.take(index),
            vocabulary=vocab, hash_buckets=s.hash_buckets,
            text_vocabulary_size=len(self.vocabulary) + 2 if s.type == "text" else 0,
            normalize=s.normalize if s.type == "numeric" else "zscore",
            mean=float(st.get("mean", 0.0)), std=float(st.get("std", 1.0)) or 1.0,
            minimum=float(st.get("min", 0.0)), maximum=float(st.get("max", 0.0)),
            boundaries=tuple(float(b) for b in st.get("boundaries", ())), size=s.size)

    def row_strings(self) -> np.ndarray:
        """object [V + 1]: '' then the vocabulary (what a code means as raw text: code 0 is missing)."""
        return np.concatenate([[""], self.vocabulary]).astype(object)


# --------------------------------------------------------------------------- encoding
#
# A feature is encoded in steps over parts of its table (a file or a frame; for the interactions
# table one shard, its kept rows), shared by the single-machine path (encode_features) and the
# Beam pipeline (tfrs_lab/data/beam_prepare.py), so both write the same bytes:
#   read_part / frame_part   a file / frame as read: a pyarrow Table, else per-value columns
#   convert                  one part's values (vectorised, tfrs_lab.data.vectorised; a value that
#                            needs it goes through the per-value conversion, which names a bad one)
#   count_values             the part's distinct values and counts (categorical, multi, text)
#   merge_counts             counts of several parts summed
#   fit_vocabulary           the vocabulary: most frequent first, ties by value (text: the first max_size)
#   encode_values            one part's arrays against the vocabulary
#   column_stats             numeric / timestamp statistics of the whole column

_VOCABULARY_TYPES = ("categorical", "multi_categorical", "text")
_NOT_TOKEN = "[^a-z0-9']+"  # the complement of features._TOKEN: splitting on it gives its matches


@dataclasses.dataclass
class Part:
    """One file (or frame) of a table as read: ``arrow``, the pyarrow Table of the needed columns
    (None for TFRecord, or a frame pyarrow cannot convert); ``raw``, its per-value columns when
    there is no table or when they came first (a frame); ``rows``, int64 positions of the rows kept
    (None: all); ``where`` / ``first_line``: the file and the line of row 0, for messages."""

    where: str
    arrow: Any | None = None
    first_line: int | None = None
    raw: _Raw | None = None
    rows: np.ndarray | None = None

    def column(self, col: str) -> Any:
        """The kept rows of column ``col`` of the pyarrow Table."""
        import pyarrow as pa  # pylint: disable=import-outside-toplevel

        values = self.arrow.column(col)
        return values if self.rows is None else values.take(pa.array(self.rows, pa.int64()))

    def values(self, col: str) -> _Raw:
        """The kept rows of column ``col`` per value (messages name each row's line in the file)."""
        raw = self.raw if self.raw is not None else _table_raw(self.where, self.arrow, self.first_line, {"c": col})
        values = raw.columns[col]
        return _Raw(self.where, {col: values if self.rows is None else values[self.rows]}, raw.first_line,
                    index=self.rows)


def read_part(file: Any, source: Any, needed: Mapping[str, str], where: str,
              rows: np.ndarray | None = None) -> Part:
    """The ``needed`` columns (role -> column; ``@setting`` roles name the setting) of one file of
    ``source`` (a remote one through a local copy). DataError for a missing column or an unreadable file."""
    with local_file(file) as local:
        read = _read_file_table(local, source, needed, where)
        if read is None:
            return Part(str(file), raw=dataclasses.replace(_read_tfrecord(local, needed, where), where=str(file)),
                        rows=rows)
    return Part(str(file), arrow=read[0], first_line=read[1], rows=rows)


def frame_part(frame: Any, needed: Mapping[str, str], where: str, what: str) -> Part:
    """The ``needed`` columns of a pandas DataFrame or dict of equal-length arrays (``what`` in
    messages: "the items frame"); DataError for a missing column."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    raw = _frame_table(frame, needed, where, what)[0]
    try:
        arrow = pa.table({c: pa.array(v) for c, v in raw.columns.items()})
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        arrow = None  # mixed types: the per-value conversion decides
    return Part(what, arrow=arrow, raw=raw)


@dataclasses.dataclass
class Values:
    """One feature's values of one part (k rows), converted, before any vocabulary:
    categorical ``strings`` pyarrow string [k] (null = missing); multi_categorical / text
    ``strings`` [nnz] (the values / words of every row in order) and ``lengths`` int64 [k];
    numeric ``numbers`` float64 [k]; timestamp int64 [k] unix seconds; dense float32 [k, S]."""

    strings: Any = None
    lengths: np.ndarray | None = None
    numbers: np.ndarray | None = None

    def __len__(self) -> int:
        if self.lengths is not None:
            return len(self.lengths)
        return len(self.strings) if self.numbers is None else len(self.numbers)


def _text(v: Any) -> str | None:
    """A categorical value as text (whole numbers without a decimal point); None when missing."""
    if _is_missing(v):
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) == 1:
        return _text(v[0])
    return str(v).strip()


def _dense(raw: _Raw, col: str, spec: FeatureSpec, setting: str) -> np.ndarray:
    out = np.zeros((len(raw.columns[col]), spec.size), np.float32)
    for i, v in enumerate(raw.columns[col]):
        try:
            parts = v.split(spec.separator) if isinstance(v, str) else list(v)
            row = [float(p) for p in parts]
        except (TypeError, ValueError):
            row = None
        if row is None or len(row) != spec.size or not np.isfinite(row).all():
            shown = "an empty value" if _is_missing(v) else repr(v)
            raise DataError(f"{raw.where}, {raw.at(i)}, column {col!r} ({setting}): {shown} is not {spec.size} "
                            f"numbers: give a list of {spec.size} floats (or text joined by {spec.separator!r}), or "
                            "fix the size")
        out[i] = row
    return out


def _lists(lists: Sequence[Sequence[str]]) -> Values:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    return Values(strings=pa.array([v for row in lists for v in row], pa.string()),
                  lengths=np.array([len(row) for row in lists], np.int64))


def _per_value(spec: FeatureSpec, raw: _Raw, setting: str) -> Values:
    """:class:`Values` converted value by value (the reference the vectorised path equals);
    DataError at the first bad value (file, line, column, setting, fix)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    col, t = spec.column, spec.type
    if t == "categorical":
        return Values(strings=pa.array([_text(v) for v in raw.columns[col]], pa.string()))
    if t == "multi_categorical":
        return _lists(_categories(raw, col, spec.separator))
    if t == "text":
        return _lists([_TOKEN.findall(("" if _is_missing(v) else str(v)).lower()) for v in raw.columns[col]])
    if t == "dense":
        return Values(numbers=_dense(raw, col, spec, setting))
    if t == "timestamp":
        if spec.time_format == "iso8601":
            return Values(numbers=_iso_times(raw, col, "", setting=setting))
        return Values(numbers=_numbers(raw, col, setting, "a unix time in seconds",
                                       f"fix the value, or set {setting.rpartition('.')[0]}.time_format: iso8601 "
                                       "for text times").astype(np.int64))
    return Values(numbers=_numbers(raw, col, setting, "a number", "fix the value or drop the feature"))


def _tokens(col: Any) -> Values | None:
    """Text -> the words of ``features._TOKEN`` in the lower-cased text: ASCII rows vectorised,
    the others (whose lower case Python and Arrow may spell differently) per value."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _decoded(col)
    if not _is_text(col.type):
        return None
    col = pc.cast(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col, pa.string())
    lists = pc.split_pattern_regex(pc.utf8_lower(col), pattern=_NOT_TOKEN)
    ascii_rows = np.asarray(pc.fill_null(pc.string_is_ascii(col), True).to_numpy(zero_copy_only=False), bool)
    if not ascii_rows.all():
        other = np.flatnonzero(~ascii_rows)
        words = pa.array([_TOKEN.findall(v.lower()) for v in col.take(pa.array(other)).to_pylist()],
                         lists.type)
        at = np.arange(len(col))
        at[other] = len(col) + np.arange(len(other))
        lists = pa.concat_arrays([lists, words]).take(pa.array(at))
    words = pc.list_flatten(lists)
    parent = np.asarray(pc.list_parent_indices(lists).to_numpy(), np.int64)
    keep = pc.not_equal(words, "")
    return Values(strings=words.filter(keep),
                  lengths=np.bincount(parent[np.asarray(keep.to_numpy(zero_copy_only=False), bool)],
                                      minlength=len(col)).astype(np.int64))


def _vectorised(spec: FeatureSpec, col: Any) -> Values | None:
    """:class:`Values` of a pyarrow column, vectorised; None when a value needs :func:`_per_value`."""
    t = spec.type
    if t == "categorical":
        strings = category_strings(col)
        return None if strings is None else Values(strings=strings)
    if t == "multi_categorical":
        split = split_lists(col, spec.separator)
        return None if split is None else Values(strings=split[0], lengths=split[1])
    if t == "text":
        return _tokens(col)
    if t == "numeric":
        x = _fast_numbers(col)
        return None if x is None else Values(numbers=x)
    if t == "timestamp":
        x = _fast_iso_times(col) if spec.time_format == "iso8601" else _fast_numbers(col)
        return None if x is None else Values(numbers=x.astype(np.int64))
    x = dense_rows(col, spec.size, spec.separator)
    return None if x is None else Values(numbers=x)


def convert(spec: FeatureSpec, part: Part, setting: str, *, vectorised: bool = True) -> Values:
    """One part's values of feature ``spec`` (``setting``: its dotted path in messages):
    vectorised where the part has a pyarrow Table and every value allows it, else per value
    (``vectorised=False``: always; what the vectorised path is tested against)."""
    if vectorised and part.arrow is not None:
        fast = _vectorised(spec, part.column(spec.column))
        if fast is not None:
            return fast
    return _per_value(spec, part.values(spec.column), setting)


def count_values(values: Values) -> tuple[Any, np.ndarray]:
    """(distinct values: pyarrow string, int64 counts) of one part's ``strings``, unordered."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    strings = values.strings.drop_null()
    if not len(strings):
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    counted = pc.value_counts(strings)
    return counted.field("values"), np.asarray(counted.field("counts").to_numpy(), np.int64)


def merge_counts(parts: Sequence[tuple[Any, np.ndarray]]) -> tuple[Any, np.ndarray]:
    """The counts of several parts (:func:`count_values`) summed per value."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    if len(parts) == 1:
        return parts[0]
    table = pa.table({"value": pa.concat_arrays([pa.array(v, pa.string()) for v, _ in parts] or
                                                [pa.array([], pa.string())]),
                      "count": np.concatenate([c for _, c in parts] or [np.zeros(0, np.int64)])})
    summed = table.group_by("value").aggregate([("count", "sum")])
    return summed.column("value").combine_chunks(), np.asarray(summed.column("count_sum").to_numpy(), np.int64)


def fit_vocabulary(spec: FeatureSpec, distinct: Any, counts: np.ndarray) -> tuple[Any, np.ndarray]:
    """(vocabulary: pyarrow string [V], int64 counts [V]) from every value's count: most frequent
    first, ties by value (code point order); text keeps the first ``max_size`` (0: 20000) words."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    distinct = distinct if isinstance(distinct, pa.Array) else pa.array(list(distinct), pa.string())
    counts = np.asarray(counts, np.int64)
    rank = np.empty(len(distinct), np.int64)
    rank[np.asarray(pc.sort_indices(distinct).to_numpy(), np.int64)] = np.arange(len(distinct))
    order = np.lexsort((rank, -counts))
    if spec.type == "text":
        order = order[: spec.max_size or TEXT_VOCABULARY]
    return distinct.take(pa.array(order, pa.int64())), counts[order]


def encode_values(spec: FeatureSpec, values: Values, vocabulary: Any) -> dict[str, np.ndarray]:
    """One part's arrays (module docstring; k rows): categorical ``codes`` int32 [k];
    multi_categorical ``codes`` int32 [nnz] and ``lengths`` int64 [k]; text ``codes`` int32
    [k, max_tokens]; numeric ``values`` float32 [k]; timestamp int64 [k]; dense float32 [k, S]."""
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    t = spec.type
    if t in _VOCABULARY_TYPES:
        index = np.asarray(pc.fill_null(pc.index_in(values.strings, value_set=vocabulary), -1).to_numpy(),
                           np.int64)
        if t == "categorical":
            return {"codes": (index + 1).astype(np.int32)}
        if t == "multi_categorical":
            return {"codes": (index + 1).astype(np.int32), "lengths": values.lengths}
        k, width = len(values.lengths), spec.max_tokens
        row = np.repeat(np.arange(k), values.lengths)
        position = np.arange(len(index)) - np.repeat(np.cumsum(values.lengths) - values.lengths, values.lengths)
        keep = position < width
        codes = np.zeros((k, width), np.int32)
        codes[row[keep], position[keep]] = np.where(index < 0, 1, index + 2)[keep]  # 1: a word outside it
        return {"codes": codes}
    if t == "numeric":
        return {"values": values.numbers.astype(np.float32)}
    return {"values": values.numbers}


def _quantiles(x: np.ndarray, buckets: int) -> list[float]:
    if buckets <= 1 or not len(x):
        return []
    return [float(b) for b in np.unique(np.quantile(x, np.linspace(0.0, 1.0, buckets + 1)[1:-1]))]


def column_stats(spec: FeatureSpec, x: np.ndarray) -> dict[str, Any]:
    """The statistics of a whole numeric (float64 [N], as converted) or timestamp (int64 [N])
    column; {} for the other types."""
    if spec.type == "timestamp":
        x = np.asarray(x).astype(np.float64)
        return {"mean": float(x.mean()) if len(x) else 0.0, "std": float(x.std() or 1.0) if len(x) else 1.0,
                "min": float(x.min()) if len(x) else 0.0, "max": float(x.max()) if len(x) else 0.0,
                "boundaries": _quantiles(x, spec.buckets or _TIME_BUCKETS)}
    if spec.type != "numeric":
        return {}
    z = np.log1p(np.maximum(x, 0.0)) if spec.normalize == "log" else x
    return {"mean": float(z.mean()) if len(z) and spec.normalize != "none" else 0.0,
            "std": float(z.std() or 1.0) if len(z) and spec.normalize != "none" else 1.0,
            "boundaries": _quantiles(z, spec.buckets)}


def offsets_of(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    """int64 [k]: the CSR ends ``start + cumsum(lengths)`` (a whole column's offsets are 0 then these)."""
    return (start + np.cumsum(np.asarray(lengths, np.int64))).astype(np.int64)


def column_of(spec: FeatureSpec, parts: Sequence[Values]) -> FeatureColumn:
    """The :class:`FeatureColumn` of a whole table from its parts' values, in order."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    t = spec.type
    vocab, counts = pa.array([], pa.string()), np.zeros(0, np.int64)
    if t in _VOCABULARY_TYPES:
        vocab, counts = fit_vocabulary(spec, *merge_counts([count_values(v) for v in parts]))
    encoded = [encode_values(spec, v, vocab) for v in parts]
    vocabulary = vocab.to_numpy(zero_copy_only=False).astype(object)
    if t == "multi_categorical":
        lengths = np.concatenate([e["lengths"] for e in encoded] or [np.zeros(0, np.int64)])
        return FeatureColumn(spec, vocabulary, counts, offsets=np.concatenate([[0], offsets_of(lengths)]).astype(np.int64),
                             codes=np.concatenate([e["codes"] for e in encoded] or [np.zeros(0, np.int32)]))
    if t in ("categorical", "text"):
        empty = np.zeros((0, spec.max_tokens) if t == "text" else 0, np.int32)
        return FeatureColumn(spec, vocabulary, counts, codes=np.concatenate([e["codes"] for e in encoded] or [empty]))
    empty = {"numeric": np.zeros(0, np.float32), "timestamp": np.zeros(0, np.int64),
             "dense": np.zeros((0, spec.size), np.float32)}[t]
    stats = column_stats(spec, np.concatenate([v.numbers for v in parts])) if t != "dense" and parts else \
        column_stats(spec, empty)
    return FeatureColumn(spec, vocabulary, counts, stats=stats,
                         values=np.concatenate([e["values"] for e in encoded] or [empty]))


def _aligned(column: FeatureColumn, index: np.ndarray) -> FeatureColumn:
    """``column`` (one entry per table row) re-ordered to the codes: ``index`` int64 [N] the table row
    of each code, -1 when the table lacks it (missing values)."""
    t = column.spec.type
    if t == "multi_categorical":
        off = column.offsets
        lengths = np.where(index >= 0, np.diff(off)[np.maximum(index, 0)], 0)
        codes = [column.codes[off[i]:off[i + 1]] for i in index if i >= 0]
        return dataclasses.replace(column, offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                                   codes=np.concatenate(codes).astype(np.int32) if codes else np.zeros(0, np.int32))
    taken = column.take(index)
    if t == "categorical":  # take() maps to the kept vocabulary; keep the raw codes here
        taken = np.where(index >= 0, np.asarray(column.codes)[np.maximum(index, 0)], 0).astype(np.int32)
    if t in ("categorical", "text"):
        return dataclasses.replace(column, codes=taken)
    return dataclasses.replace(column, values=taken)


def feature_needed(spec: SourceSpec, table: str, where: str) -> dict[str, str]:
    """``{"@<where>.features[i].column": column}`` of the features of ``table`` (messages name the setting)."""
    return {f"@{where}.features[{i}].column": f.column for i, f in enumerate(spec.features) if f.table == table}


TableParts = Callable[[str, Mapping[str, str]], list[Part]]
"""``(table, needed columns) -> its parts``: the files of the spec, or frames (from_frame)."""


def side_features(spec: SourceSpec, where: str, *, item_ids: np.ndarray, user_ids: np.ndarray,
                  parts: TableParts | None = None, vectorised: bool = True) -> dict[str, FeatureColumn]:
    """The features of the items and users tables, aligned with the item codes (``item_ids`` str
    [m], the catalogue in code order) and user codes (``user_ids`` str [U]). ``parts``: where the
    tables come from (default: the files of ``spec``)."""
    out: dict[str, FeatureColumn] = {}
    for table, ids in (("items", item_ids), ("users", user_ids)):
        needed = feature_needed(spec, table, where)
        if not needed:
            continue
        source = getattr(spec, table)
        w = f"{where}.{table}"
        tparts = parts(table, {"id": source.columns.id, **needed}) if parts is not None else [
            read_part(f, source, {"id": source.columns.id, **needed}, w) for f in resolve_paths(source.path, f"{w}.path")]
        table_ids = np.concatenate([_ids(p.values(source.columns.id), source.columns.id, f"{w}.columns.id")
                                    for p in tparts])
        row_of = {v: i for i, v in enumerate(table_ids)}
        index = np.array([row_of.get(str(v), -1) for v in ids], np.int64)
        for i, f in enumerate(spec.features):
            if f.table == table:
                setting = f"{where}.features[{i}].column"
                out[f.name] = _aligned(column_of(f, [convert(f, p, setting, vectorised=vectorised) for p in tparts]),
                                       index)
    return out


def interaction_values(spec: SourceSpec, part: Part | None, where: str, *,
                       vectorised: bool = True) -> dict[str, Values]:
    """The interactions table's features (name -> :class:`Values`) of one part (a shard's kept rows)."""
    return {f.name: convert(f, part, f"{where}.features[{i}].column", vectorised=vectorised)
            for i, f in enumerate(spec.features) if f.table == "interactions"}


def interaction_part(spec: SourceSpec, file: Any, rows: np.ndarray, where: str) -> Part | None:
    """The feature columns of one interactions file, its kept rows ``rows``; None without such features."""
    needed = feature_needed(spec, "interactions", where)
    return read_part(file, spec.interactions, needed, f"{where}.interactions", rows) if needed else None


def encode_features(spec: SourceSpec, where: str, *, item_ids: np.ndarray, user_ids: np.ndarray,
                    interaction_rows: list[tuple[Any, np.ndarray]], vectorised: bool = True) -> dict[str, FeatureColumn]:
    """Every feature of ``spec`` read from its table and aligned with the codes.

    Args:
        item_ids: str [m] the catalogue in code order (items absent from the items table last).
        user_ids: str [U] the users in code order.
        interaction_rows: per interactions file in reading order, (file, int64 positions of its kept
            rows among the file's rows), the prepared rows being their concatenation.
        vectorised: False converts every value in Python (the reference; tests compare the bytes).

    Raises:
        DataError: a missing column, a value of the wrong type (file, line, column, setting, fix).
    """
    if not spec.features:
        return {}
    out = side_features(spec, where, item_ids=item_ids, user_ids=user_ids, vectorised=vectorised)
    shards = [interaction_values(spec, interaction_part(spec, file, rows, where), where, vectorised=vectorised)
              for file, rows in interaction_rows] if feature_needed(spec, "interactions", where) else []
    out.update({f.name: column_of(f, [s[f.name] for s in shards]) for f in spec.features if f.table == "interactions"})
    return {f.name: out[f.name] for f in spec.features}


# --------------------------------------------------------------------------- files

_PARTS = ("codes", "offsets", "values")


def feature_entry(spec: FeatureSpec, shapes: Mapping[str, tuple[str, Sequence[int]]],
                  stats: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's entry of one feature: ``shapes`` part -> (dtype name, shape) of its arrays."""
    return {"type": spec.type, "table": spec.table,
            "arrays": {part: {"file": f"features/{spec.name}.{part}.npy", "dtype": dtype,
                              "shape": [int(x) for x in shape]} for part, (dtype, shape) in shapes.items()},
            "vocabulary": f"features/{spec.name}.vocabulary.parquet", "stats": dict(stats)}


def save_vocabulary(name: str, vocabulary: Sequence[str], counts: np.ndarray, folder: Path) -> None:
    """Writes ``<folder>/<name>.vocabulary.parquet`` (value string, count int64)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    pq.write_table(pa.table({"value": pa.array([str(v) for v in vocabulary], pa.string()),
                             "count": pa.array(np.asarray(counts, np.int64), pa.int64())}),
                   folder / f"{name}.vocabulary.parquet")


def save_features(features: dict[str, FeatureColumn], directory: Path) -> dict[str, Any]:
    """Writes ``features/<name>.<part>.npy`` and ``features/<name>.vocabulary.parquet`` (value,
    count) under ``directory`` (the folder made when there are features); returns the manifest's
    ``features`` entry (name -> :func:`feature_entry`)."""
    manifest: dict[str, Any] = {}
    if not features:
        return manifest
    folder = directory / "features"
    folder.mkdir(exist_ok=True)
    for name, f in features.items():
        shapes = {}
        for part in _PARTS:
            value = getattr(f, part)
            if value is not None:
                np.save(folder / f"{name}.{part}.npy", np.ascontiguousarray(value))
                shapes[part] = (value.dtype.name, value.shape)
        save_vocabulary(name, f.vocabulary, f.counts, folder)
        manifest[name] = feature_entry(f.spec, shapes, f.stats)
    return manifest


def load_features(directory: Path, manifest: dict[str, Any], specs: Sequence[FeatureSpec]) -> dict[str, FeatureColumn]:
    """The features :func:`save_features` wrote (arrays memory-mapped)."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    out = {}
    for spec in specs:
        entry = manifest[spec.name]
        vocab = pq.read_table(directory / entry["vocabulary"])
        arrays = {part: np.load(directory / a["file"], mmap_mode="r") for part, a in entry["arrays"].items()}
        out[spec.name] = FeatureColumn(spec, vocab.column("value").to_numpy(zero_copy_only=False).astype(object),
                                       vocab.column("count").to_numpy().astype(np.int64), stats=dict(entry["stats"]),
                                       **arrays)
    return out
