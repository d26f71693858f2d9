"""Typed, validated configuration: frozen keyword-only dataclasses loaded from YAML.

Loading rules (docs/configuration.md):

* ``load_config(task, files, overrides)`` starts from the dataclass defaults, overlays each YAML
  file in order, then each ``--set a.b=c`` override (the value is parsed as YAML, so ``3``,
  ``0.1``, ``true``, ``[64, 32]`` and ``null`` work).
* Unknown keys and invalid values raise :class:`ConfigError` naming the dotted path and the fix,
  e.g. ``model.embedding_dim must be > 0, got 0``.
* ``dump_config`` writes the resolved config back as YAML (the run directory's ``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import yaml

from tfrs_lab.data.spec import OWN, SourceSpec
from tfrs_lab.data.splits import PROTOCOLS as SPLIT_PROTOCOLS
from tfrs_lab.data.splits import SPLIT_NAMES, resolve_time_cutoff
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.predefined import MOVIELENS_100K_SPLITS
from tfrs_lab.schema import ConfigError, _build, build

__all__ = ["load_yaml_text", "SYNCHRONOUS_DISTRIBUTIONS", "AUTOENCODER_ARCHITECTURES", "AUTOENCODER_PROTOCOL", "AUTOENCODER_SPLITS", "HeldOutUsersConfig",
           "SPLIT_PROTOCOLS", "SPLITS", "TimeCutoffConfig", "AutoencoderConfig", "AutoencoderDataConfig",
           "AutoencoderEvalConfig", "AutoencoderExportConfig", "AutoencoderModelConfig", "AutoencoderTrainConfig",
           "AutoRecConfig", "check_choices", "check_typed_features", "check_typed_ranking", "CONFIG_DIR", "CONFIG_PACKAGE", "ConfigError", "DataConfig",
           "default_config_file", "dump_config", "EvalConfig", "ExportConfig", "load_config",
           "MultAutoencoderConfig", "MultitaskConfig", "MultitaskExportConfig", "MultitaskModelConfig",
           "MultitaskTrainConfig", "NegativeSamplingConfig", "parse_override", "positive", "RANKING_ARCHITECTURES", "TYPED_RANKING_ARCHITECTURES",
           "RANKING_FEATURES", "RankingConfig", "RankingExportConfig", "RankingModelConfig", "RankingTrainConfig", "OptimizerName", "AutoOptimizerName",
           "read_yaml", "RETRIEVAL_CANDIDATE_FEATURES", "RETRIEVAL_QUERY_FEATURES", "RetrievalConfig", "RetrievalExportConfig",
           "RetrievalModelConfig", "RetrievalTrainConfig", "SAMPLE_WEIGHTS", "ScannConfig", "SequentialConfig", "SequentialDataConfig",
           "SequentialEvalConfig", "SequentialExportConfig", "SequentialModelConfig", "SequentialTrainConfig", "build",
           "shipped_config", "shipped_config_files", "SHIPPED_SUFFIXES", "SyntheticConfig", "task_entry",
           "TaskConfig", "TaskEntry", "TASKS", "to_dict", "TrainConfig"]


def positive(value: float, path: str, *, allow_zero: bool = False) -> None:
    """Raises ``ConfigError("<path> must be > 0, got <value>")`` (``>= 0`` with ``allow_zero``)."""
    if value < 0 or (value == 0 and not allow_zero):
        op = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{path} must be {op}, got {value}")


def check_choices(values: Sequence[str], allowed: Sequence[str], path: str) -> None:
    """Raises ``ConfigError`` naming the first of ``values`` that is not in ``allowed``."""
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{path} has unknown value '{v}': choose from {', '.join(allowed)}")


# Each section validates its own ranges in ``validate(path)``; ``load_config`` calls it on every
# section it builds, with the section's dotted path, so messages read "model.embedding_dim must be > 0".


RETRIEVAL_QUERY_FEATURES = ("timestamp", "age", "gender", "occupation", "history")
RETRIEVAL_CANDIDATE_FEATURES = ("title", "genres")


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Size of the synthetic MovieLens-format data set (``data.dataset: synthetic``)."""

    num_users: int = 600
    num_movies: int = 400
    ratings_per_user: int = 40
    num_clusters: int = 8
    seed: int = 0

    def validate(self, path: str) -> None:
        for name in ("num_users", "num_movies", "ratings_per_user", "num_clusters"):
            positive(getattr(self, name), f"{path}.{name}")


SPLITS = SPLIT_NAMES
"""Every split (docs/architecture.md#splits); ``SPLIT_PROTOCOLS`` maps each to its evaluation protocol."""
SplitName = Literal["hash", "leave-last-out", "time", "held-out-users", "predefined"]


@dataclass(frozen=True, kw_only=True)
class TimeCutoffConfig:
    """``data.split: time`` cut-offs: each a quantile in (0, 1) of the timestamps, unix seconds
    (a whole number >= 1) or an ISO-8601 date (``1998-03-01``; UTC unless an offset is given)."""

    validation: float | str = 0.8
    test: float | str = 0.9

    def validate(self, path: str) -> None:
        order = []
        for name in ("validation", "test"):
            value = getattr(self, name)
            try:  # the split's own parser, so the config accepts exactly what the split reads
                seconds = resolve_time_cutoff(value, np.zeros(0, np.int64), f"{path}.{name}")
            except DataError as e:
                raise ConfigError(str(e)) from None
            quantile = isinstance(value, float) and value < 1
            order.append((quantile, value if quantile else seconds))
        (q_val, val), (q_test, test) = order
        if q_val == q_test and val > test:  # a quantile against a date is checked once the data is known
            raise ConfigError(f"{path}.validation ({self.validation}) must not be after {path}.test ({self.test})")


