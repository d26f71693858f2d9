"""Vectorised conversions of pyarrow columns (``pyarrow.compute`` / numpy; no Python object per
value) that the preparation uses for the interactions' ids, ratings and times
(:mod:`tfrs_lab.data.prepared`) and for typed feature columns (:mod:`tfrs_lab.data.typed`).

Each function returns exactly what the readers' per-value conversion (:mod:`tfrs_lab.data.readers`,
:mod:`tfrs_lab.data.typed`) returns for the same column, or None when a value needs that per-value
conversion (a missing or malformed value, an unusual type): the caller then runs it, which either
accepts the value (``1_000``) or raises the one-line error naming the file, line and column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PY_WHITESPACE", "category_strings", "dense_rows", "split_lists", "strip"]

PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                 "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
"""The characters ``str.strip()`` removes (``str.isspace()``), so :func:`strip` trims as Python does."""
_BLANK = r"^[\s\x0b\x1c-\x1f\x85\p{Z}]*$"  # what str.strip() empties: an id needs a per-row check


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

    col = _decoded(col)
    if col.null_count or not _is_text(col.type):
        return None
    col = pc.utf8_trim_whitespace(col)
    for ts in (pa.timestamp("s", tz="UTC"), pa.timestamp("s")):
        try:
            return np.asarray(pc.cast(pc.cast(col, ts), pa.int64()).to_numpy(), dtype=np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def strip(col: Any) -> Any:
    """Text values with :data:`PY_WHITESPACE` trimmed at both ends (``str.strip()``)."""
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    return pc.utf8_trim(col, characters=PY_WHITESPACE)


def _flat(col: Any) -> Any:
    """A chunked column as one array."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def category_strings(col: Any) -> Any:
    """A categorical column -> pyarrow string ``[k]``, null where the value is missing (null, NaN,
    blank text), text stripped, whole numbers without a decimal point (``7`` for 7.0); None for
    other types and fractional or infinite numbers (the per-value conversion decides those)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _flat(_decoded(col))
    t = col.type
    if _is_text(t):
        text = strip(pc.cast(col, pa.string()))
        return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if pa.types.is_integer(t):
        if col.null_count and (pc.max(pc.abs(pc.cast(col, pa.int64()))).as_py() or 0) > 2 ** 53:
            return None  # read per value through float64 (nulls as NaN): such ids are not exact there
        return pc.cast(pc.cast(col, pa.int64()), pa.string())
    if pa.types.is_float64(t):  # (float32 NaN is the text 'nan' per value, not a missing value)
        v = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls -> NaN: missing
        missing = np.isnan(v)
        if not (np.isfinite(v[~missing]) & (v[~missing] == np.round(v[~missing]))).all():
            return None
        whole = pc.cast(pa.array(np.where(missing, 0, v).astype(np.int64)), pa.string())
        return pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), whole)
    return None


def split_lists(col: Any, separator: str) -> tuple[Any, np.ndarray] | None:
    """A multi-valued column (``separator``-joined text, or a list of text / whole numbers) ->
    (pyarrow string ``[nnz]``: every row's values in order, each stripped, empty ones dropped;
    int64 ``[k]`` values per row: 0 for a missing row); None for other types."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _flat(_decoded(col))
    t = col.type
    if _is_text(t):
        lists = pc.split_pattern(pc.cast(col, pa.string()), pattern=separator)
    elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
            _is_text(t.value_type) or pa.types.is_integer(t.value_type)):
        lists = col
    else:
        return None
    values = pc.list_flatten(lists)
    parent = np.asarray(pc.list_parent_indices(lists).to_numpy(), np.int64)
    if pa.types.is_integer(values.type):
        values = pc.cast(pc.cast(values, pa.int64()), pa.string())
    values = strip(pc.cast(values, pa.string()))
    keep = pc.fill_null(pc.not_equal(values, ""), False)
    values = values.filter(keep)
    parent = parent[np.asarray(keep.to_numpy(zero_copy_only=False), bool)]
    return values, np.bincount(parent, minlength=len(col)).astype(np.int64)


def dense_rows(col: Any, size: int, separator: str) -> np.ndarray | None:
    """A dense column (``separator``-joined numbers, or a list of numbers per row) -> float32
    ``[k, size]``; None when a row is missing, has another length, or holds a value that is not
    a finite number."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    col = _flat(_decoded(col))
    if col.null_count:
        return None
    t = col.type
    if _is_text(t):
        lists = pc.split_pattern(pc.cast(col, pa.string()), pattern=separator)
    elif (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
            or _is_text(t.value_type)):
        lists = col
    else:
        return None
    lengths = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False))
    if len(lists) and (lengths != size).any():
        return None
    values = pc.list_flatten(lists)
    try:
        if values.null_count:
            return None
        v = np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not np.isfinite(v).all():
        return None
    return v.astype(np.float32).reshape(len(lists), size)
