"""Autoencoder collaborative filtering models (tf.keras / TFRS, never Keras 3).

* :class:`AutoRec` — item-based I-AutoRec (Sedhain et al., WWW 2015): each movie's rating vector
  over the U training users (0 = not rated) is encoded to ``hidden_units`` and decoded back to U
  predicted ratings; the loss is the squared error on *observed* ratings only
  (:func:`masked_mse`) plus L2 weight decay on both kernels. The prediction for (user u, movie i)
  is output ``u`` of movie ``i``'s reconstruction; the decoder row ``W[:, u]`` (+ bias) is user
  u's vector, so a user unseen in training is folded in by fitting that row (ridge regression,
  :mod:`tfrs_lab.export.autoencoder`).
* :class:`MultAutoencoder` — Mult-DAE and Mult-VAE (Liang et al., WWW 2018): a user's seen movies
  as an L2-normalised multi-hot vector over the M catalogue movies, input dropout, tanh encoder,
  latent code (Gaussian with the reparameterisation trick for the VAE), mirrored decoder, and a
  multinomial log-likelihood over the catalogue; the VAE adds ``beta * KL`` with beta annealed
  linearly from 0 to a cap. With ``train.sample_weight`` each seen movie's log-likelihood term is
  multiplied by its weight (``weights``); the input stays the multi-hot vector, as at serving time.

The models know nothing about MovieLens: inputs are dense float batches [B, U] / [B, M] that the
trainer densifies per batch from sparse matrices (never a whole [users x catalogue] matrix).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_lab.config import AutoRecConfig, MultAutoencoderConfig
from tfrs_lab.models.cross_replica import SynchronousModel, global_mean

__all__ = ["AutoRec", "masked_mse", "MultAutoencoder"]


def masked_mse(ratings: tf.Tensor, predictions: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean squared error over observed entries only.

    Args:
      ratings: float [B, U] true ratings (any value where unobserved).
      predictions: float [B, U].
      mask: float [B, U], 1 where a rating is observed, 0 elsewhere.

    Returns:
      scalar ``sum(mask * (ratings - predictions)^2) / max(sum(mask), 1)``; unobserved entries
      contribute nothing, whatever the predictions there. Under synchronous replicas the
      denominator is the observed count of the whole global batch (:func:`global_mean`).
    """
    squared = tf.square(tf.cast(ratings, predictions.dtype) - predictions)
    return global_mean(squared, mask)


