"""``train.optimizer: auto``: retrieval's optimizer as a rule of the id tables' size
(:func:`tfrs_lab.training.retrieval.auto_optimizer`): ``adam`` up to
``AUTO_OPTIMIZER_MAX_PARAMETERS`` id-table parameters, ``lazy_adam`` above; the count equals the
model's tables and reads the training rows only; explicit names are kept; the run writes the resolved
name to ``config.yaml`` and ``metrics.json`` and trains with it; a bad value is refused in one line
naming the field, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError, default_config_file, load_config
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.splits import make_split
from tfrs_lab.train import main
from tfrs_lab.training.common import optimizer
from tfrs_lab.training.optimizers import LazyAdam
from tfrs_lab.training.retrieval import (AUTO_OPTIMIZER_MAX_PARAMETERS, TASK, auto_optimizer, id_table_parameters,
                                         resolve_optimizer)


def test_the_rule_picks_adam_for_small_tables_and_lazy_adam_above_the_threshold():
    assert auto_optimizer((943 + 1682 + 2) * 64) == "adam"  # ML-100K
    assert auto_optimizer((1892 + 17632 + 2) * 64) == "adam"  # Last.fm 2K
    assert auto_optimizer(AUTO_OPTIMIZER_MAX_PARAMETERS) == "adam"
    assert auto_optimizer(AUTO_OPTIMIZER_MAX_PARAMETERS + 1) == "lazy_adam"
    assert auto_optimizer((162_541 + 59_048) * 64) == "lazy_adam"  # MovieLens 25M's tables


def test_retrieval_defaults_to_auto_in_the_dataclass_and_the_shipped_file():
    assert load_config("retrieval").train.optimizer == "auto"
    assert load_config("retrieval", [default_config_file("retrieval")]).train.optimizer == "auto"


@pytest.mark.parametrize("split_name", ["hash", "leave-last-out"])
def test_the_count_is_the_models_id_tables_from_the_training_rows(synthetic_data, split_name):
    cfg = load_config("retrieval", overrides=[f"data.split={split_name}"])
    split = make_split(split_name, synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train,
                               **TASK.vocabulary_fit(cfg, True))
    want = (vocab.num_users + vocab.num_movies) * cfg.model.id_embedding_dim  # the two Embedding tables' rows
    assert id_table_parameters(cfg, synthetic_data, split.train) == want
    assert id_table_parameters(cfg, Interactions.from_data(synthetic_data), split.train) == want  # from the codes
    # fewer training rows: only the users those rows hold count
    some = split.train[np.isin(synthetic_data.ratings["user_id"][split.train],
                               np.unique(synthetic_data.ratings["user_id"])[:10])]
    assert id_table_parameters(cfg, synthetic_data, some) == (10 + 1 + vocab.num_movies) * cfg.model.id_embedding_dim


def test_auto_resolves_by_the_size_and_explicit_names_are_kept(synthetic_data):
    split = make_split("hash", synthetic_data.ratings)
    small = load_config("retrieval", overrides=["data.split=hash"])
    assert resolve_optimizer(small, synthetic_data, split.train).train.optimizer == "adam"
    rows = id_table_parameters(small, synthetic_data, split.train) // small.model.id_embedding_dim
    wide = f"model.id_embedding_dim={AUTO_OPTIMIZER_MAX_PARAMETERS // rows + 1}"  # same rows, over the threshold
    large = load_config("retrieval", overrides=["data.split=hash", wide])
    resolved = resolve_optimizer(large, synthetic_data, split.train)
    assert resolved.train.optimizer == "lazy_adam"
    assert dataclasses.replace(resolved, train=large.train) == large  # nothing else changed
    for name in ("adam", "lazy_adam", "adagrad", "sgd"):
        for over in ([], [wide]):
            fixed = load_config("retrieval", overrides=["data.split=hash", f"train.optimizer={name}", *over])
            assert resolve_optimizer(fixed, synthetic_data, split.train) is fixed
    # the task's data rules resolve it together with history_length: auto
    both = TASK.resolve_data_config(large, synthetic_data, split)
    assert both.train.optimizer == "lazy_adam" and isinstance(both.model.history_length, int)


def test_unresolved_auto_is_refused_by_the_optimizer_factory():
    with pytest.raises(ValueError, match="resolved from the training rows first"):
        optimizer("auto", 0.001)


def test_auto_is_retrievals_only():
    with pytest.raises(ConfigError, match=r"train\.optimizer must be one of adam, lazy_adam, adagrad, sgd; got 'auto'"):
        load_config("ranking", overrides=["train.optimizer=auto"])


def test_the_cli_refuses_a_bad_optimizer_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["retrieval", "--dataset", "synthetic", "--set", "train.optimizer=automatic",
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "train.optimizer must be one of adam, lazy_adam, adagrad, sgd, auto; got 'automatic'" in err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_a_run_with_auto_trains_with_the_resolved_optimizer_and_records_it(tmp_path, synthetic_data):
    sets = ["data.split=leave-last-out", "train.epochs=1", "model.embedding_dim=8", "export.verify=false",
            "export.index=brute_force", "export.k=10", "export.max_exclude=20"]
    runs = {}
    for dim in (8, 20_000):  # synthetic's ~200 table rows: 1.6k parameters, then ~4M (over the threshold)
        run = tfrs_lab.train("retrieval", data=synthetic_data, output_dir=tmp_path / str(dim), verbose=0,
                             overrides=[*sets, f"model.id_embedding_dim={dim}"])
        written = yaml.safe_load((tmp_path / str(dim) / "config.yaml").read_text())
        metrics = json.loads((tmp_path / str(dim) / "metrics.json").read_text())
        assert written["train"]["optimizer"] == metrics["optimizer"] == run.config.train.optimizer
        runs[dim] = run
    assert runs[8].config.train.optimizer == "adam"
    assert type(runs[8].model.optimizer) is tf.keras.optimizers.Adam  # pylint: disable=unidiomatic-typecheck
    assert runs[20_000].config.train.optimizer == "lazy_adam"
    assert isinstance(runs[20_000].model.optimizer, LazyAdam)
    assert "recall@10" in runs[8].metrics
