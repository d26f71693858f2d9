"""``model.history_length: auto``: the retrieval history length as a rule of the training rows
(:func:`tfrs_lab.training.retrieval.auto_history_length`): the rule's values, that it reads the
training rows only, that a run writes the resolved integer to ``config.yaml``, and that a bad value
is refused in one line naming the field and the fix, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.data.splits import make_split
from tfrs_lab.train import main
from tfrs_lab.training.retrieval import (AUTO_HISTORY_RANGE, AUTO_HISTORY_SUPPORT, auto_history_length,
                                         hyperparameters, resolve_history_length)


def items_with(rows_per_item: int, num_items: int = 40) -> np.ndarray:
    """Training item ids in which each of ``num_items`` items appears ``rows_per_item`` times."""
    return np.repeat([f"m{i}" for i in range(num_items)], rows_per_item)


def test_auto_history_length_grows_as_items_get_rarer():
    lo, hi = AUTO_HISTORY_RANGE
    assert auto_history_length(items_with(500)) == lo  # every item seen often: a short, recent history
    assert auto_history_length(items_with(2)) == hi  # most items seen a handful of times: the longest
    assert auto_history_length(items_with(40)) == round(AUTO_HISTORY_SUPPORT / 40)  # in between: support / rate
    lengths = [auto_history_length(items_with(n)) for n in (2, 5, 20, 40, 60, 100, 500)]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) >= 3


def test_auto_history_length_depends_on_the_counts_not_the_id_type():
    ids = items_with(25)
    codes = np.unique(ids, return_inverse=True)[1]
    assert auto_history_length(ids) == auto_history_length(codes) == auto_history_length(ids[::-1])
    assert auto_history_length(np.array([], dtype=object)) == AUTO_HISTORY_RANGE[0]


def test_the_rule_reads_the_training_rows_only(synthetic_data):
    cfg = load_config("retrieval", overrides=["model.history_length=auto", "data.split=hash"])
    split = make_split("hash", synthetic_data.ratings)
    resolved = resolve_history_length(cfg, synthetic_data, split.train)
    assert resolved.model.history_length == auto_history_length(synthetic_data.ratings["movie_id"][split.train])
    # every validation / test row's item made one and the same: the rule is unchanged
    ratings = dict(synthetic_data.ratings)
    held_out = np.concatenate([split.validation, split.test])
    movies = ratings["movie_id"].copy()
    movies[held_out] = movies[split.train[0]]
    ratings["movie_id"] = movies
    changed = dataclasses.replace(synthetic_data, ratings=ratings)
    assert resolve_history_length(cfg, changed, split.train).model.history_length == resolved.model.history_length
    # an integer is kept as it is
    fixed = load_config("retrieval", overrides=["model.history_length=7"])
    assert resolve_history_length(fixed, synthetic_data, split.train) is fixed


def test_unresolved_auto_is_refused_by_the_model_code():
    cfg = load_config("retrieval", overrides=["model.history_length=auto"])
    with pytest.raises(ValueError, match="resolved from the training rows first"):
        hyperparameters(cfg, True)


@pytest.mark.parametrize("value", ["long", "0", "-3", "2.5"])
def test_a_history_length_that_is_neither_a_positive_integer_nor_auto_is_refused(value):
    with pytest.raises(ConfigError, match="model.history_length"):
        load_config("retrieval", overrides=[f"model.history_length={value}"])


def test_the_cli_refuses_a_bad_history_length_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["retrieval", "--dataset", "synthetic", "--set", "model.history_length=longest",
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.history_length must be a positive integer or auto, got 'longest'" in err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_a_run_with_auto_writes_the_resolved_length(tmp_path, synthetic_data):
    run = tfrs_lab.train("retrieval", data=synthetic_data, output_dir=tmp_path / "run", verbose=0,
                         overrides=["model.history_length=auto", "data.split=leave-last-out", "train.epochs=1",
                                    "model.embedding_dim=8", "model.id_embedding_dim=8", "export.verify=false",
                                    "export.index=brute_force", "export.k=10", "export.max_exclude=20"])
    split = make_split("leave-last-out", synthetic_data.ratings)
    expected = auto_history_length(synthetic_data.ratings["movie_id"][split.train])
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["history_length"] == expected == run.config.model.history_length
    assert "recall@10" in run.metrics  # trained, evaluated and exported with the integer
