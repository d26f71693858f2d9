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
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfrs_lab.data.features import _TOKEN, encode_titles
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.readers import _categories, _ids, _is_missing, _iso_times, _numbers, _Raw, _read_file, _read_table
from tfrs_lab.data.spec import FeatureSpec, SourceSpec

__all__ = ["FeatureColumn", "ModelFeature", "TEXT_VOCABULARY", "encode_features", "load_features", "save_features"]

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


def _vocabulary(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(values object [V] most frequent first, ties by value; counts int64 [V]; value -> code i + 1)."""
    ranked = sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = np.array([v for v, _ in ranked], dtype=object)
    return vocab, np.array([c for _, c in ranked], np.int64), {v: i + 1 for i, (v, _) in enumerate(ranked)}


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


def _quantiles(x: np.ndarray, buckets: int) -> list[float]:
    if buckets <= 1 or not len(x):
        return []
    return [float(b) for b in np.unique(np.quantile(x, np.linspace(0.0, 1.0, buckets + 1)[1:-1]))]


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


def _encode_column(spec: FeatureSpec, raws: list[_Raw], setting: str) -> FeatureColumn:
    """The values of ``raws`` (the table's rows in order) encoded; ``setting``: the feature's dotted path."""
    col, t = spec.column, spec.type
    empty = np.zeros(0, object), np.zeros(0, np.int64)
    if t == "categorical":
        values = [_text(v) for r in raws for v in r.columns[col]]
        vocab, counts, index = _vocabulary([v for v in values if v is not None])
        codes = np.array([index.get(v, 0) if v is not None else 0 for v in values], np.int32)
        return FeatureColumn(spec, vocab, counts, codes=codes)
    if t == "multi_categorical":
        lists = [x for r in raws for x in _categories(r, col, spec.separator)]
        vocab, counts, index = _vocabulary([v for row in lists for v in row])
        offsets = np.concatenate([[0], np.cumsum([len(row) for row in lists])]).astype(np.int64)
        codes = np.array([index[v] for row in lists for v in row], np.int32)
        return FeatureColumn(spec, vocab, counts, codes=codes, offsets=offsets)
    if t == "text":
        texts = np.array(["" if _is_missing(v) else str(v) for r in raws for v in r.columns[col]], dtype=object)
        ranked = sorted(Counter(w for x in texts for w in _TOKEN.findall(x.lower())).items(),
                        key=lambda kv: (-kv[1], kv[0]))[: spec.max_size or TEXT_VOCABULARY]
        words = {w: i + 2 for i, (w, _) in enumerate(ranked)}
        return FeatureColumn(spec, np.array([w for w, _ in ranked], dtype=object),
                             np.array([c for _, c in ranked], np.int64),
                             codes=encode_titles(texts, words, spec.max_tokens))
    if t == "dense":
        values = np.concatenate([_dense(r, col, spec, setting) for r in raws]) if raws else np.zeros((0, spec.size))
        return FeatureColumn(spec, *empty, values=values.astype(np.float32))
    if t == "timestamp":
        parts = []
        for r in raws:
            if spec.time_format == "iso8601":
                parts.append(_iso_times(r, col, "", setting=setting))
            else:
                parts.append(_numbers(r, col, setting, "a unix time in seconds",
                                      f"fix the value, or set {setting.rpartition('.')[0]}.time_format: iso8601 "
                                      "for text times").astype(np.int64))
        ts = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        x = ts.astype(np.float64)
        stats = {"mean": float(x.mean()) if len(x) else 0.0, "std": float(x.std() or 1.0) if len(x) else 1.0,
                 "min": float(x.min()) if len(x) else 0.0, "max": float(x.max()) if len(x) else 0.0,
                 "boundaries": _quantiles(x, spec.buckets or _TIME_BUCKETS)}
        return FeatureColumn(spec, *empty, values=ts, stats=stats)
    # numeric
    x = np.concatenate([_numbers(r, col, setting, "a number", "fix the value or drop the feature") for r in raws]) \
        if raws else np.zeros(0)
    z = np.log1p(np.maximum(x, 0.0)) if spec.normalize == "log" else x
    stats = {"mean": float(z.mean()) if len(z) and spec.normalize != "none" else 0.0,
             "std": float(z.std() or 1.0) if len(z) and spec.normalize != "none" else 1.0,
             "boundaries": _quantiles(z, spec.buckets)}
    return FeatureColumn(spec, *empty, values=x.astype(np.float32), stats=stats)


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


def _feature_needed(spec: SourceSpec, table: str, where: str) -> dict[str, str]:
    return {f"@{where}.features[{i}].column": f.column for i, f in enumerate(spec.features) if f.table == table}


def encode_features(spec: SourceSpec, where: str, *, item_ids: np.ndarray, user_ids: np.ndarray,
                    interaction_rows: list[tuple[Path, np.ndarray]]) -> dict[str, FeatureColumn]:
    """Every feature of ``spec`` read from its table and aligned with the codes.

    Args:
        item_ids: str [m] the catalogue in code order (items absent from the items table last).
        user_ids: str [U] the users in code order.
        interaction_rows: per interactions file in reading order, (file, int64 positions of its kept
            rows among the file's rows), the prepared rows being their concatenation.

    Raises:
        DataError: a missing column, a value of the wrong type (file, line, column, setting, fix).
    """
    out: dict[str, FeatureColumn] = {}
    if not spec.features:
        return out
    for table, ids in (("items", item_ids), ("users", user_ids)):
        needed = _feature_needed(spec, table, where)
        if not needed:
            continue
        source = getattr(spec, table)
        raws = _read_table(source, {"id": source.columns.id, **needed}, f"{where}.{table}")
        table_ids = np.concatenate([_ids(r, source.columns.id, f"{where}.{table}.columns.id") for r in raws])
        row_of = {v: i for i, v in enumerate(table_ids)}
        index = np.array([row_of.get(str(v), -1) for v in ids], np.int64)
        for i, f in enumerate(spec.features):
            if f.table == table:
                out[f.name] = _aligned(_encode_column(f, raws, f"{where}.features[{i}].column"), index)
    needed = _feature_needed(spec, "interactions", where)
    if needed:
        raws = []
        for file, rows in interaction_rows:
            raw = _read_file(file, spec.interactions, needed, f"{where}.interactions")
            raws.append(dataclasses.replace(raw, columns={c: v[rows] for c, v in raw.columns.items()}))
        for i, f in enumerate(spec.features):
            if f.table == "interactions":
                out[f.name] = _encode_column(f, raws, f"{where}.features[{i}].column")
    return {f.name: out[f.name] for f in spec.features}


# --------------------------------------------------------------------------- files

_PARTS = ("codes", "offsets", "values")


def save_features(features: dict[str, FeatureColumn], directory: Path) -> dict[str, Any]:
    """Writes ``features/<name>.<part>.npy`` and ``features/<name>.vocabulary.parquet`` (value,
    count) under ``directory``; returns the manifest's ``features`` entry (name -> type, table,
    arrays, stats)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    manifest: dict[str, Any] = {}
    if not features:
        return manifest
    folder = directory / "features"
    folder.mkdir()
    for name, f in features.items():
        arrays = {}
        for part in _PARTS:
            value = getattr(f, part)
            if value is not None:
                np.save(folder / f"{name}.{part}.npy", np.ascontiguousarray(value))
                arrays[part] = {"file": f"features/{name}.{part}.npy", "dtype": value.dtype.name,
                                "shape": [int(x) for x in value.shape]}
        pq.write_table(pa.table({"value": pa.array([str(v) for v in f.vocabulary], pa.string()),
                                 "count": pa.array(f.counts, pa.int64())}), folder / f"{name}.vocabulary.parquet")
        manifest[name] = {"type": f.spec.type, "table": f.spec.table, "arrays": arrays,
                          "vocabulary": f"features/{name}.vocabulary.parquet", "stats": f.stats}
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
