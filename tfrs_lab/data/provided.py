"""Already-prepared inputs handed to the trainers by a pipeline (the TFX-style components).

A pipeline's ExampleGen and Transform produce the data and the fitted vocabularies once, as
artifacts; the Trainer must train on exactly those, not reload or refit them. The trainers keep
their ``(cfg, output_dir)`` signature: the caller wraps the call in :func:`provided_inputs`, and
the two data-layer entry points the trainers already use consult it:

* ``tfrs_lab.training.retrieval.load_data`` returns the provided :class:`MovieLensData`;
* :func:`tfrs_lab.data.features.build_vocabularies` returns the provided :class:`Vocabularies`
  when it is asked for the same fit (same parameters, same training rows), and raises
  :class:`VocabularyMismatch` naming the differing parameter otherwise: a silent refit would break
  the train/serve parity the pipeline promises.

Outside the ``with`` block nothing changes.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
from typing import Any, Iterator

import numpy as np

from tfrs_lab.data.movielens import DataError, MovieLensData


class VocabularyMismatch(DataError):
    """The provided vocabularies were fitted differently from what the trainer asks for."""


@dataclasses.dataclass(frozen=True)
class ProvidedInputs:
    """``data`` to train on; ``vocabularies`` fitted by :func:`build_vocabularies` with ``fit``
    (its keyword arguments plus ``train_rows_sha256`` of the int64 training row indices)."""

    data: MovieLensData
    vocabularies: Any = None  # Vocabularies | None (typed loosely: features imports this module)
    fit: dict[str, Any] | None = None


_CURRENT: contextvars.ContextVar[ProvidedInputs | None] = contextvars.ContextVar("tfrs_lab_provided", default=None)


def rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of training row indices (as int64), identifying the rows a fit used."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(rows, dtype=np.int64)).tobytes()).hexdigest()


@contextlib.contextmanager
def provided_inputs(data: MovieLensData, vocabularies: Any = None, fit: dict[str, Any] | None = None
                    ) -> Iterator[ProvidedInputs]:
    """Within the block, trainers use ``data`` (and ``vocabularies`` fitted with ``fit``)."""
    if (vocabularies is None) != (fit is None):
        raise ValueError("vocabularies and fit must be given together")
    token = _CURRENT.set(ProvidedInputs(data, vocabularies, fit))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def provided_data() -> MovieLensData | None:
    """The data a pipeline provided, or ``None`` outside :func:`provided_inputs`."""
    current = _CURRENT.get()
    return None if current is None else current.data


def provided_vocabularies(train_rows: np.ndarray, **fit: Any) -> Any:
    """The provided vocabularies if they were fitted with ``fit`` on ``train_rows``; ``None``
    when none were provided. Raises :class:`VocabularyMismatch` naming the first difference."""
    current = _CURRENT.get()
    if current is None or current.vocabularies is None:
        return None
    wanted = {**fit, "train_rows_sha256": rows_digest(train_rows)}
    for key, value in wanted.items():
        have = current.fit.get(key)
        if have != value:
            raise VocabularyMismatch(
                f"the Transform artifact was fitted with {key}={have!r} but the trainer needs {key}={value!r}: "
                "give the Transform component the same task config (and split) as the Trainer")
    return current.vocabularies
