"""Helpers for the autoencoder tests: fast settings on the session's synthetic data, planted clusters."""

from __future__ import annotations

import numpy as np
from tfrs_lab.config import load_config

#: Small, fast settings for each architecture (tests only; defaults are tuned for MovieLens).
FAST = {
    "autorec": ["model.autorec.hidden_units=64", "model.autorec.l2_regularization=0.003",
                "train.learning_rate=0.01", "train.batch_size=8", "train.epochs=60",
                "train.early_stopping_patience=8"],
    "dae": ["model.mult.encoder_layers=[]", "model.mult.latent_dim=32", "train.learning_rate=0.005",
            "train.batch_size=16", "train.epochs=40", "train.early_stopping_patience=8"],
    "vae": ["model.mult.encoder_layers=[64]", "model.mult.latent_dim=16", "model.mult.kl_anneal_epochs=10",
            "train.learning_rate=0.005", "train.batch_size=16", "train.epochs=40",
            "train.early_stopping_patience=8"],
}


def synthetic_overrides(spec, data_dir) -> list[str]:
    """``--set`` values that point a run at the session's prepared synthetic data."""
    return ["data.dataset=synthetic", f"data.data_dir={data_dir}",
            f"data.synthetic.num_users={spec.num_users}", f"data.synthetic.num_movies={spec.num_movies}",
            f"data.synthetic.ratings_per_user={spec.ratings_per_user}",
            f"data.synthetic.num_clusters={spec.num_clusters}", f"data.synthetic.seed={spec.seed}"]


def autoencoder_config(architecture: str, spec, data_dir, *extra: str, index: str = "brute_force"):
    return load_config("autoencoder", overrides=[
        f"model.architecture={architecture}", *synthetic_overrides(spec, data_dir), *FAST[architecture],
        f"export.index={index}", "export.k=10", *extra])


def cluster_members(movie_cluster: dict[str, int], counts: dict[str, int], cluster: int) -> list[str]:
    """Movies of ``cluster``, most rated first."""
    ids = [m for m, c in movie_cluster.items() if c == cluster]
    return sorted(ids, key=lambda m: (-counts.get(m, 0), int(m)))


def rating_counts(data) -> dict[str, int]:
    ids, counts = np.unique(data.ratings["movie_id"], return_counts=True)
    return {str(m): int(c) for m, c in zip(ids, counts)}
