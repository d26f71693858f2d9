"""Warm start: continue training from a previous run's weights (``train.warm_start``, ``--warm-start RUN``).

A warm-started run keeps the previous run's **vocabularies** (its users, movies, title tokens,
feature tables and counts), so every weight keeps its meaning; users and movies the previous run
did not know map to the out-of-vocabulary row (logged, and counted in ``metrics.json`` as
``warm_start_oov_rows``). The vocabularies are refitted from the previous run's ``config.yaml`` (its
data and split, deterministically; a previous run that was itself warm-started passes on its own
previous vocabularies), and the refit is checked against the number of training rows the previous
run recorded. The **weights** come from the previous run's export (``export/<model_name>/<version>/
variables``, the best-validation weights it evaluated and served); the optimizer starts afresh.
Then the run trains on its own data as usual (early stopping, evaluation, export).

Refused, with one line naming the fix: a ``RUN`` that is not a run directory, a run of another
task, a run without an export, a task that cannot warm-start, and a model whose weight shapes
differ (:meth:`tfrs_lab.training.task.Task.model_shape` of both configs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError, load_config, read_yaml
from tfrs_lab.data.features import Vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.training import rundir
from tfrs_lab.training.task import Task

__all__ = ["METRIC", "WarmStart", "load_warm_start", "unknown_codes", "unknown_rows"]

logger = logging.getLogger(__name__)

METRIC = "warm_start_oov_rows"
"""``metrics.json`` key: training rows whose user or movie the previous run's vocabularies lack."""


@dataclasses.dataclass
class WarmStart:
    """A previous run to continue from: its directory, resolved config, vocabularies and weights.

    Attributes:
      run_dir: the previous run directory.
      config: its resolved config (``config.yaml``).
      vocab: its vocabularies (refitted exactly as it fitted them).
      checkpoint: the prefix of its exported variables (``.../variables/variables``).
      oov_rows: set by :meth:`adopt`: training rows of the new run with an unknown user or movie.
    """

    run_dir: Path
    config: Any
    vocab: Vocabularies
    checkpoint: str
    oov_rows: int = 0

    def adopt(self, task: Task, cfg, data: MovieLensData | Interactions, split: Split) -> Vocabularies:
        """The vocabularies the new run (``cfg`` on ``data``) uses: the previous run's, after checking
        that the model shapes agree. Logs how many training rows hit the out-of-vocabulary rows
        (compact :class:`Interactions`: counted from the codes, :func:`unknown_codes`)."""
        mine = task.model_shape(cfg, data.has_user_features)
        theirs = task.model_shape(self.config, self.vocab.has_user_features)
        for key in mine:
            if mine[key] != theirs.get(key):
                raise ConfigError(
                    f"--warm-start {self.run_dir}: its model has {key}={theirs.get(key)!r} but this config has "
                    f"{mine[key]!r}: warm start needs the same model shape (set {key}={theirs.get(key)!r})")
        if isinstance(data, Interactions):
            users, movies, rows = unknown_codes(self.vocab, data, split.train)
        else:
            users, movies, rows = unknown_rows(self.vocab, data.ratings["user_id"][split.train],
                                               data.ratings["movie_id"][split.train])
        self.oov_rows = rows
        logger.info("warm start from %s: its vocabularies are kept; %d of %d training rows (%.1f %%) have a user "
                    "(%d users) or movie (%d movies) it does not know and map to the out-of-vocabulary row",
                    self.run_dir, rows, len(split.train), 100.0 * rows / max(len(split.train), 1), users, movies)
        return self.vocab

    def restore(self, model: tf.keras.Model, build: Callable[[], tf.keras.Model],
                sample: Mapping[str, np.ndarray]) -> None:
        """Loads the previous run's weights into ``model`` (built from :attr:`vocab` with the same
        shapes). ``build()`` makes an identical, uncompiled model: the export is read into it and its
        weights copied over, so the export's optimizer state (learning rate, moments) never reaches
        ``model``'s optimizer. ``sample``, a small batch of training features, creates the variables."""
        previous = build()
        previous.compute_loss(sample)
        status = tf.train.Checkpoint(model=previous).read(self.checkpoint).expect_partial()
        status.assert_existing_objects_matched()
        model.compute_loss(sample)
        model.set_weights(previous.get_weights())
        logger.info("warm start: weights loaded from %s", self.checkpoint)


