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
    features/                the typed features of data.source.features (tfrs_lab.data.typed), one
                             <name>.<codes|offsets|values>.npy per array and <name>.vocabulary.parquet
                             (value, count) each, aligned with the item codes, user codes or rows

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

The preparation is a sequence of per-shard steps (one interactions file = one shard; see the
comment above :class:`_Encoded`) that :mod:`tfrs_lab.data.beam_prepare` also runs, as an Apache
Beam pipeline, writing the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tfrs_lab.data.filesystem import (RemoteFile, download_dir, file_sha256, file_stat, is_url, join, local_file,
                                     local_path, read_text, remove_dir, upload_dir)
from tfrs_lab.data.movielens import DataError, MovieLensData, default_data_dir
from tfrs_lab.data.readers import (_absent_users, _binary_kept, _catalogue, _interactions, _loaded, _missing_items,
                                   _multi_hot, _read_file_table, _read_table, _read_tfrecord, _table_raw,
                                   _user_table, resolve_paths)
from tfrs_lab.data.spec import FeatureSpec, InteractionColumns, SourceSpec
from tfrs_lab.data.splits import _movie_order_key
from tfrs_lab.data.typed import FeatureColumn, encode_features, load_features, save_features
from tfrs_lab.data.vectorised import _fast_ids, _fast_iso_times, _fast_numbers
from tfrs_lab.staging import staged_directory

