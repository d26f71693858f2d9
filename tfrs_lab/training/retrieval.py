"""``train retrieval``: data -> split -> vocabularies -> two-tower model -> evaluation -> export."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError, RetrievalConfig, RetrievalModelConfig, dump_config
from tfrs_lab.data.features import RAW_QUERY_FEATURES, Vocabularies, build_vocabularies
from tfrs_lab.data.history import latest_history, recent_history
from tfrs_lab.data.movielens import MovieLensData, load_movielens
from tfrs_lab.data.splits import Split, make_split
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.export.retrieval import IndexSettings, export_retrieval
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.training import distribute, report, rundir
from tfrs_lab.training.evaluate import evaluate, query_embeddings

logger = logging.getLogger(__name__)

REQUIRED_KS = {"hash": (10, 50, 100), "leave-last-out": (10, 50)}
"""Cut-offs whose metrics ``metrics.json`` must always hold (DESIGN.md §4)."""
EARLY_STOPPING_METRIC = {"hash": "hit_rate@100", "leave-last-out": "ndcg@50"}


def load_data(cfg: RetrievalConfig) -> MovieLensData:
    """The ratings and catalogue the config points at (TFDS, a local zip, or synthetic)."""
    from tfrs_lab.data.provided import provided_data  # a pipeline's ExampleGen output, if any

    if (provided := provided_data()) is not None:
        return provided
    d = cfg.data
    synthetic = None
    if d.dataset == "synthetic":
        try:
            synthetic = SyntheticSpec(**asdict(d.synthetic))
        except ValueError as e:  # the spec names the field: "num_clusters must be >= 2, got 1"
            raise ConfigError(f"data.synthetic.{e}") from e
    return load_movielens(d.dataset, data_zip=d.data_zip, data_dir=d.data_dir, synthetic=synthetic)


def feature_columns(data: MovieLensData, rows: np.ndarray, hp: RetrievalModelConfig,
                    history_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Raw columns the model reads for ``rows``: ids, timestamp, available user features, and
    (when the query tower uses it) each row's recent history taken from ``history_rows``."""
    names = ["user_id", "movie_id", *RAW_QUERY_FEATURES]
    cols = {n: data.ratings[n][rows] for n in names if n in data.ratings}
    if "history" in hp.query_features:
        cols["history"] = recent_history(data.ratings, history_rows, rows, hp.history_length)
    return cols


