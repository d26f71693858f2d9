"""``from_frame`` with typed features: DataFrames / dicts of arrays give exactly the feature arrays
the prepared dataset gives for the same tables as files, and bad input is refused with one line
naming the argument's dotted path. Small seeded generated data (the cold catalogue) only."""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest

from tfrs_lab.data import DataError, from_frame
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.prepared import prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import ConfigError, build


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """(the cold catalogue's data.source, its three tables as DataFrames)."""
    d = tmp_path_factory.mktemp("cold")
    source = write_cold_catalogue(d, users=12, categories=3, warm=3, cold=4, seed=1)
    frames = {t: pd.read_csv(d / f"{t}.csv") for t in ("clicks", "items", "users")}
    return source, frames


def frame_data(source, frames, **changes):
    kwargs = dict(columns={"user": "uid", "item": "sku", "time": "ts"}, items=frames["items"],
                  item_columns={"id": "sku"}, users=frames["users"], user_columns={"id": "uid"},
                  features=copy.deepcopy(source["features"]), name="cold-catalogue")
    kwargs.update(changes)
    return from_frame(frames["clicks"], **kwargs)


@pytest.mark.parametrize("missing_items", ["keep", "drop"])
def test_frames_give_the_feature_arrays_of_the_prepared_files(cold, tmp_path, missing_items):
    """Also with items absent from the items table: kept (missing values) or their clicks dropped
    (the context features then follow the kept rows)."""
    source, frames = cold
    frames = {**frames, "items": frames["items"].iloc[:-3]}  # 3 clicked items left out of the catalogue
    frames["items"].to_csv(tmp_path / "items.csv", index=False)
    source = {**source, "missing_items": missing_items,
              "items": {**source["items"], "path": str(tmp_path / "items.csv")}}
    files = Interactions.from_prepared(prepare_dataset(build(SourceSpec, source, "data.source"),
                                                       cache_dir=tmp_path / "cache"))
    memory = Interactions.of(frame_data(source, frames, missing_items=missing_items))
    assert len(memory.user) == len(files.user)
    assert (len(files.user) < len(frames["clicks"])) == (missing_items == "drop")
    assert list(memory.features) == [f["name"] for f in source["features"]]
    assert np.array_equal(memory.item_ids, files.item_ids) and np.array_equal(memory.user_ids, files.user_ids)
    for name, column in files.features.items():
        other = memory.features[name]
        assert list(other.vocabulary) == list(column.vocabulary) and np.array_equal(other.counts, column.counts), name
        assert other.stats == column.stats, name
        for part in ("codes", "offsets", "values"):
            a, b = getattr(column, part), getattr(other, part)
            assert (a is None) == (b is None), (name, part)
            assert a is None or (a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")), (name, part)
    # what the model reads is the same too (item, user and context tables by index)
    users = files.user_ids[:5]
    for a, b in zip(files.model_features(users), memory.model_features(users)):
        assert a.name == b.name and a.vocabulary == b.vocabulary and (a.rows is None) == (b.rows is None)
        assert a.rows is None or np.array_equal(a.rows, b.rows, equal_nan=a.rows.dtype.kind == "f")


def test_dict_of_arrays_and_a_2d_dense_feature(cold):
    source, frames = cold
    items = {c: frames["items"][c].to_numpy() for c in frames["items"].columns}
    items["vector"] = np.array([[float(x) for x in v.split()] for v in items["vector"]])  # [n, 4]
    data = frame_data(source, frames, items=items)
    expected = frame_data(source, frames).features["vector"].values
    assert np.array_equal(data.features["vector"].values, expected) and expected.shape[1] == 4


BAD = {
    "unknown key": (lambda kw: kw["features"][0].update(colour="red"), ConfigError,
                    r"^unknown config key 'features\[0\]\.colour': valid keys here are buckets, column, "),
    "bad type": (lambda kw: kw["features"][2].update(type="bool"), ConfigError,
                 r"^features\[2\]\.type must be one of categorical, .*; got 'bool'$"),
    "table not given": (lambda kw: kw.update(users=None), ConfigError,
                        r"^features\[5\]\.table is users but users= is not given: pass users= and user_columns= or move "
                        r"the feature$"),
    "missing column": (lambda kw: kw["features"][0].update(column="kind"), DataError,
                       r"^the items frame: no column 'kind' \(features\[0\]\.column\); its columns are 'sku', "
                       r"'category', .*: set features\[0\]\.column to one of them$"),
    "not a number": (lambda kw: kw.update(items=kw["items"].assign(price=["cheap"] + list(kw["items"]["price"][1:]))),
                     DataError, r"^the items frame, row 1, column 'price' \(features\[3\]\.column\): 'cheap' is not "
                                r"a number: fix the value or drop the feature$"),
    "context value": (lambda kw: kw.update(clicks=kw["clicks"].assign(dwell=["slow"] + list(kw["clicks"]["dwell"][1:]))),
                      DataError, r"^the interactions frame, row 1, column 'dwell' \(features\[8\]\.column\): 'slow' is "
                                 r"not a number"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_feature_input_is_one_line_naming_the_argument(cold, case):
    source, frames = cold
    kwargs = dict(columns={"user": "uid", "item": "sku", "time": "ts"}, items=frames["items"].copy(),
                  item_columns={"id": "sku"}, users=frames["users"], user_columns={"id": "uid"},
                  features=copy.deepcopy(source["features"]), clicks=frames["clicks"])
    edit, error, message = BAD[case]
    edit(kwargs)
    clicks = kwargs.pop("clicks")
    with pytest.raises(error) as e:
        from_frame(clicks, **kwargs)
    assert "\n" not in str(e.value) and re.search(message, str(e.value)), str(e.value)
