"""Next-item models over a user's item sequence: a SASRec-style transformer and a GRU baseline.

Inputs are item *indices* int [B, T] (T <= ``max_length``), left-padded with 0 (0 = padding), the
newest item in the last column. The encoder returns one vector per position; the vector at
position t scores every catalogue item as the item following ``items[:, :t + 1]`` by a dot product
with the item embedding table, which is shared between input and output (tied embeddings), so
serving needs only the item table (for the ScaNN index) and the last position's vector.

Transformer (Kang & McAuley, 2018, "Self-Attentive Sequential Recommendation"), pre-norm:
``x = item_emb * sqrt(d) + position_emb``; dropout; then ``num_blocks`` times
``x += MHA(LN(x))`` with a causal and padding mask, ``x += FFN(LN(x))`` (two Dense layers, ReLU,
dropout), padding positions zeroed; then a final layer norm. Positions count back from the newest
item (position 0 = newest), so the same history gives the same answer however much padding
precedes it. GRU baseline (as TFRS's sequential tutorial): item embedding -> dropout -> GRU.

Item features (typed features of the items table, :class:`tfrs_lab.models.features.FeatureEncoder`):
an item's vector is its id embedding plus a linear projection of its features' parts (each
``embedding_dim`` wide), the same vector on the input side (the history) and on the output side (the
scored catalogue), so an item nobody clicked in training still gets a vector from its features.

Loss (``loss``): ``softmax`` = full softmax cross-entropy over the whole catalogue at every
non-padding position; ``sampled_softmax`` = ``num_negatives`` items shared by the batch, drawn by
training popularity, with the logQ correction (``logit - log(expected count)``) and accidental
hits (a negative equal to the target) removed.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfrs_lab.config import SequentialModelConfig
from tfrs_lab.models.cross_replica import SynchronousModel, global_mean
from tfrs_lab.models.features import FeatureEncoder

__all__ = ["SequentialModel", "TransformerBlock"]


class TransformerBlock(tf.keras.layers.Layer):
    """Pre-norm causal self-attention block: ``x += MHA(LN(x)); x += FFN(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, dropout: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)
        self.attention = tf.keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=dim // num_heads,
                                                            dropout=dropout)
        self.attention_dropout = tf.keras.layers.Dropout(dropout)
        self.ffn_norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)
        self.ffn_in = tf.keras.layers.Dense(dim, activation="relu")
        self.ffn_out = tf.keras.layers.Dense(dim)
        self.ffn_dropout = tf.keras.layers.Dropout(dropout)

    def call(self, x: tf.Tensor, attention_mask: tf.Tensor, mask: tf.Tensor, training: bool = False) -> tf.Tensor:
        q = self.attention_norm(x)
        x = x + self.attention_dropout(self.attention(q, q, q, attention_mask=attention_mask, training=training),
                                       training=training)
        h = self.ffn_norm(x)
        x = x + self.ffn_dropout(self.ffn_out(self.ffn_dropout(self.ffn_in(h), training=training)), training=training)
        return x * mask