def make_dataset(columns: dict[str, np.ndarray], batch_size: int, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """Shuffled, batched, prefetched training batches from in-memory columns."""
    n = len(columns["user_id"])
    ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in columns.items()})
    ds = ds.shuffle(min(n, shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class ValidationEarlyStopping(tf.keras.callbacks.Callback):
    """Evaluates full-catalogue validation metrics after each epoch, keeps the best weights,
    stops after ``patience`` epochs without improvement, and restores the best weights at the end.

    The metrics are added to the epoch ``logs`` (as ``val_<name>``) so TensorBoard records them;
    ``best_metrics`` holds every validation metric of the best epoch. With ``evaluate_fn=None``
    (``train.include_validation``: no held-out data) it only counts epochs and keeps the last weights.
    """

    def __init__(self, evaluate_fn, monitor: str, patience: int) -> None:
        super().__init__()
        self.evaluate_fn, self.monitor, self.patience = evaluate_fn, monitor, patience
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
        self.best_metrics: dict[str, float] = {}
        self.eval_seconds = 0.0
        self.epochs_run = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.evaluate_fn is None:
            self.epochs_run = self.best_epoch = epoch + 1
            return
        start = time.perf_counter()
        metrics = self.evaluate_fn()
        self.eval_seconds += time.perf_counter() - start
        self.epochs_run = epoch + 1
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[self.monitor]
        logger.info("epoch %d: validation %s = %.4f", epoch + 1, self.monitor, value)
        if value > self.best:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.best_metrics = dict(metrics)
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def validation_metrics(stopper: ValidationEarlyStopping) -> dict[str, float]:
    """``validation_<name>`` of every validation metric at the best epoch (none without validation)."""
    return {f"validation_{k}": round(float(v), 6) for k, v in stopper.best_metrics.items()
            if not k.startswith("neg_")}


def optimizer(name: str, lr) -> tf.keras.optimizers.Optimizer:
    """The ``train.optimizer`` named ``name`` (adam | adagrad | sgd) with learning rate (or schedule) ``lr``."""
    return {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
            "sgd": tf.keras.optimizers.SGD}[name](learning_rate=lr)


def hyperparameters(cfg: RetrievalConfig, has_user_features: bool) -> RetrievalModelConfig:
    """``cfg.model`` without the demographic query features the dataset does not have."""
    m = cfg.model
    query = m.query_features
    if not has_user_features:
        dropped = [f for f in query if f in ("age", "gender", "occupation")]
        if dropped:
            logger.warning("%s has no user demographics: ignoring model.query_features %s",
                           cfg.data.dataset, ", ".join(dropped))
        query = tuple(f for f in query if f not in dropped)
    return dataclasses.replace(m, query_features=query)


def split_columns(data: MovieLensData, split: Split, hp: RetrievalModelConfig) -> dict[str, dict[str, np.ndarray]]:
    """Columns of each split. Histories come from earlier splits only: train rows see train rows,
    validation rows see train rows, test rows see train and validation rows."""
    known = {"train": split.train, "validation": split.train,
             "test": np.concatenate([split.train, split.validation])}
    return {name: feature_columns(data, getattr(split, name), hp, known[name]) for name in known}


def concat_columns(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def seed_and_load(cfg) -> tuple[MovieLensData, Split]:
    """Seeds TF/NumPy/Python from ``cfg.train.seed``, loads the data and splits it (logged)."""
    tf.keras.utils.set_random_seed(cfg.train.seed)
    logger.info("loading %s", cfg.data.dataset)
    data = load_data(cfg)
    split = make_split(cfg.data.split, data.ratings)
    if getattr(cfg.train, "include_validation", False):  # final fit: validation rows join training
        split = Split(split.name, np.sort(np.concatenate([split.train, split.validation])),
                      split.validation[:0], split.test)
    logger.info("split %s: %d train / %d validation / %d test ratings", split.name,
                len(split.train), len(split.validation), len(split.test))
    return data, split


def train_retrieval(cfg: RetrievalConfig, output_dir: Path, *, verbose: int | None = None) -> dict[str, float | str]:
    """Runs the whole job and writes the run directory ``output_dir`` (already validated).

    Returns the metrics written to ``metrics.json``.
    """
    dist = distribute.make_distribution(cfg.train)  # first: collectives are configured at start-up
    if dist.ps_server_role:
        distribute.serve_forever(dist)  # a parameter-server cluster's worker/ps task only serves
        return {}
    data, split = seed_and_load(cfg)
    vocab: Vocabularies = build_vocabularies(
        data.ratings, data.movies, split.train, has_user_features=data.has_user_features,
        title_vocab_size=cfg.model.title_vocab_size, title_max_tokens=cfg.model.title_max_tokens,
        timestamp_buckets=cfg.model.timestamp_buckets)
    hp = hyperparameters(cfg, data.has_user_features)
    cols = split_columns(data, split, hp)
    protocol = split.name
    ks = tuple(sorted(set(cfg.eval.ks) | set(REQUIRED_KS[protocol])))
    val_history = cols["train"]
    test_history = concat_columns(cols["train"], cols["validation"])

    with dist.strategy.scope():
        model = RetrievalModel(vocab, hp)
        model.compile(optimizer=optimizer(cfg.train.optimizer, cfg.train.learning_rate))
    train_ds, fit_kwargs = distribute.fit_dataset(
        dist, lambda batch: make_dataset(cols["train"], batch, cfg.train.shuffle_buffer, cfg.train.seed),
        len(split.train), cfg.train.batch_size)

    def validate() -> dict[str, float]:
        return evaluate(model, vocab, cols["validation"], protocol=protocol, ks=ks,
                        history=val_history, batch_size=cfg.eval.batch_size)

    stopper = ValidationEarlyStopping(None if cfg.train.include_validation else validate,
                                      EARLY_STOPPING_METRIC[protocol], cfg.train.early_stopping_patience)
    with distribute.run_directory(dist, output_dir, rundir.staged_run_dir) as stage:
        dump_config(cfg, stage / rundir.CONFIG_FILE)
        callbacks = [stopper, tf.keras.callbacks.TensorBoard(log_dir=str(stage / rundir.LOGS_DIR), write_graph=False)]
        backup, resume = distribute.fault_tolerance_callbacks(dist, cfg.train, output_dir)
        callbacks = backup + callbacks  # restore before the other callbacks see the first epoch
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        logger.info("training for up to %d epochs (%d examples per epoch)", cfg.train.epochs, len(split.train))
        start = time.perf_counter()
        curves = model.fit(train_ds, epochs=cfg.train.epochs, callbacks=callbacks, verbose=verbose,
                           **fit_kwargs).history
        train_seconds = time.perf_counter() - start - stopper.eval_seconds
        model = distribute.finish_training(  # distributed: evaluate and export a single-device copy
            dist, model, lambda: RetrievalModel(vocab, hp), {k: v[:2] for k, v in cols["train"].items()}, stage)

        logger.info("evaluating on the test split (best epoch %d)", stopper.best_epoch)
        test_metrics = evaluate(model, vocab, cols["test"], protocol=protocol, ks=ks,
                                history=test_history, batch_size=cfg.eval.batch_size)
        metrics: dict[str, float | str] = {
            "task": "retrieval", "dataset": data.dataset, "split": protocol,
            "train_seconds": round(train_seconds, 3),
            "train_examples_per_second": round(len(split.train) * (stopper.epochs_run - (resume.initial_epoch or 0))
                                               / max(train_seconds, 1e-9), 1),
            "num_train_examples": int(len(split.train)), "epochs_trained": stopper.epochs_run,
            "best_epoch": stopper.best_epoch,
            **validation_metrics(stopper),
            **{k: round(v, 6) for k, v in test_metrics.items()},
        }
        if dist.name != "default":
            metrics.update(num_workers=dist.num_workers,
                           resumed_at_epoch=(resume.initial_epoch or 0) + 1)
        if not dist.is_chief:  # non-chief workers: their run directory is discarded, skip the export
            return metrics
        result = _export(cfg, model, vocab, cols, stage, data, hp)
        if result.scann_recall_at_10 is not None:
            metrics["scann_recall@10"] = round(result.scann_recall_at_10, 6)
        report.write_report(stage, metrics, history=curves,
                            **report.retrieval_inputs(model, vocab, cols["test"], test_history, protocol, data))
        rundir.write_metrics(stage, metrics)
    return metrics


def _export(cfg: RetrievalConfig, model: RetrievalModel, vocab: Vocabularies, cols, stage: Path,
            data: MovieLensData, hp: RetrievalModelConfig):
    x = cfg.export
    settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
    logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
    test = cols["test"]
    recall_queries = query_embeddings(model, {k: v[:1000] for k, v in test.items()})
    counts = vocab.item_counts[1:].astype(np.float64)
    return export_retrieval(
        model, stage / rundir.EXPORT_DIR, user_table=serving_user_table(data, vocab, hp),
        popularity=counts / max(counts.sum(), 1.0), titles=data.movies["movie_title"],
        model_name=x.model_name, version=x.version, settings=settings,
        sample_users=[str(u) for u in vocab.user_ids[:8]], recall_queries=recall_queries, verify=x.verify)


def serving_user_table(data: MovieLensData, vocab: Vocabularies, hp: RetrievalModelConfig) -> dict[str, np.ndarray]:
    """What ``serving_default`` looks up per user index ([U + 1] rows; row 0 = unknown user):
    the training-time demographics and, when used, the user's latest ``history_length`` movies
    among *all* known ratings (the freshest history the exported model can have)."""
    table = dict(vocab.user_table)
    if "history" in hp.query_features:
        everything = np.arange(len(data.ratings["user_id"]))
        known = latest_history(data.ratings, everything, vocab.user_ids, hp.history_length)
        table["history"] = np.concatenate([np.full((1, hp.history_length), "", dtype=object), known])
    return table