def unknown_rows(vocab: Vocabularies, users: np.ndarray, movies: np.ndarray) -> tuple[int, int, int]:
    """``(distinct unknown users, distinct unknown movies, rows with either)`` of the given rating
    rows (raw ids, [n] each) against ``vocab``."""
    new_user = ~np.isin(users.astype(str), vocab.user_ids.astype(str))
    new_movie = ~np.isin(movies.astype(str), vocab.movie_ids.astype(str))
    return (len(np.unique(users[new_user])), len(np.unique(movies[new_movie])), int(np.sum(new_user | new_movie)))


def unknown_codes(vocab: Vocabularies, data: Interactions, rows: np.ndarray) -> tuple[int, int, int]:
    """:func:`unknown_rows` of ``data``'s rows ``rows`` from the codes (one comparison per distinct
    user and item, never a string per row)."""
    user_rows, item_rows = data.vocabulary_rows(vocab)
    users, items = data.user[rows], data.item[rows]
    new_user, new_item = user_rows[users] < 0, item_rows[items] < 0
    return len(np.unique(users[new_user])), len(np.unique(items[new_item])), int(np.sum(new_user | new_item))


def load_warm_start(task: Task, run_dir: str | Path,
                    prepare: Callable[[Any], tuple[Vocabularies, int]]) -> WarmStart:
    """The previous run at ``run_dir`` for ``task``.

    ``prepare(previous_config)`` returns the previous run's vocabularies and its number of training
    rows (the run loop's preparation, warm starts included, so a chain of warm starts keeps the
    first run's vocabularies). Raises ``RunDirError``/``ConfigError`` (one line, exit 2) for a
    directory that is not a finished run of ``task`` with an export, or a task that cannot warm-start.
    """
    run = Path(run_dir).expanduser().absolute()
    config_file = run / rundir.CONFIG_FILE
    if not config_file.is_file():
        raise rundir.RunDirError(f"--warm-start {run}: not a run directory (no {rundir.CONFIG_FILE}): pass the "
                                 "--output-dir of an earlier train run")
    raw = read_yaml(config_file, what="run config", flag="--warm-start")
    previous_task = raw.get("task") if isinstance(raw, dict) else None
    if previous_task != task.name:
        raise ConfigError(f"--warm-start {run} is a {previous_task} run, not {task.name}: pass a {task.name} run")
    previous = load_config(task.name, [config_file])
    if task.model_shape(previous, True) is None:
        raise ConfigError(f"--warm-start: the {task.name} task cannot warm-start yet (retrieval can): drop it")
    x = previous.export
    checkpoint = run / rundir.EXPORT_DIR / x.model_name / str(x.version) / "variables" / "variables"
    if not Path(f"{checkpoint}.index").is_file():
        raise rundir.RunDirError(f"--warm-start {run} has no exported model ({checkpoint.parent} is missing): "
                                 "warm start loads the weights of the run's export")
    vocab, train_rows = prepare(previous)
    metrics_file = run / rundir.METRICS_FILE
    recorded = json.loads(metrics_file.read_text()).get("num_train_examples") if metrics_file.is_file() else None
    if recorded is not None and int(recorded) != train_rows:
        raise rundir.RunDirError(f"--warm-start {run}: its data now gives {train_rows} training rows but the run "
                                 f"trained on {recorded}: its data changed, so its vocabularies cannot be rebuilt")
    return WarmStart(run, previous, vocab, str(checkpoint))
