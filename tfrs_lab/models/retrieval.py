"""Two-tower retrieval model (TFRS ``Retrieval`` task, in-batch softmax).

Query tower: user-id embedding plus optional context/user features (time as a normalised value
and a quantile-bucket embedding, age, gender, occupation, and the user's recent history as the
mean of the candidate tower's movie-id embeddings of their last ``history_length`` movies). Candidate tower: movie-id embedding
plus optional title (mean of word embeddings) and genres (multi-hot projection). Each tower
concatenates its parts, applies ``tower_layers`` Dense(ReLU) layers and a final linear projection
to ``embedding_dim``; vectors are L2-normalised when ``normalize`` is set (cosine similarity).

All encoding of raw values (string ids, ages, labels, timestamps) happens inside the model, with
lookup layers and the shared encoders of :mod:`tfrs_lab.models.features` built from
:class:`tfrs_lab.data.features.Vocabularies`-like arrays, so the training pipeline and the
exported SavedModel share one encoding path. Unknown ids and values map to a
reserved out-of-vocabulary index (0) and never raise.

Loss (TFRS ``Retrieval``: softmax cross-entropy over sampled candidates). A batch of B (query,
movie) positives gives queries ``q_b`` and in-batch candidates ``v_1 .. v_B``; with
``uniform_negatives = N > 0`` (mixed negative sampling, Yang et al. 2020) N more movies
``v_{B+1} .. v_{B+N}`` are drawn uniformly from the catalogue of M movies for the whole batch. Query
b's logits over the C = B + N candidates, with item j of candidate column c:

    l_bc = <q_b, v_c> / temperature - log Q(j)                            (logQ correction)
    Q(j) = (B p_j + N / M) / (B + N)

``p_j`` is item j's unigram frequency in the training rows (add-one smoothed): in-batch candidates
are drawn ~ p (the batch's positives), uniform ones ~ 1/M, so the candidate set is a sample of the
mixture Q, and Q(j) (proportional to j's expected count in it) is the correction of *every* column
holding j, whichever stream drew it. With N = 0 it is the plain in-batch correction ``log p_j``.
``remove_accidental_hits`` then sets ``l_bc`` to -inf-like (``MIN_FLOAT``) for every column c != b
holding query b's positive movie (an in-batch duplicate or a uniform draw of that movie);
``num_hard_negatives = K > 0`` keeps the positive column and the K highest corrected negatives
per query. The loss is ``sum_b w_b * -log softmax(l_b)_b`` (TFRS sums over the batch), with
``w_b`` the batch's ``sample_weight`` (``train.sample_weight``) or 1 without that key.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.config import RetrievalModelConfig

from tfrs_lab.models.cross_replica import SynchronousModel, global_candidates
from tfrs_lab.models.features import (USER_FEATURES, FeatureEncoder, MovieFeatureEncoder, UserFeatureEncoder,
                                      history_embedding)

__all__ = ["RetrievalModel", "mixed_sampling_probability"]


def _tower(layers: Sequence[int], out_dim: int, l2: float, name: str) -> tf.keras.Sequential:
    reg = tf.keras.regularizers.l2(l2) if l2 else None
    stack = [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=reg) for n in layers]
    stack.append(tf.keras.layers.Dense(out_dim, kernel_regularizer=reg))
    return tf.keras.Sequential(stack, name=name)


def mixed_sampling_probability(item_probability: tf.Tensor, batch_size: tf.Tensor | int, num_uniform: int,
                               num_items: int) -> tf.Tensor:
    """Q(j) = (B p_j + N / M) / (B + N), float32 [C]: the probability that one draw of the mixed
    candidate set is item j, for the unigram probabilities ``item_probability`` p_j (float32 [C], one
    per candidate column), B = ``batch_size`` in-batch candidates, N = ``num_uniform`` uniform ones
    and a catalogue of M = ``num_items`` movies. N = 0 returns p unchanged."""
    if not num_uniform:
        return item_probability
    b = tf.cast(batch_size, tf.float32)
    return (b * item_probability + num_uniform / num_items) / (b + num_uniform)


class RetrievalModel(SynchronousModel):
    """Two-tower model; ``compute_loss`` takes a batch of raw rating features.

    Batch features (all shape [B]): ``user_id`` (string), ``movie_id`` (string), ``timestamp``
    (int64 unix seconds), and when the query tower uses them ``bucketized_user_age`` (float32),
    ``user_gender`` (int64 0/1), ``user_occupation_label`` (int64), ``history`` (string [B, H], the
    movies rated just before, most recent first, '' padding); optionally ``sample_weight`` (float32
    [B], each row's weight in the loss). With typed features of your own data
    (``vocab.typed``, :class:`tfrs_lab.models.features.FeatureEncoder`) the query tower also reads
    the user features (by user index) and the context features (by name, see
    :attr:`context_features`), the candidate tower the item features (by movie index).
    """

    def __init__(self, vocab, hp: RetrievalModelConfig) -> None:
        """``vocab`` is a ``tfrs_lab.data.features.Vocabularies`` (duck-typed: models never import data)."""
        super().__init__()
        self.hp = hp
        d, f = hp.id_embedding_dim, hp.feature_embedding_dim
        q = set(hp.query_features)
        reg = tf.keras.regularizers.l2(hp.l2_regularization) if hp.l2_regularization else None
        # --- vocabularies (saved with the model)
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=list(vocab.user_ids), mask_token=None)
        self.movie_lookup = tf.keras.layers.StringLookup(vocabulary=list(vocab.movie_ids), mask_token=None)
        self.movie_ids = tf.constant(list(vocab.movie_ids), dtype=tf.string)  # [M]
        # --- query tower
        self.user_embedding = tf.keras.layers.Embedding(vocab.num_users, d, embeddings_regularizer=reg)
        self.user_features = UserFeatureEncoder(vocab, [n for n in hp.query_features if n in USER_FEATURES], f)
        self.use_history = "history" in q
        typed = tuple(getattr(vocab, "typed", ()))  # own data's data.source.features
        query_typed = [t for t in typed if t.side in ("user", "context")]
        item_typed = [t for t in typed if t.side == "item"]
        self.query_typed = FeatureEncoder(query_typed, f, name="query_typed") if query_typed else None
        self.query_tower = _tower(hp.tower_layers, hp.embedding_dim, hp.l2_regularization, "query_tower")
        # --- candidate tower
        self.movie_embedding = tf.keras.layers.Embedding(vocab.num_movies, d, embeddings_regularizer=reg)
        self.movie_features = MovieFeatureEncoder(vocab, hp.candidate_features, f)
        self.item_typed = FeatureEncoder(item_typed, f, name="item_typed") if item_typed else None
        self.candidate_tower = _tower(hp.tower_layers, hp.embedding_dim, hp.l2_regularization, "candidate_tower")
        # --- task
        counts = np.asarray(vocab.item_counts, dtype=np.float64) + 1.0
        self.item_probability = tf.constant(counts / counts.sum(), dtype=tf.float32)  # [M + 1]
        self.num_catalogue = int(vocab.num_movies) - 1  # M: indices 1 .. M (0 = unknown)
        self.task = tfrs.tasks.Retrieval(
            temperature=hp.temperature, remove_accidental_hits=hp.remove_accidental_hits,
            num_hard_negatives=hp.num_hard_negatives or None)

    # ------------------------------------------------------------------ towers

    def _finish(self, parts: list[tf.Tensor], tower: tf.keras.Model) -> tf.Tensor:
        x = tower(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(x, axis=-1) if self.hp.normalize else x

    def query_embedding(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Query vectors float32 [B, embedding_dim] from raw query features (see class docstring)."""
        user_index = self.user_lookup(features["user_id"])
        parts = [self.user_embedding(user_index), *self.user_features(features)]
        if self.query_typed is not None:
            parts += self.query_typed(features, index=user_index)
        if self.use_history:
            parts.append(history_embedding(features["history"], self.movie_lookup, self.movie_embedding))  # shares the candidate table
        return self._finish(parts, self.query_tower)

    def candidate_embedding_from_index(self, movie_index: tf.Tensor) -> tf.Tensor:
        """Candidate vectors float32 [B, embedding_dim] from movie indices int64 [B] (0 = unknown)."""
        parts = [self.movie_embedding(movie_index), *self.movie_features(movie_index)]
        if self.item_typed is not None:
            parts += self.item_typed({}, index=movie_index)
        return self._finish(parts, self.candidate_tower)

    def candidate_embedding(self, movie_id: tf.Tensor) -> tf.Tensor:
        """Candidate vectors float32 [B, embedding_dim] from movie ids (string [B])."""
        return self.candidate_embedding_from_index(self.movie_lookup(movie_id))

    @property
    def context_features(self) -> tuple:
        """Descriptions of the typed context features the query reads by name (none without any)."""
        return () if self.query_typed is None else self.query_typed.context

    def catalogue_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """float32 [M, embedding_dim]: every catalogue movie, in ``movie_ids`` order."""
        n = int(self.movie_ids.shape[0])
        out = [self.candidate_embedding_from_index(tf.range(s + 1, min(s + batch_size, n) + 1, dtype=tf.int64))
               for s in range(0, n, batch_size)]
        return tf.concat(out, 0).numpy()

    # ------------------------------------------------------------------ training

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        movie_index = self.movie_lookup(features["movie_id"])
        query = self.query_embedding(features)
        candidate = self.candidate_embedding_from_index(movie_index)
        # synchronous replicas: every query's softmax runs over the whole global batch
        candidate, movie_index = global_candidates(candidate, movie_index)
        if self.hp.uniform_negatives:  # mixed negatives: N catalogue movies drawn uniformly per batch
            uniform = tf.random.uniform([self.hp.uniform_negatives], 1, self.num_catalogue + 1, dtype=tf.int64)
            candidate = tf.concat([candidate, self.candidate_embedding_from_index(uniform)], 0)
            movie_index = tf.concat([movie_index, uniform], 0)
        return self.softmax_loss(query, candidate, movie_index, features.get("sample_weight"))

    def softmax_loss(self, query: tf.Tensor, candidate: tf.Tensor, candidate_index: tf.Tensor,
                     sample_weight: tf.Tensor | None = None) -> tf.Tensor:
        """The corrected sampled-softmax loss (module docstring), a float32 scalar summed over queries.

        ``query`` float32 [B, d]; ``candidate`` float32 [B + N, d]: row b < B is query b's positive,
        rows B .. B + N - 1 the ``hp.uniform_negatives`` uniform draws; ``candidate_index`` int64
        [B + N] their movie indices (1 .. M); ``sample_weight`` float32 [B] query b's weight (None: 1)."""
        probability = None
        if self.hp.logq_correction:
            probability = mixed_sampling_probability(
                tf.gather(self.item_probability, candidate_index),
                tf.shape(candidate_index)[0] - self.hp.uniform_negatives, self.hp.uniform_negatives,
                self.num_catalogue)
        return self.task(
            query, candidate,
            sample_weight=sample_weight,
            candidate_sampling_probability=probability,
            candidate_ids=candidate_index if self.hp.remove_accidental_hits else None,
            compute_metrics=False,
        )
