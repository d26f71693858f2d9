"""The time, held-out-users and predefined splits (docs/architecture.md#splits): partitions,
determinism under row shuffles, the documented boundary rules, file matching, and the protocols."""

from __future__ import annotations

import io
import typing
import zipfile

import numpy as np
import pytest

from tfrs_lab.config import SPLIT_PROTOCOLS, SplitName, load_config
from tfrs_lab.data import predefined
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.predefined import movielens_split_rows, own_test_rows
from tfrs_lab.data.readers import read_source
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.splits import (PROTOCOLS, SPLIT_NAMES, SplitOptions, hash_buckets, held_out_users_split,
                                  make_split, predefined_split, resolve_time_cutoff, time_split)
from tfrs_lab.evaluation.metrics import multi_target_metrics
from tfrs_lab.schema import build

PARTS = ("train", "validation", "test", "fold_in_validation", "fold_in_test")


def _ratings(rows: list[tuple[str, str, int]]) -> dict[str, np.ndarray]:
    users, movies, ts = zip(*rows)
    return {"user_id": np.array(users, dtype=object), "movie_id": np.array(movies, dtype=object),
            "timestamp": np.array(ts, dtype=np.int64), "user_rating": np.full(len(rows), 3.0, np.float32)}


def _check_partition(split, n: int) -> None:
    parts = [getattr(split, p) for p in PARTS]
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n)), "disjoint and complete"


def _assignment(ratings, split) -> dict[tuple[str, str], str]:
    return {(ratings["user_id"][i], ratings["movie_id"][i]): p for p in PARTS for i in getattr(split, p)}


def _shuffled(ratings, seed):
    perm = np.random.default_rng(seed).permutation(len(ratings["user_id"]))
    return {k: v[perm] for k, v in ratings.items()}


# --------------------------------------------------------------------------- protocols


def test_every_split_has_a_protocol_and_config_and_data_agree():
    assert set(PROTOCOLS) == set(SPLIT_NAMES) == set(typing.get_args(SplitName))
    assert SPLIT_PROTOCOLS is PROTOCOLS
    assert {n: PROTOCOLS[n] for n in ("hash", "time", "predefined")} == dict.fromkeys(("hash", "time", "predefined"),
                                                                                         "hash")
    assert PROTOCOLS["leave-last-out"] == "leave-last-out" and PROTOCOLS["held-out-users"] == "held-out-users"
    ratings = _ratings([("1", "1", 1), ("1", "2", 2), ("1", "3", 3), ("2", "1", 4)])
    for name in ("hash", "leave-last-out", "time", "held-out-users"):
        assert make_split(name, ratings).protocol == PROTOCOLS[name]
    assert load_config("retrieval", overrides=["data.split=time"]).protocol == "hash"
    assert load_config("sequential", overrides=["data.split=held-out-users"]).protocol == "held-out-users"
    vae = load_config("autoencoder", overrides=["model.architecture=vae", "data.split=held-out-users"])
    assert (vae.split_name, vae.protocol) == ("held-out-users", "held-out-users")


@pytest.mark.parametrize("name", ["time", "held-out-users"])
def test_splits_are_deterministic_and_row_order_independent(synthetic_data, name):
    ratings = synthetic_data.ratings
    first = make_split(name, ratings)
    _check_partition(first, len(ratings["user_id"]))
    again = make_split(name, ratings)
    assert all(np.array_equal(getattr(first, p), getattr(again, p)) for p in PARTS)
    for seed in (1, 2):
        shuffled = _shuffled(ratings, seed)
        other = make_split(name, shuffled)
        _check_partition(other, len(ratings["user_id"]))
        assert _assignment(ratings, first) == _assignment(shuffled, other)


# --------------------------------------------------------------------------- time


def test_time_split_boundaries_ties_go_to_the_later_part():
    ratings = _ratings([("a", "1", 10), ("b", "1", 20), ("a", "2", 20), ("c", "1", 29), ("a", "3", 30),
                        ("b", "2", 30), ("c", "2", 31)])
    split = time_split(ratings, validation=20, test=30)
    ts = ratings["timestamp"]
    assert ts[split.train].tolist() == [10]
    assert sorted(ts[split.validation].tolist()) == [20, 20, 29]  # a rating at t_val is validation
    assert sorted(ts[split.test].tolist()) == [30, 30, 31]  # a rating at t_test is test
    assert split.name == "time" and split.protocol == "hash"


def test_time_cutoffs_quantiles_unix_seconds_and_iso_dates():
    ts = np.arange(100, dtype=np.int64) * 10  # 0, 10, ..., 990
    assert resolve_time_cutoff(0.8, ts) == 800  # the timestamp at position floor(0.8 * 100)
    assert resolve_time_cutoff(0.05, ts[::-1]) == 50  # order independent
    assert resolve_time_cutoff(874965758, ts) == 874965758
    assert resolve_time_cutoff("1998-03-01", ts) == 888710400
    assert resolve_time_cutoff("1998-03-01T02:00:00+02:00", ts) == 888710400
    with pytest.raises(DataError, match="data.time_cutoff.*ISO-8601"):
        resolve_time_cutoff("March 1998", ts)


