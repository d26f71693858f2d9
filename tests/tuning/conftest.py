"""Fixtures of the tuning tests: tiny search spaces over the session's synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml



@pytest.fixture(scope="session")
def data_args(synthetic_data, synthetic_spec, synthetic_data_dir) -> list[str]:
    """CLI flags selecting the session's synthetic data (already prepared: no process prepares it twice)."""
    s = synthetic_spec
    return ["--dataset", "synthetic", "--data-dir", str(synthetic_data_dir),
            "--set", f"data.synthetic.num_users={s.num_users}", "--set", f"data.synthetic.num_movies={s.num_movies}",
            "--set", f"data.synthetic.ratings_per_user={s.ratings_per_user}", "--set", f"data.synthetic.seed={s.seed}"]


TINY_RETRIEVAL_TRIAL = {"train": {"epochs": 2},
                        "export": {"verify": False, "index": "brute_force", "k": 20, "max_exclude": 20}}


def write_space(path: Path, hyperparameters: dict, *, task: str = "retrieval", objective="hit_rate@10",
                trial_config: dict | None = None, **more) -> Path:
    """Writes a search space YAML file and returns its path."""
    space = {"task": task, "objective": objective,
             "trial_config": TINY_RETRIEVAL_TRIAL if trial_config is None else trial_config,
             "hyperparameters": hyperparameters, **more}
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path
