"""Multitask model (the TFRS multitask tutorial): one pair of towers, two heads.

The query and candidate towers are those of :class:`tfrs_lab.models.retrieval.RetrievalModel`
(user id + user/context features + history; movie id + title + genres). On top of them:

* the retrieval head: TFRS ``Retrieval`` task, in-batch softmax over the tower outputs (as the
  retrieval model trains);
* the rating head: ``rating_layers`` Dense(ReLU) layers and a linear output over the concatenated
  query and candidate vectors, plus the mean training rating (``global_offset``), regressing the
  explicit rating with MSE (over the global batch under synchronous replicas).

``compute_loss`` = ``retrieval_weight`` x retrieval loss + ``rating_weight`` x rating loss; a head
whose weight is 0 is not computed, so its variables stay at their initial values.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from tfrs_lab.config import MultitaskModelConfig
from tfrs_lab.models.cross_replica import global_mean
from tfrs_lab.models.retrieval import RetrievalModel

__all__ = ["MultitaskModel"]


class MultitaskModel(RetrievalModel):
    """Two-tower retrieval plus a rating head on the same towers.

    Batch features are the retrieval model's (see :class:`RetrievalModel`) plus ``label`` (float32
    [B], the star rating) for the rating loss. Everything :class:`RetrievalModel` answers
    (``query_embedding``, ``catalogue_embeddings`` …) works unchanged, so retrieval evaluation and
    the retrieval exporter take this model as they are; ``predict_scores``, ``uses_history`` and
    ``hp.objective`` are what the ranking exporter and ranking evaluation read.
    """

    def __init__(self, vocab, hp: MultitaskModelConfig, *, global_offset: float = 0.0) -> None:
        """``vocab``: a ``tfrs_lab.data.features.Vocabularies``; ``global_offset``: the mean training rating."""
        super().__init__(vocab, hp)
        self.global_offset = float(global_offset)
        # Built here, so a head whose loss weight is 0 still has (untrained) weights to save; seeded
        # per layer, so it draws nothing from the global generator and the towers start exactly as
        # the retrieval model's do (a 1/0 run reproduces the retrieval task).
        sizes = [*hp.rating_layers, 1]
        self.rating_head = tf.keras.Sequential(
            [tf.keras.layers.Dense(n, activation="relu" if i < len(sizes) - 1 else None,
                                   kernel_initializer=tf.keras.initializers.GlorotUniform(seed=i))
             for i, n in enumerate(sizes)], name="rating_head")
        self.rating_head.build((None, 2 * hp.embedding_dim))

    @property
    def uses_history(self) -> bool:
        """True when the query tower reads ``history`` (string [B, H])."""
        return self.use_history

    def _rating(self, query: tf.Tensor, candidate: tf.Tensor) -> tf.Tensor:
        """Unclipped predicted ratings float32 [B] from query and candidate vectors [B, d] each."""
        return tf.squeeze(self.rating_head(tf.concat([query, candidate], axis=-1)), -1) + self.global_offset

    def predict_scores(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Predicted ratings float32 [B] for rows of raw features (``user_id``, ``movie_id`` and the
        query features), clipped to [``rating_min``, ``rating_max``]."""
        rating = self._rating(self.query_embedding(features), self.candidate_embedding(features["movie_id"]))
        return tf.clip_by_value(rating, self.hp.rating_min, self.hp.rating_max)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        hp = self.hp
        loss = tf.constant(0.0)
        if hp.retrieval_weight > 0:
            loss += hp.retrieval_weight * super().compute_loss(features, training)
        if hp.rating_weight > 0:
            query = self.query_embedding(features)
            candidate = self.candidate_embedding(features["movie_id"])
            error = features["label"] - self._rating(query, candidate)  # MSE over the global batch
            loss += hp.rating_weight * global_mean(tf.square(error))
        return loss
