"""``model.autorec.hidden_units: auto``: ranking AutoRec's code size as a rule of the number of
distinct training items (:func:`tfrs_lab.training.autorec_size.auto_hidden_units`, shared with the
autoencoder task: tests/autoencoder/test_autorec_size.py): the rule's values at the data
sets it was selected on, that it reads the training rows only, that a run writes the resolved integer
to ``config.yaml``, and that a bad value is refused in one line
naming the field and the fix, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.train import main
from tfrs_lab.training.autorec_size import (AUTO_HIDDEN_PER_ITEM, AUTO_HIDDEN_RANGE, AUTO_HIDDEN_STEP,
                                           auto_hidden_units, resolve_hidden_units)
from tfrs_lab.training.ranking import hyperparameters

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
         "--set", "data.synthetic.ratings_per_user=25"]


def items_with(num_items: int, rows_per_item: int = 3) -> np.ndarray:
    """Training item ids in which each of ``num_items`` items appears ``rows_per_item`` times."""
    return np.repeat([f"m{i}" for i in range(num_items)], rows_per_item)


def units(items: np.ndarray) -> int:
    """The rule for ``items`` rated by 943 users (ML-100K's count: the memory cap never binds)."""
    return auto_hidden_units(items, np.arange(len(items)) % 943)


def test_auto_hidden_units_grows_with_the_training_items():
    lo, hi = AUTO_HIDDEN_RANGE
    counts = [0, 10, 200, 400, 600, 1_000, 1_637, 1_651, 2_500, 3_706, 20_000]
    sizes = [units(items_with(n)) for n in counts]
    assert sizes == sorted(sizes) and len(set(sizes)) >= 5  # more items, a larger code
    assert all(u % AUTO_HIDDEN_STEP == 0 and lo <= u <= hi for u in sizes)
    assert sizes[0] == lo and sizes[-1] == hi  # clipped at both ends
    assert units(items_with(1_000)) == round(AUTO_HIDDEN_PER_ITEM * 1_000 / 50) * 50  # in between: the rate
    # the selection's data sets (docs/tuning.md#ranking-explicit-autorec): each one's validation winner
    assert units(items_with(1_651)) == 500  # ML-100K hash
    assert units(items_with(1_637)) == 500  # ML-100K u1
    assert units(items_with(400)) == 100  # synthetic, 600 users x 400 movies
    assert units(items_with(200)) == 100  # synthetic-small, 300 users x 200 movies


def test_auto_hidden_units_counts_distinct_items_not_rows_or_id_types():
    ids = items_with(1_000, rows_per_item=2)
    codes = np.unique(ids, return_inverse=True)[1]
    assert units(ids) == units(codes) == units(ids[::-1])
    assert units(items_with(1_000, rows_per_item=40)) == units(ids)
    assert units(np.array([], dtype=object)) == AUTO_HIDDEN_RANGE[0]


def test_the_rule_reads_the_training_rows_only(synthetic_data):
    cfg = load_config("ranking")
    assert cfg.model.autorec.hidden_units == "auto"  # the shipped default
    split = make_split("hash", synthetic_data.ratings)
    resolved = resolve_hidden_units(cfg, synthetic_data, split.train)
    assert resolved.model.autorec.hidden_units == auto_hidden_units(
        synthetic_data.ratings["movie_id"][split.train], synthetic_data.ratings["user_id"][split.train])
    # every validation / test row's movie made a new one: the rule is unchanged
    ratings = dict(synthetic_data.ratings)
    held_out = np.concatenate([split.validation, split.test])
    movies = ratings["movie_id"].astype(object)
    movies[held_out] = [f"new{i}" for i in range(len(held_out))]
    ratings["movie_id"] = movies
    changed = dataclasses.replace(synthetic_data, ratings=ratings)
    assert resolve_hidden_units(cfg, changed, split.train) == resolved
    # everything else of the config is unchanged, and an integer is kept as it is
    assert resolved.model.autorec.dropout == cfg.model.autorec.dropout and resolved.train == cfg.train
    fixed = load_config("ranking", overrides=["model.autorec.hidden_units=64"])
    assert resolve_hidden_units(fixed, synthetic_data, split.train) is fixed


def test_unresolved_auto_is_refused_by_the_model_code():
    cfg = load_config("ranking")
    with pytest.raises(ValueError, match="resolved from the training rows first"):
        hyperparameters(cfg)
    assert hyperparameters(cfg, "mf").architecture == "mf"  # other architectures do not read it


@pytest.mark.parametrize("value", ["wide", "0", "-3", "2.5"])
def test_hidden_units_that_are_neither_a_positive_integer_nor_auto_are_refused(value):
    with pytest.raises(ConfigError, match="model.autorec.hidden_units"):
        load_config("ranking", overrides=[f"model.autorec.hidden_units={value}"])


@pytest.mark.parametrize("task, value, messages", [
    ("ranking", "wide", ["model.autorec.hidden_units must be a positive integer or auto, got 'wide'"]),
    ("autoencoder", "wide", ["model.autorec.hidden_units must be a positive integer or auto, got 'wide'"]),
])
def test_the_cli_refuses_bad_hidden_units_in_one_line(tmp_path, capsys, task, value, messages):
    out = tmp_path / "run"
    assert main([task, *SMALL, "--set", f"model.autorec.hidden_units={value}", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(m in err for m in messages), err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_a_run_with_auto_writes_the_resolved_units(tmp_path):
    # many movies for few ratings, so that the rule lands above its floor; its own data folder (the
    # session's holds one synthetic data set only: tests/data reads it as such)
    data = load_movielens("synthetic", synthetic=SyntheticSpec(num_users=150, num_movies=700, ratings_per_user=25,
                                                                seed=0), data_dir=tmp_path / "tfds")
    run = tfrs_lab.train("ranking", data=data, output_dir=tmp_path / "run", verbose=0,
                         overrides=["train.epochs=1", "export.verify=false"])
    split = make_split("hash", data.ratings)
    expected = auto_hidden_units(data.ratings["movie_id"][split.train], data.ratings["user_id"][split.train])
    assert AUTO_HIDDEN_RANGE[0] < expected < AUTO_HIDDEN_RANGE[1]
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["autorec"]["hidden_units"] == expected == run.config.model.autorec.hidden_units
    assert run.metrics["architecture"] == "autorec" and np.isfinite(run.metrics["rmse"])  # trained with the integer
    assert load_config("ranking", [tmp_path / "run" / "config.yaml"]).model.autorec.hidden_units == expected
