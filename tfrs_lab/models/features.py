"""Feature encoders shared by the retrieval towers and the ranking models.

Every encoder turns *raw* feature values (unix seconds, bucketized ages, occupation labels, zip
codes, movie indices) into dense vectors inside the model, with lookup tables built from a
:class:`tfrs_lab.data.features.Vocabularies` (duck-typed: models never import ``data``). Training
and the exported SavedModel therefore share one encoding path. Unknown values map to a reserved
out-of-vocabulary row and never raise.

* :class:`UserFeatureEncoder`: ``timestamp`` (normalised value + quantile-bucket embedding),
  ``age``, ``gender``, ``occupation``, ``zip`` (first three characters hashed into buckets).
* :class:`MovieFeatureEncoder`: ``title`` (mean word embedding), ``genres`` (multi-hot projection).

Both return a list of float32 ``[B, ...]`` parts (callers concatenate them with their own id
embeddings), so a model can add or drop a feature without touching the others.

* :class:`FeatureEncoder`: the typed features of your own data (``data.source.features``), from
  their descriptions (duck-typed :class:`tfrs_lab.data.typed.ModelFeature`): item and user features
  gathered by the item / user index from tables inside the model, context features read from the
  batch by name.

* :func:`history_embedding`: the mean embedding of a user's previous movies (string [B, H], ''
  padding) -- the retrieval query tower's history feature and the ranking models' SVD++-style
  implicit feedback.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["DEMOGRAPHICS", "FeatureEncoder", "context_signature", "history_embedding", "MOVIE_FEATURES", "MovieFeatureEncoder", "RAW_COLUMNS",
           "USER_FEATURES", "UserFeatureEncoder"]

USER_FEATURES = ("timestamp", "age", "gender", "occupation", "zip")
"""User/context features :class:`UserFeatureEncoder` knows."""
MOVIE_FEATURES = ("title", "genres")
"""Movie features :class:`MovieFeatureEncoder` knows."""
DEMOGRAPHICS = ("age", "gender", "occupation", "zip")
"""User features that only data sets with demographics (100k, 1m, synthetic) have."""

RAW_COLUMNS = {
    "timestamp": "timestamp",
    "age": "bucketized_user_age",
    "gender": "user_gender",
    "occupation": "user_occupation_label",
    "zip": "user_zip_code",
}
"""Feature name -> the raw rating column it reads (TFDS MovieLens names)."""


class UserFeatureEncoder(tf.keras.layers.Layer):
    """Raw user/context features -> list of float32 [B, *] parts.

    Reads ``features[RAW_COLUMNS[name]]`` for each enabled name: ``timestamp`` int64 unix seconds,
    ``bucketized_user_age`` float32, ``user_gender`` int64 (0/1), ``user_occupation_label`` int64,
    ``user_zip_code`` string.
    """

    def __init__(self, vocab, names: Sequence[str], dim: int, *, zip_buckets: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        unknown = [n for n in names if n not in USER_FEATURES]
        if unknown:
            raise ValueError(f"unknown user features {unknown}: choose from {USER_FEATURES}")
        if not vocab.has_user_features:
            names = [n for n in names if n not in DEMOGRAPHICS]
        self.names = tuple(n for n in USER_FEATURES if n in names)  # fixed order
        if "timestamp" in self.names:
            self.ts_mean, self.ts_std = float(vocab.timestamp_mean), float(vocab.timestamp_std)
            self.ts_min, self.ts_max = float(vocab.timestamp_min), float(vocab.timestamp_max)
            self.time_buckets = tf.keras.layers.Discretization(bin_boundaries=list(vocab.timestamp_boundaries))
            self.time_embedding = tf.keras.layers.Embedding(len(vocab.timestamp_boundaries) + 1, dim)
        if "age" in self.names:
            self.age_lookup = tf.keras.layers.IntegerLookup(
                vocabulary=[int(a) for a in vocab.age_values], mask_token=None)
            self.age_embedding = tf.keras.layers.Embedding(len(vocab.age_values) + 1, dim)
        if "gender" in self.names:
            self.gender_embedding = tf.keras.layers.Embedding(3, dim)
        if "occupation" in self.names:
            self.occupation_embedding = tf.keras.layers.Embedding(vocab.num_occupations + 1, dim)
        if "zip" in self.names:
            self.zip_buckets = zip_buckets
            self.zip_embedding = tf.keras.layers.Embedding(zip_buckets, dim)

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """The raw rating columns this encoder reads."""
        return tuple(RAW_COLUMNS[n] for n in self.names)

    def call(self, features: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        parts = []
        if "timestamp" in self.names:
            ts = tf.cast(features["timestamp"], tf.float32)
            ts = tf.clip_by_value(ts, self.ts_min, self.ts_max)  # serving time outside the training range
            parts.append(tf.expand_dims((ts - self.ts_mean) / self.ts_std, -1))
            parts.append(self.time_embedding(self.time_buckets(ts)))
        if "age" in self.names:
            age = tf.cast(features["bucketized_user_age"], tf.int64)
            parts.append(self.age_embedding(self.age_lookup(age)))
        if "gender" in self.names:
            g = tf.cast(features["user_gender"], tf.int64)
            parts.append(self.gender_embedding(tf.where((g == 0) | (g == 1), g + 1, 0)))
        if "occupation" in self.names:
            o = tf.cast(features["user_occupation_label"], tf.int64)
            n = self.occupation_embedding.input_dim - 1
            parts.append(self.occupation_embedding(tf.where((o >= 0) & (o < n), o + 1, 0)))
        if "zip" in self.names:
            region = tf.strings.substr(features["user_zip_code"], 0, 3)  # zip3: a postal region
            parts.append(self.zip_embedding(tf.strings.to_hash_bucket_fast(region, self.zip_buckets)))
        return parts


class MovieFeatureEncoder(tf.keras.layers.Layer):
    """Movie indices int64 [B] (0 = unknown) -> list of float32 [B, dim] parts (title, genres)."""

    def __init__(self, vocab, names: Sequence[str], dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        unknown = [n for n in names if n not in MOVIE_FEATURES]
        if unknown:
            raise ValueError(f"unknown movie features {unknown}: choose from {MOVIE_FEATURES}")
        self.names = tuple(n for n in MOVIE_FEATURES if n in names)
        if "title" in self.names:
            self.title_tokens = tf.constant(vocab.title_tokens, dtype=tf.int32)  # [M + 1, L]
            self.title_embedding = tf.keras.layers.Embedding(vocab.title_vocab_size, dim, mask_zero=True)
        if "genres" in self.names:
            self.genres = tf.constant(vocab.genres, dtype=tf.float32)  # [M + 1, G]
            self.genre_projection = tf.keras.layers.Dense(dim, use_bias=False)

    def call(self, movie_index: tf.Tensor) -> list[tf.Tensor]:
        parts = []
        if "title" in self.names:
            tokens = tf.gather(self.title_tokens, movie_index)  # [B, L]
            emb = self.title_embedding(tokens)  # [B, L, dim]
            mask = tf.cast(tf.expand_dims(tokens > 0, -1), tf.float32)
            parts.append(tf.reduce_sum(emb * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0))
        if "genres" in self.names:
            parts.append(self.genre_projection(tf.gather(self.genres, movie_index)))
        return parts


def history_embedding(history: tf.Tensor, movie_lookup: tf.keras.layers.Layer,
                      embedding: tf.keras.layers.Layer) -> tf.Tensor:
    """Mean of ``embedding(movie_lookup(history))`` over the non-padding entries -> float32 [B, d].

    ``history`` is string [B, H] ('' = padding, see :mod:`tfrs_lab.data.history`); an empty history
    gives zeros. Unknown movie ids use the lookup's out-of-vocabulary row."""
    mask = tf.cast(tf.expand_dims(tf.not_equal(history, ""), -1), tf.float32)  # [B, H, 1]
    emb = embedding(movie_lookup(history))  # [B, H, d]
    return tf.reduce_sum(emb * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)


