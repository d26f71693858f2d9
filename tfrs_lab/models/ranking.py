"""Ranking models: score (user, movie) pairs with a TFRS ``Ranking`` task.

Architectures (``RankingModelConfig.architecture``):

* ``mf``: ``<p_u, q_m>`` -- matrix factorisation (with the shared biases below: biased MF / SVD).
* ``gmf``: ``h . (p_u * q_m)`` -- generalised MF (He et al. 2017).
* ``mlp``: ``h . MLP([p_u, q_m])`` with ``mlp_layers`` ReLU layers and dropout.
* ``neumf``: ``h . [p_u * q_m, MLP([p'_u, q'_m])]`` -- GMF and MLP branches with their own
  embeddings; :meth:`RankingModel.init_neumf_from` copies pretrained GMF and MLP weights in.
* ``autorec``: item-based AutoRec (Sedhain et al. 2015) scored per pair -- ``W_u . h_m + c_u`` with
  the movie code ``h_m = sigmoid(V r_m + b)`` of the movie's *training* rating vector over users
  ``r_m`` (an [M + 1, U + 1] table the trainer passes in; unrated = 0; ``hp.autorec`` sets the
  hidden units, activation, input dropout and weight decay),
  reusing :class:`tfrs_lab.models.autoencoder.AutoRec`. The table holds training ratings while
  training and validating, training + validation ratings for the test evaluation and the export
  (as every model's test-time history does); a rating is never in the table it is predicted from.
* ``dcn``: DCN-v2 -- ``x0 = [p_u, q_m, user/context features, movie features]``, ``cross_layers``
  ``tfrs.layers.dcn.Cross`` layers (low-rank when ``cross_low_rank > 0``), then ``deep_layers``
  ReLU layers and a linear output.

Typed features of your own data (``vocab.typed``: ``data.source.features``,
:class:`tfrs_lab.models.features.FeatureEncoder`): user features gathered by the user index, item
features by the movie index (tables inside the model) and context features read from the batch by
name (:attr:`RankingModel.context_features`) are concatenated into DCN's ``x0`` and the MLP's input
(``mlp``, NeuMF's MLP branch), each part ``feature_embedding_dim`` wide. ``mf``, ``gmf`` and
``autorec`` have no input they could join: a model of them with typed features is refused
(``RankingConfig`` refuses the config first).

Every architecture adds ``global + b_u + b_m`` (``use_biases``; ``global`` starts at the training
mean rating, or at the log-odds of a positive for the implicit objective). Unknown user / movie ids
map to index 0, whose embeddings and biases are masked to zero: an unknown user gets the movie's
bias-driven score, never an error.

SVD++ implicit feedback (``history_length > 0``): every architecture's user vector becomes
``p_u + mean_j y_j`` over the user's earlier movies (the ``history`` column, string [B, H], ''
padding; :func:`tfrs_lab.models.features.history_embedding`), with its own ``y`` table per branch.

Objectives: ``explicit`` regresses ratings with MSE (``predict`` clips to the rating range);
``implicit`` treats the output as a logit s(u, i) trained against sampled negatives with one of
three losses (``loss``; every score comes from the same model, so the pairwise and listwise set-ups
are Siamese: the positive and its negatives share every weight):

* ``pointwise``: binary cross-entropy, label 1 for positives and 0 for negatives (rows mixed freely).
* ``pairwise`` (BPR, Rendle et al. 2009): ``mean_{b, k} -log sigma(s(u_b, i+_b) - s(u_b, i-_bk))``
  over each positive b and its n negatives k (:func:`bpr_loss`).
* ``listwise``: softmax cross-entropy over each positive's list ``[i+_b, i-_b1 .. i-_bn]`` with the
  positive as the label, ``mean_b (logsumexp_j s_bj - s(u_b, i+_b))`` (:func:`listwise_loss`).

The pairwise and listwise losses read a ``negative_movie_id`` column (string [B, n]) beside the
positive's features; each negative copies its positive's user and context columns.

Embedding regularisation is the classic per-example L2 on the rows a batch looks up
(``embedding_l2 * mean(|p_u|^2 + |q_m|^2 + b_u^2 + b_m^2)``); dense and cross kernels get
``kernel_l2`` through Keras regularisers (added to the loss by ``train_step``).
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.config import TYPED_RANKING_ARCHITECTURES, RankingModelConfig
from tfrs_lab.models.autoencoder import AutoRec
from tfrs_lab.models.cross_replica import SynchronousModel, global_mean
from tfrs_lab.models.features import (MOVIE_FEATURES, USER_FEATURES, FeatureEncoder, MovieFeatureEncoder,
                                     UserFeatureEncoder, history_embedding)

__all__ = ["GMFBranch", "MLPBranch", "NEGATIVE_MOVIE_ID", "RankingModel", "TypedParts", "bpr_loss", "listwise_loss"]

NEGATIVE_MOVIE_ID = "negative_movie_id"
"""Batch column of the pairwise and listwise losses: string [B, n], each positive's sampled negatives."""


