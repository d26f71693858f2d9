"""``train.optimizer: auto``, one rule for every task (:func:`tfrs_lab.training.common.auto_optimizer`):
``adam`` up to ``AUTO_OPTIMIZER_MAX_PARAMETERS`` parameters of the model's embedding tables with sparse
gradients, ``lazy_adam`` above. Each task counts its own tables (``Task.embedding_parameters``, from the
config and the vocabularies, without building the model), and the count is what a real step of the
built model updates row-wise; explicit names are kept; the run writes the resolved name to
``config.yaml`` and ``metrics.json`` and trains with it; a bad value is refused in one line naming the
field, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.config import TASKS, default_config_file, load_config
from tfrs_lab.data.splits import make_split
from tfrs_lab.train import main
from tfrs_lab.training.common import AUTO_OPTIMIZER_MAX_PARAMETERS, auto_optimizer, optimizer, resolve_optimizer
from tfrs_lab.training.optimizers import LazyAdam
from tfrs_lab.training.task import get_task

TASK_NAMES = list(TASKS)
SPLIT = {"retrieval": "hash", "ranking": "hash", "multitask": "hash", "sequential": "leave-last-out",
         "autoencoder": "auto"}
#: per task, overrides whose sparse tables exceed the threshold on the small synthetic data (None: no such config)
LARGE = {"retrieval": ["model.id_embedding_dim=20000"], "multitask": ["model.id_embedding_dim=20000"],
         "ranking": ["model.architecture=mf", "model.embedding_dim=20000"],
         "sequential": ["model.max_length=2000", "model.embedding_dim=1024"], "autoencoder": None}


def _vocab(task: str, data, overrides=()):
    cfg = load_config(task, overrides=[f"data.split={SPLIT[task]}", *overrides])
    split = make_split(cfg.split_name, data.ratings)
    return cfg, split, get_task(task).vocabularies(cfg, data, split.train)


def _sparse_gradient_shapes(model, loss_fn) -> dict[str, tuple[int, ...]]:
    """{variable name: shape} of the variables whose gradient in one real step is row-wise
    (``tf.IndexedSlices``): what ``lazy_adam`` updates by rows and ``adam`` in full."""
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.name: tuple(v.shape) for v, g in zip(model.trainable_variables, grads) if isinstance(g, tf.IndexedSlices)}


def test_the_rule_picks_adam_for_small_tables_and_lazy_adam_above_the_threshold():
    assert auto_optimizer((943 + 1682 + 2) * 64) == "adam"  # ML-100K retrieval
    assert auto_optimizer((1892 + 17632 + 2) * 64) == "adam"  # Last.fm 2K
    assert auto_optimizer(0) == "adam"  # no sparse tables (autoencoders)
    assert auto_optimizer(AUTO_OPTIMIZER_MAX_PARAMETERS) == "adam"
    assert auto_optimizer(AUTO_OPTIMIZER_MAX_PARAMETERS + 1) == "lazy_adam"
    assert auto_optimizer((162_541 + 59_048) * 64) == "lazy_adam"  # MovieLens 25M's tables


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_defaults_to_auto_in_the_dataclass_and_the_shipped_file(task):
    assert load_config(task).train.optimizer == "auto"
    assert load_config(task, [default_config_file(task)]).train.optimizer == "auto"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_small_data_resolves_to_adam_and_large_tables_to_lazy_adam(task, synthetic_data):
    cfg, _, vocab = _vocab(task, synthetic_data)
    t = get_task(task)
    assert resolve_optimizer(cfg, t.embedding_parameters(cfg, vocab)).train.optimizer == "adam"
    if LARGE[task] is None:  # every weight has a dense gradient: nothing to count, at any size
        for over in (["model.architecture=autorec", "model.autorec.hidden_units=5000"],
                     ["model.architecture=vae", "model.mult.encoder_layers=[5000]"]):
            assert t.embedding_parameters(load_config(task, overrides=over), vocab) == 0
        return
    large, _, vocab = _vocab(task, synthetic_data, LARGE[task])
    parameters = t.embedding_parameters(large, vocab)
    assert parameters > AUTO_OPTIMIZER_MAX_PARAMETERS
    resolved = resolve_optimizer(large, parameters)
    assert resolved.train.optimizer == "lazy_adam"
    assert dataclasses.replace(resolved, train=large.train) == large  # nothing else changed
    for name in ("adam", "lazy_adam", "adagrad", "sgd"):  # explicit names are kept, at any size
        fixed = dataclasses.replace(large, train=dataclasses.replace(large.train, optimizer=name))
        assert resolve_optimizer(fixed, parameters) is fixed


@pytest.mark.parametrize("task", ["retrieval", "multitask"])
def test_retrieval_counts_its_user_and_item_id_tables(task, synthetic_data):
    from tfrs_lab.models.retrieval import RetrievalModel
    from tfrs_lab.training.retrieval import hyperparameters

    cfg, _, vocab = _vocab(task, synthetic_data, ["model.history_length=5"])
    model = RetrievalModel(vocab, hyperparameters(cfg, synthetic_data.has_user_features))
    tables = [model.user_embedding, model.movie_embedding]
    assert get_task(task).embedding_parameters(cfg, vocab) == sum(e.input_dim * e.output_dim for e in tables)
    assert get_task(task).embedding_parameters(cfg, vocab) == (120 + 1 + 80 + 1) * cfg.model.id_embedding_dim


@pytest.mark.parametrize("architecture, history, biases", [
    ("mf", 0, True), ("gmf", 0, False), ("mlp", 3, False), ("neumf", 3, True), ("dcn", 0, True), ("autorec", 0, True)])
def test_ranking_counts_the_id_tables_a_real_step_updates_by_rows(architecture, history, biases, synthetic_data):
    from tfrs_lab.training import ranking

    cfg, split, vocab = _vocab("ranking", synthetic_data, [
        f"model.architecture={architecture}", f"model.history_length={history}", f"model.use_biases={biases}",
        "model.embedding_dim=8", "model.autorec.hidden_units=16"])
    hp = ranking.hyperparameters(cfg)
    train = ranking.split_columns(synthetic_data, split, hp)["train"]
    model = ranking.make_model(vocab, hp, train, float(np.mean(train["label"])))
    batch = next(iter(tf.data.Dataset.from_tensors({k: v[:64] for k, v in train.items()})))
    sparse = _sparse_gradient_shapes(model, lambda: model.compute_loss(batch, training=True))
    # the user / item rows (ids, SVD++ history, biases); DCN's small feature tables are not counted
    id_tables = [int(np.prod(shape)) for shape in sparse.values() if shape[0] in (vocab.num_users, vocab.num_movies)]
    assert ranking.TASK.embedding_parameters(cfg, vocab) == sum(id_tables), sparse
    if architecture == "autorec":  # the decoder's per-user bias (its kernel's gradient is dense)
        assert len(id_tables) == 1 + 2 * biases
    else:  # user + item (+ SVD++ history) per id pair, NeuMF two pairs; + the two bias tables
        assert len(id_tables) == (2 if architecture == "neumf" else 1) * (2 + (history > 0)) + 2 * biases


@pytest.mark.parametrize("architecture, loss", [("transformer", "softmax"), ("transformer", "sampled_softmax"),
                                                ("gru", "sampled_softmax")])
def test_sequential_counts_what_a_real_step_updates_by_rows(architecture, loss, synthetic_data):
    from tfrs_lab.training import sequential

    cfg, _, vocab = _vocab("sequential", synthetic_data, [
        f"model.architecture={architecture}", f"model.loss={loss}", "model.max_length=6", "model.embedding_dim=8",
        "model.num_negatives=4", "train.optimizer=adam"])
    model = sequential.build_model(cfg, vocab)
    batch = {"inputs": tf.constant([[0, 1, 2, 3, 4, 5]]), "targets": tf.constant([[1, 2, 3, 4, 5, 6]])}
    sparse = _sparse_gradient_shapes(model, lambda: model.compute_loss(batch, training=True))
    # the item table is also the output layer: its gradient is dense, so only the position table counts
    assert sequential.TASK.embedding_parameters(cfg, vocab) == sum(int(np.prod(s)) for s in sparse.values()) == (
        6 * 8 if architecture == "transformer" else 0)


def test_unresolved_auto_is_refused_by_the_optimizer_factory():
    with pytest.raises(ValueError, match="resolved from the embedding tables first"):
        optimizer("auto", 0.001)


@pytest.mark.parametrize("task", ["retrieval", "ranking", "autoencoder"])
def test_the_cli_refuses_a_bad_optimizer_in_one_line(task, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([task, "--dataset", "synthetic", "--set", "train.optimizer=automatic", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "train.optimizer must be one of adam, lazy_adam, adagrad, sgd, auto; got 'automatic'" in err
    assert not out.exists()  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("task, sets, dimension", [
    ("retrieval", ["data.split=leave-last-out", "model.embedding_dim=8", "export.index=brute_force", "export.k=10",
                   "export.max_exclude=20"], "model.id_embedding_dim"),
    ("ranking", ["model.architecture=mf", "model.history_length=0"], "model.embedding_dim")])
def test_a_run_with_auto_trains_with_the_resolved_optimizer_and_records_it(task, sets, dimension, tmp_path,
                                                                           synthetic_data):
    runs = {}
    for dim in (8, 20_000):  # synthetic's ~200 table rows: 1.6k parameters, then ~4M (over the threshold)
        run = tfrs_lab.train(task, data=synthetic_data, output_dir=tmp_path / str(dim), verbose=0,
                             overrides=[*sets, "train.epochs=1", "export.verify=false", f"{dimension}={dim}"])
        written = yaml.safe_load((tmp_path / str(dim) / "config.yaml").read_text())
        metrics = json.loads((tmp_path / str(dim) / "metrics.json").read_text())
        assert written["train"]["optimizer"] == metrics["optimizer"] == run.config.train.optimizer
        runs[dim] = run
    assert runs[8].config.train.optimizer == "adam"
    assert type(runs[8].model.optimizer) is tf.keras.optimizers.Adam  # pylint: disable=unidiomatic-typecheck
    assert runs[20_000].config.train.optimizer == "lazy_adam"
    assert isinstance(runs[20_000].model.optimizer, LazyAdam)
