"""Retrieval exports exclude the user's known movies by default (``export.exclude_seen``)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrs_lab
from tfrs_lab.export import signatures as sig

pytestmark = pytest.mark.slow

SYNTHETIC = {"dataset": "synthetic"}
FAST = ["train.epochs=3", "model.embedding_dim=16", "export.index=brute_force", "export.k=20"]


def _train(tmp_path, synthetic_data, *overrides: str):
    cfg = tfrs_lab.load_config("retrieval", overrides=[*FAST, *overrides], **SYNTHETIC)
    return tfrs_lab.train("retrieval", config=cfg, data=synthetic_data, output_dir=tmp_path / "run", verbose=0)


def _rated(data, user: str) -> set[str]:
    return set(data.ratings["movie_id"][data.ratings["user_id"] == user].astype(str))


@pytest.fixture(scope="module")
def excluding(tmp_path_factory, synthetic_data):
    run = _train(tmp_path_factory.mktemp("excl"), synthetic_data)  # exclude_seen defaults to true
    return run, tf.saved_model.load(str(run.export_path))


def test_serving_default_never_returns_a_rated_movie(excluding, synthetic_data):
    run, loaded = excluding
    users = [str(u) for u in np.unique(synthetic_data.ratings["user_id"])[:40]]
    ids = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(users))[sig.ITEM_IDS].numpy().astype(str)
    assert ids.shape == (40, 20) and (ids != "").all()  # the catalogue has enough unseen movies
    for user, row in zip(users, ids):
        assert not set(row) & _rated(synthetic_data, user), user
    # the seen-excluded hit rate is measured with the exclusion applied (it can only rise, and on this
    # data, where users rated a third of the catalogue, it must rise)
    assert run.metrics["hit_rate_seen_excluded@10"] > run.metrics["hit_rate@10"]


def test_recommend_excluding_adds_the_callers_list_to_the_seen_movies(excluding, synthetic_data):
    _, loaded = excluding
    user = str(synthetic_data.ratings["user_id"][0])
    plain = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant([user]))[sig.ITEM_IDS].numpy().astype(str)[0]
    out = loaded.signatures[sig.EXCLUDE_SEEN](user_id=tf.constant([user]),
                                              exclude_item_ids=tf.constant([list(plain[:5])]))
    ids = out[sig.ITEM_IDS].numpy().astype(str)[0]
    assert not set(ids) & (set(plain[:5]) | _rated(synthetic_data, user))
    assert list(ids[:15]) == list(plain[5:])  # the rest keeps its order


def test_per_user_tables_are_stored_as_int32_codes_not_strings(excluding, synthetic_data):
    """The export keeps the seen / history tables as int32 [U + 1, w] codes plus the item names
    (at 25M, 162k x 500 strings took over 8 GiB to export; as int32 they take 0.3 GiB): no string
    variable holds a row per user, and no string variable is longer than the catalogue plus the pad."""
    run, _ = excluding
    reader = tf.train.load_checkpoint(str(run.export_path / "variables" / "variables"))
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    users = len(np.unique(synthetic_data.ratings["user_id"])) + 1
    items = len(np.unique(synthetic_data.movies["movie_id"]))
    tables = {n: shapes[n] for n in dtypes if len(shapes[n]) == 2 and shapes[n][0] == users and dtypes[n] != tf.float32}
    widths = sorted(s[1] for s in tables.values())  # the seen table (stored once, explain reads it too) and the history
    assert widths == sorted([min(run.config.export.max_exclude, int(np.unique(synthetic_data.ratings["user_id"],
                                                                               return_counts=True)[1].max())),
                             run.config.model.history_length]), tables
    assert all(dtypes[n] == tf.int32 for n in tables)
    strings = {n: shapes[n] for n in dtypes if dtypes[n] == tf.string}
    assert strings and all(int(np.prod(s)) <= items + 1 for s in strings.values()), strings


def test_unknown_users_get_the_popular_movies(excluding):
    _, loaded = excluding
    out = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(["no-such-user"]))
    assert (out[sig.ITEM_IDS].numpy() != b"").all() and np.all(np.diff(out[sig.SCORES].numpy()[0]) <= 0)


def test_exclude_seen_false_keeps_the_plain_top_k(tmp_path, synthetic_data):
    """Without exclusion the same model does return rated movies (so the default above is doing the work)."""
    run = _train(tmp_path, synthetic_data, "export.exclude_seen=false")
    loaded = tf.saved_model.load(str(run.export_path))
    users = [str(u) for u in np.unique(synthetic_data.ratings["user_id"])[:40]]
    ids = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(users))[sig.ITEM_IDS].numpy().astype(str)
    assert sum(len(set(row) & _rated(synthetic_data, u)) for u, row in zip(users, ids)) > 0
