"""Your own data: each reader, each column role, the items table, and the spec's validation.

Small generated files in tmp_path only; no training here (tests/training/test_own_data_train.py).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.data import DataError, from_frame, read_source
from tfrs_lab.data.spec import SourceSpec, parse_columns, quick_source
from tfrs_lab.schema import build

ROWS = [  # listener, track, plays, when (ISO), when (unix)
    ("anna", "t1", 3, "2020-01-01T00:00:00Z", 1577836800),
    ("anna", "t2", 1, "2020-01-02T00:00:00Z", 1577923200),
    ("ben", "t1", 7, "2020-01-03T00:00:00+01:00", 1578006000),
    ("ben", "t3", 2, "2020-01-04 00:00:00", 1578096000),
]


def spec(path, columns, **extra) -> SourceSpec:
    return build(SourceSpec, {"interactions": {"path": str(path), "columns": columns, **extra}}, "data.source")


def write_csv(path, header, rows, delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_ratings(data, *, ratings=(3, 1, 7, 2), times=tuple(r[4] for r in ROWS)):
    r = data.ratings
    assert list(r["user_id"]) == ["anna", "anna", "ben", "ben"]
    assert list(r["movie_id"]) == ["t1", "t2", "t1", "t3"]
    assert r["user_id"].dtype == object and isinstance(r["user_id"][0], str)
    assert r["user_rating"].dtype == np.float32 and list(r["user_rating"]) == list(ratings)
    assert r["timestamp"].dtype == np.int64 and list(r["timestamp"]) == list(times)
    assert sorted(data.movies["movie_id"]) == ["t1", "t2", "t3"]


# --------------------------------------------------------------------------- readers


def test_csv_with_arbitrary_column_names_and_iso_times(tmp_path):
    f = write_csv(tmp_path / "plays.csv", ["listener", "track", "plays", "when"], [r[:4] for r in ROWS])
    data = read_source(spec(f, {"user": "listener", "item": "track", "rating": "plays", "label": "implicit",
                                "time": "when", "time_format": "iso8601"}))
    check_ratings(data)
    assert data.dataset == "own"


def test_tsv_and_sniffed_dat_file_without_quoting(tmp_path):
    rows = [(u, i, p, unix) for u, i, p, _, unix in ROWS]
    tsv = write_csv(tmp_path / "plays.tsv", ["u", "i", "p", "t"], rows, "\t")
    columns = {"user": "u", "item": "i", "rating": "p", "time": "t"}
    check_ratings(read_source(spec(tsv, columns)))
    # .dat: delimiter sniffed from the first line, quoting off: a value that starts with a quote (as
    # Last.fm's "Weird Al" Yankovic does) comes back verbatim; with quoting on it would lose its quotes
    dat = write_csv(tmp_path / "plays.dat", ["u", "i", "p", "t"], [(u, f'"{i}" x', p, t) for u, i, p, t in rows], "\t")
    data = read_source(spec(dat, columns))
    assert list(data.ratings["movie_id"]) == ['"t1" x', '"t2" x', '"t1" x', '"t3" x']


def test_csv_without_header_and_other_delimiter(tmp_path):
    f = tmp_path / "u1.base"
    f.write_text("".join(f"{u};{i};{p};{t}\n" for u, i, p, _, t in ROWS))
    s = spec(f, {"user": "a", "item": "b", "rating": "c", "time": "d"}, format="csv",
             csv={"header": False, "names": ["a", "b", "c", "d"], "delimiter": ";"})
    check_ratings(read_source(s))


def test_latin1_encoding_is_decoded(tmp_path):
    f = tmp_path / "plays.csv"
    f.write_bytes("u,i\nJosé,Café\n".encode("latin-1"))
    data = read_source(spec(f, {"user": "u", "item": "i"}, csv={"encoding": "latin-1"}))
    assert list(data.ratings["user_id"]) == ["José"] and list(data.ratings["movie_id"]) == ["Café"]


def test_parquet_with_integer_ids_and_glob_of_shards(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for shard, rows in enumerate((ROWS[:2], ROWS[2:])):
        pq.write_table(pa.table({"uid": [100 + (r[0] == "ben") for r in rows], "sku": [int(r[1][1]) for r in rows],
                                 "stars": [float(r[2]) for r in rows], "ts": [r[4] for r in rows]}),
                       tmp_path / f"part-{shard}.parquet")
    data = read_source(spec(tmp_path / "part-*.parquet", {"user": "uid", "item": "sku", "rating": "stars",
                                                           "time": "ts"}))
    assert list(data.ratings["user_id"]) == ["100", "100", "101", "101"]  # ints become "100", not "100.0"
    assert list(data.ratings["movie_id"]) == ["1", "2", "1", "3"]
    assert list(data.ratings["timestamp"]) == [r[4] for r in ROWS]


def test_jsonl(tmp_path):
    f = tmp_path / "plays.jsonl"
    f.write_text("".join(json.dumps({"who": u, "what": i, "n": p, "at": t}) + "\n" for u, i, p, _, t in ROWS))
    check_ratings(read_source(spec(f, {"user": "who", "item": "what", "rating": "n", "time": "at"})))


def _tfrecord(path, rows, compress=False):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options="GZIP" if compress else None) as w:
        for u, i, p, _, t in rows:
            ex = tf.train.Example()
            ex.features.feature["user"].bytes_list.value.append(u.encode())
            ex.features.feature["item"].bytes_list.value.append(i.encode())
            ex.features.feature["plays"].float_list.value.append(p)
            ex.features.feature["ts"].int64_list.value.append(t)
            w.write(ex.SerializeToString())
    return path


def test_tfrecord_plain_and_gzip_shards(tmp_path):
    _tfrecord(tmp_path / "a.tfrecord", ROWS[:3])
    _tfrecord(tmp_path / "b.tfrecord", ROWS[3:])
    columns = {"user": "user", "item": "item", "rating": "plays", "time": "ts"}
    check_ratings(read_source(spec(tmp_path / "*.tfrecord", columns)))
    check_ratings(read_source(spec(_tfrecord(tmp_path / "all.gz", ROWS, compress=True), columns)))


def test_dict_of_arrays_and_dataframe():
    columns = {"user": "u", "item": "i", "rating": "r", "time": "t"}
    frame = {"u": np.array([r[0] for r in ROWS]), "i": [r[1] for r in ROWS], "r": [r[2] for r in ROWS],
             "t": np.array([r[4] for r in ROWS])}
    check_ratings(from_frame(frame, columns))
    pd = pytest.importorskip("pandas")
    check_ratings(from_frame(pd.DataFrame(frame), columns, name="frame"))


# --------------------------------------------------------------------------- roles


def test_no_rating_and_no_time_mean_weight_one_and_row_order(tmp_path):
    f = write_csv(tmp_path / "p.csv", ["u", "i"], [r[:2] for r in ROWS])
    data = read_source(spec(f, {"user": "u", "item": "i"}))
    assert list(data.ratings["user_rating"]) == [1.0] * 4
    assert list(data.ratings["timestamp"]) == [0, 1, 2, 3]


def test_binary_labels_keep_only_positive_rows(tmp_path, caplog):
    f = write_csv(tmp_path / "clicks.csv", ["u", "i", "clicked"],
                  [("a", "x", 1), ("a", "y", 0), ("b", "x", "true"), ("b", "z", "false")])
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        data = read_source(spec(f, {"user": "u", "item": "i", "rating": "clicked", "label": "binary"}))
    assert list(zip(data.ratings["user_id"], data.ratings["movie_id"])) == [("a", "x"), ("b", "x")]
    assert list(data.ratings["user_rating"]) == [1.0, 1.0]
    assert "2 positive interactions kept, 2 negative dropped" in caplog.text
    with pytest.raises(DataError, match=r"line 2, column 'clicked'.*5 is not 0 or 1"):
        write_csv(f, ["u", "i", "clicked"], [("a", "x", 5)])
        read_source(spec(f, {"user": "u", "item": "i", "rating": "clicked", "label": "binary"}))


def test_items_table_text_categories_and_missing_items(tmp_path, caplog):
    inter = write_csv(tmp_path / "p.csv", ["u", "i"], [("a", "1"), ("a", "2"), ("b", "9")])
    items = tmp_path / "items.csv"
    items.write_text('id,title,tags\n1,"Song, live",rock|pop\n2,Ballad,\n3,Unplayed,jazz|rock\n')
    source = {"interactions": {"path": str(inter), "columns": {"user": "u", "item": "i"}},
              "items": {"path": str(items), "columns": {"id": "id", "text": "title", "categories": "tags"}}}
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        data = read_source(build(SourceSpec, source, "data.source"))
    m = data.movies
    assert list(m["movie_id"]) == ["1", "2", "3", "9"]  # the table's order, then the absent item kept
    assert list(m["movie_title"]) == ["Song, live", "Ballad", "Unplayed", ""]
    # categories: sorted observed vocabulary jazz, pop, rock
    assert m["movie_genres"].tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0]]
    assert "1 interactions (1 distinct items) name an item absent from the items table" in caplog.text
    dropped = read_source(build(SourceSpec, {**source, "missing_items": "drop"}, "data.source"))
    assert list(dropped.ratings["movie_id"]) == ["1", "2"] and list(dropped.movies["movie_id"]) == ["1", "2", "3"]


def test_no_items_table_catalogue_is_the_interactions_items(tmp_path):
    f = write_csv(tmp_path / "p.csv", ["u", "i"], [("a", "b2"), ("a", "b1"), ("c", "b2")])
    data = read_source(spec(f, {"user": "u", "item": "i"}))
    assert list(data.movies["movie_id"]) == ["b1", "b2"]
    assert data.movies["movie_genres"].shape == (2, 1) and not data.movies["movie_genres"].any()


def test_users_table_checked_for_duplicates_and_absent_users_counted(tmp_path, caplog):
    inter = write_csv(tmp_path / "p.csv", ["u", "i"], [("a", "1"), ("z", "2")])
    users = write_csv(tmp_path / "users.csv", ["uid"], [("a",), ("b",)])
    source = {"interactions": {"path": str(inter), "columns": {"user": "u", "item": "i"}},
              "users": {"path": str(users), "columns": {"id": "uid"}}}
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        read_source(build(SourceSpec, source, "data.source"))
    assert "1 interactions name a user absent from the users table" in caplog.text
    write_csv(users, ["uid"], [("a",), ("a",)])
    with pytest.raises(DataError, match=r"users.csv: id 'a' appears 2 times in column 'uid' "
                                        r"\(data.source.users.columns.id\)"):
        read_source(build(SourceSpec, source, "data.source"))


def test_not_a_tfrecord_file(tmp_path):
    f = tmp_path / "plays.tfrecord"
    f.write_bytes(b"this is not a record file at all")
    with pytest.raises(DataError, match=r"plays.tfrecord is not a TFRecord file of tf.train.Example"):
        read_source(spec(f, {"user": "u", "item": "i"}))


# --------------------------------------------------------------------------- spec and quick path


def test_spec_errors_name_the_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.source.interactions.columns.usr'"):
        load_config("retrieval", extra={"data": {"dataset": "own", "source": {
            "interactions": {"path": "x.csv", "columns": {"usr": "u"}}}}})
    with pytest.raises(ConfigError, match=r"data.source.interactions.path is required"):
        load_config("retrieval", extra={"data": {"dataset": "own", "source": {}}})
    with pytest.raises(ConfigError, match=r"data.source is required with data.dataset=own"):
        load_config("retrieval", extra={"data": {"dataset": "own"}})
    with pytest.raises(ConfigError, match=r"data.source.interactions.csv.names must list"):
        load_config("ranking", extra={"data": {"dataset": "own", "source": {
            "interactions": {"path": "x", "csv": {"header": False}}}}})


def test_quick_path_columns():
    assert parse_columns("id=movieId,text=title,categories=genres:|", "--item-columns", ("id", "text", "categories")) \
        == {"id": "movieId", "text": "title", "categories": "genres", "separator": "|"}
    source = quick_source("p.csv", "user=userId,item=movieId,rating=rating", "m.csv", "id=movieId")
    assert source["interactions"]["columns"] == {"user": "userId", "item": "movieId", "rating": "rating"}
    assert source["interactions"]["path"].endswith("/p.csv") and source["items"]["columns"] == {"id": "movieId"}
    with pytest.raises(ConfigError, match="--columns must name the item column"):
        quick_source("p.csv", "user=userId")
    with pytest.raises(ConfigError, match="unknown role 'colour'"):
        quick_source("p.csv", "user=u,item=i,colour=c")
