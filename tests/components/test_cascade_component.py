"""The Cascade component: a retrieval Trainer's and a ranking Trainer's runs in, the cascade
SavedModel out (``Format-Serving/``, as a Trainer's model), answering like ``export_cascade``; wrong
wiring fails with the exporter's reason; its cache key covers the exporter's code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import ComponentError
from tfrs_lab.components.cascade import Cascade

DATA = ["--dataset", "synthetic", "--epochs", "1", "--set", "data.synthetic.num_users=50",
        "--set", "data.synthetic.num_movies=30", "--set", "data.synthetic.ratings_per_user=12",
        "--set", "export.verify=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Artifact]:
    """ModelRun artifacts of two tiny Trainer-style runs (the run directory is the artifact)."""
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("cascade-component")
    assert main(["retrieval", *DATA, "--set", "export.k=12", "--set", "export.index=brute_force",
                 "--output-dir", str(root / "ret")]) == 0
    assert main(["ranking", *DATA, "--output-dir", str(root / "rank")]) == 0
    return {name: Artifact(type_name=A.MODEL_RUN, uri=str(root / name), properties={"task": task})
            for name, task in (("ret", "retrieval"), ("rank", "ranking"))}


def test_builds_the_cascade_as_a_model_artifact(runs, tmp_path):
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig
    from tfrs_lab.export.cascade import export_cascade

    model = Cascade(candidates=10, k=4, model_name="picks").run(
        tmp_path / "component", retrieval_run=runs["ret"], ranking_run=runs["rank"])["model"]
    assert model.properties["task"] == "cascade" and model.properties["model_name"] == "picks"
    assert sorted(p.name for p in model.path.iterdir()) == [A.SERVING_DIR]  # the build folder is gone
    direct = export_cascade(runs["ret"].uri, runs["rank"].uri, tmp_path / "direct", candidates=10, k=4, verify=False)
    users = tf.constant(["1", "2", "3", "nobody"])
    answers = [tf.saved_model.load(str(path)).signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: users})
               for path in (model.serving_dir, direct)]
    assert answers[0][sig.ITEM_IDS].shape == (4, 4)
    for name in (sig.ITEM_IDS, sig.SCORES, sig.RETRIEVAL_SCORES):
        np.testing.assert_array_equal(answers[0][name].numpy(), answers[1][name].numpy())


def test_two_retrieval_runs_fail_with_the_reason(runs, tmp_path):
    with pytest.raises(ComponentError, match=r"cascade: --ranking .* is a retrieval run, not a ranking run"):
        Cascade(id="cascade").run(tmp_path, retrieval_run=runs["ret"], ranking_run=runs["ret"])


def test_cache_key_covers_the_exporter_code():
    from tfrs_lab.components import code_closure as cc

    repo = Path(__file__).resolve().parents[2]
    entries = cc.module_entries("tfrs_lab.components.cascade", str(repo / "components" / "cascade.py"))
    reached = cc.closure(entries, cc.default_roots())
    assert {"tfrs_lab.export.cascade", "tfrs_lab.export.verify", "tfrs_lab.export.warmup"} <= set(reached)
