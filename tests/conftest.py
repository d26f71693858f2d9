"""Shared fixtures: small seeded synthetic MovieLens data, prepared once per test session."""

from __future__ import annotations

import logging
import pathlib

import pytest

import tfrs_lab  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any TensorFlow import)
from tfrs_lab.data.movielens import MovieLensData, load_movielens
from tfrs_lab.data.synthetic import SyntheticSpec

#: The small spec every fast test uses (about 3k ratings).
SMALL_SPEC = SyntheticSpec(num_users=120, num_movies=80, ratings_per_user=25, seed=0)


@pytest.fixture(scope="session")
def synthetic_spec() -> SyntheticSpec:
    """The spec behind :func:`synthetic_data`."""
    return SMALL_SPEC


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The session's TFDS data folder holding the prepared synthetic data."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def synthetic_data(synthetic_spec: SyntheticSpec, synthetic_data_dir: pathlib.Path) -> MovieLensData:
    """``load_movielens("synthetic", ...)`` with :data:`SMALL_SPEC` (prepared through real TFDS)."""
    return load_movielens("synthetic", synthetic=synthetic_spec, data_dir=synthetic_data_dir)


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_cache(tmp_path_factory: pytest.TempPathFactory):
    """CLI tests prepare data under the default cache: keep it inside the session's temp dir,
    never in the user's ``~/.cache``."""
    from tfrs_lab.data.movielens import DATA_DIR_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_DIR_ENV, str(tmp_path_factory.mktemp("default-data-cache")))
        yield


@pytest.fixture(autouse=True)
def restore_root_logging():
    """CLI entry points called in-process configure logging (a handler on the root logger bound to
    the test's captured stderr, a level): undo it after every test, so a later test never writes to a
    closed capture stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _string_constant_shapes(saved_model_dir: pathlib.Path) -> list[list[int]]:
    """Shapes of the string constants in a SavedModel's graph and its functions."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((pathlib.Path(saved_model_dir) / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    return [[d.size for d in n.attr["value"].tensor.tensor_shape.dim] for n in nodes
            if n.op == "Const" and n.attr["dtype"].type == tf.string.as_datatype_enum]


@pytest.fixture(scope="session")
def string_constant_shapes():
    """``f(saved_model_dir) -> [shape, ...]``: the string constants of an export's graph (a per-user
    table kept as a constant would show up here; the exports keep such tables as variables)."""
    return _string_constant_shapes
