"""The prepared dataset: your own data read once into compact integer-encoded columns, cached on
disk by a fingerprint of the source files' content, the spec and the format version
(docs/own-data.md#the-prepared-dataset).

:func:`prepare_dataset` reads the files a :class:`~tfrs_lab.data.spec.SourceSpec` names (the same readers
and the same one-line :class:`DataError` messages as :func:`~tfrs_lab.data.readers.read_source`),
encodes the interactions with ``pyarrow.compute`` (``unique`` + ``index_in``; no Python object per
interaction) and writes a directory ``<cache_dir>/<name>-<fingerprint[:16]>/``::

    manifest.json            format, format_version, fingerprint, name, spec, sources (path, bytes,
                             sha256), counts, arrays (file, dtype, shape)
    user.npy                 int32 [n]   user code (row of users.parquet)
    item.npy                 int32 [n]   item code (row of items.parquet)
    rating.npy               float32 [n] the rating / weight (1.0 without a rating column)
    timestamp.npy            int64 [n]   unix seconds (the row number without a time column)
    sequence_offsets.npy     int64 [U+1] user u's interactions are sequence_rows[offsets[u]:offsets[u+1]]
    sequence_rows.npy        int64 [n]   row indices ordered by (user, timestamp, item id as an integer)
    users.parquet            id (string), count (int64)             U rows, ids in ascending string order
    items.parquet            id, count, text (string), categories (list<string>)   m rows: the catalogue

Rows keep the source order (binary negatives and dropped unknown items removed), so ``to_data()``
equals ``read_source`` column for column. ``sequence_rows`` is
:func:`tfrs_lab.data.splits.sequence_order` of those rows (users in ascending string order = code
order), so histories and sequence inputs are slices, never a per-row history matrix. Fixed-width
columns are ``.npy`` (``np.load(mmap_mode="r")``: zero-copy, paged in on demand); the
variable-length text of the vocabularies and the catalogue is Parquet.

The items and users tables (catalogue-sized) go through the readers' per-row conversion; only the
interactions are vectorised. A value the vectorised checks refuse is handed to the readers' own
conversion, which raises the one-line error naming the file, line and column (or accepts a value
only Python parses, such as ``1_000``).

Splits are not stored: they are computed after loading (:mod:`tfrs_lab.data.splits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.data.movielens import DataError, MovieLensData, default_data_dir
from tfrs_lab.data.readers import (_absent_users, _binary_kept, _catalogue, _interactions, _loaded, _missing_items,
                                   _multi_hot, _read_file_table, _read_table, _read_tfrecord, _table_raw,
                                   _user_table, resolve_paths)
from tfrs_lab.data.spec import InteractionColumns, SourceSpec
from tfrs_lab.data.splits import _movie_order_key
from tfrs_lab.staging import staged_directory

__all__ = ["FORMAT_VERSION", "MANIFEST", "PREPARED_DIR", "PreparedDataset", "fingerprint", "load_prepared",
           "prepare_dataset"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the directory layout; part of the fingerprint (bump it when the layout changes)."""
PREPARED_DIR = "prepared"
"""Default cache folder under the data dir (``$TFRS_LAB_DATA_DIR`` or ``data.data_dir``)."""
MANIFEST = "manifest.json"
_FORMAT = "tfrs_lab.prepared"
_ARRAYS = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64,
           "sequence_offsets": np.int64, "sequence_rows": np.int64}
_USERS, _ITEMS = "users.parquet", "items.parquet"
_BLANK = r"^[\s\x0b\x1c-\x1f\x85\p{Z}]*$"  # what str.strip() empties: an id needs a per-row check


