"""Typed feature columns (``data.source.features``): every type prepared into compact arrays aligned
with the codes, reloaded, fingerprinted; every bad input refused with one line naming the setting,
file and column, exit code 2, nothing cached. Small seeded generated CSV files in tmp_path only."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import yaml

from tfrs_lab.data.__main__ import main
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.prepared import FORMAT_VERSION, fingerprint, load_prepared, prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import ConfigError, build


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """(the ``data.source`` mapping of the cold catalogue, its folder)."""
    d = tmp_path_factory.mktemp("cold")
    return write_cold_catalogue(d, users=12, categories=3, warm=3, cold=4, seed=1), d


def spec_of(source) -> SourceSpec:
    return build(SourceSpec, source, "data.source")


def test_every_type_prepares_into_compact_arrays_aligned_with_the_codes(cold, tmp_path):
    source, d = cold
    p = prepare_dataset(spec_of(source), cache_dir=tmp_path)
    assert p.manifest["format_version"] == FORMAT_VERSION == 2
    f = p.features
    assert list(f) == [x["name"] for x in source["features"]]
    items = np.genfromtxt(d / "items.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    row = {sku: i for i, sku in enumerate(items["sku"])}
    at = np.array([row[s] for s in p.item_ids])  # the items table's row of each item code
    # categorical: codes into a vocabulary with counts, most frequent first
    cat = f["category"]
    assert cat.codes.dtype == np.int32 and cat.codes.shape == (len(p.item_ids),)
    assert list(cat.vocabulary[cat.codes - 1]) == list(items["category"][at])
    assert sorted(cat.counts.tolist(), reverse=True) == cat.counts.tolist() and cat.counts.sum() == len(items)
    # multi_categorical: CSR offsets + codes
    tags = f["tags"]
    assert tags.offsets.dtype == np.int64 and tags.offsets.shape == (len(p.item_ids) + 1,)
    for code in range(len(p.item_ids)):
        got = sorted(tags.vocabulary[tags.codes[tags.offsets[code]:tags.offsets[code + 1]] - 1])
        assert got == sorted(items["tags"][at[code]].split("|"))
    # text: token ids, 0 pads, words from the vocabulary
    title = f["title"]
    assert title.codes.shape == (len(p.item_ids), 6) and title.codes.dtype == np.int32
    words = [title.vocabulary[t - 2] for t in title.codes[0] if t >= 2]
    assert words == items["title"][at[0]].lower().split()
    # numeric: raw float32 with its normalisation statistics (log1p for normalize: log)
    price = f["price"]
    assert price.values.dtype == np.float32
    np.testing.assert_allclose(price.values, items["price"][at], rtol=1e-6)
    assert price.stats["mean"] == pytest.approx(np.log1p(items["price"]).mean(), rel=1e-6)
    assert len(price.stats["boundaries"]) == 3
    # dense: float32 [n, size]
    vec = f["vector"]
    assert vec.values.shape == (len(p.item_ids), 4) and vec.values.dtype == np.float32
    np.testing.assert_allclose(vec.values[0], [float(x) for x in items["vector"][at[0]].split()], rtol=1e-6)
    # users: per user code; hashing keeps the vocabulary (the model hashes it)
    users = np.genfromtxt(d / "users.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    urow = {u: i for i, u in enumerate(users["uid"])}
    country, age = f["country"], f["age"]
    assert list(country.vocabulary[country.codes - 1]) == [users["country"][urow[u]] for u in p.user_ids]
    np.testing.assert_allclose(age.values, [users["age"][urow[u]] for u in p.user_ids])
    # interactions: per row, in the prepared row order
    clicks = np.genfromtxt(d / "clicks.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert list(f["device"].vocabulary[f["device"].codes - 1]) == list(clicks["device"])
    np.testing.assert_allclose(f["dwell"].values, clicks["dwell"], rtol=1e-6)
    assert f["clicked_at"].values.dtype == np.int64
    np.testing.assert_array_equal(f["clicked_at"].values, clicks["ts"])
    np.testing.assert_array_equal(f["clicked_at"].values, p.timestamp)
    # reloading gives the same arrays
    again = load_prepared(p.path)
    for name, column in p.features.items():
        for part in ("codes", "offsets", "values"):
            if getattr(column, part) is not None:
                np.testing.assert_array_equal(getattr(again.features[name], part), getattr(column, part))


def test_features_change_the_fingerprint(cold):
    source, _ = cold
    fewer = {**source, "features": source["features"][:2]}
    assert fingerprint(spec_of(source))[0] != fingerprint(spec_of(fewer))[0]


def test_model_tables_map_unknown_entities_and_rare_values_to_row_zero(tmp_path):
    (tmp_path / "i.csv").write_text("u,i\na,x\na,y\nb,z\nc,x\n")
    (tmp_path / "items.csv").write_text("id,brand,score\nx,acme,1.5\ny,acme,2.5\nw,zeta,9\n")  # z: absent
    (tmp_path / "users.csv").write_text("id,segment\na,gold\nb,gold\nc,blue\n")
    source = {"interactions": {"path": str(tmp_path / "i.csv"), "columns": {"user": "u", "item": "i"}},
              "items": {"path": str(tmp_path / "items.csv"), "columns": {"id": "id"}},
              "users": {"path": str(tmp_path / "users.csv"), "columns": {"id": "id"}},
              "features": [{"name": "brand", "table": "items", "column": "brand", "type": "categorical", "min_count": 2},
                           {"name": "score", "table": "items", "column": "score", "type": "numeric"},
                           {"name": "segment", "table": "users", "column": "segment", "type": "categorical",
                            "max_size": 1}]}
    data = Interactions.from_prepared(prepare_dataset(spec_of(source), cache_dir=tmp_path / "cache"))
    assert list(data.item_ids) == ["x", "y", "w", "z"]  # z kept (missing_items: keep) after the catalogue
    brand, score, segment = data.model_features(np.array(["a", "c"], dtype=object))
    # brand: acme (2 items) kept, zeta (1 < min_count) and the missing brand of z -> 0; row 0 unknown
    assert brand.vocabulary == ("acme",) and brand.rows.tolist() == [0, 1, 1, 0, 0]
    assert np.isnan(score.rows[[0, 4]]).all() and score.rows[1:4].tolist() == [1.5, 2.5, 9.0]
    # segment: users a and c of the vocabulary, max_size 1 keeps gold only
    assert segment.side == "user" and segment.vocabulary == ("gold",) and segment.rows.tolist() == [0, 1, 0]


BAD_SPECS = {
    "unknown type": (lambda s: s["features"][2].update(type="bool"),
                     r"^data.source.features\[2\].type must be one of categorical, multi_categorical, text, numeric, "
                     r"timestamp, dense; got 'bool'$"),
    "unknown key": (lambda s: s["features"][0].update(colour="red"),
                    r"^unknown config key 'data.source.features\[0\].colour': valid keys here are buckets, column, "),
    "dense without size": (lambda s: s["features"][4].pop("size"),
                           r"^data.source.features\[4\].size is required for a dense feature"),
    "table not given": (lambda s: s.pop("users"),
                        r"^data.source.features\[5\].table is users but data.source.users is not given"),
    "duplicate name": (lambda s: s["features"][1].update(name="category"),
                       r"^data.source.features\[1\].name 'category' is used twice"),
    "reserved name": (lambda s: s["features"][0].update(name="user_id"),
                      r"^data.source.features\[0\].name 'user_id' is reserved"),
    "hash on numeric": (lambda s: s["features"][3].update(hash_buckets=8),
                        r"^data.source.features\[3\].hash_buckets is only read for categorical"),
    "text on interactions": (lambda s: s["features"][7].update(type="text"),
                             r"^data.source.features\[7\].type text is not supported on the interactions table: .*"
                             r"does not tokenise text yet .*as a multi_categorical feature$"),
}


@pytest.mark.parametrize("case", BAD_SPECS)
def test_bad_feature_spec_is_one_config_error(case, cold):
    source = copy.deepcopy(cold[0])
    edit, message = BAD_SPECS[case]
    edit(source)
    with pytest.raises(ConfigError, match=message) as e:
        spec_of(source)
    assert "\n" not in str(e.value)


BAD_FILES = {
    "missing column": ("items.csv", r"items.csv: no column 'category' "
                       r"\(data.source.features\[0\].column\); its columns are 'sku', 'kind'.*: set "
                       r"data.source.features\[0\].column to one of them"),
    "not a number": ("items.csv", r"items.csv, line 2, column 'price' "
                     r"\(data.source.features\[3\].column\): 'cheap' is not a number"),
    "dense of the wrong size": ("items.csv", r"items.csv, line 2, column 'vector' "
                                r"\(data.source.features\[4\].column\): .* is not 4 numbers"),
    "bad time": ("clicks.csv", r"clicks.csv, line 2, column 'device' \(data.source.features\[9\].column\): "
                 r"'(web|app)' is not an ISO-8601 time .*set data.source.features\[9\].time_format: unix"),
}


def _break(case: str, d) -> None:
    path = d / BAD_FILES[case][0]
    lines = path.read_text().splitlines()
    if case == "missing column":
        lines[0] = lines[0].replace("sku,category", "sku,kind")
    elif case == "not a number":
        cells = lines[1].split(",")
        cells[4] = "cheap"
        lines[1] = ",".join(cells)
    elif case == "dense of the wrong size":  # ("bad time" edits the spec, not the file)
        cells = lines[1].split(",")
        cells[5] = "1 2 3"
        lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_feature_values_exit_2_with_one_line_and_cache_nothing(case, tmp_path, capsys):
    source = write_cold_catalogue(tmp_path / "files", users=6, categories=2, warm=2, cold=2, seed=2)
    if case == "bad time":  # the timestamp feature read from a text column
        source["features"][9].update(column="device", time_format="iso8601")
    _break(case, tmp_path / "files")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(source))
    cache = tmp_path / "cache"
    code = main(["prepare", "--data", str(spec_file), "--output-dir", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(BAD_FILES[case][1], err[0]), err[0]
    assert not cache.exists() or not any(cache.iterdir())
