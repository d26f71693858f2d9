"""Your own data from Python: a pandas DataFrame or a dict of equal-length arrays, read by the same
readers and validated like the files (docs/own-data.md#from-python), with typed features encoded by
the same steps as the prepared dataset's (:mod:`tfrs_lab.data.typed`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.readers import _frame_table, _read
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.typed import (FeatureColumn, column_of, feature_needed, frame_part, interaction_values,
                                 side_features)
from tfrs_lab.schema import ConfigError, build

__all__ = ["from_frame"]

_WHERE = "from_frame"
_ARGUMENTS = {"interactions": ("columns", "the interactions frame"), "items": ("item_columns", "the items frame"),
              "users": ("user_columns", "the users frame")}


def _renamed(message: str) -> str:
    """A spec message as :func:`from_frame`'s arguments spell it (``columns.user``, ``features[0].type``)."""
    for table, (argument, _) in _ARGUMENTS.items():
        message = message.replace(f"{_WHERE}.{table}.columns", argument)
        message = message.replace(f"but {_WHERE}.{table} is not given: add the {table} table (path, columns)",
                                  f"but {table}= is not given: pass {table}= and {argument}=")
    return message.replace(f"{_WHERE}.features", "features")


def from_frame(interactions: Any, columns: Mapping[str, str], *, items: Any = None,
               item_columns: Mapping[str, str] | None = None, users: Any = None,
               user_columns: Mapping[str, str] | None = None, features: Sequence[Mapping[str, Any]] = (),
               name: str = "own", missing_items: str = "keep") -> MovieLensData:
    """Your own data from Python: a pandas DataFrame (or a dict of equal-length arrays) of
    interactions, optionally one of items and one of users, -> the :class:`MovieLensData` every
    task trains on::

        data = tfrs_lab.data.from_frame(df, columns={"user": "userId", "item": "movieId", "rating": "rating"},
                                        features=[{"name": "device", "table": "interactions",
                                                   "column": "device", "type": "categorical"}])
        run = tfrs_lab.train("retrieval", data=data, output_dir="runs/mine")

    ``columns``: the roles of :class:`~tfrs_lab.data.spec.InteractionColumns` (``user``, ``item``,
    ``rating``, ``label``, ``time``, ``time_format``); ``item_columns`` those of
    :class:`~tfrs_lab.data.spec.ItemColumns` (``id``, ``text``, ``categories``, ``separator``);
    ``user_columns``: ``id``. ``features``: entries of ``data.source.features``
    (:class:`~tfrs_lab.data.spec.FeatureSpec`; ``table`` names the frame: ``interactions``,
    ``items``, ``users``), encoded as the prepared dataset encodes them (a dense feature may be a
    2-D array [n, size]) into ``MovieLensData.features``; retrieval reads them.

    Raises ConfigError for an unknown role or a bad feature entry, DataError for a problem with the
    values: one line naming the argument's dotted path (``columns.user``, ``features[2].column``).
    """
    frames = {"interactions": interactions, "items": items, "users": users}
    given = {"items": item_columns, "users": user_columns}
    try:
        spec = build(SourceSpec, {
            "name": name, "missing_items": missing_items,
            "interactions": {"path": "<DataFrame>", "columns": dict(columns)},
            **{t: {"path": "<DataFrame>", "columns": dict(given[t] or {})} for t in ("items", "users")
               if frames[t] is not None},
            "features": [dict(f) for f in features]}, _WHERE)
    except ConfigError as e:
        raise ConfigError(_renamed(str(e))) from e

    def frame(table: str):
        argument, what = _ARGUMENTS[table]
        return lambda needed, w: _frame_table(frames[table], needed, w.replace(f"{_WHERE}.{table}", argument), what)

    try:
        data, rows = _read(spec, frame("interactions"), frame("items") if items is not None else None,
                           frame("users") if users is not None else None, _WHERE, rows=True)
        if not spec.features:
            return data
        return dataclasses.replace(data, features=_features(spec, data, rows, frames))
    except DataError as e:
        raise DataError(_renamed(str(e))) from e


def _features(spec: SourceSpec, data: MovieLensData, rows: np.ndarray, frames: dict[str, Any]) -> dict[str, FeatureColumn]:
    """The typed features of the frames aligned as ``MovieLensData.features`` documents."""

    def parts(table: str, needed: Mapping[str, str]):
        argument, what = _ARGUMENTS[table]
        return [frame_part(frames[table], needed, argument, what)]

    out = side_features(spec, _WHERE, item_ids=np.asarray(data.movies["movie_id"], dtype=object),
                        user_ids=np.unique(data.ratings["user_id"].astype(object)), parts=parts)
    needed = feature_needed(spec, "interactions", _WHERE)
    if needed:
        part = dataclasses.replace(parts("interactions", needed)[0], rows=rows)
        values = interaction_values(spec, part, _WHERE)
        out.update({f.name: column_of(f, [values[f.name]]) for f in spec.features if f.table == "interactions"})
    return {f.name: out[f.name] for f in spec.features}