# --------------------------------------------------------------------------- the dataset


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared dataset directory, loaded (arrays memory-mapped read-only).

    Attributes:
        path: the directory. manifest: ``manifest.json``.
        user, item: int32 ``[n]`` codes into ``user_ids`` / ``item_ids``.
        rating: float32 ``[n]``. timestamp: int64 ``[n]`` unix seconds.
        sequence_offsets: int64 ``[U+1]``; sequence_rows: int64 ``[n]`` (see the module docstring).
        user_ids: object ``[U]`` of ``str`` (ascending); user_counts: int64 ``[U]`` interactions each.
        item_ids: object ``[m]`` of ``str`` (the catalogue order); item_counts: int64 ``[m]`` (0 for
        catalogue items nobody interacted with); item_text: object ``[m]`` of ``str``;
        item_categories: ``m`` lists of category names.
    """

    path: Path
    manifest: dict[str, Any]
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    sequence_offsets: np.ndarray
    sequence_rows: np.ndarray
    user_ids: np.ndarray
    user_counts: np.ndarray
    item_ids: np.ndarray
    item_counts: np.ndarray
    item_text: np.ndarray
    item_categories: list[list[str]]

    @property
    def name(self) -> str:
        """The dataset's name (``data.source.name``)."""
        return self.manifest["name"]

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the sources' content, the spec and :data:`FORMAT_VERSION`."""
        return self.manifest["fingerprint"]

    def sequence(self, user: int) -> np.ndarray:
        """Row indices (int64 ``[k]``) of user code ``user``'s interactions, oldest first."""
        return self.sequence_rows[self.sequence_offsets[user]:self.sequence_offsets[user + 1]]

    def to_data(self) -> MovieLensData:
        """The :class:`MovieLensData` every task consumes today (equal to what
        :func:`~tfrs_lab.data.readers.read_source` returns for the same spec)."""
        ratings = {"user_id": self.user_ids[self.user], "movie_id": self.item_ids[self.item],
                   "user_rating": np.array(self.rating), "timestamp": np.array(self.timestamp)}
        genres, _ = _multi_hot(self.item_categories)
        movies = {"movie_id": self.item_ids.copy(), "movie_title": self.item_text.copy(), "movie_genres": genres}
        return MovieLensData(dataset=self.name, ratings=ratings, movies=movies)


