"""``model.autorec.hidden_units: auto``: item-based AutoRec's code size as one rule of the training
rows, shared by the ranking task's and the autoencoder task's AutoRec (docs/tuning.md#autorec-code-size-a-size-and-memory-rule).

Both AutoRecs are item-based: the training examples are the items (each item's rating vector over
the training users), the input and output width is the number of training users ``U``. The rule
has two parts:

* **size**: ``h = AUTO_HIDDEN_PER_ITEM x (distinct training items)``, rounded to a multiple of
  :data:`AUTO_HIDDEN_STEP` and clipped to :data:`AUTO_HIDDEN_RANGE` (selected on validation RMSE:
  docs/tuning.md#ranking-explicit-autorec);
* **memory**: the two ``[U, h]`` / ``[h, U]`` float32 kernels and their copies while training
  (:data:`AUTOREC_STATE_COPIES` = 7, measured: the weights, their gradient, Adam's two slots, the
  early-stopping best-epoch copy and about two more of allocator transients) must fit
  :data:`AUTOREC_STATE_BUDGET`: ``2 x U x h x 4 B x 7 <= 3.5 GiB``, i.e. ``h <= 2^30 / (16 U)``, rounded
  down to a multiple of :data:`AUTO_HIDDEN_STEP` (at least one step). At MovieLens-25M's 162,541
  users that is 400 units (the size part alone says 1,000); up to 67,108 users it never binds (1,000 units fit).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData

__all__ = ["AUTO_HIDDEN_PER_ITEM", "AUTO_HIDDEN_RANGE", "AUTO_HIDDEN_STEP", "AUTOREC_STATE_BUDGET",
           "AUTOREC_STATE_COPIES", "auto_hidden_units", "autorec_state_bytes", "memory_hidden_cap",
           "resolve_hidden_units"]

logger = logging.getLogger(__name__)

AUTO_HIDDEN_PER_ITEM = 0.3
"""Hidden units per distinct training item (:func:`auto_hidden_units`)."""
AUTO_HIDDEN_STEP = 50
""":func:`auto_hidden_units` rounds to a multiple of this."""
AUTO_HIDDEN_RANGE = (100, 1000)
"""The fewest and most hidden units the size part of :func:`auto_hidden_units` picks (the memory
part may go below the floor, never below one step)."""
AUTOREC_STATE_BUDGET = 7 * 2**29
"""Bytes the AutoRec's kernels and their copies may take while training: 3.5 GiB (:func:`autorec_state_bytes`),
which leaves the data, the densified batches and TensorFlow itself about 4.5 GiB of an 8 GiB machine
(docs/benchmarks.md "I-AutoRec memory")."""
AUTOREC_STATE_COPIES = 7
"""Copies of the kernels training holds, measured (peak RSS against the hidden size at 162,541 users):
the weights, their gradient, Adam's first and second moments, the early-stopping best-epoch copy and
about two of allocator transients (7.0 copies per unit between 400 and 500 units)."""


def autorec_state_bytes(num_inputs: int, hidden_units: int) -> int:
    """Bytes of the two float32 kernels ([U, h] encoder, [h, U] decoder; ``U = num_inputs``) times
    :data:`AUTOREC_STATE_COPIES`: ``2 x U x h x 4 x 7``. Biases (U + h floats) are left out."""
    return 2 * int(num_inputs) * int(hidden_units) * 4 * AUTOREC_STATE_COPIES


def memory_hidden_cap(num_inputs: int, budget: int = AUTOREC_STATE_BUDGET) -> int:
    """The largest multiple of :data:`AUTO_HIDDEN_STEP` whose :func:`autorec_state_bytes` at
    ``num_inputs`` users fits ``budget`` bytes; at least one step (above 1,342,177 users even 50
    units pass the 3.5 GiB budget: the run says so in its log)."""
    per_unit = autorec_state_bytes(max(int(num_inputs), 1), 1)
    cap = (budget // per_unit) // AUTO_HIDDEN_STEP * AUTO_HIDDEN_STEP
    if cap < AUTO_HIDDEN_STEP:
        logger.warning("model.autorec.hidden_units: auto: %d users leave no multiple of %d units within %.1f GiB; "
                       "using %d (%.1f GiB)", num_inputs, AUTO_HIDDEN_STEP, budget / 2**30, AUTO_HIDDEN_STEP,
                       autorec_state_bytes(num_inputs, AUTO_HIDDEN_STEP) / 2**30)
    return max(int(cap), AUTO_HIDDEN_STEP)


def auto_hidden_units(train_items: np.ndarray, train_users: np.ndarray, budget: int = AUTOREC_STATE_BUDGET) -> int:
    """``model.autorec.hidden_units: auto``: AutoRec's code size for data whose training rows hold
    ``train_items`` and ``train_users``.

    Item-based AutoRec learns one code per item from its rating vector over users: the items are its
    training examples, and the best code size measured on validation RMSE grows with their number.
    ML-100K (1,651 training items on ``hash``, 1,637 on ``u1``) prefers 500 units to 250; the
    synthetic sets (400 and 200 items, 8 planted taste clusters) prefer 100 to 50, 150, 200, 250 and
    500. The size part is ``h = AUTO_HIDDEN_PER_ITEM * (distinct training items)``, rounded to a
    multiple of :data:`AUTO_HIDDEN_STEP` and clipped to :data:`AUTO_HIDDEN_RANGE` (1,651 -> 500,
    1,637 -> 500, 400 -> 100, 200 -> 100, ML-1M's 3,706 -> the cap 1,000, which no run has
    measured). The memory part caps it at :func:`memory_hidden_cap` of the distinct training users
    (the model's input width): 162,541 users (MovieLens-25M) -> 400.

    Args:
      train_items: the item id (or code) of every **training** row, any dtype, ``[n]``; never
        validation or test rows.
      train_users: the user id (or code) of the same rows, ``[n]``.
      budget: bytes for :func:`autorec_state_bytes` (default :data:`AUTOREC_STATE_BUDGET`).

    Returns:
      the hidden units, a positive multiple of ``AUTO_HIDDEN_STEP``, at most ``AUTO_HIDDEN_RANGE[1]``.
    """
    distinct, num_users = _distinct(train_items), _distinct(train_users)
    lo, hi = AUTO_HIDDEN_RANGE
    by_size = int(np.clip(round(AUTO_HIDDEN_PER_ITEM * distinct / AUTO_HIDDEN_STEP) * AUTO_HIDDEN_STEP, lo, hi))
    units = min(by_size, memory_hidden_cap(num_users, budget))
    logger.info("model.autorec.hidden_units: auto = %d (%d distinct training items: %d; %d training users: "
                "at most %d within %.1f GiB)", units, distinct, by_size, num_users, memory_hidden_cap(num_users, budget),
                budget / 2**30)
    return units


def _distinct(values: np.ndarray) -> int:
    """Distinct values of ``values`` [n]: a count of non-zero bins for non-negative integer codes
    (O(n), 20M rows in well under a second), else ``np.unique`` (ids of any type)."""
    values = np.asarray(values)
    if not values.size:
        return 0
    if values.dtype.kind in "iu" and values.min() >= 0:
        return int(np.count_nonzero(np.bincount(values)))
    return len(np.unique(values))


def resolve_hidden_units(cfg: Any, data: MovieLensData | Interactions, train: np.ndarray) -> Any:
    """``cfg`` (any task config with ``model.autorec``) with ``model.autorec.hidden_units: auto``
    replaced by :func:`auto_hidden_units` of the training rows ``train`` (row indices into ``data``,
    int [n]); any other ``cfg`` as is."""
    autorec = cfg.model.autorec
    if autorec.hidden_units != "auto":
        return cfg
    if isinstance(data, Interactions):
        items, users = data.item[train], data.user[train]
    else:
        items, users = data.ratings["movie_id"][train], data.ratings["user_id"][train]
    autorec = replace(autorec, hidden_units=auto_hidden_units(items, users))
    return replace(cfg, model=replace(cfg.model, autorec=autorec))