def context_signature(feature) -> tf.TensorSpec:
    """The serving input of a context feature (named after it): categorical string [B],
    multi_categorical string [B, n] ('' pads), numeric float32 [B], timestamp int64 [B] (unix
    seconds), dense float32 [B, size]."""
    shape, dtype = {"categorical": ([None], tf.string), "multi_categorical": ([None, None], tf.string),
                    "numeric": ([None], tf.float32), "timestamp": ([None], tf.int64),
                    "dense": ([None, feature.size], tf.float32)}[feature.type]
    return tf.TensorSpec(shape, dtype, name=feature.name)


class FeatureEncoder(tf.keras.layers.Layer):
    """Typed features -> list of float32 parts ([B, dim] embeddings, [B, 1] normalised values).

    ``features``: descriptions with the attributes of :class:`tfrs_lab.data.typed.ModelFeature`
    (``name``, ``type``, ``rows`` or None, ``vocabulary``, ``hash_buckets``, ``text_vocabulary_size``,
    ``normalize``, ``mean``, ``std``, ``minimum``, ``maximum``, ``boundaries``, ``size``). A feature
    with ``rows`` (item or user side) is gathered by ``index`` (int64 [B], 0 = unknown entity); one
    without (context) is read as ``features[name]`` (:func:`context_signature`), and a batch without
    it gets the missing value ('' / NaN / the serving time clipped to the training range / zeros).

    Per type: categorical -> embedding with an out-of-vocabulary row (0: values outside the kept
    vocabulary, or missing) or of ``hash_buckets`` + 1 rows; multi_categorical -> mean of its
    values' embeddings (unknown values ignored); text -> mean word embedding; numeric -> the
    normalised value (``zscore`` / ``log`` / ``none``; missing -> 0) and, with ``boundaries``, a
    quantile-bucket embedding; timestamp -> the normalised time and a bucket embedding; dense ->
    a linear projection.
    """

    def __init__(self, features: Sequence[Any], dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.descriptions = tuple(features)
        self.rows, self.bucket_of_code, self.lookups, self.embeddings = [], [], [], []
        for f in self.descriptions:
            self.rows.append(None if f.rows is None else tf.constant(np.asarray(f.rows)))
            bucket = lookup = None
            if f.type in ("categorical", "multi_categorical"):
                if f.hash_buckets:
                    size = f.hash_buckets + 1
                    hashed = (tf.strings.to_hash_bucket_fast(tf.constant(list(f.vocabulary), tf.string), f.hash_buckets)
                              .numpy() + 1 if f.vocabulary else np.zeros(0, np.int64))
                    bucket = tf.constant(np.concatenate([[0], hashed]).astype(np.int64))  # code -> bucket
                else:
                    size = len(f.vocabulary) + 1
                    if f.vocabulary and f.rows is None:
                        lookup = tf.keras.layers.StringLookup(vocabulary=list(f.vocabulary), mask_token=None)
                layer = tf.keras.layers.Embedding(size, dim)
            elif f.type == "text":
                layer = tf.keras.layers.Embedding(f.text_vocabulary_size, dim, mask_zero=True)
            elif f.type in ("numeric", "timestamp"):
                if f.boundaries:
                    lookup = tf.keras.layers.Discretization(bin_boundaries=list(f.boundaries))
                layer = tf.keras.layers.Embedding(len(f.boundaries) + 1, dim) if f.boundaries else None
            else:  # dense
                layer = tf.keras.layers.Dense(dim, use_bias=False)
            self.bucket_of_code.append(bucket)
            self.lookups.append(lookup)
            self.embeddings.append(layer)

    @property
    def context(self) -> tuple:
        """The context features' descriptions (the ones read from the batch by name)."""
        return tuple(f for f in self.descriptions if f.rows is None)

    def _index(self, i: int, value: tf.Tensor) -> tf.Tensor:
        """Categorical values (int codes from a table, or raw strings) -> embedding rows (0 = OOV)."""
        f = self.descriptions[i]
        if value.dtype == tf.string:
            if f.hash_buckets:
                return tf.where(value == "", tf.zeros_like(value, tf.int64),
                                tf.strings.to_hash_bucket_fast(value, f.hash_buckets) + 1)
            if self.lookups[i] is None:
                return tf.zeros_like(value, tf.int64)
            return self.lookups[i](value)
        value = tf.cast(value, tf.int64)
        return tf.gather(self.bucket_of_code[i], value) if f.hash_buckets else value

    def _value(self, i: int, features: Mapping[str, tf.Tensor], index: tf.Tensor | None,
               batch: tf.Tensor) -> tf.Tensor:
        f = self.descriptions[i]
        if self.rows[i] is not None:
            return tf.gather(self.rows[i], index)
        if f.name in features:
            return features[f.name]
        if f.type == "categorical":
            return tf.fill([batch], "")
        if f.type == "multi_categorical":
            return tf.fill([batch, 1], "")
        if f.type == "numeric":
            return tf.fill([batch], np.float32(np.nan))
        if f.type == "timestamp":
            return tf.fill([batch], tf.cast(tf.timestamp(), tf.int64))
        return tf.zeros([batch, f.size])

    def call(self, features: Mapping[str, tf.Tensor], index: tf.Tensor | None = None) -> list[tf.Tensor]:
        """``features``: the batch (context features by name, ``user_id`` [B] for the batch size when
        ``index`` is None); ``index`` int64 [B]: the item / user index the tables are gathered by."""
        batch = tf.shape(index)[0] if index is not None else tf.shape(features["user_id"])[0]
        parts = []
        for i, f in enumerate(self.descriptions):
            value = self._value(i, features, index, batch)
            if f.type == "categorical":
                parts.append(self.embeddings[i](self._index(i, value)))
            elif f.type == "multi_categorical":
                present = value != "" if value.dtype == tf.string else value > 0
                idx = self._index(i, value)
                mask = tf.cast(tf.expand_dims(present & (idx > 0), -1), tf.float32)
                emb = self.embeddings[i](idx)
                parts.append(tf.reduce_sum(emb * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0))
            elif f.type == "text":
                mask = tf.cast(tf.expand_dims(value > 0, -1), tf.float32)
                emb = self.embeddings[i](value)
                parts.append(tf.reduce_sum(emb * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0))
            elif f.type in ("numeric", "timestamp"):
                x = tf.cast(value, tf.float32)
                if f.type == "timestamp":
                    x = tf.clip_by_value(x, f.minimum, f.maximum)
                elif f.normalize == "log":
                    x = tf.math.log1p(tf.maximum(x, 0.0))
                missing = tf.math.is_nan(x)
                x = tf.where(missing, tf.fill(tf.shape(x), np.float32(f.mean)), x)
                parts.append(tf.expand_dims((x - f.mean) / f.std, -1))
                if self.embeddings[i] is not None:
                    parts.append(self.embeddings[i](self.lookups[i](x)))
            else:
                parts.append(self.embeddings[i](tf.cast(value, tf.float32)))
        return parts
