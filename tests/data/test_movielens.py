"""load_movielens: real TFDS preparation of local archives, caching, columns, and clear errors."""

from __future__ import annotations

import logging
import os
import pathlib
import socket
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfrs_lab.data import movielens, synthetic
from tfrs_lab.data.movielens import (
    GENRE_NAMES,
    NUM_GENRES,
    SUPPORTED_DATASETS,
    DataError,
    load_movielens,
)
from tfrs_lab.data.synthetic import SyntheticSpec, write_synthetic_zip

TINY = SyntheticSpec(num_users=40, num_movies=30, ratings_per_user=10, seed=3)
RATING_DTYPES = {
    "user_id": object,
    "movie_id": object,
    "user_rating": np.float32,
    "timestamp": np.int64,
    "bucketized_user_age": np.float32,
    "user_gender": np.int64,
    "user_occupation_label": np.int64,
    "user_zip_code": object,
}


def _files(root: pathlib.Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _synthetic_archive(data_dir: pathlib.Path) -> pathlib.Path:
    (archive,) = data_dir.glob("synthetic-*/ml-100k.zip")
    return archive


def _rewrite(archive: pathlib.Path, out: pathlib.Path, edit: dict[str, str | None]) -> pathlib.Path:
    """Copies ``archive`` to ``out`` replacing (str) or dropping (None) members named in ``edit``."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name not in edit:
                dst.writestr(name, src.read(name))
            elif edit[name] is not None:
                dst.writestr(name, edit[name])
    return out


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_synthetic_columns_dtypes_and_shapes(synthetic_data):
    data = synthetic_data
    assert data.dataset == "synthetic"
    assert data.has_user_features
    assert set(data.ratings) == set(RATING_DTYPES)
    n = data.ratings["user_id"].shape[0]
    assert n > 1000
    for key, dtype in RATING_DTYPES.items():
        column = data.ratings[key]
        assert column.shape == (n,), key
        assert column.dtype == dtype, key
        if dtype is object:
            assert all(type(v) is str for v in column), key
    assert set(np.unique(data.ratings["user_gender"]).tolist()) <= {0, 1}
    assert set(np.unique(data.ratings["user_rating"]).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    movies = data.movies
    assert set(movies) == {"movie_id", "movie_title", "movie_genres"}
    m = movies["movie_id"].shape[0]
    assert m == 80 and len(set(movies["movie_id"])) == m
    assert movies["movie_title"].dtype == object and type(movies["movie_title"][0]) is str
    assert movies["movie_genres"].shape == (m, NUM_GENRES)
    assert movies["movie_genres"].dtype == np.float32
    assert set(np.unique(movies["movie_genres"]).tolist()) == {0.0, 1.0}
    assert movies["movie_genres"].sum(axis=1).min() >= 1
    assert set(data.ratings["movie_id"]) <= set(movies["movie_id"])


def test_loaded_values_equal_the_archive_files(synthetic_data, synthetic_data_dir):
    with zipfile.ZipFile(_synthetic_archive(synthetic_data_dir)) as zf:
        u_data = zf.read("ml-100k/u.data").decode("latin-1").splitlines()
        u_user = zf.read("ml-100k/u.user").decode("latin-1").splitlines()
        u_item = zf.read("ml-100k/u.item").decode("latin-1").splitlines()
    r = synthetic_data.ratings
    loaded = sorted(
        zip(r["user_id"], r["movie_id"], r["user_rating"].astype(int).astype(str),
            r["timestamp"].astype(str))
    )
    assert loaded == sorted(tuple(line.split("\t")) for line in u_data)
    users = {f[0]: f for f in (line.split("|") for line in u_user)}
    first = {}
    for i, uid in enumerate(r["user_id"]):
        first.setdefault(uid, i)
    for uid, i in first.items():
        _, age, gender, _, zip_code = users[uid]
        assert r["user_gender"][i] == (gender == "M")
        assert r["user_zip_code"][i] == zip_code
        buckets = [b for b in (1, 18, 25, 35, 45, 50, 56) if int(age) >= b]
        assert r["bucketized_user_age"][i] == (buckets[-1] if buckets else 1)
    # Genres: ml-100k's 19 flags map onto TFDS's names ("Children's" -> "Children").
    rename = {"unknown": "Unknown", "Children's": "Children"}
    items = {f[0]: f for f in (line.split("|") for line in u_item)}
    movies = synthetic_data.movies
    for mid, title, hot in zip(movies["movie_id"], movies["movie_title"], movies["movie_genres"]):
        fields = items[mid]
        assert title == fields[1]
        flags = [rename.get(g, g) for g, f in zip(synthetic.ML100K_GENRES, fields[5:]) if f == "1"]
        assert sorted(flags) == sorted(GENRE_NAMES[j] for j in np.flatnonzero(hot))


def test_genre_names_match_tfds(synthetic_data_dir, synthetic_data):
    (prepared,) = synthetic_data_dir.glob("zip-*")
    builder = tfds.builder("movielens/100k-movies", data_dir=os.fspath(prepared))
    assert builder.is_prepared()
    assert tuple(builder.info.features["movie_genres"].feature.names) == GENRE_NAMES
    assert NUM_GENRES == 21


def test_second_load_reuses_the_prepared_data(
    synthetic_data, synthetic_spec, synthetic_data_dir, monkeypatch
):
    before = _files(synthetic_data_dir)

    def must_not_run(*args, **kwargs):
        raise AssertionError("prepared data should have been reused")

    monkeypatch.setattr(movielens, "_prepare", must_not_run)
    monkeypatch.setattr(synthetic, "write_synthetic_zip", must_not_run)
    again = load_movielens("synthetic", synthetic=synthetic_spec, data_dir=synthetic_data_dir)
    assert _files(synthetic_data_dir) == before
    for key, column in synthetic_data.ratings.items():
        assert np.array_equal(again.ratings[key], column), key
    assert np.array_equal(again.movies["movie_genres"], synthetic_data.movies["movie_genres"])


def test_local_zip_goes_through_tfds_and_warns_about_the_checksum(tmp_path, caplog):
    archive = write_synthetic_zip(TINY, tmp_path / "ml-100k.zip")
    data_dir = tmp_path / "tfds"
    with caplog.at_level(logging.WARNING, logger="tfrs_lab.data.movielens"):
        data = load_movielens("movielens/100k-ratings", data_zip=archive, data_dir=data_dir)
    assert "checksum differs from the official archive; continuing" in caplog.text
    assert data.dataset == "movielens/100k-ratings"
    assert data.has_user_features
    assert data.movies["movie_id"].shape == (TINY.num_movies,)
    assert len(set(data.ratings["user_id"])) == TINY.num_users
    # Standard TFDS layout under zip-<sha256[:12]>, extraction scratch removed.
    (prepared,) = data_dir.glob("zip-*")
    assert len(prepared.name) == len("zip-") + 12
    for config in ("100k-ratings", "100k-movies"):
        assert (prepared / "movielens" / config / "0.1.1" / "dataset_info.json").is_file()
    assert not list(prepared.glob("extract.*"))
    # A different archive never reuses these files.
    other = write_synthetic_zip(SyntheticSpec(num_users=40, num_movies=30, ratings_per_user=10, seed=4),
                                tmp_path / "other" / "ml-100k.zip")
    load_movielens("movielens/100k-ratings", data_zip=other, data_dir=data_dir)
    assert len(list(data_dir.glob("zip-*"))) == 2


def _write_zip(path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("latin-1"))
    return path


def test_1m_format_archive_with_demographics(tmp_path):
    archive = _write_zip(
        tmp_path / "ml-1m.zip",
        {
            "ml-1m/movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
            "2::Jumanji (1995)::Adventure|Children's|Fantasy\n",
            "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
            "ml-1m/ratings.dat": "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n",
        },
    )
    data = load_movielens("movielens/1m-ratings", data_zip=archive, data_dir=tmp_path / "tfds")
    assert data.dataset == "movielens/1m-ratings" and data.has_user_features
    r = data.ratings
    rows = sorted(zip(r["user_id"], r["movie_id"], r["user_rating"].tolist(), r["timestamp"].tolist(),
                      r["user_gender"].tolist(), r["bucketized_user_age"].tolist(),
                      r["user_occupation_label"].tolist(), r["user_zip_code"]))
    # Occupation 10 is "K-12 student" -> TFDS label "student" (17); 16 "self-employed" (16).
    assert rows == [
        ("1", "1", 5.0, 978300760, 0, 1.0, 17, "48067"),
        ("1", "2", 3.0, 978302109, 0, 1.0, 17, "48067"),
        ("2", "1", 4.0, 978301968, 1, 56.0, 16, "70072"),
    ]
    genres = dict(zip(data.movies["movie_id"], data.movies["movie_genres"]))
    names = {mid: {GENRE_NAMES[j] for j in np.flatnonzero(hot)} for mid, hot in genres.items()}
    assert names == {"1": {"Animation", "Children", "Comedy"}, "2": {"Adventure", "Children", "Fantasy"}}


def test_csv_format_archive_without_demographics(tmp_path):
    archive = _write_zip(
        tmp_path / "ml-latest-small.zip",
        {
            "ml-latest-small/movies.csv": "movieId,title,genres\n"
            "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
            '2,"Heat, The (1995)",(no genres listed)\n'
            "3,Avatar (2009),IMAX|Sci-Fi\n",
            "ml-latest-small/ratings.csv": "userId,movieId,rating,timestamp\n"
            "1,1,4.0,964982703\n1,3,4.5,964981247\n2,2,0.5,964982224\n",
        },
    )
    data = load_movielens("movielens/latest-small-ratings", data_zip=archive, data_dir=tmp_path / "tfds")
    assert not data.has_user_features
    assert set(data.ratings) == {"user_id", "movie_id", "user_rating", "timestamp"}
    r = data.ratings
    assert sorted(zip(r["user_id"], r["movie_id"], r["user_rating"].tolist())) == [
        ("1", "1", 4.0), ("1", "3", 4.5), ("2", "2", 0.5)
    ]
    titles = dict(zip(data.movies["movie_id"], data.movies["movie_title"]))
    assert titles["2"] == "Heat, The (1995)"
    hot = dict(zip(data.movies["movie_id"], data.movies["movie_genres"]))
    assert [GENRE_NAMES[j] for j in np.flatnonzero(hot["2"])] == ["(no genres listed)"]
    assert [GENRE_NAMES[j] for j in np.flatnonzero(hot["3"])] == ["IMAX", "Sci-Fi"]


def test_failed_preparation_leaves_nothing_to_trust(tmp_path, synthetic_data_dir):
    # u.data rates a movie that u.item lacks: TFDS's parser fails half-way through the ratings.
    good = _synthetic_archive(synthetic_data_dir)
    with zipfile.ZipFile(good) as zf:
        u_data = zf.read("ml-100k/u.data").decode()
    broken = _rewrite(good, tmp_path / "ml-100k.zip", {"ml-100k/u.data": u_data + "1\t99999\t3\t881250949\n"})
    data_dir = tmp_path / "tfds"
    with pytest.raises(DataError, match="TFDS could not prepare MovieLens 100k") as error:
        load_movielens("movielens/100k-ratings", data_zip=broken, data_dir=data_dir)
    assert str(broken) in _one_line(error)
    (prepared,) = data_dir.glob("zip-*")
    leftovers = [p for p in prepared.rglob("*") if "incomplete" in p.name or p.name.startswith("extract.")]
    assert leftovers == []
    assert not (prepared / "movielens" / "100k-ratings" / "0.1.1").exists()
    # The next call prepares again (and fails again) instead of trusting a partial folder.
    with pytest.raises(DataError, match="TFDS could not prepare"):
        load_movielens("movielens/100k-ratings", data_zip=broken, data_dir=data_dir)


def test_missing_zip_path(tmp_path):
    missing = tmp_path / "nope" / "ml-100k.zip"
    with pytest.raises(DataError, match="MovieLens archive not found") as error:
        load_movielens("movielens/100k-ratings", data_zip=missing, data_dir=tmp_path)
    assert str(missing) in _one_line(error)


def test_file_that_is_not_a_zip(tmp_path):
    fake = tmp_path / "ml-100k.zip"
    fake.write_text("user\titem\trating\n")
    with pytest.raises(DataError, match="is not a valid zip file") as error:
        load_movielens("movielens/100k-ratings", data_zip=fake, data_dir=tmp_path)
    assert str(fake) in _one_line(error)


def test_zip_without_u_data(tmp_path, synthetic_data_dir):
    archive = _rewrite(
        _synthetic_archive(synthetic_data_dir), tmp_path / "ml-100k.zip", {"ml-100k/u.data": None}
    )
    with pytest.raises(DataError, match="lacks ml-100k/u.data") as error:
        load_movielens("movielens/100k-ratings", data_zip=archive, data_dir=tmp_path / "tfds")
    assert "pass the official ml-100k.zip" in _one_line(error)


def test_zip_of_another_release(tmp_path, synthetic_data_dir):
    with pytest.raises(DataError, match="lacks ml-1m/ratings.dat"):
        load_movielens(
            "movielens/1m-ratings", data_zip=_synthetic_archive(synthetic_data_dir), data_dir=tmp_path
        )


def test_corrupt_zip(tmp_path, synthetic_data_dir):
    raw = bytearray(_synthetic_archive(synthetic_data_dir).read_bytes())
    with zipfile.ZipFile(_synthetic_archive(synthetic_data_dir)) as zf:
        info = zf.getinfo("ml-100k/u.data")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[middle : middle + 16] = bytes(16)  # damage the compressed ratings, keep the directory
    corrupt = tmp_path / "ml-100k.zip"
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt") as error:
        load_movielens("movielens/100k-ratings", data_zip=corrupt, data_dir=tmp_path / "tfds")
    assert str(corrupt) in _one_line(error)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'movielens/10m-ratings': choose one of") as error:
        load_movielens("movielens/10m-ratings")
    assert all(name in _one_line(error) for name in SUPPORTED_DATASETS)


def test_mismatched_arguments(tmp_path):
    with pytest.raises(DataError, match="--data-zip cannot be used with --dataset synthetic"):
        load_movielens("synthetic", data_zip=tmp_path / "x.zip", data_dir=tmp_path)
    with pytest.raises(DataError, match="synthetic spec"):
        load_movielens("movielens/100k-ratings", synthetic=TINY, data_dir=tmp_path)


def test_without_network_the_error_names_the_offline_options(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DataError) as error:
        load_movielens("movielens/100k-ratings", data_dir=tmp_path)
    assert _one_line(error) == (
        "could not download MovieLens (no network?): pass --data-zip path/to/ml-100k.zip "
        "or --dataset synthetic"
    )
    assert not list(tmp_path.glob("movielens/100k-ratings/0.1.1"))


def test_download_disabled(tmp_path):
    with pytest.raises(DataError, match="MovieLens 1m is not prepared in .*--data-zip path/to/ml-1m.zip"):
        load_movielens("movielens/1m-ratings", data_dir=tmp_path, download=False)


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TFRS_LAB_DATA_DIR", str(tmp_path / "cache"))
    assert movielens.default_data_dir() == tmp_path / "cache"
    monkeypatch.delenv("TFRS_LAB_DATA_DIR")
    assert movielens.default_data_dir() == pathlib.Path.home() / ".cache" / "tfrs_lab" / "tfds"