def test_time_split_default_quantiles_on_synthetic_data(synthetic_data):
    ratings = synthetic_data.ratings
    split = make_split("time", ratings)
    ts = ratings["timestamp"]
    n = len(ts)
    assert ts[split.train].max() < ts[split.validation].min() <= ts[split.validation].max() < ts[split.test].min()
    assert 0.75 < len(split.train) / n <= 0.8 and 0.08 < len(split.test) / n < 0.12
    options = SplitOptions(time_validation=0.5, time_test=0.7)
    assert 0.45 < len(make_split("time", ratings, options).train) / n <= 0.5


def test_time_split_refuses_a_validation_cutoff_after_the_test_cutoff():
    ratings = _ratings([("a", "1", 10), ("b", "1", 20)])
    with pytest.raises(DataError, match=r"data.time_cutoff.validation .* must not be after data.time_cutoff.test"):
        time_split(ratings, validation="1999-01-01", test=100)


# --------------------------------------------------------------------------- held-out-users


def test_held_out_users_targets_are_the_newest_share_and_fold_in_the_rest():
    rows = [("u", str(m), 100 + m) for m in range(1, 11)]  # 10 ratings: floor(0.2 * 10) = 2 targets
    rows += [("v", "1", 5), ("v", "2", 5), ("v", "3", 4)]  # 3 ratings: at least 1 target; tie by int movie id
    rows += [("w", "1", 1)]  # a single rating: nothing to fold in, stays in train
    ratings = _ratings(rows)
    # Everybody held out as test users: validation share 0, test share 1.
    split = held_out_users_split(ratings, validation_users=0.0, test_users=1.0)
    _check_partition(split, len(rows))
    got = _assignment(ratings, split)
    assert [m for (u, m), p in got.items() if u == "u" and p == "test"] == ["9", "10"]
    assert sorted(m for (u, m), p in got.items() if u == "u" and p == "fold_in_test") == sorted(str(m) for m in range(1, 9))
    assert [m for (u, m), p in got.items() if u == "v" and p == "test"] == ["2"]  # (5, 2) is the newest
    assert got[("w", "1")] == "train"


def test_held_out_users_hold_out_whole_users_by_hash(synthetic_data):
    ratings = synthetic_data.ratings
    split = make_split("held-out-users", ratings)
    users = ratings["user_id"].astype(str)
    train_users = set(users[split.train])
    val_users, test_users = set(users[split.validation]), set(users[split.test])
    assert val_users == set(users[split.fold_in_validation]) and test_users == set(users[split.fold_in_test])
    assert not (train_users & val_users) and not (train_users & test_users) and not (val_users & test_users)
    all_users = np.unique(users)
    bucket = dict(zip(all_users, hash_buckets(all_users, None, 1000)))
    assert all(bucket[u] < 100 for u in val_users) and all(100 <= bucket[u] < 200 for u in test_users)
    assert all(bucket[u] >= 200 for u in train_users)
    assert 0.03 < len(test_users) / len(all_users) < 0.2  # about 10 % of 120 users
    ts = ratings["timestamp"]
    for held, fold in ((split.test, split.fold_in_test), (split.validation, split.fold_in_validation)):
        for u in set(users[held]):
            mine_t, mine_f = held[users[held] == u], fold[users[fold] == u]
            assert len(mine_t) == max(1, int(0.2 * (len(mine_t) + len(mine_f))))
            assert ts[mine_f].max() <= ts[mine_t].min()


def test_multi_target_metrics_follow_mult_vae_definitions():
    # user 0: targets at ranks 0 and 5 (2 targets); user 1: one target at rank 30.
    ranks, users = np.array([0, 5, 30]), np.array([0, 0, 1])
    m = multi_target_metrics(ranks, users, (1, 20, 50))
    assert m["recall@1"] == pytest.approx((1 / 1 + 0) / 2)  # normalised by min(K, #targets)
    assert m["recall@20"] == pytest.approx((2 / 2 + 0 / 1) / 2)
    assert m["recall@50"] == pytest.approx(1.0)
    idcg0 = 1 + 1 / np.log2(3)
    assert m["ndcg@20"] == pytest.approx(((1 + 1 / np.log2(7)) / idcg0 + 0) / 2)
    assert m["ndcg@50"] == pytest.approx(((1 + 1 / np.log2(7)) / idcg0 + 1 / np.log2(32)) / 2)


# --------------------------------------------------------------------------- predefined


