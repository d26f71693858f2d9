"""Readers of your own data: the files a :class:`~tfrs_lab.data.spec.SourceSpec` names (or, from
Python, a pandas DataFrame or dict of arrays: :func:`tfrs_lab.data.frames.from_frame`) -> the :class:`~tfrs_lab.data.movielens.MovieLensData`
every task consumes, so training, tuning, the report and the export run on it unchanged.

Formats: CSV / TSV / other delimited text (``pyarrow.csv``), Parquet (``pyarrow.parquet``), JSON
Lines (``pyarrow.json``), TFRecord of ``tf.train.Example`` (``tf.data.TFRecordDataset`` +
``tf.io.parse_example``; ``.gz`` files are GZIP), each from one file or a glob of shards (read in
sorted path order).

What comes out (``MovieLensData``; shapes: n interactions, m catalogue items, G categories):

* ``ratings``: ``user_id``, ``movie_id`` (object ``[n]`` of ``str``: numbers are written without a
  decimal point, ``51`` not ``51.0``), ``user_rating`` (float32 ``[n]``: the rating, the implicit
  weight, or 1.0), ``timestamp`` (int64 ``[n]`` unix seconds; without a time column the row number
  0, 1, ... in file order, so ``leave-last-out`` holds out each user's last row);
* ``movies``: ``movie_id`` (object ``[m]`` of ``str``, unique), ``movie_title`` (object ``[m]``: the
  items' text column, ``""`` without one), ``movie_genres`` (float32 ``[m, G]`` multi-hot over the
  sorted observed categories; ``G = 1`` all-zero column when there are none).

Every problem with the input raises :class:`DataError` with one line naming the file, the column,
the line (delimited text) or row, and the fix. Nothing is written or cached.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tfrs_lab.data.filesystem import RemoteFile, is_url, local_file, local_path, resolve_url
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.spec import (InteractionColumns, InteractionsSource, ItemColumns, ItemsSource, SourceSpec)

__all__ = ["read_interactions", "read_items", "read_source", "resolve_paths"]

logger = logging.getLogger(__name__)

_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                   ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".tfrecord": "tfrecord",
                   ".tfrecords": "tfrecord", ".gz": "tfrecord"}
_SNIFF = ("\t", ",", ";", "|")


@dataclasses.dataclass
class _Raw:
    """Raw columns of one file (or frame): ``columns`` maps a column name to ``[rows]`` values."""

    where: str  # the file (or "the DataFrame") for messages
    columns: dict[str, np.ndarray]
    first_line: int | None  # line number of row 0 in delimited text; None: rows are counted from 1
    index: np.ndarray | None = None  # int64 [rows]: each row's position in the file (a subset of its rows)

    def at(self, row: int) -> str:
        """``"line 7"`` / ``"row 7"`` of row index ``row``."""
        row = int(self.index[row]) if self.index is not None else row
        return f"line {self.first_line + row}" if self.first_line is not None else f"row {row + 1}"


# --------------------------------------------------------------------------- files


def resolve_paths(path: str, where: str) -> list[Path | RemoteFile]:
    """The files ``path`` names (a file or a glob, ``~`` expanded), sorted; DataError naming
    ``where`` (e.g. ``data.source.interactions.path``) when none exists. A URL (``gs://``,
    ``s3://``, ``file://``, ...) gives :class:`~tfrs_lab.data.filesystem.RemoteFile` s."""
    path = local_path(path)
    if is_url(path):
        return resolve_url(path, where)
    expanded = os.path.expanduser(path)
    if glob.has_magic(expanded):
        files = sorted(Path(p) for p in glob.glob(expanded) if Path(p).is_file())
        if not files:
            raise DataError(f"{where}: no file matches {path}: check the pattern")
        return files
    p = Path(expanded)
    if p.is_dir():
        raise DataError(f"{where}: {path} is a directory: name a file, or its shards with a glob such as "
                        f"{path.rstrip('/')}/*.parquet")
    if not p.is_file():
        raise DataError(f"{where}: {path} does not exist: check the path")
    return [p]


def _format(file: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return _SUFFIX_FORMATS.get(file.suffix.lower(), "text")


def _check_columns(available: list[str], needed: Mapping[str, str], where: str, file: Path) -> None:
    """DataError naming the file, the column and the columns that exist; a role starting with ``@``
    is the full dotted path of the setting (``@data.source.features[2].column``)."""
    for role, col in needed.items():
        if col not in available:
            setting = role[1:] if role.startswith("@") else f"{where}.columns.{role}"
            raise DataError(f"{file}: no column {col!r} ({setting}); its columns are "
                            f"{', '.join(map(repr, available)) or 'none'}: set {setting} to one of them")


def _sniff(file: Path, encoding: str) -> str:
    with file.open("rb") as f:
        first = f.readline().decode(encoding, errors="replace")
    counts = {d: first.count(d) for d in _SNIFF}
    best = max(_SNIFF, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_delimited(file: Path, fmt: str, source, needed: Mapping[str, str], where: str) -> tuple[Any, int]:
    """(pyarrow Table of the ``needed`` columns, all as text; line number of its row 0)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.csv as pacsv  # pylint: disable=import-outside-toplevel

    o = source.csv
    delimiter = o.delimiter or {"csv": ",", "tsv": "\t"}.get(fmt) or _sniff(file, o.encoding)
    quoting = o.quoting if o.quoting is not None else fmt == "csv"
    read = pacsv.ReadOptions(column_names=list(o.names) or None, encoding=o.encoding)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=o.quotechar if quoting else False)
    cols = list(dict.fromkeys(needed.values()))
    convert = pacsv.ConvertOptions(include_columns=cols, column_types={c: pa.string() for c in cols})
    try:
        table = pacsv.read_csv(file, read_options=read, parse_options=parse, convert_options=convert)
    except KeyError:  # a needed column is not in the header
        names = list(o.names) or _header(file, read, parse)
        _check_columns(names, needed, where, file)
        raise
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise DataError(_delimited_problem(file, str(e), delimiter, where, lambda: _ragged_line(
            file, o.encoding, delimiter, o.quotechar if quoting else None))) from e
    return table, 2 if o.header else 1


def _header(file: Path, read, parse) -> list[str]:
    import pyarrow.csv as pacsv  # pylint: disable=import-outside-toplevel

    try:
        return pacsv.open_csv(file, read_options=read, parse_options=parse).schema.names
    except Exception:  # pylint: disable=broad-except  # only for the message of a missing column
        return []


def _ragged_line(file: Path, encoding: str, delimiter: str, quotechar: str | None) -> str:
    """``"line N: "`` of the first line whose number of values differs from the first line's."""
    import csv  # pylint: disable=import-outside-toplevel

    try:
        with file.open(newline="", encoding=encoding, errors="replace") as f:
            reader = csv.reader(f, delimiter=delimiter, quotechar=quotechar or '"',
                                quoting=csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE)
            width = None
            for row in reader:
                width = len(row) if width is None else width
                if len(row) != width:
                    return f"line {reader.line_num}: "
    except csv.Error:
        pass
    return ""


def _delimited_problem(file: Path, message: str, delimiter: str, where: str, ragged: Callable[[], str]) -> str:
    text = " ".join(message.split())
    if "UTF8" in text or "decode" in text or "codec" in text:
        return (f"{file} is not valid UTF-8 text ({text}): convert it to UTF-8 or set {where}.csv.encoding "
                "(e.g. latin-1)")
    if "Expected" in text and "columns" in text:
        return (f"{file}: {ragged()}ragged row ({text}): every line needs the same number of {delimiter!r}-separated "
                f"values; quote values that hold the delimiter or set {where}.csv.delimiter")
    if "Empty CSV file" in text:
        return f"{file} is empty: it needs a header line and at least one row"
    return f"{file} could not be read as delimited text ({text}): check {where}.format and {where}.csv"


def _read_arrow(file: Path, fmt: str, needed: Mapping[str, str], where: str) -> Any:
    """The pyarrow Table of a Parquet / JSON Lines file (at least the ``needed`` columns)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    cols = list(dict.fromkeys(needed.values()))
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

            _check_columns(pq.read_schema(file).names, needed, where, file)
            table = pq.read_table(file, columns=cols)
        else:
            import pyarrow.json as pajson  # pylint: disable=import-outside-toplevel

            table = pajson.read_json(file)
            _check_columns(table.column_names, needed, where, file)
    except FileNotFoundError:  # gone since it was listed: local_file says so
        raise
    except (pa.ArrowInvalid, OSError) as e:
        text = " ".join(str(e).split())
        fix = ("convert it to UTF-8" if "UTF8" in text or "utf-8" in text.lower()
               else f"check that it is {fmt} or set {where}.format")
        raise DataError(f"{file} could not be read as {fmt} ({text}): {fix}") from e
    return table


def _read_tfrecord(file: Path, needed: Mapping[str, str], where: str) -> _Raw:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel

    compression = "GZIP" if file.suffix == ".gz" else ""
    cols = list(dict.fromkeys(needed.values()))
    try:
        first = next(iter(tf.data.TFRecordDataset([str(file)], compression_type=compression).take(1)), None)
        if first is None:
            return _Raw(str(file), {c: np.empty(0, dtype=object) for c in cols}, None)
        example = tf.train.Example.FromString(first.numpy())
    except (tf.errors.OpError, DecodeError) as e:
        raise DataError(f"{file} is not a TFRecord file of tf.train.Example ({type(e).__name__}): check "
                        f"{where}.format") from e
    feature = example.features.feature
    _check_columns(sorted(feature), needed, where, file)
    dtypes = {"bytes_list": tf.string, "float_list": tf.float32, "int64_list": tf.int64}
    specs = {c: tf.io.VarLenFeature(dtypes[feature[c].WhichOneof("kind") or "bytes_list"]) for c in cols}
    chunks: dict[str, list] = {c: [] for c in cols}
    try:
        ds = tf.data.TFRecordDataset([str(file)], compression_type=compression).batch(1 << 14)
        for batch in ds:
            parsed = tf.io.parse_example(batch, specs)
            for c in cols:
                chunks[c].extend(tf.RaggedTensor.from_sparse(parsed[c]).to_list())
    except tf.errors.OpError as e:
        text = " ".join(e.message.split())
        raise DataError(f"{file}: a record does not match the first record's feature types ({text}): "
                        "give every record the same type per feature") from e
    out = {}
    for c in cols:
        values = np.empty(len(chunks[c]), dtype=object)
        try:
            values[:] = [[v.decode("utf-8") if isinstance(v, bytes) else v for v in row] for row in chunks[c]]
        except UnicodeDecodeError as e:
            raise DataError(f"{file}: feature {c!r} holds text that is not valid UTF-8 ({e.reason}): "
                            "write UTF-8 text") from e
        out[c] = values
    return _Raw(str(file), out, None)


def _read_file_table(file: Path, source, needed: Mapping[str, str], where: str) -> tuple[Any, int | None] | None:
    """(pyarrow Table, line number of row 0 or None) of a delimited / Parquet / JSON Lines file;
    None for TFRecord (read by :func:`_read_tfrecord`). Used by :mod:`tfrs_lab.data.prepared` too."""
    fmt = _format(file, source.format)
    if fmt in ("csv", "tsv", "text"):
        return _read_delimited(file, fmt, source, needed, where)
    if fmt in ("parquet", "jsonl"):
        return _read_arrow(file, fmt, needed, where), None
    return None


def _table_raw(where: str, table: Any, first_line: int | None, needed: Mapping[str, str]) -> _Raw:
    """The ``needed`` columns of a pyarrow Table as a :class:`_Raw` of numpy columns."""
    return _Raw(where, {c: table.column(c).to_numpy(zero_copy_only=False) for c in dict.fromkeys(needed.values())},
                first_line)


def _read_file(file: Path | RemoteFile, source, needed: Mapping[str, str], where: str) -> _Raw:
    with local_file(file) as local:
        read = _read_file_table(local, source, needed, where)
        raw = _read_tfrecord(local, needed, where) if read is None else _table_raw(str(local), *read, needed)
    return dataclasses.replace(raw, where=str(file))


def _read_table(source, needed: Mapping[str, str], where: str) -> list[_Raw]:
    return [_read_file(f, source, needed, where) for f in resolve_paths(source.path, f"{where}.path")]


def _frame_table(frame: Any, needed: Mapping[str, str], where: str, what: str) -> list[_Raw]:
    """A pandas DataFrame or a dict of equal-length arrays -> one raw table. A role starting with
    ``@`` is the full dotted path of the setting (``@features[0].column``); a 2-D column [n, S]
    becomes n rows of S values (a dense feature)."""
    names = [str(c) for c in (frame.columns if hasattr(frame, "columns") else frame.keys())]
    for role, col in needed.items():
        if col not in names:
            setting = role[1:] if role.startswith("@") else f"{where}.{role}"
            fix = f"set {setting} to one of them" if role.startswith("@") else f"pass one of them as {role}="
            raise DataError(f"{what}: no column {col!r} ({setting}); its columns are "
                            f"{', '.join(map(repr, names)) or 'none'}: {fix}")
    columns = {}
    for col in dict.fromkeys(needed.values()):
        values = frame[col]
        values = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
        if values.ndim == 2:
            rows = np.empty(len(values), dtype=object)
            rows[:] = list(values)
            values = rows
        if values.ndim != 1:
            raise DataError(f"{what}: column {col!r} must be 1-D (or 2-D for a dense feature), got shape "
                            f"{values.shape}")
        columns[col] = values
    lengths = {c: len(v) for c, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{what}: columns have different lengths {lengths}: pass equal-length arrays")
    return [_Raw(what, columns, None)]


# --------------------------------------------------------------------------- values


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _ids(raw: _Raw, col: str, role: str) -> np.ndarray:
    """Column ``col`` as ids: object ``[rows]`` of ``str``."""
    values = raw.columns[col]
    if values.dtype.kind in "iub":
        return values.astype(np.int64).astype(str).astype(object)
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            raise DataError(f"{raw.where}, {raw.at(int(bad[0]))}, column {col!r} ({role}): {values[bad[0]]!r} is "
                            "not an id: ids must be text or whole numbers, and never empty")
        return values.astype(np.int64).astype(str).astype(object)

    def as_id(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, (list, tuple, np.ndarray)) and len(v) == 1:
            return as_id(v[0])
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return str(int(v))
        if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
            return str(int(v))
        if isinstance(v, bytes):
            return v.decode("utf-8")
        raise TypeError

    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        try:
            out[i] = as_id(v)
        except (TypeError, UnicodeDecodeError):
            out[i] = None
        if out[i] is None or not out[i].strip():
            shown = "an empty value" if _is_missing(v) else repr(v)
            raise DataError(f"{raw.where}, {raw.at(i)}, column {col!r} ({role}): {shown} is not an id: "
                            "ids must be non-empty text or whole numbers")
    return out


def _numbers(raw: _Raw, col: str, role: str, what: str, fix: str) -> np.ndarray:
    """Column ``col`` as float64 ``[rows]``; DataError at the first value that is not a number."""
    values = raw.columns[col]
    if values.dtype.kind in "iufb":
        out = values.astype(np.float64)
    else:
        def number(v: Any) -> float:
            if isinstance(v, (list, tuple, np.ndarray)) and len(v) == 1:
                v = v[0]
            if isinstance(v, bool) or isinstance(v, (bytes, type(None))):
                raise ValueError
            return float(v.strip()) if isinstance(v, str) else float(v)

        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            try:
                out[i] = number(v)
            except (TypeError, ValueError):
                out[i] = np.nan
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        v = values[bad[0]]
        shown = "an empty value" if _is_missing(v) else repr(v)
        raise DataError(f"{raw.where}, {raw.at(int(bad[0]))}, column {col!r} ({role}): {shown} is not {what}: {fix}")
    return out


def _iso_times(raw: _Raw, col: str, cw: str, setting: str | None = None) -> np.ndarray:
    """ISO-8601 text -> int64 unix seconds (``Z``/offsets honoured; no zone = UTC); messages name
    ``setting`` (default ``{cw}.time``) and its ``time_format`` sibling."""
    setting = setting or f"{cw}.time"
    fmt = setting.rpartition(".")[0] + ".time_format"
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    values = [v.strip() if isinstance(v, str) else v for v in raw.columns[col]]

    def cast(vals: list) -> np.ndarray:
        arr = pa.array(vals, type=pa.string())
        if arr.null_count:
            raise pa.ArrowInvalid("null")
        try:
            return arr.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            return arr.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()

    try:
        return cast(values).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            out[i] = cast([v])[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            shown = "an empty value" if _is_missing(v) else repr(v)
            raise DataError(f"{raw.where}, {raw.at(i)}, column {col!r} ({setting}): {shown} is not an ISO-8601 "
                            f"time such as 2011-05-01T12:00:00Z: fix the value, or set {fmt}: unix for "
                            "unix seconds") from None
    return out


def _categories(raw: _Raw, col: str, separator: str) -> list[list[str]]:
    out = []
    for v in raw.columns[col]:
        if _is_missing(v):
            out.append([])
        elif isinstance(v, str):
            out.append([c.strip() for c in v.split(separator) if c.strip()])
        else:
            out.append([str(c).strip() for c in v if c is not None and str(c).strip()])
    return out


# --------------------------------------------------------------------------- tables -> MovieLensData


def _interactions(raws: list[_Raw], c: InteractionColumns, where: str) -> dict[str, np.ndarray]:
    """Interactions -> ``user_id``, ``movie_id``, ``user_rating``, ``timestamp`` columns (+ ``_keep`` mask)."""
    cw = f"{where}.columns"
    users, items, ratings, times = [], [], [], []
    for raw in raws:
        users.append(_ids(raw, c.user, f"{cw}.user"))
        items.append(_ids(raw, c.item, f"{cw}.item"))
        if c.rating is not None:
            what = {"explicit": "a rating", "implicit": "a weight", "binary": "0 or 1"}[c.label]
            if c.label == "binary":
                raw = _binary_text(raw, c.rating)
            values = _numbers(raw, c.rating, f"{cw}.rating", f"{what} (a number)",
                              "fix the value or name another column as rating")
            if c.label == "binary":
                bad = np.flatnonzero((values != 0) & (values != 1))
                if bad.size:
                    raise DataError(f"{raw.where}, {raw.at(int(bad[0]))}, column {c.rating!r} ({cw}.rating): "
                                    f"{values[bad[0]]:g} is not 0 or 1: binary labels are 0/1 or false/true "
                                    f"(set {cw}.label to implicit for weights)")
            ratings.append(values)
        if c.time is not None:
            if c.time_format == "iso8601":
                times.append(_iso_times(raw, c.time, cw))
            else:
                times.append(_numbers(raw, c.time, f"{cw}.time", "a unix time in seconds",
                                      f"fix the value, or set {cw}.time_format: iso8601 for text times").astype(np.int64))
    user_id = np.concatenate(users) if users else np.empty(0, dtype=object)
    n = len(user_id)
    if n == 0:
        files = ", ".join(r.where for r in raws)
        raise DataError(f"{files}: the interactions table has no rows: check {where}.path")
    rating = np.concatenate(ratings).astype(np.float32) if ratings else np.ones(n, np.float32)
    timestamp = np.concatenate(times) if times else np.arange(n, dtype=np.int64)
    return {"user_id": user_id, "movie_id": np.concatenate(items), "user_rating": rating, "timestamp": timestamp}


def _binary_text(raw: _Raw, col: str) -> _Raw:
    """``true``/``false`` text as 1/0 (other values pass through to the number check)."""
    values = raw.columns[col]
    if values.dtype.kind == "b":
        return dataclasses.replace(raw, columns={**raw.columns, col: values.astype(np.int64)})
    if values.dtype == object:
        mapped = np.array([{"true": 1, "false": 0}.get(v.strip().lower(), v) if isinstance(v, str) else v
                           for v in values], dtype=object)
        return dataclasses.replace(raw, columns={**raw.columns, col: mapped})
    return raw


def _unique_ids(ids: np.ndarray, raws: list[_Raw], col: str, where: str) -> None:
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        files = ", ".join(r.where for r in raws)
        raise DataError(f"{files}: id {str(dup)!r} appears {int(counts[counts > 1][0])} times in column {col!r} "
                        f"({where}.columns.id): ids of this table must be unique; remove the duplicate rows")


def _catalogue(raws: list[_Raw], c: ItemColumns, where: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    ids = np.concatenate([_ids(r, c.id, f"{where}.columns.id") for r in raws]) if raws else np.empty(0, object)
    if len(ids) == 0:
        raise DataError(f"{', '.join(r.where for r in raws)}: the items table has no rows: check {where}.path "
                        "or drop the items table")
    _unique_ids(ids, raws, c.id, where)
    if c.text is not None:
        titles = np.concatenate([np.array(["" if _is_missing(v) else str(v) for v in r.columns[c.text]], dtype=object)
                                 for r in raws])
    else:
        titles = np.full(len(ids), "", dtype=object)
    cats = [x for r in raws for x in _categories(r, c.categories, c.separator)] if c.categories else [[]] * len(ids)
    return ids, titles, cats


def _multi_hot(cats: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    names = sorted({x for row in cats for x in row})
    index = {name: j for j, name in enumerate(names)}
    hot = np.zeros((len(cats), max(len(names), 1)), np.float32)
    for i, row in enumerate(cats):
        for x in row:
            hot[i, index[x]] = 1.0
    return hot, names


def _binary_kept(kept: int, dropped: int, c: InteractionColumns) -> None:
    """Logs how many rows binary labels keep (positive) and drop; DataError when none is kept."""
    logger.info("binary labels: %d positive interactions kept, %d negative dropped", kept, dropped)
    if not kept:
        raise DataError(f"the interactions table has no positive rows (label 1): check {c.rating!r}")


def _missing_items(rows: int, distinct: int, missing_items: str, left: int) -> None:
    """Logs the interactions (``rows``, ``distinct`` items) whose item is absent from the items table;
    DataError when ``drop`` leaves no row (``left``)."""
    logger.warning("%d interactions (%d distinct items) name an item absent from the items table: %s "
                   "(data.source.missing_items=%s)", rows, distinct,
                   "kept with an empty text and no categories" if missing_items == "keep" else "dropped",
                   missing_items)
    if not left:
        raise DataError("no interaction names an item of the items table: check the id columns "
                        "(data.source.interactions.columns.item, data.source.items.columns.id)")


def _absent_users(rows: int) -> None:
    if rows:
        logger.warning("%d interactions name a user absent from the users table (kept)", rows)


def _loaded(name: str, interactions: int, users: int, items: int, categories: int) -> None:
    logger.info("loaded %s: %d interactions, %d users, %d items, %d categories", name, interactions, users, items,
                categories)


def _assemble(name: str, ratings: dict[str, np.ndarray], items: tuple | None, user_ids: np.ndarray | None,
              c: InteractionColumns, missing_items: str) -> MovieLensData:
    if c.label == "binary":
        keep = ratings["user_rating"] > 0
        _binary_kept(int(keep.sum()), int((~keep).sum()), c)
        ratings = {k: v[keep] for k, v in ratings.items()}
    if items is None:
        ids = np.unique(ratings["movie_id"].astype(str)).astype(object)
        titles, cats = np.full(len(ids), "", dtype=object), [[]] * len(ids)
    else:
        ids, titles, cats = items
        absent = ~np.isin(ratings["movie_id"].astype(str), ids.astype(str))
        if absent.any():
            extra = np.unique(ratings["movie_id"][absent].astype(str)).astype(object)
            _missing_items(int(absent.sum()), len(extra), missing_items,
                           len(absent) if missing_items == "keep" else int((~absent).sum()))
            if missing_items == "keep":
                ids = np.concatenate([ids, extra])
                titles = np.concatenate([titles, np.full(len(extra), "", dtype=object)])
                cats = list(cats) + [[]] * len(extra)
            else:
                ratings = {k: v[~absent] for k, v in ratings.items()}
    if user_ids is not None:
        _absent_users(int((~np.isin(ratings["user_id"].astype(str), user_ids.astype(str))).sum()))
    genres, names = _multi_hot(cats)
    movies = {"movie_id": ids, "movie_title": titles, "movie_genres": genres}
    _loaded(name, len(ratings["user_id"]), len(np.unique(ratings["user_id"].astype(str))), len(ids), len(names))
    return MovieLensData(dataset=name, ratings=ratings, movies=movies)


def _user_table(raws: list[_Raw], c, where: str) -> np.ndarray:
    """The users table's ids (object ``[users]`` of ``str``), checked for duplicates."""
    user_ids = np.concatenate([_ids(r, c.id, f"{where}.columns.id") for r in raws])
    _unique_ids(user_ids, raws, c.id, where)
    return user_ids


def _read(spec: SourceSpec, interactions: Callable, items: Callable | None, users: Callable | None,
          where: str, *, rows: bool = False) -> Any:
    """The :class:`MovieLensData` of the tables; with ``rows``, ``(data, int64 [n]: the position of
    each kept row among the interactions table's rows)``."""
    ic = spec.interactions.columns
    ratings = _interactions(interactions(ic.columns(), f"{where}.interactions"), ic, f"{where}.interactions")
    if rows:
        ratings["_row"] = np.arange(len(ratings["user_id"]), dtype=np.int64)
    item_table = None
    if items is not None:
        raws = items(spec.items.columns.columns(), f"{where}.items")
        item_table = _catalogue(raws, spec.items.columns, f"{where}.items")
    user_ids = None
    if users is not None:
        user_ids = _user_table(users(spec.users.columns.columns(), f"{where}.users"), spec.users.columns,
                               f"{where}.users")
    data = _assemble(spec.name, ratings, item_table, user_ids, ic, spec.missing_items)
    return (data, data.ratings.pop("_row")) if rows else data


def read_source(spec: SourceSpec, *, where: str = "data.source") -> MovieLensData:
    """Reads the files ``spec`` names into a :class:`MovieLensData` (see the module docstring).

    ``where`` is the spec's dotted path, used in messages. Raises DataError (one line) on any
    problem with the files.
    """

    def reader(source):
        return lambda needed, w: _read_table(source, needed, w)

    return _read(spec, reader(spec.interactions), reader(spec.items) if spec.items else None,
                 reader(spec.users) if spec.users else None, where)


def read_interactions(source: InteractionsSource, *, where: str) -> dict[str, np.ndarray]:
    """Only the interactions table ``source`` names, as ``user_id``, ``movie_id`` (str ``[n]``),
    ``user_rating`` (float32 ``[n]``) and ``timestamp`` (int64 ``[n]``) columns, read exactly as
    :func:`read_source` reads them (``binary`` labels: the positive rows only).

    ``where`` is the dotted path named in messages. Raises DataError (one line) on any problem.
    """
    c = source.columns
    ratings = _interactions(_read_table(source, c.columns(), where), c, where)
    if c.label == "binary":
        keep = ratings["user_rating"] > 0
        ratings = {k: v[keep] for k, v in ratings.items()}
    return ratings


def read_items(source: ItemsSource, *, where: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Only the items table ``source`` names, read exactly as :func:`read_source` reads it:
    ``(ids object [m] of str (unique), texts object [m] of str ("" without a text column),
    categories: each item's list of category names)``.

    ``where`` is the dotted path (or flag) named in messages. Raises DataError (one line) on any problem.
    """
    return _catalogue(_read_table(source, source.columns.columns(), where), source.columns, where)
