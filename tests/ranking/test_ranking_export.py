"""Exported ranking models: save -> reload -> same answers; unknown ids; re-ranking."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.ranking import FEATURE_INPUTS, export_ranking
from tfrs_lab.export.tables import ItemTable


def _plain(table: dict) -> dict:
    """The user table with its code tables (the history) as strings."""
    return {k: v.strings() if isinstance(v, ItemTable) else v for k, v in table.items()}


@pytest.fixture(scope="module")
def exported(trained_dcn, tmp_path_factory):
    t = trained_dcn
    users, movies = [str(u) for u in t.vocab.user_ids[:4]], [str(m) for m in t.vocab.movie_ids[:4]]
    path = export_ranking(t.model, tmp_path_factory.mktemp("export"), user_table=t.user_table, model_name="ranking",
                          version=2, sample_users=users, sample_movies=movies, verify=False)
    return t, path


def _expected(t, users, movies):
    """Independent reference: the in-memory model on the training-time user features, with the
    serving time clipped to the last training timestamp."""
    idx = t.model.user_lookup(tf.constant(users)).numpy()
    feats = {name: tf.constant(col[idx]) for name, col in _plain(t.user_table).items()}
    feats.update(user_id=tf.constant(users), movie_id=tf.constant(movies),
                 timestamp=tf.constant(np.full(len(users), t.vocab.timestamp_max, np.int64)))
    return t.model.predict_scores(feats).numpy()


def test_reloaded_model_answers_like_the_in_memory_model(exported):
    # (The CLI test exercises export.verify: the same check in a fresh process.)
    t, path = exported
    assert path.name == "2" and (path / "saved_model.pb").is_file()
    assert (path / "assets.extra" / sig.WARMUP_FILE).stat().st_size > 0
    users = [str(u) for u in t.vocab.user_ids[:5]] + ["no-such-user"]
    movies = [str(m) for m in t.vocab.movie_ids[5:10]] + [str(t.vocab.movie_ids[0])]
    out = tf.saved_model.load(str(path)).signatures[sig.SERVING_DEFAULT](
        user_id=tf.constant(users), item_id=tf.constant(movies))
    assert list(out) == [sig.RATING]
    np.testing.assert_allclose(out[sig.RATING].numpy(), _expected(t, users, movies), rtol=1e-5, atol=1e-5)


def test_unknown_ids_are_answered_and_ratings_clipped(exported):
    t, path = exported
    loaded = tf.saved_model.load(str(path))
    known_u, known_m = str(t.vocab.user_ids[0]), str(t.vocab.movie_ids[0])
    out = loaded.signatures[sig.SERVING_DEFAULT](
        user_id=tf.constant([known_u, "no-such-user", known_u, "", "nobody"]),
        item_id=tf.constant([known_m, known_m, "no-such-movie", "", "nothing"]))[sig.RATING].numpy()
    assert out.shape == (5,) and np.all(np.isfinite(out)) and np.all((out >= 1.0) & (out <= 5.0))
    explicit = loaded.signatures[sig.SCORE_WITH_FEATURES](
        user_id=tf.constant([known_u]), item_id=tf.constant([known_m]),
        timestamp=tf.constant([t.vocab.timestamp_max], tf.int64), bucketized_user_age=tf.constant([25.0]),
        user_gender=tf.constant([1], tf.int64), user_occupation_label=tf.constant([99], tf.int64),  # unknown -> OOV
        user_zip_code=tf.constant(["00000"]))[sig.RATING].numpy()
    assert explicit.shape == (1,) and 1.0 <= explicit[0] <= 5.0


def test_rerank_sorts_candidates_by_the_models_rating(exported):
    t, path = exported
    loaded = tf.saved_model.load(str(path))
    user = str(t.vocab.user_ids[3])
    candidates = [str(m) for m in t.vocab.movie_ids[10:20]]
    out = loaded.signatures[sig.RERANK](
        user_id=tf.constant([user, "no-such-user"]),
        candidate_item_ids=tf.constant([candidates, candidates[:3] + ["no-such-movie"] + [""] * 6]))
    ids, scores = out[sig.ITEM_IDS].numpy().astype(str), out[sig.SCORES].numpy()
    expected = _expected(t, [user] * 10, candidates)
    assert ids[0].tolist() == [candidates[i] for i in np.argsort(-expected, kind="stable")]
    np.testing.assert_allclose(scores[0], np.sort(expected)[::-1], rtol=1e-5, atol=1e-5)
    assert sorted(ids[1][:4].tolist()) == sorted(candidates[:3] + ["no-such-movie"])
    assert ids[1][4:].tolist() == [""] * 6 and np.all(np.isneginf(scores[1][4:]))
    assert np.all(np.diff(scores[1][:4]) <= 0)


def test_history_model_looks_history_up_at_serving_and_takes_it_explicitly(trained_mf_history, tmp_path):
    t = trained_mf_history
    table = _plain(t.user_table)
    assert t.model.uses_history and table["history"].shape == (len(t.vocab.user_ids) + 1, 10)
    assert all(h == "" for h in table["history"][0])  # unknown user: empty history
    users, movies = [str(u) for u in t.vocab.user_ids[:4]], [str(m) for m in t.vocab.movie_ids[:4]]
    path = export_ranking(t.model, tmp_path, user_table=t.user_table, model_name="ranking", version=1,
                          sample_users=users, sample_movies=movies, verify=False)
    loaded = tf.saved_model.load(str(path))
    ask_users, ask_movies = users + ["no-such-user"], movies[::-1] + ["no-such-movie"]
    out = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(ask_users), item_id=tf.constant(ask_movies))
    np.testing.assert_allclose(out[sig.RATING].numpy(), _expected(t, ask_users, ask_movies), rtol=1e-5, atol=1e-5)
    # The explicit-features signature takes the history itself; it changes the answer.
    idx = t.model.user_lookup(tf.constant(users[:1])).numpy()
    explicit = {name: tf.constant(table[name][idx]) for name in FEATURE_INPUTS if name in table}
    explicit.update(timestamp=tf.constant([t.vocab.timestamp_max], tf.int64))
    served = loaded.signatures[sig.SCORE_WITH_FEATURES]
    same = served(user_id=tf.constant(users[:1]), item_id=tf.constant(movies[:1]), **explicit,
                  history=tf.constant(table["history"][idx].astype(str)))[sig.RATING].numpy()
    np.testing.assert_allclose(same, _expected(t, users[:1], movies[:1]), rtol=1e-5, atol=1e-5)
    empty = served(user_id=tf.constant(users[:1]), item_id=tf.constant(movies[:1]), **explicit,
                   history=tf.constant([[""]]))[sig.RATING].numpy()
    assert not np.allclose(empty, same)


def test_per_user_history_is_stored_as_int32_codes_not_strings(trained_mf_history, tmp_path,
                                                                 string_constant_shapes):
    """The SVD++ history table ([U + 1, H]: at 25M, 162k users x 200 items) is exported as an int32
    code variable plus the item names, not as strings: no string variable holds a row per user and
    history position, and the served answers stay those of the in-memory model."""
    t = trained_mf_history
    users, movies = [str(u) for u in t.vocab.user_ids[:4]], [str(m) for m in t.vocab.movie_ids[:4]]
    path = export_ranking(t.model, tmp_path, user_table=t.user_table, model_name="ranking", version=1,
                          sample_users=users, sample_movies=movies, verify=False)
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    rows = len(t.vocab.user_ids) + 1
    tables = {n: shapes[n] for n in dtypes if len(shapes[n]) == 2 and shapes[n][0] == rows and dtypes[n] != tf.float32}
    assert list(tables.values()) == [[rows, 10]] and all(dtypes[n] == tf.int32 for n in tables), tables
    strings = {n: shapes[n] for n in dtypes if dtypes[n] == tf.string and shapes[n]}
    assert strings and all(len(s) == 1 and s[0] <= max(rows, len(t.vocab.movie_ids) + 1) for s in strings.values())
    assert not [shape for shape in string_constant_shapes(path) if shape[:1] == [rows]]  # nor as a graph constant
    asked = tf.saved_model.load(str(path)).signatures[sig.SERVING_DEFAULT](
        user_id=tf.constant(users), item_id=tf.constant(movies))[sig.RATING].numpy()
    np.testing.assert_allclose(asked, _expected(t, users, movies), rtol=1e-5, atol=1e-5)
