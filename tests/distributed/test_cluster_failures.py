"""A lost cluster peer during training is one ``error:`` line with exit code 1 (``RunFailed``)
naming what was kept and how to resume; single-process errors pass through unchanged. The real
killed-worker runs: test_killed_worker_tasks.py and test_cluster_training.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tfrs_lab.cli import FAILURE_EXIT, run_cli
from tfrs_lab.config import load_config
from tfrs_lab.training.distribute import Distribution, cluster_failures


def lost_peer() -> None:
    raise tf.errors.UnavailableError(None, None, "Collective ops is aborted by:\nfailed to connect to all addresses")


def test_a_lost_peer_is_one_line_naming_the_output_and_the_backup(tmp_path, capsys):
    cfg = load_config("ranking", [], [])
    dist = Distribution("multi_worker_mirrored", tf.distribute.get_strategy(), is_chief=True)

    def body() -> int:
        with cluster_failures(dist, cfg.train, tmp_path / "run"):
            lost_peer()
        return 0

    assert run_cli(body) == FAILURE_EXIT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: a task of the multi_worker_mirrored cluster stopped")
    assert "UnavailableError: Collective ops is aborted by: failed to connect" in err
    assert f"nothing was published to {tmp_path / 'run'}" in err and str(tmp_path / ".run.backup") in err


@pytest.mark.parametrize("name", ["default", "mirrored"])
def test_single_process_errors_pass_through(name, tmp_path):
    dist = Distribution(name, tf.distribute.get_strategy())
    with pytest.raises(tf.errors.UnavailableError):
        with cluster_failures(dist, load_config("ranking", [], []).train, Path(tmp_path)):
            lost_peer()


def test_other_errors_of_a_cluster_run_are_not_relabelled(tmp_path):
    dist = Distribution("multi_worker_mirrored", tf.distribute.get_strategy(), is_chief=True)
    with pytest.raises(ValueError):
        with cluster_failures(dist, load_config("ranking", [], []).train, tmp_path):
            raise ValueError("a bug, not a lost peer")