class AutoRec(SynchronousModel):
    """I-AutoRec over ``num_users`` users. Batches are movies: ``{"ratings": [B, U], "mask": [B, U]}``."""

    def __init__(self, num_users: int, hp: AutoRecConfig) -> None:
        super().__init__()
        self.hp = hp
        reg = tf.keras.regularizers.l2(hp.l2_regularization) if hp.l2_regularization else None
        self.dropout = tf.keras.layers.Dropout(hp.dropout)
        self.encoder = tf.keras.layers.Dense(hp.hidden_units, activation=hp.activation, kernel_regularizer=reg,
                                             name="encoder")
        self.decoder = tf.keras.layers.Dense(num_users, kernel_regularizer=reg, name="decoder")
        self.encoder.build((None, num_users))
        self.decoder.build((None, hp.hidden_units))

    def encode(self, ratings: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Movie codes float32 [B, hidden_units] from rating vectors float32 [B, U] (0 = unrated)."""
        return self.encoder(self.dropout(ratings, training=training))

    def call(self, ratings: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstructed ratings float32 [B, U]."""
        return self.decoder(self.encode(ratings, training=training))

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        predictions = self(features["ratings"], training=training)
        return masked_mse(features["ratings"], predictions, features["mask"])

    def user_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [U, hidden_units] decoder rows, float32 [U] decoder biases): user u's rating of
        a movie with code ``h`` is ``h @ rows[u] + biases[u]``."""
        kernel, bias = self.decoder.get_weights()
        return kernel.T, bias


class MultAutoencoder(SynchronousModel):
    """Mult-DAE (``variational=False``) or Mult-VAE over ``num_items`` catalogue movies.

    Batches are users: ``{"items": float32 [B, M]}`` multi-hot (1 = seen in the input split), and
    optionally ``weights`` float32 [B, M] (each seen movie's weight in the likelihood, 0 elsewhere;
    without it every seen movie weighs 1).
    ``anneal_steps`` is the number of optimizer steps over which the KL weight grows to the cap.
    """

    def __init__(self, num_items: int, hp: MultAutoencoderConfig, *, variational: bool, anneal_steps: int = 0) -> None:
        super().__init__()
        self.hp, self.variational = hp, variational
        self.anneal_steps = int(anneal_steps)
        reg = tf.keras.regularizers.l2(hp.l2_regularization) if hp.l2_regularization else None
        dense = lambda units, act, name: tf.keras.layers.Dense(units, activation=act, kernel_regularizer=reg, name=name)
        self.dropout = tf.keras.layers.Dropout(hp.dropout)
        self.encoder_layers = [dense(u, "tanh", f"encoder_{i}") for i, u in enumerate(hp.encoder_layers)]
        code_units = 2 * hp.latent_dim if variational else hp.latent_dim
        self.code = dense(code_units, None if variational else "tanh", "code")
        self.decoder_layers = [dense(u, "tanh", f"decoder_{i}") for i, u in enumerate(reversed(hp.encoder_layers))]
        self.output_layer = dense(num_items, None, "logits")
        # assigned by every replica in ``compute_loss`` (the same value): keep the first replica's
        self.beta = tf.Variable(0.0, trainable=False, name="kl_beta",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self(tf.zeros((1, num_items)))  # build every layer

    def encode(self, items: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(latent mean float32 [B, latent_dim], log-variance or None for the DAE)."""
        x = tf.math.l2_normalize(tf.cast(items, tf.float32), axis=-1)
        x = self.dropout(x, training=training)
        for layer in self.encoder_layers:
            x = layer(x)
        code = self.code(x)
        if not self.variational:
            return code, None
        mean, log_var = tf.split(code, 2, axis=-1)
        return mean, log_var

    def decoder_hidden(self, z: tf.Tensor) -> tf.Tensor:
        """Last decoder activations float32 [B, d]: logits = decoder_hidden @ W + b (d = latent_dim without layers)."""
        for layer in self.decoder_layers:
            z = layer(z)
        return z

    def call(self, items: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits float32 [B, M] over the catalogue (the VAE decodes its mean when not training)."""
        mean, log_var = self.encode(items, training=training)
        z = mean
        if training and self.variational:
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
        return self.output_layer(self.decoder_hidden(z))

    def item_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [M, d] output-layer kernel columns, float32 [M] output biases)."""
        kernel, bias = self.output_layer.get_weights()
        return kernel.T, bias

    def query_vectors(self, items: tf.Tensor) -> tf.Tensor:
        """float32 [B, d]: the inference-time decoder activations of multi-hot inputs [B, M]."""
        mean, _ = self.encode(items, training=False)
        return self.decoder_hidden(mean)

    def _kl_weight(self) -> tf.Tensor:
        if self.anneal_steps <= 0:
            return tf.constant(self.hp.kl_anneal_cap, tf.float32)
        step = tf.cast(self.optimizer.iterations, tf.float32) if self.optimizer is not None else 0.0
        return self.hp.kl_anneal_cap * tf.minimum(1.0, step / float(self.anneal_steps))

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        items = tf.cast(features["items"], tf.float32)
        mean, log_var = self.encode(items, training=training)
        z = mean
        if self.variational and training:
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
        logits = self.output_layer(self.decoder_hidden(z))
        weights = tf.cast(features["weights"], tf.float32) if "weights" in features else items
        nll = -global_mean(tf.reduce_sum(tf.nn.log_softmax(logits) * weights, axis=-1))  # mean over users
        if not self.variational:
            return nll
        kl = global_mean(tf.reduce_sum(0.5 * (-log_var + tf.exp(log_var) + tf.square(mean) - 1.0), axis=-1))
        beta = self._kl_weight()
        if training:
            self.beta.assign(beta)
        return nll + beta * kl
