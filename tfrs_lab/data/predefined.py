"""The rows of a ``predefined`` split (``data.split: predefined``; docs/architecture.md#splits).

* MovieLens 100K (``data.predefined``: ``u1`` … ``u5``, ``ua``, ``ub``, with the archive as
  ``data.data_zip``): the archive's ``<name>.base`` / ``<name>.test`` files when it ships them.
  An archive without them (they are derived files) gets them derived from its ``u.data`` exactly
  as the archive's own ``mku.sh`` does: ``u<i>.test`` is lines ``20000 (i-1) + 1`` … ``20000 i`` of
  ``u.data`` in file order, ``u<i>.base`` the rest; ``ua.test`` / ``ub.test`` (``allbut.pl``) hold
  each user's 1st-10th / 11th-20th rating in file order, ``.base`` the rest.
* Your own data (``data.dataset: own``): ``data.predefined`` is a file of test interactions in the
  format and columns of ``data.source.interactions``; every other interaction is train.

Tables are ``user_id``, ``movie_id`` (str ``[n]``), ``timestamp`` (int64 ``[n]``) columns that
:func:`tfrs_lab.data.splits.predefined_split` matches against the ratings.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile

import numpy as np

from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.readers import read_interactions
from tfrs_lab.data.spec import InteractionsSource

__all__ = ["MOVIELENS_100K_SPLITS", "movielens_split_rows", "own_test_rows"]

MOVIELENS_100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_FOLD_ROWS = 20_000  # mku.sh: u<i>.test = lines 20000 (i-1) + 1 .. 20000 i of u.data
_ALLBUT = {"ua": (1, 10), "ub": (11, 20)}  # allbut.pl: each user's n-th ratings (1-based, file order)

Table = dict[str, np.ndarray]


def _parse(text: bytes, member: str) -> Table:
    """Tab-separated ``user item rating timestamp`` lines -> columns (file order kept)."""
    try:
        table = np.loadtxt(io.BytesIO(text), dtype=str, delimiter="\t", ndmin=2)
        cols = {"user_id": table[:, 0].astype(object), "movie_id": table[:, 1].astype(object),
                "timestamp": table[:, 3].astype(np.int64)}
    except (ValueError, IndexError) as e:
        raise DataError(f"{member}: not MovieLens 100K 'user<TAB>item<TAB>rating<TAB>timestamp' lines ({e})") from None
    return cols


def _take(table: Table, mask: np.ndarray) -> Table:
    return {k: v[mask] for k, v in table.items()}


def movielens_split_rows(archive: str | os.PathLike, name: str) -> tuple[Table, Table]:
    """(train rows, test rows) of the MovieLens 100K split ``name`` (``u1`` … ``ub``) of ``archive``.

    Raises:
        DataError: an unknown name, or an archive without the split files and without ``u.data``.
    """
    if name not in MOVIELENS_100K_SPLITS:
        raise DataError(f"data.predefined={name!r}: choose {', '.join(MOVIELENS_100K_SPLITS)}")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {m.rsplit("/", 1)[-1]: m for m in zf.namelist() if not m.endswith("/")}
            if f"{name}.base" in members and f"{name}.test" in members:
                base, test = (members[f"{name}.{part}"] for part in ("base", "test"))
                return _parse(zf.read(base), base), _parse(zf.read(test), test)
            if "u.data" not in members:
                raise DataError(f"{archive}: neither {name}.base/{name}.test nor u.data in the archive: pass the "
                                "MovieLens 100K archive (ml-100k.zip) as --data-zip")
            data = _parse(zf.read(members["u.data"]), members["u.data"])
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{archive}: cannot read the archive ({e}): pass ml-100k.zip as --data-zip") from None
    n = len(data["user_id"])
    if name in _ALLBUT:
        first, last = _ALLBUT[name]
        users = data["user_id"].astype(str)
        order = np.argsort(users, kind="stable")  # file order within each user
        sorted_users = users[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        nth = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1  # 1-based position per user
        is_test = np.zeros(n, bool)
        is_test[order] = (nth >= first) & (nth <= last)
    else:
        fold = int(name[1:])
        is_test = (np.arange(n) >= _FOLD_ROWS * (fold - 1)) & (np.arange(n) < _FOLD_ROWS * fold)
    return _take(data, ~is_test), _take(data, is_test)


def own_test_rows(interactions: InteractionsSource, path: str) -> Table:
    """The test rows of your own data: ``path`` read with ``interactions``' format and columns.

    Raises:
        DataError: the file cannot be read, or the interactions have no time column to match on.
    """
    if interactions.columns.time is None:
        raise DataError("data.predefined with your own data matches rows on (user, item, time): name the time "
                        "column (data.source.interactions.columns.time) or use another split")
    source = dataclasses.replace(interactions, path=path)
    return {k: v for k, v in read_interactions(source, where="data.predefined").items() if k != "user_rating"}
