"""In-batch negatives over the *global* batch under synchronous data parallelism.

With ``MultiWorkerMirroredStrategy`` (or ``MirroredStrategy``) each replica computes the loss on
its share of the global batch. TFRS's ``Retrieval`` task scores every query against the
candidates of *its own* batch, so with R replicas each softmax would see only 1/R of the
negatives a single machine sees, and the loss (and the model) would change with the number of
workers. :func:`global_candidates` all-gathers the candidates (and their ids and sampling
probabilities) from every replica and rotates them so this replica's own candidates come first,
where ``Retrieval``'s labels (the identity matrix over the first ``B_local`` columns) expect them.
Each replica then computes its queries' softmax over the whole global batch; the sum over
replicas is exactly the single-machine loss on the same global batch, and so are the gradients
(the all-gather's gradient sums the contributions of every replica).

Outside a multi-replica context (default strategy, parameter servers) the inputs come back unchanged.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

__all__ = ["global_candidates"]


def global_candidates(*tensors: tf.Tensor | None) -> Sequence[tf.Tensor | None]:
    """Each of ``tensors`` ([B_local, ...], aligned on the first axis; ``None`` passes through)
    gathered over all replicas -> [B_global, ...], rotated so this replica's rows come first."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensors
    present = [t for t in tensors if t is not None]
    local = tf.shape(present[0])[:1]  # [1]
    sizes = ctx.all_gather(local, axis=0)  # [R]: the last global batch may split unevenly
    offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
    out = []
    for t in tensors:
        out.append(None if t is None else tf.roll(ctx.all_gather(t, axis=0), shift=-offset, axis=0))
    return out
