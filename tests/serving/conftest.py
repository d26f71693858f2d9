"""Fixtures for the serving tests (servers are always stopped in teardown)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving_fixtures import (
    ExampleModel,
    _set_method_names,
    install_version,
    make_server,
    save_scann_model,
    save_table_model,
)
from tfrs_lab.export import signatures as sig
from tfrs_lab.serving.config import ModelConfig
from tfrs_lab.serving.server import ModelServer

import tensorflow as tf


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Version directories built once per session: table v1/v2, example model, ScaNN model."""
    root = tmp_path_factory.mktemp("models")
    store = {
        "table_v1": save_table_model(str(root / "table_v1"), 1),
        "table_v2": save_table_model(str(root / "table_v2"), 2),
    }
    ex = ExampleModel()
    ex_dir = str(root / "examples")
    tf.saved_model.save(ex, ex_dir, signatures={"regress_x": ex.regress, "classify_x": ex.classify, sig.SERVING_DEFAULT: ex.regress})
    _set_method_names(ex_dir, {"regress_x": "tensorflow/serving/regress", "classify_x": "tensorflow/serving/classify"})
    store["examples"] = ex_dir
    store["scann"] = save_scann_model(str(root / "scann"))
    return store


@pytest.fixture(scope="module")
def served(model_store: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """A server with retrieval (v1, label stable), examples and scann models (static paths)."""
    root = tmp_path_factory.mktemp("served")
    install_version(model_store["table_v1"], str(root / "retrieval"), 1)
    install_version(model_store["examples"], str(root / "examples"), 1)
    install_version(model_store["scann"], str(root / "scann"), 1)
    server = make_server([
        ModelConfig(name="retrieval", base_path=str(root / "retrieval"), labels={"stable": 1}),
        ModelConfig(name="examples", base_path=str(root / "examples")),
        ModelConfig(name="scann", base_path=str(root / "scann")),
    ], poll_interval_s=0)
    try:
        yield server
    finally:
        server.stop(grace_s=1)