def bpr_loss(positive: tf.Tensor, negative: tf.Tensor) -> tf.Tensor:
    """BPR: ``mean -log sigma(positive_b - negative_bk)`` over every (positive, negative) pair; a
    float32 scalar from logits ``positive`` float32 [B] and ``negative`` float32 [B, n]."""
    return global_mean(tf.nn.softplus(negative - positive[:, None]))  # -log sigma(x) = softplus(-x)


def listwise_loss(positive: tf.Tensor, negative: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each list ``[positive_b, negative_b1 .. negative_bn]`` with the
    positive as the label, averaged over the B lists; a float32 scalar from logits ``positive``
    float32 [B] and ``negative`` float32 [B, n]."""
    logits = tf.concat([positive[:, None], negative], 1)  # [B, 1 + n]
    labels = tf.one_hot(tf.zeros_like(positive, tf.int32), tf.shape(logits)[1])
    return global_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _embedding(rows: int, dim: int, name: str) -> tf.keras.layers.Embedding:
    return tf.keras.layers.Embedding(
        rows, dim, embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05), name=name)


def _masked(layer: tf.keras.layers.Embedding, index: tf.Tensor) -> tf.Tensor:
    """``layer(index)`` with the out-of-vocabulary row (index 0) forced to zeros."""
    return layer(index) * tf.cast(tf.expand_dims(index > 0, -1), tf.float32)


def _square_norm(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(x), axis=-1)


class _IdPair(tf.keras.layers.Layer):
    """One user and one movie embedding table; returns the masked rows and their squared norms.

    With ``history`` (SVD++ implicit feedback) a third table ``y`` embeds the user's earlier movies;
    their mean is added to the user vector: ``p_u + mean_j y_j``."""

    def __init__(self, num_users: int, num_movies: int, dim: int, history: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user = _embedding(num_users, dim, "user")
        self.movie = _embedding(num_movies, dim, "movie")
        self.implicit = _embedding(num_movies, dim, "implicit") if history else None

    def call(self, user_index: tf.Tensor, movie_index: tf.Tensor, history: tf.Tensor | None = None,
             lookup: tf.keras.layers.Layer | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        p, q = _masked(self.user, user_index), _masked(self.movie, movie_index)
        penalty = _square_norm(p) + _square_norm(q)
        if self.implicit is not None:
            y = history_embedding(history, lookup, self.implicit)
            p, penalty = p + y, penalty + _square_norm(y)
        return p, q, penalty


class TypedParts(tf.keras.layers.Layer):
    """Typed features of a (user, item) pair -> list of float32 [B, *] parts: the user and context
    features (:class:`FeatureEncoder` gathered by the user index; context read from the batch by name)
    and the item features (gathered by the movie index), each encoder ``dim`` wide."""

    def __init__(self, typed, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        query = [t for t in typed if t.side in ("user", "context")]
        item = [t for t in typed if t.side == "item"]
        self.query = FeatureEncoder(query, dim, name="query_typed") if query else None
        self.item = FeatureEncoder(item, dim, name="item_typed") if item else None

    @property
    def context(self) -> tuple:
        """Descriptions of the context features read from the batch by name."""
        return () if self.query is None else self.query.context

    def call(self, features: Mapping[str, tf.Tensor], user_index: tf.Tensor, movie_index: tf.Tensor) -> list[tf.Tensor]:
        parts = [] if self.query is None else self.query(features, index=user_index)
        return parts + ([] if self.item is None else self.item({}, index=movie_index))


class GMFBranch(tf.keras.layers.Layer):
    """GMF's last hidden vector ``p_u * q_m`` (float32 [B, d])."""

    def __init__(self, num_users: int, num_movies: int, dim: int, history: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ids = _IdPair(num_users, num_movies, dim, history, name="ids")

    def call(self, user_index, movie_index, history=None, lookup=None, training=False):
        p, q, penalty = self.ids(user_index, movie_index, history, lookup)
        return p * q, penalty


class MLPBranch(tf.keras.layers.Layer):
    """MLP's last hidden vector: ReLU layers (with dropout) over ``[p_u, q_m]`` (and, with ``typed``
    features, their :class:`TypedParts` of ``typed_dim`` each: ``features`` is then the batch)."""

    def __init__(self, num_users: int, num_movies: int, dim: int, layers: tuple[int, ...], dropout: float,
                 kernel_l2: float, history: bool = False, typed: tuple = (), typed_dim: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ids = _IdPair(num_users, num_movies, dim, history, name="ids")
        self.typed = TypedParts(typed, typed_dim, name="typed") if typed else None
        reg = tf.keras.regularizers.l2(kernel_l2) if kernel_l2 else None
        self.hidden = [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=reg) for n in layers]
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None

    def call(self, user_index, movie_index, history=None, lookup=None, training=False, features=None):
        p, q, penalty = self.ids(user_index, movie_index, history, lookup)
        typed = [] if self.typed is None else self.typed(features, user_index, movie_index)
        x = tf.concat([p, q, *typed], -1)
        for layer in self.hidden:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return x, penalty


class RankingModel(SynchronousModel):
    """Scores raw (user, movie) feature batches; ``compute_loss`` reads the ``label`` column.

    Batch features (all shape [B]): ``user_id``, ``movie_id`` (string), ``label`` (float32: the
    rating, or 1/0 for implicit positives/negatives) and, for ``dcn``, the raw columns of its user
    features (``timestamp``, ``bucketized_user_age``, ``user_gender``, ``user_occupation_label``,
    ``user_zip_code``; see :attr:`raw_feature_columns`), the typed context features by name
    (:attr:`context_features`; ``dcn`` / ``mlp`` / ``neumf`` on your own data) and, with ``history_length > 0``,
    ``history`` (string [B, history_length], the user's earlier movies, most recent first, '' padding).
    """

    def __init__(self, vocab, hp: RankingModelConfig, *, global_offset: float = 0.0,
                 item_ratings=None, loss: str = "pointwise") -> None:
        """``vocab`` is a ``tfrs_lab.data.features.Vocabularies`` (duck-typed: models never import data).

        ``global_offset`` initialises the global bias (mean training rating, or the log-odds of a
        positive among the training examples). ``item_ratings`` (``autorec`` only): float32
        [M + 1, U + 1] training ratings by (movie index, user index), 0 = unrated; row/column 0 are
        the unknown movie/user. ``loss`` (implicit objective): ``pointwise``, ``pairwise`` or
        ``listwise`` (module docstring)."""
        super().__init__()
        if loss not in ("pointwise", "pairwise", "listwise") or (loss != "pointwise" and hp.objective == "explicit"):
            raise ValueError(f"loss must be pointwise, or pairwise / listwise with the implicit objective; got {loss!r}")
        self.hp, self.loss_kind = hp, loss
        U, M, d = vocab.num_users, vocab.num_movies, hp.embedding_dim
        reg = tf.keras.regularizers.l2(hp.kernel_l2) if hp.kernel_l2 else None
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=list(vocab.user_ids), mask_token=None)
        self.movie_lookup = tf.keras.layers.StringLookup(vocabulary=list(vocab.movie_ids), mask_token=None)
        self.movie_ids = tf.constant(list(vocab.movie_ids), dtype=tf.string)  # [M]
        arch = hp.architecture
        self.uses_history = hist = hp.history_length > 0
        self.user_features = self.movie_features = self.typed = None
        typed = tuple(getattr(vocab, "typed", ()))  # own data's data.source.features
        if typed and arch not in TYPED_RANKING_ARCHITECTURES:
            raise ValueError(f"model.architecture={arch} does not read typed features: choose one of "
                             f"{', '.join(TYPED_RANKING_ARCHITECTURES)}")
        if arch == "mf":
            self.ids = _IdPair(U, M, d, hist, name="mf")
        if arch in ("gmf", "neumf"):
            self.gmf = GMFBranch(U, M, d, hist, name="gmf")
        if arch in ("mlp", "neumf"):
            self.mlp = MLPBranch(U, M, d, hp.mlp_layers, hp.dropout, hp.kernel_l2, hist, typed,
                                 hp.feature_embedding_dim, name="mlp")
        if arch == "dcn":
            self.ids = _IdPair(U, M, d, hist, name="dcn_ids")
            f = hp.feature_embedding_dim
            self.user_features = UserFeatureEncoder(
                vocab, [n for n in hp.features if n in USER_FEATURES], f, zip_buckets=hp.zip_buckets)
            self.movie_features = MovieFeatureEncoder(vocab, [n for n in hp.features if n in MOVIE_FEATURES], f)
            self.typed = TypedParts(typed, f, name="dcn_typed") if typed else None
            self.cross = [tfrs.layers.dcn.Cross(projection_dim=hp.cross_low_rank or None, kernel_regularizer=reg)
                          for _ in range(hp.cross_layers)]
            self.deep = [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=reg) for n in hp.deep_layers]
            self.dropout = tf.keras.layers.Dropout(hp.dropout) if hp.dropout else None
        if arch == "autorec":
            if item_ratings is None or tuple(item_ratings.shape) != (M, U):
                raise ValueError(f"autorec needs item_ratings of shape {(M, U)} (movie index, user index)")
            # a variable, not a constant: evaluation and export swap in the ratings known by then
            self.item_ratings = tf.Variable(tf.constant(item_ratings, tf.float32), trainable=False,
                                            name="item_ratings")
            self.autorec = AutoRec(U, hp.autorec)
        if arch not in ("mf", "autorec"):  # the predictive layer h (GMF/MLP/NeuMF) or DCN's output layer
            self.out = tf.keras.layers.Dense(1, use_bias=False, kernel_regularizer=reg, name="out")
        if hp.use_biases:
            self.user_bias = tf.keras.layers.Embedding(U, 1, embeddings_initializer="zeros", name="user_bias")
            self.movie_bias = tf.keras.layers.Embedding(M, 1, embeddings_initializer="zeros", name="movie_bias")
        self.global_bias = tf.Variable(float(global_offset), dtype=tf.float32, name="global_bias")
        # The task holds the training metrics; the loss is ``compute_loss``'s own (a global-batch mean).
        if hp.objective == "explicit":
            self.task = tfrs.tasks.Ranking(metrics=[tf.keras.metrics.RootMeanSquaredError("rmse")])
        else:
            self.task = tfrs.tasks.Ranking(metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])

    @property
    def context_features(self) -> tuple:
        """Descriptions of the typed context features read from the batch by name (none without any)."""
        typed = self.typed if self.typed is not None else getattr(getattr(self, "mlp", None), "typed", None)
        return () if typed is None else typed.context

    @property
    def raw_feature_columns(self) -> tuple[str, ...]:
        """Columns besides ``user_id`` / ``movie_id`` that the model reads (raw user/context columns,
        typed context features by name, and ``history`` with SVD++ implicit feedback)."""
        raw = self.user_features.raw_columns if self.user_features is not None else ()
        raw = (*raw, *(f.name for f in self.context_features))
        return (*raw, "history") if self.uses_history else raw

    # ------------------------------------------------------------------ scoring

    def _forward(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(raw output float32 [B], per-example squared norm of the looked-up embedding rows [B])."""
        u = self.user_lookup(features["user_id"])
        m = self.movie_lookup(features["movie_id"])
        arch = self.hp.architecture
        h_ids = (features["history"], self.movie_lookup) if self.uses_history else (None, None)
        if arch == "mf":
            p, q, penalty = self.ids(u, m, *h_ids)
            raw = tf.reduce_sum(p * q, -1)
        elif arch == "gmf":
            h, penalty = self.gmf(u, m, *h_ids)
            raw = self.out(h)[:, 0]
        elif arch == "mlp":
            h, penalty = self.mlp(u, m, *h_ids, training=training, features=features)
            raw = self.out(h)[:, 0]
        elif arch == "neumf":
            h_gmf, pen_gmf = self.gmf(u, m, *h_ids)
            h_mlp, pen_mlp = self.mlp(u, m, *h_ids, training=training, features=features)
            raw, penalty = self.out(tf.concat([h_gmf, h_mlp], -1))[:, 0], pen_gmf + pen_mlp
        elif arch == "autorec":
            h = self.autorec.encode(tf.gather(self.item_ratings, m), training=training)  # [B, H]
            w = tf.gather(tf.transpose(self.autorec.decoder.kernel), u)  # [B, H]: user u's decoder row
            known = tf.cast(u > 0, tf.float32)
            raw = (tf.reduce_sum(h * w, -1) + tf.gather(self.autorec.decoder.bias, u)) * known
            penalty = tf.zeros_like(raw)
        else:  # dcn
            p, q, penalty = self.ids(u, m, *h_ids)
            typed = [] if self.typed is None else self.typed(features, u, m)
            x0 = tf.concat([p, q, *self.user_features(features), *self.movie_features(m), *typed], -1)
            x = x0
            for layer in self.cross:
                x = layer(x0, x)
            for layer in self.deep:
                x = layer(x)
                if self.dropout is not None:
                    x = self.dropout(x, training=training)
            raw = self.out(x)[:, 0]
        raw = raw + self.global_bias
        if self.hp.use_biases:
            bu, bm = _masked(self.user_bias, u)[:, 0], _masked(self.movie_bias, m)[:, 0]
            raw = raw + bu + bm
            penalty = penalty + tf.square(bu) + tf.square(bm)
        return raw, penalty

    def call(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Raw output float32 [B]: the unclipped rating (explicit) or the logit (implicit)."""
        return self._forward(features, training)[0]

    def predict_scores(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """What serving returns, float32 [B]: the rating clipped to ``[rating_min, rating_max]``
        (explicit) or the logit (implicit; higher = more likely to be watched)."""
        raw = self(features)
        if self.hp.objective == "explicit":
            return tf.clip_by_value(raw, self.hp.rating_min, self.hp.rating_max)
        return raw

    # ------------------------------------------------------------------ training

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.loss_kind == "pointwise":
            raw, penalty = self._forward(features, training)
            loss = global_mean(self._pointwise_losses(features["label"], raw))
            for metric in self.task.metrics:  # the task's training rmse / auc
                metric.update_state(features["label"], raw)
        else:
            positive, negative, penalty = self._score_lists(features, training)
            loss = (bpr_loss if self.loss_kind == "pairwise" else listwise_loss)(positive, negative)
            negative = tf.reshape(negative, [-1])  # the training AUC, as pointwise reports it (loss unused)
            for metric in self.task.metrics:
                metric.update_state(tf.concat([tf.ones_like(positive), tf.zeros_like(negative)], 0),
                                    tf.concat([positive, negative], 0))
        if self.hp.embedding_l2:
            loss += self.hp.embedding_l2 * global_mean(penalty)
        return loss

    def _pointwise_losses(self, labels: tf.Tensor, raw: tf.Tensor) -> tf.Tensor:
        """float32 [B] per-example losses of the pointwise objective: the squared error of the
        rating (explicit) or the binary cross-entropy of the logit (implicit). Averaged with
        :func:`global_mean` (the task's Keras loss refuses a per-replica mean under a strategy)."""
        if self.hp.objective == "explicit":
            return tf.square(labels - raw)
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=raw)

    def _score_lists(self, features: Mapping[str, tf.Tensor],
                     training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Logits of the positives float32 [B] and of their negatives float32 [B, n] in one forward
        pass (each negative with its positive's user and context columns), and the per-row squared
        norms of every looked-up embedding [B * (1 + n)]."""
        negatives = features[NEGATIVE_MOVIE_ID]  # [B, n]
        b, n = tf.shape(negatives)[0], tf.shape(negatives)[1]
        rows = {}
        for name, column in features.items():
            if name in ("label", NEGATIVE_MOVIE_ID):
                continue
            copies = tf.reshape(negatives, [-1]) if name == "movie_id" else tf.repeat(column, n, axis=0)
            rows[name] = tf.concat([column, copies], 0)
        raw, penalty = self._forward(rows, training)
        return raw[:b], tf.reshape(raw[b:], [b, n]), penalty

    # ------------------------------------------------------------------ NeuMF pre-training

    def init_neumf_from(self, gmf: "RankingModel", mlp: "RankingModel", alpha: float = 0.5) -> None:
        """Initialises this NeuMF from trained GMF and MLP models (He et al. 2017, section 3.4.1).

        The GMF branch gets ``gmf``'s embeddings, the MLP branch ``mlp``'s embeddings and hidden
        layers; the predictive layer is ``[alpha * h_gmf, (1 - alpha) * h_mlp]``; biases are the
        same ``alpha`` mix. All three models must be built (called once) with the same vocabularies.
        """
        if self.hp.architecture != "neumf" or gmf.hp.architecture != "gmf" or mlp.hp.architecture != "mlp":
            raise ValueError("init_neumf_from needs a neumf model, a gmf model and an mlp model")
        self.gmf.set_weights(gmf.gmf.get_weights())
        self.mlp.set_weights(mlp.mlp.get_weights())
        self.out.kernel.assign(tf.concat([alpha * gmf.out.kernel, (1.0 - alpha) * mlp.out.kernel], 0))
        self.global_bias.assign(alpha * gmf.global_bias + (1.0 - alpha) * mlp.global_bias)
        if self.hp.use_biases and gmf.hp.use_biases and mlp.hp.use_biases:
            for name in ("user_bias", "movie_bias"):
                mixed = alpha * getattr(gmf, name).embeddings + (1.0 - alpha) * getattr(mlp, name).embeddings
                getattr(self, name).embeddings.assign(mixed)