def _u_data(n_users: int = 3, per_user: int = 25) -> list[tuple[str, str, int, int]]:
    """u.data-style rows in a shuffled file order (user, item, rating, timestamp)."""
    rng = np.random.default_rng(0)
    rows = [(str(u), str(m), int(rng.integers(1, 6)), 880000000 + 1000 * u + m)
            for u in range(1, n_users + 1) for m in range(1, per_user + 1)]
    return [rows[i] for i in rng.permutation(len(rows))]


def _lines(rows) -> bytes:
    return "".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows).encode()


def _zip(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"ml-100k/{name}", data)
    return path


def _columns(rows) -> dict[str, np.ndarray]:
    return {"user_id": np.array([r[0] for r in rows], object), "movie_id": np.array([r[1] for r in rows], object),
            "timestamp": np.array([r[3] for r in rows], np.int64), "user_rating": np.array([r[2] for r in rows], np.float32)}


def test_predefined_reads_the_archives_split_files_and_matches_rows(tmp_path):
    rows = _u_data()
    test_rows, base_rows = rows[:15], rows[15:]
    archive = _zip(tmp_path / "ml-100k.zip", {"u.data": _lines(rows), "u1.base": _lines(sorted(base_rows)),
                                              "u1.test": _lines(sorted(test_rows))})
    ratings = _shuffled(_columns(rows), seed=3)  # the loaded data's row order is not the file's
    train, test = movielens_split_rows(archive, "u1")
    split = predefined_split(ratings, test, train)
    _check_partition(split, len(rows))
    keys = set(zip(ratings["user_id"][split.test], ratings["movie_id"][split.test]))
    assert keys == {(u, m) for u, m, _, _ in test_rows}
    rest = np.concatenate([split.train, split.validation])
    buckets = hash_buckets(ratings["user_id"][rest], ratings["movie_id"][rest])
    assert set(buckets[np.isin(rest, split.validation)].tolist()) <= {8}
    assert 8 not in set(buckets[np.isin(rest, split.train)].tolist())
    assert split.protocol == "hash"


def test_predefined_derives_u_files_from_u_data_as_mku_sh_does(tmp_path, monkeypatch):
    rows = _u_data(n_users=3, per_user=25)  # 75 lines
    archive = _zip(tmp_path / "ml-100k.zip", {"u.data": _lines(rows)})
    monkeypatch.setattr(predefined, "_FOLD_ROWS", 15)  # 20000 lines per fold in the real archive
    train, test = movielens_split_rows(archive, "u2")
    assert test["movie_id"].tolist() == [r[1] for r in rows[15:30]]  # lines 16..30 in file order
    assert len(train["user_id"]) == 60
    train, test = movielens_split_rows(archive, "ub")  # allbut.pl: each user's 11th..20th rating
    for u in ("1", "2", "3"):
        mine = [r[1] for r in rows if r[0] == u]
        assert sorted(test["movie_id"][test["user_id"] == u].tolist()) == sorted(mine[10:20])
    assert len(train["user_id"]) == 75 - 30


def test_predefined_rejects_files_that_do_not_match_the_data(tmp_path):
    rows = _u_data()
    ratings = _columns(rows)
    stray = [("9", "9", 3, 1)]
    with pytest.raises(DataError, match="1 of 16 test rows match no rating"):
        predefined_split(ratings, _columns(rows[:15] + stray))
    with pytest.raises(DataError, match="10 ratings are in neither the train nor the test file"):
        predefined_split(ratings, _columns(rows[:15]), _columns(rows[25:]))
    with pytest.raises(DataError, match="neither u1.base/u1.test nor u.data"):
        movielens_split_rows(_zip(tmp_path / "empty.zip", {"README": b"x"}), "u1")
    with pytest.raises(DataError, match="needs data.predefined"):
        make_split("predefined", ratings)


def test_predefined_own_data_test_file_in_the_interactions_format(tmp_path):
    rows = _u_data()
    header = "uid,sku,stars,ts\n"
    (tmp_path / "all.csv").write_text(header + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows))
    (tmp_path / "test.csv").write_text(header + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows[:10]))
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "all.csv"),
                                               "columns": {"user": "uid", "item": "sku", "rating": "stars", "time": "ts"}}})
    data = read_source(spec)
    split = predefined_split(data.ratings, own_test_rows(spec.interactions, str(tmp_path / "test.csv")))
    _check_partition(split, len(rows))
    assert {(u, m) for u, m in zip(data.ratings["user_id"][split.test], data.ratings["movie_id"][split.test])} == \
        {(u, m) for u, m, _, _ in rows[:10]}
    no_time = build(SourceSpec, {"interactions": {"path": str(tmp_path / "all.csv"),
                                                  "columns": {"user": "uid", "item": "sku"}}})
    with pytest.raises(DataError, match="name the time column"):
        own_test_rows(no_time.interactions, str(tmp_path / "test.csv"))
