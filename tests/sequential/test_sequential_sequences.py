"""Sequences for next-item models: time order, padding, and no leakage across the split."""

import numpy as np
from tfrs_lab.data.sequences import evaluation_sequences, left_pad, training_sequences, user_items
from tfrs_lab.data.splits import leave_last_out_split
from tfrs_lab.training.sequential import (TASK, build_sequences, item_indices, sequence_dataset, serving_histories,
                                          steps_per_epoch, window_batch)


def _ratings(rows):
    user, movie, ts = zip(*rows)
    return {"user_id": np.array(user, object), "movie_id": np.array(movie, object), "timestamp": np.array(ts, np.int64)}


def test_order_ties_padding_and_truncation_worked_by_hand():
    # User "1": movies 10 and 9 share a timestamp -> ordered 9, 10 (integer movie id, not "10" < "9").
    ratings = _ratings([("1", "10", 5), ("2", "3", 1), ("1", "9", 5), ("1", "4", 1), ("1", "7", 9), ("2", "5", 2)])
    index = np.array([10, 3, 9, 4, 7, 0])  # row 5's movie is not in the catalogue (index 0)
    per_user = user_items(ratings, np.arange(6), index)
    assert per_user.user_ids.tolist() == ["1", "2"]
    assert per_user.of(0).tolist() == [4, 9, 10, 7] and per_user.of(1).tolist() == [3]
    train = training_sequences(ratings, np.arange(6), index, max_length=2)
    assert train.user_ids.tolist() == ["1"]  # user 2 has one known item: nothing to predict
    batch = window_batch(train)
    assert batch["inputs"].tolist() == [[9, 10]] and batch["targets"].tolist() == [[10, 7]]  # newest positions kept
    assert left_pad([np.array([1, 2]), np.array([], np.int64)], 3).tolist() == [[0, 1, 2], [0, 0, 0]]
    ev = evaluation_sequences(ratings, np.array([0, 2, 3, 1]), np.array([4, 5]), index, max_length=5)
    assert ev.user_ids.tolist() == ["1"] and ev.targets.tolist() == [7]  # row 5 (unknown movie) dropped
    assert ev.inputs.tolist() == [[0, 0, 4, 9, 10]]


def test_no_leakage_from_validation_or_test_into_earlier_sequences(synthetic_data):
    ratings = synthetic_data.ratings
    split = leave_last_out_split(ratings)
    vocab = TASK.vocabularies(None, synthetic_data, split.train)
    train, validation, test = build_sequences(synthetic_data, split, vocab, max_length=1000)
    index = item_indices(vocab, ratings["movie_id"])
    windows = window_batch(train)
    held_out = {}
    for name, rows in (("validation", split.validation), ("test", split.test)):
        for r in rows:
            held_out.setdefault(str(ratings["user_id"][r]), {})[name] = int(index[r])
    train_items = {u: set(i[i > 0]) | set(t[t > 0]) for u, i, t in zip(train.user_ids, windows["inputs"], windows["targets"])}
    leaks = [u for u, items in train_items.items() if set(held_out.get(u, {}).values()) & items]
    assert not leaks, f"validation/test items inside training sequences of users {leaks[:5]}"
    for rows_name, seqs in (("validation", validation), ("test", test)):
        for u, inputs, target in zip(seqs.user_ids, seqs.inputs, seqs.targets):
            assert target == held_out[u][rows_name]
            assert target not in set(inputs)  # a user never rates a movie twice: the target is not in its history
            if rows_name == "test":
                assert inputs[-1] == held_out[u]["validation"]  # test sees the validation item, as its newest
            else:
                assert held_out[u]["test"] not in set(inputs)
    # Validation histories are exactly the training items (inputs + the last target) in time order.
    by_user = {u: np.concatenate([i[i > 0][:1], t[t > 0]])
               for u, i, t in zip(train.user_ids, windows["inputs"], windows["targets"])}
    for u, inputs in zip(validation.user_ids, validation.inputs):
        assert inputs[inputs > 0].tolist() == by_user[u].tolist()


def test_histories_longer_than_max_length_keep_the_newest(synthetic_data):
    max_length = 3
    split = leave_last_out_split(synthetic_data.ratings)
    vocab = TASK.vocabularies(None, synthetic_data, split.train)
    _, validation, test = build_sequences(synthetic_data, split, vocab, max_length=max_length)
    assert test.inputs.shape[1] == max_length
    for full, inputs in zip(test.seen, test.inputs):
        assert inputs.tolist() == full[-max_length:].tolist()  # exclusion still covers the full history


def test_serving_histories_hold_each_users_latest_ratings_oldest_first(synthetic_data):
    ratings = synthetic_data.ratings
    vocab = TASK.vocabularies(None, synthetic_data, leave_last_out_split(ratings).train)
    stored = serving_histories(synthetic_data, vocab, 5).strings()  # int32 codes in the export
    everything = user_items(ratings, np.arange(len(ratings["user_id"])), item_indices(vocab, ratings["movie_id"]))
    assert stored.shape == (len(vocab.user_ids), 5)
    for u in range(10):
        assert everything.user_ids[u] == vocab.user_ids[u]
        expected = [str(vocab.movie_ids[i - 1]) for i in everything.of(u)[-5:]]  # includes the test item
        assert [m for m in stored[u] if m] == expected and stored[u][-1] == expected[-1]


