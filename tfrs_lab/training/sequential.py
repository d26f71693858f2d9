"""``train sequential``: data -> leave-last-out split -> sequences -> next-item model -> evaluation -> export."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.config import SequentialConfig, dump_config
from tfrs_lab.data.features import Vocabularies, build_vocabularies, movie_rows
from tfrs_lab.data.history import latest_history
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.sequences import (EvaluationSequences, TrainingSequences, evaluation_sequences,
                                     training_sequences)
from tfrs_lab.data.splits import Split, leave_last_out_split
from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.export.retrieval import IndexSettings
from tfrs_lab.export.sequential import export_sequential
from tfrs_lab.models.sequential import SequentialModel
from tfrs_lab.training import report, rundir
from tfrs_lab.training.retrieval import (REQUIRED_KS, ValidationEarlyStopping, load_data, optimizer,
                                        validation_metrics)

logger = logging.getLogger(__name__)

EARLY_STOPPING_METRIC = "ndcg@10"


def item_indices(vocab: Vocabularies, movie_ids: np.ndarray) -> np.ndarray:
    """Model item index of each movie id (catalogue row + 1; 0 = not in the catalogue)."""
    return movie_rows(vocab, movie_ids) + 1


def build_sequences(data: MovieLensData, split: Split, vocab: Vocabularies, max_length: int
                    ) -> tuple[TrainingSequences, EvaluationSequences, EvaluationSequences]:
    """Leakage-free (train, validation, test) sequences: see :mod:`tfrs_lab.data.sequences`."""
    index = item_indices(vocab, data.ratings["movie_id"])
    train = training_sequences(data.ratings, split.train, index, max_length)
    validation = evaluation_sequences(data.ratings, split.train, split.validation, index, max_length)
    test = evaluation_sequences(data.ratings, np.concatenate([split.train, split.validation]), split.test,
                                index, max_length)
    return train, validation, test


def query_vectors(model: SequentialModel, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """float32 [n, d] next-item query vectors of left-padded histories int [n, L]."""
    out = [model.compiled_query_embedding(tf.constant(inputs[s : s + batch_size], tf.int32)).numpy()
           for s in range(0, len(inputs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.hp.embedding_dim), np.float32)


def evaluate_sequences(model: SequentialModel, seqs: EvaluationSequences, ks: tuple[int, ...],
                       batch_size: int = 1024) -> dict[str, float]:
    """``recall@K``, ``ndcg@K``, ``mrr``: full-catalogue ranks, each user's history excluded (DESIGN.md §4)."""
    queries = query_vectors(model, seqs.inputs, batch_size)
    exclude = [s - 1 for s in seqs.seen]  # item index -> catalogue row
    ranks = target_ranks(queries, model.item_embeddings().numpy(), seqs.targets - 1, exclude=exclude,
                         batch_size=batch_size)
    return ranking_metrics(ranks, ks)


