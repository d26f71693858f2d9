"""Fixtures of the autoencoder and similar-items tests (helpers in ``autoencoder_fixtures``)."""

from __future__ import annotations

import pytest

from tfrs_lab.data.synthetic import planted_clusters


@pytest.fixture(scope="session")
def movie_cluster(synthetic_spec) -> dict[str, int]:
    """Planted cluster of each synthetic movie id."""
    clusters = planted_clusters(synthetic_spec).movie_cluster
    return {str(i + 1): int(c) for i, c in enumerate(clusters)}