def test_sliding_windows_train_every_position_once_per_epoch():
    """Stride S: windows slide back over the whole history; over one epoch of the real dataset every
    (history item -> next item) pair of every user is a target exactly once, with the history
    before it (up to max_length) as inputs; stride 0 is the newest window only."""
    ratings = _ratings([("a", str(m), t) for t, m in enumerate(range(1, 12))]  # 11 items: 10 positions
                       + [("b", str(m), t) for t, m in enumerate(range(20, 24))]  # 4 items: 3 positions
                       + [("c", "30", 0)])  # 1 item: nothing to predict
    index = np.array([int(m) for m in ratings["movie_id"]])
    expected = sorted([(i, i + 1) for i in range(1, 11)] + [(i, i + 1) for i in range(20, 23)])
    for stride in (1, 2, 3, 4):
        train = training_sequences(ratings, np.arange(len(index)), index, max_length=4, window_stride=stride)
        assert train.num_positions == 13
        trained, batches = [], 0
        for batch in sequence_dataset(train, 3, 100, seed=0):  # one epoch, windows gathered per batch
            batches += 1
            for inputs, targets in zip(batch["inputs"].numpy(), batch["targets"].numpy()):
                assert 1 <= len(inputs) <= 4  # as wide as the batch's longest window
                for t in np.flatnonzero(targets):
                    trained.append((int(inputs[t]), int(targets[t])))
                    history = inputs[: t + 1][inputs[: t + 1] > 0]  # causal context: consecutive, oldest first
                    assert history.tolist() == list(range(inputs[t] - len(history) + 1, inputs[t] + 1))
                    assert len(history) >= min(4 - stride + 1, inputs[t] - (1 if inputs[t] < 20 else 20) + 1)
        assert sorted(trained) == expected, stride
        # a learning-rate schedule counts the steps an epoch really takes: windows, not users
        assert steps_per_epoch(train, 3) == batches
        assert stride > 1 or batches > 1  # 2 users with targets would make 1 step of 3
    newest = training_sequences(ratings, np.arange(len(index)), index, max_length=4, window_stride=0)
    batch = window_batch(newest)
    assert batch["inputs"].tolist() == [[7, 8, 9, 10], [0, 20, 21, 22]]
    assert batch["targets"].tolist() == [[8, 9, 10, 11], [0, 21, 22, 23]]  # today's behaviour: 7 positions


def test_stride_0_batches_are_the_materialised_newest_windows(synthetic_data):
    """``window_stride`` 0 (default): per-batch gathered windows equal today's materialised
    left-padded matrices, batch for batch over two epochs (same shuffle order per seed)."""
    from tfrs_lab.training.common import make_dataset

    ratings = synthetic_data.ratings
    split = leave_last_out_split(ratings)
    vocab = TASK.vocabularies(None, synthetic_data, split.train)
    index = item_indices(vocab, ratings["movie_id"])
    train = training_sequences(ratings, split.train, index, max_length=7)
    per_user = user_items(ratings, split.train, index)
    seqs = [per_user.of(u) for u in range(len(per_user.user_ids)) if len(per_user.of(u)) >= 2]
    dense = make_dataset({"inputs": left_pad([s[:-1] for s in seqs], 7), "targets": left_pad([s[1:] for s in seqs], 7)},
                         64, 100, seed=5)
    gathered = sequence_dataset(train, 64, 100, seed=5)
    for _ in range(2):
        pairs = list(zip(dense, gathered))
        assert len(pairs) == -(-len(seqs) // 64)
        for a, b in pairs:
            for k in ("inputs", "targets"):
                np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())


def test_batches_and_queries_drop_only_columns_that_are_padding_in_every_row():
    """Histories shorter than ``max_length`` (Last.fm: at most 48 artists against 200): each batch is as
    wide as its longest window, the dropped columns were padding, and the loss and the query vectors
    are those of the full-width matrices."""
    import tensorflow as tf

    from tfrs_lab.config import SequentialModelConfig
    from tfrs_lab.models.sequential import SequentialModel
    from tfrs_lab.training.sequential import query_vectors, trim_left_padding

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=40)  # 2..8 items per user, max_length 20
    rows = [(f"u{u:02d}", str(int(m)), t) for u, n in enumerate(lengths)
            for t, m in enumerate(rng.choice(np.arange(1, 31), size=n, replace=False))]
    ratings = _ratings(rows)
    train = training_sequences(ratings, np.arange(len(rows)), ratings["movie_id"].astype(np.int64), max_length=20)
    full = window_batch(train)
    tf.keras.utils.set_random_seed(3)
    model = SequentialModel(30, SequentialModelConfig(max_length=20, embedding_dim=8, num_blocks=2, dropout=0.0))
    widths = []
    for batch in sequence_dataset(train, 16, 100, seed=1):
        inputs, targets = batch["inputs"].numpy(), batch["targets"].numpy()
        rows_of = [int(np.flatnonzero((full["inputs"][:, -inputs.shape[1]:] == r).all(1)
                                      & (full["targets"][:, -inputs.shape[1]:] == t).all(1))[0])
                   for r, t in zip(inputs, targets)]
        wide = {k: full[k][rows_of] for k in ("inputs", "targets")}
        width = inputs.shape[1]
        widths.append(width)
        assert width == int(np.max(np.sum(wide["inputs"] > 0, axis=1)))  # the batch's longest window
        assert not wide["inputs"][:, :-width].any() and not wide["targets"][:, :-width].any()
        np.testing.assert_array_equal(wide["inputs"][:, -width:], inputs)
        np.testing.assert_allclose(model.compute_loss(batch).numpy(),
                                   model.compute_loss({k: tf.constant(v) for k, v in wide.items()}).numpy(), rtol=1e-5)
    assert max(widths) == 7 and all(w < 20 for w in widths)  # inputs: at most 8 - 1 items
    padded = left_pad([np.array([3, 7, 1]), np.array([5])], 20)
    assert trim_left_padding(padded).tolist() == [[3, 7, 1], [0, 0, 5]]
    np.testing.assert_allclose(query_vectors(model, padded), model.query_embedding(tf.constant(padded)).numpy(),
                               atol=1e-5)