def make_dataset(seqs: TrainingSequences, batch_size: int, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    n = len(seqs.inputs)
    ds = tf.data.Dataset.from_tensor_slices({"inputs": seqs.inputs, "targets": seqs.targets})
    ds = ds.shuffle(max(1, min(n, shuffle_buffer)), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def build_model(cfg: SequentialConfig, vocab: Vocabularies) -> SequentialModel:
    counts = vocab.item_counts[1:].astype(np.float64) + 1.0
    model = SequentialModel(len(vocab.movie_ids), cfg.model, item_probability=counts / counts.sum())
    model.compile(optimizer=optimizer(cfg.train.optimizer, cfg.train.learning_rate))
    return model


def fit_vocabularies(data: MovieLensData, split: Split) -> Vocabularies:
    """Catalogue, users and training counts (the only vocabularies a next-item model needs)."""
    return build_vocabularies(data.ratings, data.movies, split.train, has_user_features=False,
                              title_vocab_size=2, title_max_tokens=1, timestamp_buckets=1)


def train_sequential(cfg: SequentialConfig, output_dir: Path, *, verbose: int | None = None) -> dict[str, float | str]:
    """Runs the whole job and writes the run directory ``output_dir`` (already validated).

    Returns the metrics written to ``metrics.json``.
    """
    tf.keras.utils.set_random_seed(cfg.train.seed)
    logger.info("loading %s", cfg.data.dataset)
    data = load_data(cfg)
    split = leave_last_out_split(data.ratings)
    vocab = fit_vocabularies(data, split)
    train, validation, test = build_sequences(data, split, vocab, cfg.model.max_length)
    logger.info("%d training sequences (%d next-item targets), %d validation / %d test users",
                len(train.inputs), train.num_positions, len(validation.targets), len(test.targets))
    ks = tuple(sorted(set(cfg.eval.ks) | set(REQUIRED_KS["leave-last-out"])))
    model = build_model(cfg, vocab)
    dataset = make_dataset(train, cfg.train.batch_size, cfg.train.shuffle_buffer, cfg.train.seed)

    def validate() -> dict[str, float]:
        return evaluate_sequences(model, validation, ks, cfg.eval.batch_size)

    stopper = ValidationEarlyStopping(validate, EARLY_STOPPING_METRIC, cfg.train.early_stopping_patience)
    with rundir.staged_run_dir(output_dir) as stage:
        dump_config(cfg, stage / rundir.CONFIG_FILE)
        callbacks = [stopper, tf.keras.callbacks.TensorBoard(log_dir=str(stage / rundir.LOGS_DIR), write_graph=False)]
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        logger.info("training a %s for up to %d epochs", cfg.model.architecture, cfg.train.epochs)
        start = time.perf_counter()
        model.fit(dataset, epochs=cfg.train.epochs, callbacks=callbacks, verbose=verbose)
        wall = time.perf_counter() - start
        train_seconds = wall - stopper.eval_seconds
        logger.info("evaluating on the test split (best epoch %d)", stopper.best_epoch)
        test_metrics = evaluate_sequences(model, test, ks, cfg.eval.batch_size)
        epochs = max(stopper.epochs_run, 1)
        metrics: dict[str, float | str] = {
            "task": "sequential", "dataset": data.dataset, "split": split.name,
            "architecture": cfg.model.architecture,
            "train_seconds": round(train_seconds, 3),
            "train_seconds_per_epoch": round(train_seconds / epochs, 3),
            "train_seconds_to_best_epoch": round(train_seconds / epochs * stopper.best_epoch, 3),
            "validation_seconds": round(stopper.eval_seconds, 3),
            "train_examples_per_second": round(train.num_positions * epochs / max(train_seconds, 1e-9), 1),
            "num_train_sequences": int(len(train.inputs)), "num_train_examples": train.num_positions,
            "epochs_trained": stopper.epochs_run, "best_epoch": stopper.best_epoch,
            **validation_metrics(stopper),
            **{k: round(v, 6) for k, v in test_metrics.items()},
        }
        result = _export(cfg, model, vocab, data, test, stage)
        if result.scann_recall_at_10 is not None:
            metrics["scann_recall@10"] = round(result.scann_recall_at_10, 6)
        report.write_report(stage, metrics, history=model.history.history,
                            **report.sequential_inputs(model, vocab, test, data))
        rundir.write_metrics(stage, metrics)
    return metrics


def serving_histories(data: MovieLensData, vocab: Vocabularies, width: int) -> np.ndarray:
    """str [U, width]: each known user's latest ``width`` movies among *all* ratings, oldest first
    ('' left padding) — the freshest history the exported model can hold."""
    everything = np.arange(len(data.ratings["user_id"]))
    newest_first = latest_history(data.ratings, everything, vocab.user_ids, width)
    return newest_first[:, ::-1]


def _export(cfg: SequentialConfig, model: SequentialModel, vocab: Vocabularies, data: MovieLensData,
            test: EvaluationSequences, stage: Path):
    x = cfg.export
    settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
    logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
    counts = vocab.item_counts[1:].astype(np.float64)
    longest = int(max(np.unique(data.ratings["user_id"], return_counts=True)[1].max(), 1))
    width = min(longest, max(cfg.model.max_length, x.max_exclude))
    samples = [[str(vocab.movie_ids[i - 1]) for i in row if i > 0] for row in test.inputs[:8]]
    return export_sequential(
        model, stage / rundir.EXPORT_DIR, movie_ids=vocab.movie_ids, popularity=counts / max(counts.sum(), 1.0),
        user_ids=vocab.user_ids, user_histories=serving_histories(data, vocab, width),
        model_name=x.model_name, version=x.version, settings=settings, sample_histories=samples,
        recall_queries=query_vectors(model, test.inputs[:1000]), titles=data.movies["movie_title"],
        verify=x.verify)