__all__ = ["FORMAT_VERSION", "MANIFEST", "PREPARED_DIR", "PreparedDataset", "Stats", "Target", "as_file",
           "check_unchanged", "fingerprint", "load_prepared", "prepare_dataset", "writing"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Version of the directory layout; part of the fingerprint (bump it when the layout changes)."""
PREPARED_DIR = "prepared"
"""Default cache folder under the data dir (``$TFRS_LAB_DATA_DIR`` or ``data.data_dir``)."""
MANIFEST = "manifest.json"
_FORMAT = "tfrs_lab.prepared"
_ARRAYS = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64,
           "sequence_offsets": np.int64, "sequence_rows": np.int64}
_USERS, _ITEMS = "users.parquet", "items.parquet"


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
        features: name -> :class:`~tfrs_lab.data.typed.FeatureColumn` of ``data.source.features``
        (per item code, user code or row; empty without typed features).
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
    features: dict[str, FeatureColumn] = dataclasses.field(default_factory=dict)

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
        item_categories=items.column("categories").to_pylist(),
        features=load_features(path, manifest.get("features", {}), _spec_features(manifest)))


def _spec_features(manifest: dict[str, Any]) -> tuple[FeatureSpec, ...]:
    """The ``FeatureSpec`` entries of the manifest's spec."""
    return tuple(FeatureSpec(**f) for f in manifest["spec"].get("features", ()))


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


def _sources(spec: SourceSpec, where: str) -> list[tuple[str, Path | RemoteFile]]:
    """(table, file) of every source file, in reading order; DataError for a missing one."""
    out = []
    for table in ("interactions", "items", "users"):
        source = getattr(spec, table)
        if source is not None:
            out += [(table, f) for f in resolve_paths(source.path, f"{where}.{table}.path")]
    return out


Stats = dict[str, tuple[int, "int | None"]]
"""Every source file's (bytes, modification time in ns) when it was hashed, by path (or URL)."""


def _fingerprint(spec: SourceSpec, where: str) -> tuple[str, list[dict[str, Any]], Stats]:
    stats: Stats = {}
    sources = []
    for table, f in _sources(spec, where):
        stat = file_stat(f)  # before hashing: a change while hashing or reading shows in check_unchanged
        if stat is None:
            raise DataError(f"{f} disappeared while it was being prepared: restore it, or fix {where}.{table}.path")
        stats[str(f)] = stat
        sources.append({"table": table, "path": str(f), "bytes": stat[0], "sha256": file_sha256(f)})
    key = json.dumps({"format_version": FORMAT_VERSION, "spec": dataclasses.asdict(spec), "sources": sources},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest(), sources, stats


def fingerprint(spec: SourceSpec, *, where: str = "data.source") -> tuple[str, list[dict[str, Any]]]:
    """(SHA-256 hex, the sources) of ``spec``: every source file's content (streamed), the spec and
    :data:`FORMAT_VERSION`. ``sources``: one ``{"table", "path", "bytes", "sha256"}`` per file
    (``path``: the URL of a remote file)."""
    fp, sources, _ = _fingerprint(spec, where)
    return fp, sources


def check_unchanged(stats: Stats) -> None:
    """DataError when a source file is gone or changed (size or modification time) since it was
    hashed: what was read may not be what the fingerprint names, so nothing may be published."""
    for path, (size, mtime) in stats.items():
        now = file_stat(as_file(path))
        if now is None:
            raise DataError(f"{path} disappeared while it was being prepared: nothing was written; restore it and "
                            "prepare again")
        if now[0] != size or (mtime is not None and now[1] != mtime):
            raise DataError(f"{path} changed while it was being prepared ({size} bytes when hashed, {now[0]} now): "
                            "nothing was written; prepare again once the file is complete")


def as_file(path: str) -> Path | RemoteFile:
    """A source path (or URL) as :func:`~tfrs_lab.data.readers.resolve_paths` returns it."""
    return RemoteFile(path) if is_url(path) else Path(path)


def prepare_dataset(spec: SourceSpec, *, cache_dir: str | os.PathLike | None = None,
                    where: str = "data.source") -> PreparedDataset:
    """The prepared dataset of ``spec``: reused from ``cache_dir`` when its fingerprint is there
    (one log line says so), else read, encoded and written there atomically.

    The same preparation runs as an Apache Beam pipeline through
    :func:`tfrs_lab.data.beam_prepare.prepare_dataset_beam` (identical files, same fingerprint).

    Args:
        spec: the source spec (``data.source``).
        cache_dir: the folder of prepared datasets; default ``default_data_dir()/prepared``. A URL
            (``gs://bucket/prepared``, ``s3://...``, ``file://...``): the dataset is built in a local
            mirror (``default_data_dir()/prepared/remote/<hash of the URL>/``), then uploaded there,
            ``manifest.json`` last; a later call with the same fingerprint downloads it when the
            mirror lacks it. Source paths may be URLs too (docs/own-data.md#remote-and-shared-filesystems).
        where: the spec's dotted path in messages.

    Raises:
        DataError: one line naming the file, column, line and fix; nothing is written then. Also
            when a source disappears or changes between hashing and reading, and when the
            directory cannot be written (a full disk) or published: nothing is left then either.
    """
    target, fp, sources, stats = _target(spec, cache_dir, where)
    if (found := _cached(spec, target, fp)) is not None:
        return found
    encoded = _encode(spec, where)  # every read and check; nothing is written before it succeeds
    check_unchanged(stats)
    local = target.local
    _clear_incomplete(local, fp)
    manifest = _manifest(spec, fp, sources, encoded.counts(), {k: v.shape for k, v in encoded.arrays.items()})
    with writing(local):
        with staged_directory(local, replace=False) as stage:
            _write(encoded, manifest, stage)
    logger.info("prepared %s into %s", spec.name, local)
    return _published(spec, target)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a prepared dataset goes: ``local``, the directory written and memory-mapped; ``url``,
    for a cache dir given as a URL, the remote directory it is published to (``local`` is then its
    mirror under ``default_data_dir()/prepared/remote/``)."""

    local: Path
    url: str | None = None

    def __str__(self) -> str:
        return self.url or str(self.local)


def _target(spec: SourceSpec, cache_dir: str | os.PathLike | None,
            where: str) -> tuple[Target, str, list[dict], Stats]:
    """(the dataset directory ``<cache>/<name>-<fingerprint[:16]>``, the fingerprint, the sources,
    their stats when hashed)."""
    fp, sources, stats = _fingerprint(spec, where)
    name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec.name)[:40]}-{fp[:16]}"
    cache_dir = local_path(cache_dir)
    if is_url(cache_dir):
        mirror = default_data_dir() / PREPARED_DIR / "remote" / hashlib.sha256(str(cache_dir).encode()).hexdigest()[:16]
        return Target(mirror / name, join(str(cache_dir), name)), fp, sources, stats
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_data_dir() / PREPARED_DIR
    return Target(root / name), fp, sources, stats


def _cached(spec: SourceSpec, target: Target, fp: str) -> PreparedDataset | None:
    """The dataset of fingerprint ``fp`` when ``target`` already holds it (a remote one is fetched
    into the local mirror when the mirror lacks it), else None."""
    if target.url is None:
        return _reuse(spec, target.local, fp) if _complete(target.local, fp) else None
    remote = _remote_manifest(target.url)
    if remote is None or remote.get("fingerprint") != fp or remote.get("format_version") != FORMAT_VERSION:
        return None
    if not _complete(target.local, fp):
        _clear_incomplete(target.local, fp)
        with writing(target.local):
            with staged_directory(target.local, replace=False) as stage:
                download_dir(target.url, stage)
    logger.info("prepared %s: reusing %s (same fingerprint %s; local mirror %s)", spec.name, target.url, fp[:16],
                target.local)
    return load_prepared(target.local)


def _remote_manifest(url: str) -> dict[str, Any] | None:
    text = read_text(join(url, MANIFEST))
    try:
        manifest = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == _FORMAT else None


def _published(spec: SourceSpec, target: Target) -> PreparedDataset:
    """The complete local directory, first copied to ``target.url`` when the cache dir is remote:
    every file, then ``manifest.json`` (a remote directory without it is incomplete and is replaced
    by the next preparation)."""
    if target.url is not None:
        import pyarrow as pa  # pylint: disable=import-outside-toplevel

        remove_dir(target.url)  # an incomplete earlier attempt (a complete one was reused above)
        try:
            upload_dir(target.local, target.url, last=MANIFEST)
        except (OSError, pa.ArrowException) as e:
            remove_dir(target.url)
            raise DataError(f"could not publish the prepared dataset to {target.url} ({' '.join(str(e).split())}): "
                            f"nothing was left there (a local copy is in {target.local}); check the URL, its "
                            "credentials and free space, and prepare again") from e
        logger.info("published %s to %s", spec.name, target.url)
    return load_prepared(target.local)


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """Writing the prepared dataset ``target`` (in its staging directory): an OSError (a full
    disk, no permission) becomes one DataError line; the staging directory is already removed."""
    try:
        yield
    except OSError as e:
        raise DataError(f"could not write the prepared dataset {target} ({e.strerror or e}): nothing was kept; free "
                        "space there or choose another --output-dir (data.data_dir), then prepare again") from e


def _reuse(spec: SourceSpec, target: Path, fp: str) -> PreparedDataset:
    logger.info("prepared %s: reusing %s (same fingerprint %s)", spec.name, target, fp[:16])
    return load_prepared(target)


def _clear_incomplete(target: Path, fp: str) -> None:
    """Removes ``target`` when it exists without being the complete dataset ``fp`` (e.g. hand-edited;
    a concurrent preparer's complete one is kept)."""
    if target.exists() and not _complete(target, fp):
        logger.warning("%s is not a complete prepared dataset: preparing it again", target)
        shutil.rmtree(target)


def _manifest(spec: SourceSpec, fp: str, sources: list[dict], counts: dict[str, int],
              shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """``manifest.json``'s content; ``shapes``: the shape of every array of :data:`_ARRAYS`."""
    return {"format": _FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fp, "name": spec.name,
            "spec": dataclasses.asdict(spec), "sources": sources, "counts": counts,
            "arrays": {k: {"file": f"{k}.npy", "dtype": np.dtype(t).name, "shape": [int(x) for x in shapes[k]]}
                       for k, t in _ARRAYS.items()},
            "tables": {"users": _USERS, "items": _ITEMS}, "features": {}}


def _write_manifest(manifest: dict[str, Any], stage: Path) -> None:
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- reading and encoding
#
# The steps below are shared by this single-machine path and the Beam pipeline
# (tfrs_lab/data/beam_prepare.py), which calls them per shard (one interactions file):
#   _interaction_file   parse and check one file (vectorised, else the readers' per-row conversion)
#   _side_tables        the items and users tables (catalogue-sized)
#   _filter_shard       binary labels' negatives and (missing_items: drop) unknown items out; stats
#   _check_rows, _check_kept   the checks over all shards (no rows; no positive row, nothing left)
#   _id_counts / _sorted_counts   the vocabularies' counts (per shard, then combined)
#   _vocabulary         the user vocabulary and the catalogue with counts and item order
#   _encode_shard       ids -> codes against the vocabularies; timestamps (row numbers without a time column)
#   _sequence_rows      the (user, time, item) order of a block of users' rows


@dataclasses.dataclass
class _Encoded:
    arrays: dict[str, np.ndarray]
    users: Any  # pyarrow Table: id, count
    items: Any  # pyarrow Table: id, count, text, categories
    num_categories: int
    features: dict[str, FeatureColumn] = dataclasses.field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"interactions": int(self.arrays["user"].shape[0]), "users": self.users.num_rows,
                "items": self.items.num_rows, "categories": self.num_categories}


def _write(encoded: _Encoded, manifest: dict[str, Any], stage: Path) -> None:
    for k, dtype in _ARRAYS.items():
        np.save(stage / f"{k}.npy", np.ascontiguousarray(encoded.arrays[k], dtype=dtype))
    _write_tables(encoded.users, encoded.items, stage)
    _write_manifest({**manifest, "features": save_features(encoded.features, stage)}, stage)


def _write_tables(users: Any, items: Any, stage: Path) -> None:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    pq.write_table(users, stage / _USERS)
    pq.write_table(items, stage / _ITEMS)


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


def _interaction_file(file: Path | RemoteFile, spec: SourceSpec, where: str) -> tuple:
    """One interactions file (a remote one through a local copy) -> (users, items, rating, time) as
    in :func:`_fast_interactions`. DataError when it cannot be read (also when it disappeared after
    it was hashed)."""
    with local_file(file) as local:
        return _local_interaction_file(local, spec, where)


def _local_interaction_file(file: Path, spec: SourceSpec, where: str) -> tuple:
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


def _side_tables(spec: SourceSpec, where: str) -> tuple[tuple | None, np.ndarray | None]:
    """(the catalogue ``(ids, texts, categories)`` or None, the users table's ids or None), read and
    checked by the readers (their order and messages)."""
    catalogue = user_table = None
    if spec.items is not None:
        ic = spec.items.columns
        catalogue = _catalogue(_read_table(spec.items, ic.columns(), f"{where}.items"), ic, f"{where}.items")
    if spec.users is not None:
        uc = spec.users.columns
        user_table = _user_table(_read_table(spec.users, uc.columns(), f"{where}.users"), uc, f"{where}.users")
    return catalogue, user_table


@dataclasses.dataclass
class _Shard:
    """The kept rows of one interactions file (k rows)."""

    users: Any  # pyarrow chunked strings [k]
    items: Any  # pyarrow chunked strings [k]
    rating: np.ndarray  # float32 [k] (1.0 without a rating column)
    time: np.ndarray | None  # int64 [k] unix seconds; None without a time column
    row: np.ndarray  # int64 [k] the kept rows' positions among the file's rows


@dataclasses.dataclass
class _ShardStats:
    """What the checks over all shards need from one file."""

    rows: int  # rows read
    positive: int  # rows left after binary labels' negatives are dropped (= rows otherwise)
    absent_rows: int  # of those, rows naming an item absent from the items table
    absent_ids: list[str]  # their distinct items, ascending


def _filter_shard(parsed: tuple, spec: SourceSpec, catalogue_ids: Any) -> tuple[_Shard, _ShardStats]:
    """One file's parsed columns (:func:`_interaction_file`) -> its kept rows and stats.

    ``catalogue_ids``: the items table's ids (pyarrow strings) or None. Drops binary labels'
    negatives and, with ``missing_items: drop``, rows naming an item absent from the catalogue.
    """
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    users, items, rating, time = parsed
    c = spec.interactions.columns
    n = len(users)
    rating = rating.astype(np.float32) if c.rating is not None else np.ones(n, np.float32)
    keep = rating > 0 if c.label == "binary" else np.ones(n, bool)
    positive = int(keep.sum())
    absent_rows, absent_ids = 0, []
    if catalogue_ids is not None and n:
        absent = ~np.asarray(pc.is_in(items, value_set=catalogue_ids).to_numpy(zero_copy_only=False), bool) & keep
        absent_rows = int(absent.sum())
        if absent_rows:
            absent_ids = _sorted_counts(pc.unique(items.filter(pa.array(absent))), None)[0].to_pylist()
            if spec.missing_items == "drop":
                keep &= ~absent
    row = np.flatnonzero(keep).astype(np.int64)
    take = pa.array(row)
    shard = _Shard(users.take(take), items.take(take), rating[row],
                   time[row].astype(np.int64) if c.time is not None else None, row)
    return shard, _ShardStats(n, positive, absent_rows, absent_ids)


def _check_rows(rows: int, files: list[Path], where: str) -> None:
    """DataError when the interactions files (``rows`` rows read in all) hold no row."""
    if not rows:
        raise DataError(f"{', '.join(map(str, files))}: the interactions table has no rows: check "
                        f"{where}.interactions.path")


def _check_kept(stats: list[_ShardStats], spec: SourceSpec) -> None:
    """The checks over all shards' kept rows, with their log lines (binary labels kept; items absent
    from the catalogue); DataError when no positive row or no row is left."""
    positive = sum(s.positive for s in stats)
    if spec.interactions.columns.label == "binary":
        _binary_kept(positive, sum(s.rows for s in stats) - positive, spec.interactions.columns)
    absent_rows = sum(s.absent_rows for s in stats)
    if absent_rows:
        distinct = len({x for s in stats for x in s.absent_ids})
        _missing_items(absent_rows, distinct, spec.missing_items,
                       positive if spec.missing_items == "keep" else positive - absent_rows)


def _id_counts(values: Any) -> tuple[Any, np.ndarray]:
    """Chunked strings ``[k]`` -> (distinct values, int64 counts), unordered."""
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    counted = pc.value_counts(values)
    return counted.field("values"), np.asarray(counted.field("counts").to_numpy(), np.int64)


def _sorted_counts(ids: Any, counts: np.ndarray | None) -> tuple[Any, np.ndarray | None]:
    """(ids as pyarrow strings in ascending order, their counts in the same order)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, pa.string())
    order = pc.sort_indices(ids)
    ids = ids.take(order)
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return ids, None if counts is None else np.asarray(counts, np.int64)[order.to_numpy()]


@dataclasses.dataclass
class _Vocabulary:
    """The vocabularies (U users, m catalogue items) every shard is encoded against."""

    user_ids: Any  # pyarrow strings [U], ascending
    user_counts: np.ndarray  # int64 [U]
    item_ids: Any  # pyarrow strings [m], the catalogue order
    item_counts: np.ndarray  # int64 [m]
    item_text: np.ndarray  # object [m]
    item_categories: list[list[str]]
    item_rank: np.ndarray  # int64 [m]: each item's position in the (id as an integer) order

    @property
    def num_categories(self) -> int:
        return len({x for row in self.item_categories for x in row})

    def tables(self) -> tuple[Any, Any]:
        """(users.parquet, items.parquet) as pyarrow Tables."""
        import pyarrow as pa  # pylint: disable=import-outside-toplevel

        return (pa.table({"id": self.user_ids, "count": pa.array(self.user_counts, pa.int64())}),
                pa.table({"id": self.item_ids, "count": pa.array(self.item_counts, pa.int64()),
                          "text": pa.array(list(self.item_text), pa.string()),
                          "categories": pa.array(self.item_categories, pa.list_(pa.string()))}))

    def sequence_offsets(self) -> np.ndarray:
        """int64 ``[U+1]``: user u's rows are ``sequence_rows[offsets[u]:offsets[u+1]]``."""
        return np.concatenate([[0], np.cumsum(self.user_counts)]).astype(np.int64)


def _vocabulary(users: tuple[Any, np.ndarray], items: tuple[Any, np.ndarray], catalogue: tuple | None,
                user_table: np.ndarray | None, absent_ids: list[str], spec: SourceSpec) -> _Vocabulary:
    """The vocabularies from the kept rows' (ids ascending, int64 counts) of users and items, the
    catalogue, the users table's ids and the absent items (ascending; appended with ``keep``)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    user_ids, user_counts = users
    seen, seen_counts = items
    if catalogue is None:
        ids, text, cats = seen, np.full(len(seen), "", dtype=object), [[]] * len(seen)
    else:
        ids, text, cats = pa.array(catalogue[0], pa.string()), catalogue[1], list(catalogue[2])
        if spec.missing_items == "keep" and absent_ids:
            ids = pa.concat_arrays([ids, pa.array(absent_ids, pa.string())])
            text = np.concatenate([text, np.full(len(absent_ids), "", dtype=object)])
            cats = cats + [[]] * len(absent_ids)
    item_counts = np.zeros(len(ids), np.int64)
    if len(seen):
        item_counts[np.asarray(pc.index_in(seen, value_set=ids).to_numpy(), np.int64)] = seen_counts
    if user_table is not None:
        absent = ~pc.is_in(user_ids, value_set=pa.array(user_table, pa.string())).to_numpy(zero_copy_only=False)
        _absent_users(int(user_counts[absent].sum()))
    _, rank = np.unique(_movie_order_key(ids.to_numpy(zero_copy_only=False)), return_inverse=True)
    vocab = _Vocabulary(user_ids, user_counts, ids, item_counts, text, cats, rank.astype(np.int64).reshape(-1))
    _loaded(spec.name, int(user_counts.sum()), len(user_ids), len(ids), vocab.num_categories)
    return vocab


def _encode_shard(shard: _Shard, vocab: _Vocabulary, first_row: int) -> dict[str, np.ndarray]:
    """One shard's ``user``, ``item`` (int32 codes), ``rating`` (float32) and ``timestamp`` (int64;
    without a time column the row number over all files read, ``first_row`` being this file's first)."""
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    def codes(values: Any, vocabulary: Any) -> np.ndarray:
        if not len(values):
            return np.empty(0, np.int32)
        return np.asarray(pc.index_in(values, value_set=vocabulary).to_numpy(), dtype=np.int32)

    return {"user": codes(shard.users, vocab.user_ids), "item": codes(shard.items, vocab.item_ids),
            "rating": shard.rating,
            "timestamp": shard.time if shard.time is not None else first_row + shard.row}


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


def _encode(spec: SourceSpec, where: str) -> _Encoded:
    """Reads and checks every table of ``spec`` (the readers' order and messages) and encodes it."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    w = f"{where}.interactions"
    files = resolve_paths(spec.interactions.path, f"{w}.path")
    parsed = [_interaction_file(f, spec, w) for f in files]
    _check_rows(sum(len(p[0]) for p in parsed), files, where)
    catalogue, user_table = _side_tables(spec, where)
    catalogue_ids = None if catalogue is None else pa.array(catalogue[0], pa.string())
    filtered = [_filter_shard(p, spec, catalogue_ids) for p in parsed]
    del parsed
    _check_kept([s for _, s in filtered], spec)
    shards = [s for s, _ in filtered]
    users = pa.chunked_array([ch for s in shards for ch in s.users.chunks], pa.string())
    items = pa.chunked_array([ch for s in shards for ch in s.items.chunks], pa.string())
    vocab = _vocabulary(_sorted_counts(*_id_counts(users)), _sorted_counts(*_id_counts(items)), catalogue,
                        user_table, sorted({x for _, s in filtered for x in s.absent_ids}), spec)
    del users, items
    first = np.concatenate([[0], np.cumsum([s.rows for _, s in filtered])])
    parts = [_encode_shard(s, vocab, int(first[i])) for i, s in enumerate(shards)]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in ("user", "item", "rating", "timestamp")}
    del parts, filtered
    arrays["sequence_offsets"] = vocab.sequence_offsets()
    arrays["sequence_rows"] = _sequence_rows(arrays["user"], arrays["timestamp"], vocab.item_rank[arrays["item"]],
                                             len(vocab.user_counts), len(vocab.item_counts))
    users_table, items_table = vocab.tables()
    features = encode_features(spec, where, item_ids=vocab.item_ids.to_numpy(zero_copy_only=False),
                               user_ids=vocab.user_ids.to_numpy(zero_copy_only=False),
                               interaction_rows=[(f, s.row) for f, s in zip(files, shards)])
    return _Encoded(arrays=arrays, users=users_table, items=items_table, num_categories=vocab.num_categories,
                    features=features)