def load_prepared(path: str | os.PathLike) -> PreparedDataset:
    """Opens a prepared dataset directory; DataError when it is not one or has another format version."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    path = Path(path)
    manifest = _read_manifest(path)
    if manifest is None:
        raise DataError(f"{path} is not a prepared dataset (no readable {MANIFEST}): prepare it with "
                        "python -m tfrs_lab.data prepare")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} holds prepared format {manifest.get('format_version')}, this version reads "
                        f"{FORMAT_VERSION}: delete it and prepare again")
    arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
    users = pq.read_table(path / _USERS)
    items = pq.read_table(path / _ITEMS)
    return PreparedDataset(
        path=path, manifest=manifest, **arrays,
        user_ids=users.column("id").to_numpy(zero_copy_only=False).astype(object),
        user_counts=users.column("count").to_numpy(),
        item_ids=items.column("id").to_numpy(zero_copy_only=False).astype(object),
        item_counts=items.column("count").to_numpy(),
        item_text=items.column("text").to_numpy(zero_copy_only=False).astype(object),
        item_categories=items.column("categories").to_pylist())


def _complete(path: Path, fp: str) -> bool:
    """Whether ``path`` holds the prepared dataset of fingerprint ``fp`` in this format version."""
    manifest = _read_manifest(path)
    return (manifest is not None and manifest.get("fingerprint") == fp
            and manifest.get("format_version") == FORMAT_VERSION)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == _FORMAT else None


# --------------------------------------------------------------------------- the cache


def _sources(spec: SourceSpec, where: str) -> list[tuple[str, Path]]:
    """(table, file) of every source file, in reading order; DataError for a missing one."""
    out = []
    for table in ("interactions", "items", "users"):
        source = getattr(spec, table)
        if source is not None:
            out += [(table, f) for f in resolve_paths(source.path, f"{where}.{table}.path")]
    return out


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(spec: SourceSpec, *, where: str = "data.source") -> tuple[str, list[dict[str, Any]]]:
    """(SHA-256 hex, the sources) of ``spec``: every source file's content (streamed), the spec and
    :data:`FORMAT_VERSION`. ``sources``: one ``{"table", "path", "bytes", "sha256"}`` per file."""
    sources = [{"table": t, "path": str(f), "bytes": f.stat().st_size, "sha256": _file_sha256(f)}
               for t, f in _sources(spec, where)]
    key = json.dumps({"format_version": FORMAT_VERSION, "spec": dataclasses.asdict(spec), "sources": sources},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest(), sources


def prepare_dataset(spec: SourceSpec, *, cache_dir: str | os.PathLike | None = None,
                    where: str = "data.source") -> PreparedDataset:
    """The prepared dataset of ``spec``: reused from ``cache_dir`` when its fingerprint is there
    (one log line says so), else read, encoded and written there atomically.

    Args:
        spec: the source spec (``data.source``).
        cache_dir: the folder of prepared datasets; default ``default_data_dir()/prepared``.
        where: the spec's dotted path in messages.

    Raises:
        DataError: one line naming the file, column, line and fix; nothing is written then.
    """
    fp, sources = fingerprint(spec, where=where)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_data_dir() / PREPARED_DIR
    target = root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec.name)[:40]}-{fp[:16]}"
    if _complete(target, fp):
        logger.info("prepared %s: reusing %s (same fingerprint %s)", spec.name, target, fp[:16])
        return load_prepared(target)
    encoded = _encode(spec, where)  # every read and check; nothing is written before it succeeds
    if target.exists() and not _complete(target, fp):  # e.g. hand-edited (a concurrent preparer's is kept)
        logger.warning("%s is not a complete prepared dataset: preparing it again", target)
        shutil.rmtree(target)
    manifest = {"format": _FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fp, "name": spec.name,
                "spec": dataclasses.asdict(spec), "sources": sources, "counts": encoded.counts(),
                "arrays": {k: {"file": f"{k}.npy", "dtype": np.dtype(t).name, "shape": list(encoded.arrays[k].shape)}
                           for k, t in _ARRAYS.items()},
                "tables": {"users": _USERS, "items": _ITEMS}}
    with staged_directory(target, replace=False) as stage:
        _write(encoded, manifest, stage)
    logger.info("prepared %s into %s", spec.name, target)
    return load_prepared(target)


# --------------------------------------------------------------------------- reading and encoding


@dataclasses.dataclass
class _Encoded:
    arrays: dict[str, np.ndarray]
    users: Any  # pyarrow Table: id, count
    items: Any  # pyarrow Table: id, count, text, categories
    num_categories: int

    def counts(self) -> dict[str, int]:
        return {"interactions": int(self.arrays["user"].shape[0]), "users": self.users.num_rows,
                "items": self.items.num_rows, "categories": self.num_categories}


def _write(encoded: _Encoded, manifest: dict[str, Any], stage: Path) -> None:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    for k, dtype in _ARRAYS.items():
        np.save(stage / f"{k}.npy", np.ascontiguousarray(encoded.arrays[k], dtype=dtype))
    pq.write_table(encoded.users, stage / _USERS)
    pq.write_table(encoded.items, stage / _ITEMS)
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _decoded(col: Any) -> Any:
    """A dictionary-encoded column (e.g. a pandas categorical in Parquet) as its plain values."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _is_text(t: Any) -> bool:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _fast_ids(col: Any) -> Any:
    """An id column -> chunked pyarrow strings (``51`` for 51 and 51.0); None when a value needs the
    readers' per-row check (nulls, empty text, fractions, other types)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _decoded(col)
    if col.null_count:
        return None
    t = col.type
    try:
        if pa.types.is_integer(t):
            return pc.cast(pc.cast(col, pa.int64()), pa.string())
        if pa.types.is_floating(t):
            v = np.asarray(col.to_numpy(), dtype=np.float64)
            if not (np.isfinite(v) & (v == np.round(v))).all():
                return None
            return pa.chunked_array([pc.cast(pa.array(v.astype(np.int64)), pa.string())])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if _is_text(t) and not pc.any(pc.match_substring_regex(col, _BLANK)).as_py():
        return pc.cast(col, pa.string())
    return None


def _fast_numbers(col: Any, *, binary: bool = False) -> np.ndarray | None:
    """A number column -> float64 ``[rows]`` (text trimmed; ``binary``: true/false as 1/0); None when a
    value is missing, not finite or not a number."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _decoded(col)
    if col.null_count:
        return None
    t = col.type
    try:
        if _is_text(t):
            col = pc.utf8_trim_whitespace(col)
            if binary:
                low = pc.utf8_lower(col)
                col = pc.if_else(pc.equal(low, "true"), "1", pc.if_else(pc.equal(low, "false"), "0", col))
            col = pc.cast(col, pa.float64())
        elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            col = pc.cast(col, pa.float64())
        else:
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    v = np.asarray(col.to_numpy(), dtype=np.float64)
    return v if np.isfinite(v).all() else None


def _fast_iso_times(col: Any) -> np.ndarray | None:
    """ISO-8601 text -> int64 unix seconds, as the readers cast it (whole column at once); None otherwise."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    if col.null_count or not _is_text(col.type):
        return None
    col = pc.utf8_trim_whitespace(col)
    for ts in (pa.timestamp("s", tz="UTC"), pa.timestamp("s")):
        try:
            return np.asarray(pc.cast(pc.cast(col, ts), pa.int64()).to_numpy(), dtype=np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def _fast_interactions(table: Any, c: InteractionColumns) -> tuple | None:
    """(users, items: chunked strings; rating, time: float64 / int64 ``[rows]`` or None) of one file,
    vectorised; None when any value needs the readers' per-row conversion (which names it)."""
    users, items = _fast_ids(table.column(c.user)), _fast_ids(table.column(c.item))
    if users is None or items is None:
        return None
    rating = time = None
    if c.rating is not None:
        rating = _fast_numbers(table.column(c.rating), binary=c.label == "binary")
        if rating is None or (c.label == "binary" and ((rating != 0) & (rating != 1)).any()):
            return None
    if c.time is not None:
        if c.time_format == "iso8601":
            time = _fast_iso_times(table.column(c.time))
        else:
            number = _fast_numbers(table.column(c.time))
            time = None if number is None else number.astype(np.int64)
        if time is None:
            return None
    return users, items, rating, time