@dataclass(frozen=True, kw_only=True)
class HeldOutUsersConfig:
    """``data.split: held-out-users`` (Mult-VAE's strong generalisation): shares of users held out
    for validation and test (by a hash of the user id), and the share of each held-out user's newest
    ratings to predict (at least 1; the older ones are the fold-in input)."""

    validation: float = 0.1
    test: float = 0.1
    target_share: float = 0.2

    def validate(self, path: str) -> None:
        for name in ("validation", "test"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{path}.{name} must be a share of users in (0, 1), got {getattr(self, name)}")
        if self.validation + self.test >= 1.0:
            raise ConfigError(f"{path}.validation + {path}.test must be < 1 so that some users train, got "
                              f"{self.validation + self.test}")
        if not 0.0 < self.target_share < 1.0:
            raise ConfigError(f"{path}.target_share must be in (0, 1), got {self.target_share}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where ratings come from and how they are split (docs/architecture.md#splits).

    ``dataset`` is a MovieLens name, ``synthetic``, or ``own``: your own files, described by
    ``source`` (:class:`tfrs_lab.data.spec.SourceSpec`; docs/own-data.md). ``split`` picks the
    split, and with it the evaluation protocol; ``time_cutoff``, ``held_out_users`` and
    ``predefined`` configure the ``time``, ``held-out-users`` and ``predefined`` splits
    (``predefined``: ``u1`` … ``u5``, ``ua``, ``ub`` of the MovieLens 100K archive given as
    ``data_zip``, or, with ``dataset: own``, a file of test interactions in the interactions'
    format and columns). ``min_user_interactions`` / ``min_item_interactions`` drop the rows of
    users / items with fewer rows than that before the split, in one pass, as SASRec's
    preprocessing does (:func:`tfrs_lab.data.splits.min_interactions_filter`; 0 keeps all).
    """

    dataset: str = "movielens/100k-ratings"
    data_zip: str | None = None
    data_dir: str | None = None
    split: SplitName = "hash"
    time_cutoff: TimeCutoffConfig = field(default_factory=TimeCutoffConfig)
    held_out_users: HeldOutUsersConfig = field(default_factory=HeldOutUsersConfig)
    predefined: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    source: SourceSpec | None = None
    min_user_interactions: int = 0
    min_item_interactions: int = 0
    supported_splits: typing.ClassVar[tuple[str, ...]] = ("hash", "leave-last-out", "time", "predefined")

    def validate(self, path: str) -> None:
        for name in ("min_user_interactions", "min_item_interactions"):
            positive(getattr(self, name), f"{path}.{name}", allow_zero=True)
        if self.split not in self.supported_splits and self.split != "auto":
            raise ConfigError(f"{path}.split={self.split} is not supported by this task: choose "
                              f"{', '.join(self.supported_splits)}" + (
                                  " (held-out-users needs a model that folds a new user in from their history: "
                                  "autoencoder dae/vae or sequential)" if self.split == "held-out-users" else ""))
        if self.split == "predefined" and not self.predefined:
            raise ConfigError(f"{path}.predefined is required with {path}.split=predefined: name "
                              f"{', '.join(MOVIELENS_100K_SPLITS)} (MovieLens 100K with --data-zip) or a test file")
        if self.predefined is not None and self.split != "predefined":
            raise ConfigError(f"{path}.predefined is only read with {path}.split=predefined, got split={self.split}: "
                              f"set {path}.split=predefined or drop {path}.predefined")
        if self.predefined in MOVIELENS_100K_SPLITS and (self.dataset != "movielens/100k-ratings" or not self.data_zip):
            raise ConfigError(f"{path}.predefined={self.predefined} is a split of the MovieLens 100K archive: set "
                              f"{path}.dataset=movielens/100k-ratings and pass the archive with --data-zip")
        if self.split == "predefined" and self.predefined not in MOVIELENS_100K_SPLITS and self.dataset != OWN:
            raise ConfigError(f"{path}.predefined={self.predefined!r}: choose {', '.join(MOVIELENS_100K_SPLITS)} "
                              f"(MovieLens 100K), or a test file with {path}.dataset={OWN}")
        if self.dataset == OWN and self.source is None:
            raise ConfigError(f"{path}.source is required with {path}.dataset={OWN}: pass --interactions FILE "
                              "--columns user=...,item=... or --data SPEC.yaml")
        if self.dataset != OWN and self.source is not None:
            raise ConfigError(f"{path}.source is only read with {path}.dataset={OWN}, got dataset={self.dataset}: "
                              f"set {path}.dataset={OWN} or drop {path}.source")
        if self.dataset == OWN and self.data_zip is not None:
            raise ConfigError(f"{path}.data_zip is a MovieLens archive and cannot be used with {path}.dataset={OWN}: "
                              "drop --data-zip")


@dataclass(frozen=True, kw_only=True)
class RetrievalModelConfig:
    """Two-tower retrieval model.

    ``embedding_dim`` is the size of the final query/candidate vectors; ``tower_layers`` are the
    hidden Dense sizes applied to the concatenated features before the final projection.

    Negatives of the in-batch softmax (``tfrs_lab.models.retrieval``; math in docs/tasks.md):
    ``uniform_negatives`` movies drawn uniformly from the catalogue per batch are added to the
    in-batch candidates (mixed negative sampling, Yang et al. 2020; 0 = in-batch only), and
    ``num_hard_negatives`` keeps only each query's that many highest-scoring negatives in its
    softmax (0 = all of them).

    ``history_length`` (items in the query's history) is a positive integer or ``auto``: the rule
    :func:`tfrs_lab.training.retrieval.auto_history_length` of the training rows, resolved by the run
    once the data is split and written as the integer to the run's ``config.yaml``.
    """

    embedding_dim: int = 64
    id_embedding_dim: int = 64
    feature_embedding_dim: int = 16
    tower_layers: tuple[int, ...] = ()
    query_features: tuple[str, ...] = ("timestamp", "age", "gender", "occupation", "history")
    history_length: int | str = "auto"
    candidate_features: tuple[str, ...] = ("title", "genres")
    normalize: bool = True
    temperature: float = 0.1
    remove_accidental_hits: bool = True
    logq_correction: bool = True
    num_hard_negatives: int = 0
    uniform_negatives: int = 0
    timestamp_buckets: int = 100
    title_vocab_size: int = 10_000
    title_max_tokens: int = 16
    l2_regularization: float = 0.0

    def validate(self, path: str) -> None:
        for name in ("embedding_dim", "id_embedding_dim", "feature_embedding_dim", "timestamp_buckets",
                     "title_vocab_size", "title_max_tokens"):
            positive(getattr(self, name), f"{path}.{name}")
        if isinstance(self.history_length, str):  # auto: a rule of the training rows, resolved once they are split
            if self.history_length != "auto":
                raise ConfigError(f"{path}.history_length must be a positive integer or auto, "
                                  f"got {self.history_length!r}")
        else:
            positive(self.history_length, f"{path}.history_length")
        for i, size in enumerate(self.tower_layers):
            positive(size, f"{path}.tower_layers[{i}]")
        positive(self.temperature, f"{path}.temperature")
        positive(self.l2_regularization, f"{path}.l2_regularization", allow_zero=True)
        positive(self.num_hard_negatives, f"{path}.num_hard_negatives", allow_zero=True)
        positive(self.uniform_negatives, f"{path}.uniform_negatives", allow_zero=True)
        check_choices(self.query_features, RETRIEVAL_QUERY_FEATURES, f"{path}.query_features")
        check_choices(self.candidate_features, RETRIEVAL_CANDIDATE_FEATURES, f"{path}.candidate_features")


SYNCHRONOUS_DISTRIBUTIONS = ("default", "mirrored", "multi_worker_mirrored")
"""``train.distribution`` values of the tasks that train under synchronous replicas only (the
autoencoders; every other task also trains with parameter servers; docs/distributed.md)."""


OptimizerName = Literal["adam", "lazy_adam", "adagrad", "sgd"]
"""An optimizer's name (tfrs_lab.training.common.optimizer)."""

AutoOptimizerName = Literal["adam", "lazy_adam", "adagrad", "sgd", "auto"]
"""``train.optimizer`` (every task): an :data:`OptimizerName` or ``auto``, the size rule
:func:`tfrs_lab.training.common.auto_optimizer` (``adam`` while the model's sparse embedding tables are
small, ``lazy_adam`` for large ones), resolved by the run once the vocabularies are known and written
as the name to ``config.yaml`` and ``metrics.json``."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings. ``epochs`` is the maximum; early stopping may end sooner."""

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.001
    optimizer: AutoOptimizerName = "auto"
    """``auto`` (docs/tuning.md#optimizer-a-size-rule-every-task): ``adam`` (better on validation)
    while the embedding tables with sparse gradients are small, ``lazy_adam`` (whose step does not grow
    with them) above :data:`tfrs_lab.training.common.AUTO_OPTIMIZER_MAX_PARAMETERS`."""
    early_stopping_patience: int = 3
    seed: int = 42
    shuffle_buffer: int = 1_000_000
    # tf.distribute (tfrs_lab/training/distribute.py; multi-host strategies read TF_CONFIG)
    distribution: Literal["default", "mirrored", "multi_worker_mirrored", "parameter_server"] = "default"
    backup_dir: str | None = None  # BackupAndRestore state; null = .<output dir name>.backup beside it
    ps_min_shard_bytes: int = 256 << 10  # parameter_server: variables larger than this are split over the ps tasks
    collective_timeout_seconds: int = 0  # multi_worker_mirrored: fail a collective after this long (0 = never)
    supported_distributions: typing.ClassVar[tuple[str, ...]] = (
        "default", "mirrored", "multi_worker_mirrored", "parameter_server")
    distribution_note: typing.ClassVar[str] = ""
    """Why a task refuses the distributions it does not list (its one-line error says it)."""
    include_validation: bool = False
    """Final fit (``tune --final``): train on train + validation for exactly ``epochs`` epochs, no
    early stopping and no validation metrics; test is still evaluated once."""
    warm_start: str | None = None
    """A previous run directory of the same task to continue from (its vocabularies and exported
    weights; ``--warm-start RUN``; tfrs_lab/training/warm_start.py); null = from scratch."""
    sample_weight: Literal["none", "rating", "log1p"] = "none"
    """What each training interaction weighs in the loss (``tfrs_lab.training.common.sample_weights``):
    ``none`` 1 per row; ``rating`` the row's rating / implicit weight (e.g. a play count); ``log1p``
    log(1 + rating). Weights are divided by their mean over the training rows (the loss keeps its
    scale). Tasks that do not read it accept only ``none`` (``supported_sample_weights``)."""
    supported_sample_weights: typing.ClassVar[tuple[str, ...]] = ("none",)
    max_steps_per_epoch: int | None = None
    """A budget for benchmarks and smoke runs: each epoch stops after this many optimizer steps (the
    first steps of that epoch's shuffled order); null = whole epochs. ``metrics.json`` records the
    share of each epoch trained as ``epoch_fraction`` and counts only trained examples in
    ``train_examples_per_second``; a cosine learning-rate schedule decays over the capped steps."""

    def validate(self, path: str) -> None:
        if self.sample_weight not in self.supported_sample_weights:
            raise ConfigError(f"{path}.sample_weight={self.sample_weight} is not supported by this task: set it to "
                              f"{' or '.join(self.supported_sample_weights)} (retrieval and the Mult-DAE/VAE "
                              "autoencoders weigh interactions; docs/configuration.md)")
        if self.distribution not in self.supported_distributions:
            raise ConfigError(f"{path}.distribution={self.distribution} is not supported by this task: "
                              f"choose {' or '.join(self.supported_distributions)} ({self.distribution_note}; "
                              "docs/distributed.md)")
        positive(self.ps_min_shard_bytes, f"{path}.ps_min_shard_bytes")
        positive(self.collective_timeout_seconds, f"{path}.collective_timeout_seconds", allow_zero=True)
        if self.epochs <= 0:
            raise ConfigError(f"{path}.epochs must be > 0, got {self.epochs} (use --epochs N with N >= 1)")
        positive(self.batch_size, f"{path}.batch_size")
        if self.max_steps_per_epoch is not None:
            positive(self.max_steps_per_epoch, f"{path}.max_steps_per_epoch")
        positive(self.learning_rate, f"{path}.learning_rate")
        positive(self.early_stopping_patience, f"{path}.early_stopping_patience", allow_zero=True)
        positive(self.shuffle_buffer, f"{path}.shuffle_buffer")


SAMPLE_WEIGHTS = ("none", "rating", "log1p")
"""``train.sample_weight`` values (tasks that weigh interactions accept all of them)."""


@dataclass(frozen=True, kw_only=True)
class RetrievalTrainConfig(TrainConfig):
    """``TrainConfig`` of the retrieval task: it weighs interactions (``sample_weight``)."""

    supported_sample_weights: typing.ClassVar[tuple[str, ...]] = SAMPLE_WEIGHTS


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Full-catalogue evaluation. ``batch_size`` is queries scored per matrix product;
    ``validation_users``: the retrieval and multitask tasks validate each epoch on the rows of at most
    this many users (a fixed sample seeded by ``train.seed``; every user when there are fewer);
    test evaluation always ranks every test row."""

    ks: tuple[int, ...] = (10, 50, 100)
    batch_size: int = 1024
    validation_users: int = 10000

    def validate(self, path: str) -> None:
        if not self.ks:
            raise ConfigError(f"{path}.ks must list at least one cut-off, e.g. [10, 50, 100]")
        for i, k in enumerate(self.ks):
            positive(k, f"{path}.ks[{i}]")
        positive(self.batch_size, f"{path}.batch_size")
        positive(self.validation_users, f"{path}.validation_users")


@dataclass(frozen=True, kw_only=True)
class ScannConfig:
    """ScaNN index settings; ``0`` means "choose from the catalogue size" (see export.index)."""

    num_leaves: int = 0
    num_leaves_to_search: int = 0
    num_reordering_candidates: int = 0
    dimensions_per_block: int = 2

    def validate(self, path: str) -> None:
        for name in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
            positive(getattr(self, name), f"{path}.{name}", allow_zero=True)
        positive(self.dimensions_per_block, f"{path}.dimensions_per_block")
        if self.num_leaves and self.num_leaves_to_search > self.num_leaves:
            raise ConfigError(f"{path}.num_leaves_to_search ({self.num_leaves_to_search}) must be <= "
                              f"{path}.num_leaves ({self.num_leaves})")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What the exporter writes under ``<output_dir>/export/<model_name>/<version>/``."""

    model_name: str = "retrieval"
    version: int = 1
    index: Literal["scann", "brute_force"] = "scann"
    k: int = 100
    max_exclude: int = 500
    verify: bool = True
    scann: ScannConfig = field(default_factory=ScannConfig)

    def validate(self, path: str) -> None:
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(f"{path}.model_name must be a plain directory name, got {self.model_name!r}")
        positive(self.version, f"{path}.version")
        positive(self.k, f"{path}.k")
        positive(self.max_exclude, f"{path}.max_exclude", allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class RetrievalExportConfig(ExportConfig):
    """``exclude_seen``: ``serving_default`` never returns movies the user is known to have rated
    (their newest ``max_exclude``); ``false`` returns the plain top-k, as before."""

    exclude_seen: bool = True


class TaskConfig:
    """What every top-level task config answers (mixed into each task's config dataclass)."""

    @property
    def split_name(self) -> str:
        """The split a run uses (``data.split``)."""
        return self.data.split  # type: ignore[attr-defined]

    @property
    def protocol(self) -> str:
        """The evaluation protocol of that split: ``hash`` (rating-level; also ``time`` and
        ``predefined``), ``leave-last-out`` or ``held-out-users`` (docs/architecture.md#splits)."""
        return SPLIT_PROTOCOLS[self.split_name]

    @property
    def predicts_ratings(self) -> bool:
        """True when the run is evaluated by rating error (``rmse``/``mae``), not by ranking."""
        return False

    @property
    def reports_ratings(self) -> bool:
        """True when the run reports rating error (``rmse``/``mae``), alone or beside ranking metrics."""
        return self.predicts_ratings


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig(TaskConfig):
    """The whole configuration of a ``train retrieval`` run."""

    task: Literal["retrieval"] = "retrieval"
    output_dir: str = "runs/retrieval"
    data: DataConfig = field(default_factory=DataConfig)
    model: RetrievalModelConfig = field(default_factory=RetrievalModelConfig)
    train: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: RetrievalExportConfig = field(default_factory=RetrievalExportConfig)


# --------------------------------------------------------------------------- sequential task


@dataclass(frozen=True, kw_only=True)
class SequentialDataConfig(DataConfig):
    """``DataConfig`` for next-item models: the protocols with a per-user history to predict from
    (``leave-last-out``, ``held-out-users``)."""

    split: SplitName = "leave-last-out"
    supported_splits: typing.ClassVar[tuple[str, ...]] = ("leave-last-out", "held-out-users")


@dataclass(frozen=True, kw_only=True)
class SequentialModelConfig:
    """Next-item model over a user's history (SASRec-style transformer or GRU baseline)."""

    architecture: Literal["transformer", "gru"] = "transformer"
    max_length: int = 200
    window_stride: int = 0
    embedding_dim: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.3
    loss: Literal["softmax", "sampled_softmax"] = "softmax"
    num_negatives: int = 256
    logq_correction: bool = True
    l2_regularization: float = 0.0

    def validate(self, path: str) -> None:
        if self.max_length < 2:
            raise ConfigError(f"{path}.max_length must be >= 2, got {self.max_length}")
        if not 0 <= self.window_stride <= self.max_length:
            raise ConfigError(f"{path}.window_stride must be in [0, {path}.max_length={self.max_length}] (0 = the "
                              f"newest window only), got {self.window_stride}")
        for name in ("embedding_dim", "num_blocks", "num_heads", "num_negatives"):
            positive(getattr(self, name), f"{path}.{name}")
        if self.embedding_dim % self.num_heads:
            raise ConfigError(f"{path}.num_heads ({self.num_heads}) must divide {path}.embedding_dim "
                              f"({self.embedding_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout must be in [0, 1), got {self.dropout}")
        positive(self.l2_regularization, f"{path}.l2_regularization", allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class SequentialTrainConfig(TrainConfig):
    """``TrainConfig`` with the sequential task's defaults."""

    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 0.004
    early_stopping_patience: int = 5

    def validate(self, path: str) -> None:
        super().validate(path)
        if self.include_validation:
            raise ConfigError(f"{path}.include_validation is not supported by the sequential task: set it to false")


@dataclass(frozen=True, kw_only=True)
class SequentialEvalConfig(EvalConfig):
    ks: tuple[int, ...] = (10, 50)


@dataclass(frozen=True, kw_only=True)
class SequentialExportConfig(ExportConfig):
    model_name: str = "sequential"


@dataclass(frozen=True, kw_only=True)
class SequentialConfig(TaskConfig):
    """The whole configuration of a ``train sequential`` run."""

    task: Literal["sequential"] = "sequential"
    output_dir: str = "runs/sequential"
    data: SequentialDataConfig = field(default_factory=SequentialDataConfig)
    model: SequentialModelConfig = field(default_factory=SequentialModelConfig)
    train: SequentialTrainConfig = field(default_factory=SequentialTrainConfig)
    eval: SequentialEvalConfig = field(default_factory=SequentialEvalConfig)
    export: SequentialExportConfig = field(default_factory=SequentialExportConfig)

    def __post_init__(self) -> None:
        check_typed_features(self, _source_features(self.data))


# --------------------------------------------------------------------------- ranking task

@dataclass(frozen=True, kw_only=True)
class AutoRecConfig:
    """I-AutoRec (Sedhain et al. 2015): each movie's rating vector over users -> ``hidden_units``
    -> reconstruction; masked MSE on observed ratings only; ``l2_regularization`` on both kernels.

    ``hidden_units`` is a positive integer or ``auto``: the rule
    :func:`tfrs_lab.training.autorec_size.auto_hidden_units` of the distinct training items (size) and
    users (memory), the same for the ranking and the autoencoder task, resolved by the run once the
    data is split and written as the integer to the run's ``config.yaml``."""

    hidden_units: int | str = 500
    activation: Literal["sigmoid", "tanh", "relu", "elu"] = "sigmoid"
    dropout: float = 0.3
    l2_regularization: float = 0.001

    def validate(self, path: str) -> None:
        if isinstance(self.hidden_units, str):  # auto: a rule of the training rows, resolved once they are split
            if self.hidden_units != "auto":
                raise ConfigError(f"{path}.hidden_units must be a positive integer or auto, got {self.hidden_units!r}")
        else:
            positive(self.hidden_units, f"{path}.hidden_units")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout must be in [0, 1), got {self.dropout}")
        positive(self.l2_regularization, f"{path}.l2_regularization", allow_zero=True)


RANKING_ARCHITECTURES = ("mf", "gmf", "mlp", "neumf", "dcn", "autorec")
RANKING_FEATURES = ("timestamp", "age", "gender", "occupation", "zip", "genres", "title")
TYPED_RANKING_ARCHITECTURES = ("dcn", "mlp", "neumf")
"""Ranking architectures whose models read typed features (``data.source.features``): DCN's input
and the MLP's (NeuMF: its MLP branch); the others have no input to join them to."""


def check_typed_ranking(architecture: str, features: Sequence[str]) -> None:
    """Raises :class:`ConfigError` when typed features (their names: ``features``, none: fine) meet a
    ranking ``architecture`` outside :data:`TYPED_RANKING_ARCHITECTURES`."""
    if features and architecture not in TYPED_RANKING_ARCHITECTURES:
        raise ConfigError(f"model.architecture={architecture} does not read data.source.features "
                          f"({', '.join(features)}): set model.architecture to "
                          f"{', '.join(TYPED_RANKING_ARCHITECTURES[:-1])} or {TYPED_RANKING_ARCHITECTURES[-1]}, "
                          "or drop the features")


def check_typed_features(cfg, features: Sequence[Any]) -> None:
    """Raises :class:`ConfigError` when the model of ``cfg`` (a task config) cannot read the typed
    ``features`` (descriptions with ``name`` and ``side``: ``FeatureSpec``, ``ModelFeature``; none:
    fine). Retrieval and multitask read every side; ranking its :data:`TYPED_RANKING_ARCHITECTURES`
    (:func:`check_typed_ranking`); sequential item features only (its query is the user's item
    history: serving takes a history, and held-out users have no user row); the autoencoders none."""
    if not features:
        return
    named = ", ".join(f.name for f in features)
    if cfg.task == "ranking":
        check_typed_ranking(cfg.model.architecture, [f.name for f in features])
    elif cfg.task == "sequential":
        other = [f"{f.name} ({f.side})" for f in features if f.side != "item"]
        if other:
            raise ConfigError(f"task sequential reads item features only, not data.source.features {', '.join(other)}: "
                              "its query is the user's item history (serving takes a history; held-out users have no "
                              "user row); drop them, or train retrieval or multitask, which read user and context "
                              "features too")
    elif cfg.task == "autoencoder":
        raise ConfigError(f"task autoencoder (model.architecture={cfg.model.architecture}) does not read "
                          f"data.source.features ({named}): drop the features, or train sequential (item features), "
                          f"retrieval or multitask (every side) or ranking with model.architecture "
                          f"{', '.join(TYPED_RANKING_ARCHITECTURES)}")


def _source_features(data) -> tuple:
    """The typed features a ``DataConfig`` names (``data.source.features`` of own data), else none."""
    return data.source.features if data.dataset == OWN and data.source is not None else ()


@dataclass(frozen=True, kw_only=True)
class RankingModelConfig:
    """Ranking model (``tfrs_lab.models.ranking``): architecture, objective and regularisation.

    ``features`` are DCN's side features; ``mlp_layers`` the towers of ``mlp`` / ``neumf``;
    ``cross_low_rank: 0`` means full-rank cross layers. ``embedding_l2`` is per-example L2 on the
    looked-up embedding rows and biases; ``kernel_l2`` L2 on dense and cross kernels.
    ``history_length > 0`` adds SVD++-style implicit feedback: the mean of a separate embedding of
    the user's last ``history_length`` earlier movies is added to the user vector (0 = off).
    ``autorec`` (item-based AutoRec scored per pair) takes its settings from ``autorec``, the same
    section as the autoencoder task's, with ``hidden_units: auto`` by default (a rule of the distinct
    training items, capped by a memory budget, chosen on validation RMSE across data sets:
    ``configs/selection/ranking.yaml``; the autoencoder task resolves ``auto`` with the same rule).
    """

    architecture: str = "autorec"
    objective: Literal["explicit", "implicit"] = "explicit"
    embedding_dim: int = 32
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    cross_layers: int = 2
    cross_low_rank: int = 0
    deep_layers: tuple[int, ...] = (128, 64)
    features: tuple[str, ...] = ("timestamp", "age", "gender", "occupation", "zip", "genres")
    feature_embedding_dim: int = 8
    timestamp_buckets: int = 100
    zip_buckets: int = 1000
    dropout: float = 0.2
    embedding_l2: float = 0.1
    kernel_l2: float = 0.0001
    use_biases: bool = True
    rating_min: float = 1.0
    rating_max: float = 5.0
    neumf_pretrain: bool = False
    neumf_alpha: float = 0.5
    history_length: int = 200
    autorec: AutoRecConfig = field(default_factory=lambda: AutoRecConfig(hidden_units="auto"))

    def validate(self, path: str) -> None:
        positive(self.history_length, f"{path}.history_length", allow_zero=True)
        self.autorec.validate(f"{path}.autorec")
        check_choices((self.architecture,), RANKING_ARCHITECTURES, f"{path}.architecture")
        if self.architecture == "autorec" and self.objective != "explicit":
            raise ConfigError(f"{path}.architecture=autorec reconstructs ratings: set {path}.objective=explicit "
                              f"(or choose mf, gmf, mlp, neumf or dcn for implicit)")
        for name in ("embedding_dim", "feature_embedding_dim", "timestamp_buckets", "zip_buckets"):
            positive(getattr(self, name), f"{path}.{name}")
        for name in ("mlp_layers", "deep_layers"):
            for i, size in enumerate(getattr(self, name)):
                positive(size, f"{path}.{name}[{i}]")
        if self.architecture in ("mlp", "neumf") and not self.mlp_layers:
            raise ConfigError(f"{path}.mlp_layers must list at least one layer size for {self.architecture}")
        positive(self.cross_layers, f"{path}.cross_layers", allow_zero=True)
        positive(self.cross_low_rank, f"{path}.cross_low_rank", allow_zero=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout must be in [0, 1), got {self.dropout}")
        positive(self.embedding_l2, f"{path}.embedding_l2", allow_zero=True)
        positive(self.kernel_l2, f"{path}.kernel_l2", allow_zero=True)
        if not self.rating_max > self.rating_min:
            raise ConfigError(f"{path}.rating_max ({self.rating_max}) must be > {path}.rating_min "
                              f"({self.rating_min}): the rating range is empty")
        if not 0.0 <= self.neumf_alpha <= 1.0:
            raise ConfigError(f"{path}.neumf_alpha must be in [0, 1], got {self.neumf_alpha}")
        check_choices(self.features, RANKING_FEATURES, f"{path}.features")


@dataclass(frozen=True, kw_only=True)
class NegativeSamplingConfig:
    """Negatives drawn per training positive for the implicit objective, fresh every epoch."""

    count: int = 4
    distribution: Literal["uniform", "popularity"] = "uniform"
    exclude_seen: bool = True

    def validate(self, path: str) -> None:
        if self.count < 1:
            raise ConfigError(f"{path}.count must be >= 1 negative per positive, got {self.count}")


@dataclass(frozen=True, kw_only=True)
class RankingTrainConfig(TrainConfig):
    """``TrainConfig`` plus the learning-rate schedule and the implicit objective's negatives.

    ``lr_schedule``: ``constant``; ``cosine`` (decays to ``min_learning_rate`` over ``epochs``);
    ``plateau`` (multiplies by ``lr_decay_factor`` after each epoch without validation improvement).

    ``loss`` (implicit objective only): ``pointwise`` binary cross-entropy on
    positives and negatives alike; ``pairwise`` BPR, ``-log sigma(s(u, i+) - s(u, i-))`` averaged
    over each positive's ``negatives.count`` negatives; ``listwise`` softmax cross-entropy over
    each positive and its ``negatives.count`` negatives. A batch holds ``batch_size`` scored pairs
    whatever the loss (``batch_size // (1 + count)`` positives with their negatives for the
    pairwise and listwise losses).
    """

    epochs: int = 40
    early_stopping_patience: int = 5
    lr_schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    lr_decay_factor: float = 0.5
    min_learning_rate: float = 1e-5
    negatives: NegativeSamplingConfig = field(default_factory=NegativeSamplingConfig)
    loss: Literal["pointwise", "pairwise", "listwise"] = "pointwise"

    def validate(self, path: str) -> None:
        super().validate(path)
        if not 0.0 < self.lr_decay_factor < 1.0:
            raise ConfigError(f"{path}.lr_decay_factor must be in (0, 1), got {self.lr_decay_factor}")
        positive(self.min_learning_rate, f"{path}.min_learning_rate", allow_zero=True)
        if self.include_validation and self.lr_schedule == "plateau":
            raise ConfigError(f"{path}.lr_schedule plateau needs validation data: use constant or cosine "
                              f"with {path}.include_validation")


@dataclass(frozen=True, kw_only=True)
class RankingExportConfig:
    """What the exporter writes under ``<output_dir>/export/<model_name>/<version>/``."""

    model_name: str = "ranking"
    version: int = 1
    verify: bool = True

    def validate(self, path: str) -> None:
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(f"{path}.model_name must be a plain directory name, got {self.model_name!r}")
        positive(self.version, f"{path}.version")


@dataclass(frozen=True, kw_only=True)
class RankingConfig(TaskConfig):
    """The whole configuration of a ``train ranking`` run."""

    task: Literal["ranking"] = "ranking"
    output_dir: str = "runs/ranking"
    data: DataConfig = field(default_factory=DataConfig)
    model: RankingModelConfig = field(default_factory=RankingModelConfig)
    train: RankingTrainConfig = field(default_factory=RankingTrainConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(batch_size=64))  # users scored per catalogue block
    export: RankingExportConfig = field(default_factory=RankingExportConfig)

    def __post_init__(self) -> None:
        if self.model.objective == "explicit" and self.train.loss != "pointwise":
            raise ConfigError(f"train.loss={self.train.loss} ranks sampled negatives: set model.objective=implicit "
                              "(explicit ratings are regressed pointwise: train.loss=pointwise)")
        if self.train.distribution == "parameter_server" and self.model.architecture == "autorec":
            raise ConfigError("train.distribution=parameter_server: model.architecture=autorec reads a dense "
                              "[items x users] rating table every step; use train.distribution=multi_worker_mirrored "
                              "(or model.architecture mf, gmf, mlp, neumf or dcn)")
        if self.model.architecture == "neumf" and self.model.neumf_pretrain and self.train.distribution != "default":
            raise ConfigError(f"model.neumf_pretrain=true fits three models in one run, which a restarted "
                              f"train.distribution={self.train.distribution} run cannot resume from its backup: "
                              "set model.neumf_pretrain=false or train.distribution=default")
        check_typed_features(self, _source_features(self.data))

    @property
    def predicts_ratings(self) -> bool:
        return self.model.objective == "explicit"


# --------------------------------------------------------------------------- autoencoder task

AUTOENCODER_ARCHITECTURES = ("autorec", "dae", "vae")
AUTOENCODER_PROTOCOL = {"autorec": "hash", "dae": "leave-last-out", "vae": "leave-last-out"}
"""Default split of each autoencoder architecture (``data.split: auto`` picks it)."""
AUTOENCODER_SPLITS = {"autorec": ("hash", "time", "predefined"), "dae": ("leave-last-out", "held-out-users"),
                      "vae": ("leave-last-out", "held-out-users")}
"""The splits each autoencoder architecture can be evaluated on (autorec: rating-level rmse/mae;
dae/vae: ranking from a user's fold-in history)."""


@dataclass(frozen=True, kw_only=True)
class AutoencoderDataConfig(DataConfig):
    """``DataConfig`` whose ``split: auto`` picks the architecture's default: ``hash`` (explicit
    ``rmse``/``mae``) for autorec, ``leave-last-out`` (full-catalogue ranking) for dae/vae."""

    split: Literal["auto", "hash", "leave-last-out", "time", "held-out-users", "predefined"] = "auto"
    supported_splits: typing.ClassVar[tuple[str, ...]] = SPLITS


@dataclass(frozen=True, kw_only=True)
class MultAutoencoderConfig:
    """Mult-DAE / Mult-VAE (Liang et al. 2018): a user's seen movies (L2-normalised multi-hot,
    input dropout) -> ``encoder_layers`` (tanh) -> ``latent_dim`` -> mirrored decoder -> softmax
    over the catalogue. The VAE's KL weight grows linearly from 0 to ``kl_anneal_cap`` over the
    first ``kl_anneal_epochs`` epochs (0 = the cap from the first step)."""

    encoder_layers: tuple[int, ...] = (600,)
    latent_dim: int = 200
    dropout: float = 0.5
    l2_regularization: float = 0.0
    kl_anneal_cap: float = 0.2
    kl_anneal_epochs: int = 20

    def validate(self, path: str) -> None:
        for i, size in enumerate(self.encoder_layers):
            positive(size, f"{path}.encoder_layers[{i}]")
        positive(self.latent_dim, f"{path}.latent_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout must be in [0, 1), got {self.dropout}")
        positive(self.l2_regularization, f"{path}.l2_regularization", allow_zero=True)
        if not 0.0 <= self.kl_anneal_cap <= 1.0:
            raise ConfigError(f"{path}.kl_anneal_cap must be in [0, 1], got {self.kl_anneal_cap}")
        positive(self.kl_anneal_epochs, f"{path}.kl_anneal_epochs", allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class AutoencoderModelConfig:
    """Autoencoder collaborative filtering: ``architecture`` picks the section that applies."""

    architecture: Literal["autorec", "dae", "vae"] = "autorec"
    autorec: AutoRecConfig = field(default_factory=AutoRecConfig)
    mult: MultAutoencoderConfig = field(default_factory=MultAutoencoderConfig)


@dataclass(frozen=True, kw_only=True)
class AutoencoderTrainConfig(TrainConfig):
    """``TrainConfig`` with the autoencoder defaults (a batch is movies for autorec, users for dae/vae)."""

    epochs: int = 300
    batch_size: int = 256
    early_stopping_patience: int = 20
    supported_distributions: typing.ClassVar[tuple[str, ...]] = SYNCHRONOUS_DISTRIBUTIONS
    distribution_note: typing.ClassVar[str] = (
        "an autoencoder's first and last layers are dense over every user or item and read whole by every "
        "step, so parameter servers would send them to every worker each step: use multi_worker_mirrored")
    supported_sample_weights: typing.ClassVar[tuple[str, ...]] = SAMPLE_WEIGHTS  # dae / vae only (AutoencoderConfig)


@dataclass(frozen=True, kw_only=True)
class AutoencoderEvalConfig(EvalConfig):
    ks: tuple[int, ...] = (10, 50)


@dataclass(frozen=True, kw_only=True)
class AutoencoderExportConfig(ExportConfig):
    """``ExportConfig`` plus ``fold_in_l2``: ridge penalty of AutoRec's fold-in of a new user."""

    model_name: str = "autoencoder"
    fold_in_l2: float = 10.0

    def validate(self, path: str) -> None:
        super().validate(path)
        positive(self.fold_in_l2, f"{path}.fold_in_l2")


@dataclass(frozen=True, kw_only=True)
class AutoencoderConfig(TaskConfig):
    """The whole configuration of a ``train autoencoder`` run."""

    task: Literal["autoencoder"] = "autoencoder"
    output_dir: str = "runs/autoencoder"
    data: AutoencoderDataConfig = field(default_factory=AutoencoderDataConfig)
    model: AutoencoderModelConfig = field(default_factory=AutoencoderModelConfig)
    train: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)
    eval: AutoencoderEvalConfig = field(default_factory=AutoencoderEvalConfig)
    export: AutoencoderExportConfig = field(default_factory=AutoencoderExportConfig)

    def __post_init__(self) -> None:
        arch, split = self.model.architecture, self.data.split
        if split != "auto" and split not in AUTOENCODER_SPLITS[arch]:
            raise ConfigError(f"data.split must be {' or '.join(AUTOENCODER_SPLITS[arch])} (or auto) for "
                              f"model.architecture={arch}, got {split}")
        if arch == "autorec" and self.train.sample_weight != "none":
            raise ConfigError(f"train.sample_weight={self.train.sample_weight} weighs implicit interactions of "
                              "model.architecture=dae or vae; autorec regresses the ratings: set train.sample_weight=none")
        m = self.model.mult
        if arch == "vae" and m.kl_anneal_cap > 0 and m.kl_anneal_epochs > self.train.epochs:
            raise ConfigError(
                f"model.mult.kl_anneal_epochs ({m.kl_anneal_epochs}) must be <= train.epochs "
                f"({self.train.epochs}): the KL weight would never reach model.mult.kl_anneal_cap")
        check_typed_features(self, _source_features(self.data))

    @property
    def split_name(self) -> str:
        """The split this run uses (``auto`` resolved by architecture)."""
        return AUTOENCODER_PROTOCOL[self.model.architecture] if self.data.split == "auto" else self.data.split

    @property
    def predicts_ratings(self) -> bool:
        return self.model.architecture == "autorec"


# --------------------------------------------------------------------------- multitask task


@dataclass(frozen=True, kw_only=True)
class MultitaskModelConfig(RetrievalModelConfig):
    """The two-tower retrieval model plus a rating head on the same towers (the TFRS multitask
    tutorial): loss = ``retrieval_weight`` x in-batch softmax + ``rating_weight`` x rating MSE.

    The rating head is ``rating_layers`` Dense(ReLU) layers and a linear output over the
    concatenated query and candidate vectors, plus the mean training rating; predictions are clipped
    to [``rating_min``, ``rating_max``]. ``1/0`` trains retrieval only, ``0/1`` ratings only.
    """

    objective: typing.ClassVar[str] = "explicit"
    """The rating head regresses explicit ratings (what the ranking exporter's ``rating`` output means)."""

    retrieval_weight: float = 1.0
    rating_weight: float = 100.0
    """The in-batch softmax loss is a sum over the batch (hundreds per batch of 256) against a rating MSE
    near 1: 100 (with ``history_length: auto``) was selected on validation over 1, 10 and 1000
    (``configs/selection/multitask.yaml``)."""
    rating_layers: tuple[int, ...] = (256, 128)
    rating_min: float = 1.0
    rating_max: float = 5.0

    def validate(self, path: str) -> None:
        super().validate(path)
        positive(self.retrieval_weight, f"{path}.retrieval_weight", allow_zero=True)
        positive(self.rating_weight, f"{path}.rating_weight", allow_zero=True)
        if self.retrieval_weight == 0 and self.rating_weight == 0:
            raise ConfigError(f"{path}.retrieval_weight and {path}.rating_weight are both 0: nothing would be "
                              "trained; set at least one of them > 0")
        for i, size in enumerate(self.rating_layers):
            positive(size, f"{path}.rating_layers[{i}]")
        if not self.rating_max > self.rating_min:
            raise ConfigError(f"{path}.rating_max ({self.rating_max}) must be > {path}.rating_min "
                              f"({self.rating_min}): the rating range is empty")


@dataclass(frozen=True, kw_only=True)
class MultitaskTrainConfig(TrainConfig):
    """``TrainConfig`` of the multitask task."""


@dataclass(frozen=True, kw_only=True)
class MultitaskExportConfig(RetrievalExportConfig):
    model_name: str = "multitask"


@dataclass(frozen=True, kw_only=True)
class MultitaskConfig(RetrievalConfig):
    """The whole configuration of a ``train multitask`` run: the retrieval config with the
    multitask model, one-machine training and the ``multitask`` export name."""

    task: Literal["multitask"] = "multitask"  # type: ignore[assignment]
    output_dir: str = "runs/multitask"
    model: MultitaskModelConfig = field(default_factory=MultitaskModelConfig)
    train: MultitaskTrainConfig = field(default_factory=MultitaskTrainConfig)
    export: MultitaskExportConfig = field(default_factory=MultitaskExportConfig)

    @property
    def reports_ratings(self) -> bool:
        return True


# --------------------------------------------------------------------------- the task registry


@dataclass(frozen=True)
class TaskEntry:
    """One registered task: its name, top-level config class, the module implementing it (a
    :class:`tfrs_lab.training.task.Task` named ``TASK`` in that module) and a one-line summary."""

    name: str
    config_class: type
    module: str
    summary: str


TASKS: dict[str, TaskEntry] = {e.name: e for e in (
    TaskEntry("retrieval", RetrievalConfig, "tfrs_lab.training.retrieval",
              "two-tower retrieval with a ScaNN index (hash or leave-last-out)"),
    TaskEntry("ranking", RankingConfig, "tfrs_lab.training.ranking",
              "rating / click prediction: MF, NCF, DCN, AutoRec"),
    TaskEntry("sequential", SequentialConfig, "tfrs_lab.training.sequential",
              "next-item prediction from the user's history (SASRec-style transformer, GRU)"),
    TaskEntry("autoencoder", AutoencoderConfig, "tfrs_lab.training.autoencoder",
              "AutoRec ratings and Mult-DAE/VAE top-K from interaction vectors"),
    TaskEntry("multitask", MultitaskConfig, "tfrs_lab.training.multitask",
              "retrieval and rating heads on shared towers, weighted losses (TFRS multitask)"),
)}
"""The one task registry: ``train``, ``tune``, the components, the benchmarks and the tuning
spaces all take their task lists from it. Adding a task: its config class above, its module under
``tfrs_lab/training/`` (defining ``TASK``), one entry here and ``configs/<task>.yaml``."""


def task_entry(task: str) -> TaskEntry:
    """The registry entry of ``task``; ConfigError naming the choices when it is unknown."""
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}': choose one of {', '.join(TASKS)}")
    return TASKS[task]

CONFIG_PACKAGE = "tfrs_lab.configs"
"""The package of the shipped configs: ``configs/`` of the checkout, installed as package data."""
SHIPPED_SUFFIXES = (".yaml", ".config")
"""Suffixes of the shipped config files (task configs, search spaces, pipelines, serving configs)."""


def shipped_config(name: str = "") -> Path:
    """The shipped config file ``name`` (relative to ``configs/``, e.g. ``tuning/ranking.yaml``), or
    the folder itself for ``""``.

    Resolved through ``importlib.resources``, so it is the checkout's ``configs/`` in an editable
    install and ``site-packages/tfrs_lab/configs/`` in an installed wheel. ConfigError for a
    ``name`` that is not shipped.
    """
    try:
        root = resources.files(CONFIG_PACKAGE)
    except ModuleNotFoundError as e:  # an editable install made before configs/ became a package
        raise RuntimeError(f"{CONFIG_PACKAGE} is not installed: reinstall the project (pip install -e .)") from e
    if not isinstance(root, Path):  # e.g. a zip import: readers and users need real files
        raise RuntimeError(f"{CONFIG_PACKAGE} must be installed as files on disk, found {root!r}")
    if not name:
        return root
    path = root / name
    if not path.is_file():
        raise ConfigError(f"{name!r} is not a shipped config: choose one of {', '.join(shipped_config_files())}")
    return path


def shipped_config_files() -> list[str]:
    """Every shipped config file, as paths relative to :func:`shipped_config` ``()``, sorted."""
    root = shipped_config()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in SHIPPED_SUFFIXES)


CONFIG_DIR = shipped_config()
"""The shipped configs folder (see :func:`shipped_config`)."""



# --------------------------------------------------------------------------- loading


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1) plus YAML 1.2 floats, so ``1e-3`` and ``5E4`` are numbers
    rather than strings (YAML 1.1 wants ``1.0e-3``), in config files and in ``--set`` values."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml_text(text: str) -> Any:
    """``text`` parsed as YAML the way config files and ``--set`` values are (safe, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | os.PathLike, *, what: str = "config file", flag: str = "--config") -> Any:
    """The parsed YAML of ``path`` (``None`` when empty); ConfigError naming ``what`` and ``flag``
    when the file is missing or not YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} does not exist: pass an existing YAML file to {flag}")
    try:
        return load_yaml_text(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {str(p)!r} is not valid YAML: {e}".replace("\n", " ")) from e


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(Path(path))!r} must hold a mapping at the top level")
    return data


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"model.embedding_dim=32"`` -> ``{"model": {"embedding_dim": 32}}`` (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, e.g. model.embedding_dim=32; got {text!r}")
    try:
        value = load_yaml_text(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from e
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def default_config_file(task: str) -> Path:
    """The shipped ``configs/<task>.yaml`` (see :func:`shipped_config`); it need not exist."""
    return CONFIG_DIR / f"{task}.yaml"


def load_config(
    task: str,
    files: Sequence[str | os.PathLike] = (),
    overrides: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> RetrievalConfig:
    """Resolves the config of ``task``: defaults < each file in ``files`` < ``extra`` < ``overrides``.

    ``extra`` carries values from dedicated CLI flags (``--epochs``, ``--split`` …) as a nested dict.
    """
    config_class = task_entry(task).config_class
    merged: dict[str, Any] = {}
    for f in files:
        merged = _merge(merged, _read_yaml(f))
    if extra:
        merged = _merge(merged, extra)
    for o in overrides:
        merged = _merge(merged, parse_override(o))
    if merged.get("task", task) != task:
        raise ConfigError(f"task: the config is for '{merged['task']}' but you ran '{task}'")
    return _build(config_class, merged)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain YAML-friendly dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML (loadable again with ``--config``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