class SequentialModel(SynchronousModel):
    """Next-item model; ``compute_loss`` takes ``{"inputs": int [B, L], "targets": int [B, L]}``
    where ``targets[:, t]`` is the item after ``inputs[:, t]`` (0 = no target at that position)."""

    def __init__(self, num_items: int, hp: SequentialModelConfig, item_probability: np.ndarray | None = None,
                 item_features: tuple = ()) -> None:
        """``num_items`` catalogue items have indices 1..num_items; ``item_probability`` float [num_items]
        is the sampling distribution of ``sampled_softmax`` negatives (default uniform);
        ``item_features``: descriptions of the typed item features (duck-typed
        ``tfrs_lab.data.typed.ModelFeature``, tables indexed by item index, row 0 = unknown), none: ids only."""
        super().__init__()
        if hp.architecture not in ("transformer", "gru"):
            raise ValueError(f"unknown architecture {hp.architecture!r}: choose transformer or gru")
        if hp.loss not in ("softmax", "sampled_softmax"):
            raise ValueError(f"unknown loss {hp.loss!r}: choose softmax or sampled_softmax")
        self.hp = hp
        self.num_items = int(num_items)
        d = hp.embedding_dim
        reg = tf.keras.regularizers.l2(hp.l2_regularization) if hp.l2_regularization else None
        self.item_embedding = tf.keras.layers.Embedding(
            self.num_items + 1, d, embeddings_regularizer=reg,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=d ** -0.5))
        item_features = tuple(item_features)
        if any(f.side != "item" for f in item_features):
            raise ValueError("SequentialModel reads item features only")
        self.item_typed = FeatureEncoder(item_features, d, name="item_typed") if item_features else None
        self.item_projection = (tf.keras.layers.Dense(d, use_bias=False, name="item_projection")
                                if item_features else None)
        self.input_dropout = tf.keras.layers.Dropout(hp.dropout)
        if hp.architecture == "transformer":
            self.position_embedding = tf.keras.layers.Embedding(hp.max_length, d)
            self.blocks = [TransformerBlock(d, hp.num_heads, hp.dropout, name=f"block_{i}") for i in range(hp.num_blocks)]
            self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)
        else:
            self.gru = tf.keras.layers.GRU(d, return_sequences=True)
        p = np.full(self.num_items, 1.0 / self.num_items) if item_probability is None else np.asarray(item_probability, np.float64)
        p = np.maximum(p, 1e-12)
        self.log_item_probability = tf.constant(np.log(p / p.sum()), tf.float32)  # [num_items]

    # ------------------------------------------------------------------ encoder

    def item_vectors(self, items: tf.Tensor) -> tf.Tensor:
        """float32 [..., d]: the vector of each item index int [...] (id embedding, plus the projected
        item features when the model has them; index 0, the padding, gets the unknown item's)."""
        x = self.item_embedding(items)
        if self.item_typed is None:
            return x
        flat = tf.reshape(tf.cast(items, tf.int64), [-1])
        projected = self.item_projection(tf.concat(self.item_typed({}, index=flat), -1))  # [N, d]
        return x + tf.reshape(projected, tf.shape(x))

    def encode(self, items: tf.Tensor, training: bool = False) -> tf.Tensor:
        """float32 [B, T, d]: the vector at each position (zeros at padding positions)."""
        items = tf.cast(items, tf.int32)
        valid = items > 0
        mask = tf.cast(valid, tf.float32)[:, :, None]  # [B, T, 1]
        x = self.item_vectors(items)
        if self.hp.architecture == "gru":
            x = self.input_dropout(x * mask, training=training)
            return self.gru(x, mask=valid, training=training) * mask
        t = tf.shape(items)[1]
        x = x * math.sqrt(self.hp.embedding_dim) + self.position_embedding(tf.range(t - 1, -1, -1))[None]
        x = self.input_dropout(x, training=training) * mask
        causal = tf.linalg.band_part(tf.ones([t, t], tf.bool), -1, 0)  # [T, T] key <= query
        attention_mask = tf.logical_and(causal[None], valid[:, None, :])  # [B, T(query), T(key)]
        for block in self.blocks:
            x = block(x, attention_mask, mask, training=training)
        return self.final_norm(x) * mask

    def query_embedding(self, items: tf.Tensor, training: bool = False) -> tf.Tensor:
        """float32 [B, d]: the vector predicting the item after the newest (last) position."""
        return self.encode(items, training=training)[:, -1]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)], reduce_retracing=True)
    def compiled_query_embedding(self, items: tf.Tensor) -> tf.Tensor:
        """:meth:`query_embedding` as one traced graph (fast batched inference during evaluation)."""
        return self.query_embedding(items)

    def item_embeddings(self) -> tf.Tensor:
        """float32 [num_items, d]: row i scores catalogue item index i + 1."""
        if self.item_typed is None:
            return self.item_embedding.embeddings[1:]
        return self.item_vectors(tf.range(1, self.num_items + 1, dtype=tf.int64))

    def call(self, items: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Scores float32 [B, num_items] of every catalogue item as the next item."""
        return tf.matmul(self.query_embedding(items, training=training), self.item_embeddings(), transpose_b=True)

    # ------------------------------------------------------------------ training

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        targets = tf.cast(features["targets"], tf.int32)
        h = self.encode(features["inputs"], training=training)
        has_target = targets > 0
        h = tf.boolean_mask(h, has_target)  # [N, d]
        y = tf.boolean_mask(targets, has_target) - 1  # [N] catalogue rows
        table = self.item_embeddings()
        if self.hp.loss == "softmax":
            logits = tf.matmul(h, table, transpose_b=True)  # [N, num_items]
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return global_mean(losses)  # mean over the global batch's target positions
        n = self.hp.num_negatives
        negatives = tf.random.categorical(self.log_item_probability[None], n, dtype=tf.int32)[0]  # [n]
        positive = tf.reduce_sum(h * tf.gather(table, y), -1, keepdims=True)  # [N, 1]
        negative = tf.matmul(h, tf.gather(table, negatives), transpose_b=True)  # [N, n]
        if self.hp.logq_correction:
            log_n = math.log(n)
            positive -= tf.gather(self.log_item_probability, y)[:, None] + log_n
            negative -= tf.gather(self.log_item_probability, negatives)[None] + log_n
        negative = tf.where(tf.equal(y[:, None], negatives[None]), tf.fill(tf.shape(negative), -1e9), negative)
        logits = tf.concat([positive, negative], axis=1)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.zeros_like(y), logits=logits)
        return global_mean(losses)