def _interaction_file(file: Path, spec: SourceSpec, where: str) -> tuple:
    """One interactions file -> (users, items, rating, time) as in :func:`_fast_interactions`."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    c = spec.interactions.columns
    needed = c.columns()
    read = _read_file_table(file, spec.interactions, needed, where)
    if read is not None:
        fast = _fast_interactions(read[0], c)
        if fast is not None:
            return fast
        raw = _table_raw(str(file), *read, needed)
    else:
        raw = _read_tfrecord(file, needed, where)
    if not len(raw.columns[c.user]):
        return pa.chunked_array([], pa.string()), pa.chunked_array([], pa.string()), np.empty(0), np.empty(0, np.int64)
    cols = _interactions([raw], c, where)  # the readers' own conversion: raises their one-line error
    return (pa.chunked_array([pa.array(cols["user_id"], pa.string())]),
            pa.chunked_array([pa.array(cols["movie_id"], pa.string())]),
            cols["user_rating"].astype(np.float64) if c.rating is not None else None,
            cols["timestamp"] if c.time is not None else None)


def _codes(values: Any) -> tuple[np.ndarray, Any]:
    """Chunked strings ``[n]`` -> (int32 codes ``[n]``, the distinct values in ascending order)."""
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    distinct = pc.unique(values)
    distinct = distinct.take(pc.sort_indices(distinct))
    if not len(values):
        return np.empty(0, np.int32), distinct
    return np.asarray(pc.index_in(values, value_set=distinct).to_numpy(), dtype=np.int32), distinct


def _compact(codes: np.ndarray, vocabulary: Any) -> tuple[np.ndarray, Any]:
    """Drops vocabulary entries no code uses (after rows were removed); keeps the order."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    used = np.bincount(codes, minlength=len(vocabulary)) > 0
    if used.all():
        return codes, vocabulary
    new = (np.cumsum(used) - 1).astype(np.int32)
    return new[codes], vocabulary.filter(pa.array(used))


def _sequence_rows(user: np.ndarray, timestamp: np.ndarray, item_rank: np.ndarray, users: int,
                   items: int) -> np.ndarray:
    """:func:`tfrs_lab.data.splits.sequence_order` from codes: int64 ``[n]`` rows by (user code,
    timestamp, item rank), stable. One stable argsort of a packed int64 key when (user, time,
    item) fit in 63 bits (timestamps as offsets, else as dense ranks), ``np.lexsort`` otherwise."""
    if not len(user):
        return np.empty(0, np.int64)
    ts = timestamp - timestamp.min()
    span = int(ts.max()) + 1
    if users * span * items >= 1 << 63:
        distinct, ts = np.unique(timestamp, return_inverse=True)
        span = len(distinct)
    if users * span * items >= 1 << 63:
        return np.lexsort((item_rank, timestamp, user)).astype(np.int64)
    key = (user.astype(np.int64) * span + ts.astype(np.int64).reshape(-1)) * items + item_rank
    return np.argsort(key, kind="stable").astype(np.int64)


