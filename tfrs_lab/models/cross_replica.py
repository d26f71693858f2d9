"""Losses over the *global* batch under synchronous data parallelism.

With ``MultiWorkerMirroredStrategy`` (or ``MirroredStrategy``) each of the R replicas computes the
loss on its share of the global batch, Keras sums the R gradients (and the R logged losses). So a
replica's loss must be its *share* of the single-machine loss for N replicas to train exactly like
one machine:

* a **sum** over examples (the retrieval softmax) is already additive, once every replica scores
  against the whole global batch's candidates: TFRS's ``Retrieval`` task scores every query against
  the candidates of *its own* batch, so with R replicas each softmax would see only 1/R of the
  negatives. :func:`global_candidates` all-gathers the candidates (and their ids and sampling
  probabilities) from every replica and rotates them so this replica's own candidates come first,
  where ``Retrieval``'s labels (the identity matrix over the first ``B_local`` columns) expect them.
  The all-gather's gradient sums the contributions of every replica.
* a **mean** over examples (MSE, cross-entropy, BPR, the autoencoders' per-row losses) becomes
  :func:`global_mean`: this replica's sum divided by the example count (or weight) of the whole
  global batch, which one all-reduce of a scalar supplies. An uneven last batch is handled too.
* **regularization losses** (``kernel_regularizer`` and friends) are computed whole on every replica;
  :class:`SynchronousModel`'s ``train_step`` adds ``1 / R`` of them per replica.

Outside a multi-replica context (default strategy, parameter servers) every function here is the
plain single-device computation.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

__all__ = ["global_candidates", "global_mean", "global_total", "replica_share", "SynchronousModel"]


def _replica_context() -> tf.distribute.ReplicaContext | None:
    """The replica context when more than one replica trains in sync, else ``None``."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def global_candidates(*tensors: tf.Tensor | None) -> Sequence[tf.Tensor | None]:
    """Each of ``tensors`` ([B_local, ...], aligned on the first axis; ``None`` passes through)
    gathered over all replicas -> [B_global, ...], rotated so this replica's rows come first."""
    ctx = _replica_context()
    if ctx is None:
        return tensors
    present = [t for t in tensors if t is not None]
    local = tf.shape(present[0])[:1]  # [1]
    sizes = ctx.all_gather(local, axis=0)  # [R]: the last global batch may split unevenly
    offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
    out = []
    for t in tensors:
        out.append(None if t is None else tf.roll(ctx.all_gather(t, axis=0), shift=-offset, axis=0))
    return out


def global_total(x: tf.Tensor) -> tf.Tensor:
    """float32 scalar: ``sum(x)`` over the whole global batch (every replica's rows), without a
    gradient (a normaliser); ``sum(x)`` itself outside a multi-replica context."""
    local = tf.stop_gradient(tf.reduce_sum(tf.cast(x, tf.float32)))
    ctx = _replica_context()
    return local if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)


def global_mean(values: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    """This replica's share of the global batch's (weighted) mean of ``values`` (any shape; every
    element counts once, or with its ``weights`` of the same shape):
    ``sum(values * weights) / max(total weight of the global batch, 1)``. Summed over the replicas it
    is the single-machine mean (``reduce_mean`` of a non-empty batch without weights)."""
    values = tf.cast(values, tf.float32)
    weights = tf.ones_like(values) if weights is None else tf.cast(weights, tf.float32)
    return tf.reduce_sum(values * weights) / tf.maximum(global_total(weights), 1.0)


def replica_share(x: tf.Tensor) -> tf.Tensor:
    """``x / R``: this replica's share of a loss term every replica computes whole (R replicas in sync)."""
    ctx = _replica_context()
    return x if ctx is None else x / float(ctx.num_replicas_in_sync)


class SynchronousModel(tfrs.Model):
    """A ``tfrs.Model`` whose ``train_step`` is exact under synchronous replicas: the loss of
    ``compute_loss`` (already a per-replica share: :func:`global_mean`, :func:`global_candidates`)
    plus :func:`replica_share` of the regularization losses. Logged training metrics (``rmse``,
    ``auc`` of the training batches) are the mean of the replicas' local values."""

    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = replica_share(tf.reduce_sum([tf.reduce_sum(x) for x in self.losses]))
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        # Keras sums every output over the replicas: a replica's metric is its 1/R share of the mean.
        metrics = {metric.name: replica_share(metric.result()) for metric in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss, total_loss=total_loss)
        return metrics