def _join_catalogue(item: np.ndarray, item_vocab: Any, catalogue: tuple, keep: np.ndarray | None,
                    missing_items: str) -> tuple[np.ndarray, Any, np.ndarray, list, np.ndarray | None]:
    """Interactions' items (int32 codes ``[n]`` into ``item_vocab``) against the items table.

    Returns (int32 catalogue position of each ``item_vocab`` entry, -1 for one only dropped rows
    name; the catalogue's ids (pyarrow strings), texts, categories, with missing items appended
    under ``keep``; the rows to keep (bool ``[n]``, or None for all)). Logs as the readers do.
    """
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    ids, text, cats = catalogue
    ids = pa.array(ids, pa.string())
    position = np.array(pc.index_in(item_vocab, value_set=ids).fill_null(-1).to_numpy(), dtype=np.int32)
    absent_rows = position[item] < 0
    if keep is not None:
        absent_rows &= keep
    if not absent_rows.any():
        return position, ids, text, cats, keep
    extra = np.zeros(len(item_vocab), bool)
    extra[item[absent_rows]] = True  # distinct absent items of kept rows, ascending
    kept = len(item) if keep is None else int(keep.sum())
    _missing_items(int(absent_rows.sum()), int(extra.sum()), missing_items,
                   kept if missing_items == "keep" else kept - int(absent_rows.sum()))
    if missing_items == "drop":
        return position, ids, text, cats, ~absent_rows if keep is None else keep & ~absent_rows
    position[extra] = len(ids) + np.arange(int(extra.sum()), dtype=np.int32)
    return (position, pa.concat_arrays([ids, item_vocab.filter(pa.array(extra))]),
            np.concatenate([text, np.full(int(extra.sum()), "", dtype=object)]), list(cats) + [[]] * int(extra.sum()),
            keep)


def _encode(spec: SourceSpec, where: str) -> _Encoded:
    """Reads and checks every table of ``spec`` (the readers' order and messages) and encodes it."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    c = spec.interactions.columns
    w = f"{where}.interactions"
    files = resolve_paths(spec.interactions.path, f"{w}.path")
    parts = [_interaction_file(f, spec, w) for f in files]
    users = pa.chunked_array([ch for p in parts for ch in p[0].chunks], pa.string())
    items = pa.chunked_array([ch for p in parts for ch in p[1].chunks], pa.string())
    n = len(users)
    if n == 0:
        raise DataError(f"{', '.join(map(str, files))}: the interactions table has no rows: check {w}.path")
    rating = (np.concatenate([p[2] for p in parts]).astype(np.float32) if c.rating is not None
              else np.ones(n, np.float32))
    timestamp = np.concatenate([p[3] for p in parts]) if c.time is not None else np.arange(n, dtype=np.int64)
    del parts
    catalogue = None
    if spec.items is not None:
        ic = spec.items.columns
        catalogue = _catalogue(_read_table(spec.items, ic.columns(), f"{where}.items"), ic, f"{where}.items")
    user_table = None
    if spec.users is not None:
        uc = spec.users.columns
        user_table = _user_table(_read_table(spec.users, uc.columns(), f"{where}.users"), uc, f"{where}.users")

    user, user_vocab = _codes(users)
    item, item_vocab = _codes(items)
    del users, items
    keep = None
    if c.label == "binary":
        keep = rating > 0
        _binary_kept(keep, c)
    if catalogue is None:
        ids, text, cats = item_vocab, None, None
        position = np.arange(len(item_vocab), dtype=np.int32)
    else:
        position, ids, text, cats, keep = _join_catalogue(item, item_vocab, catalogue, keep, spec.missing_items)
    if keep is not None:
        user, item, rating, timestamp = user[keep], item[keep], rating[keep], timestamp[keep]
        user, user_vocab = _compact(user, user_vocab)
    item = position[item]
    if catalogue is None:
        item, ids = _compact(item, ids)
        text, cats = np.full(len(ids), "", dtype=object), [[]] * len(ids)
    if user_table is not None:
        absent = ~pc.is_in(user_vocab, value_set=pa.array(user_table, pa.string())).to_numpy(zero_copy_only=False)
        _absent_users(int(absent[user].sum()))

    user_counts = np.bincount(user, minlength=len(user_vocab)).astype(np.int64)
    item_counts = np.bincount(item, minlength=len(ids)).astype(np.int64)
    _, item_rank = np.unique(_movie_order_key(ids.to_numpy(zero_copy_only=False)), return_inverse=True)
    rows = _sequence_rows(user, timestamp, item_rank.astype(np.int64)[item], len(user_vocab), len(ids))
    offsets = np.concatenate([[0], np.cumsum(user_counts)]).astype(np.int64)
    num_categories = len({x for row in cats for x in row})
    _loaded(spec.name, len(user), len(user_vocab), len(ids), num_categories)
    return _Encoded(
        arrays={"user": user, "item": item, "rating": rating, "timestamp": timestamp.astype(np.int64),
                "sequence_offsets": offsets, "sequence_rows": rows},
        users=pa.table({"id": user_vocab, "count": pa.array(user_counts, pa.int64())}),
        items=pa.table({"id": ids, "count": pa.array(item_counts, pa.int64()),
                        "text": pa.array(list(text), pa.string()),
                        "categories": pa.array(cats, pa.list_(pa.string()))}),
        num_categories=num_categories)
