"""Synthetic MovieLens-100K-format data with planted structure.

:func:`write_synthetic_zip` writes an archive with the exact layout and file formats of the official
``ml-100k.zip`` (``ml-100k/u.data``, ``u.item``, ``u.user``, ``u.genre``, ``u.occupation``,
``u.info``), so it goes through the real TFDS MovieLens parser unchanged.

Planted structure (what a learning model can exploit and a popularity baseline cannot):

* every user belongs to one of ``num_clusters`` taste clusters; age, gender and occupation are
  correlated with the cluster;
* every movie belongs to one cluster; its genres are correlated with the cluster;
* about 80% of a user's ratings are on movies of their current taste cluster (Zipf-like popularity
  inside the cluster), the rest on uniformly random movies;
* in-taste movies are rated higher (integers 1-5);
* temporal drift: along a user's timeline the taste moves from the home cluster towards a second
  cluster (at the end ~70% of in-taste picks come from the second cluster), so a user's last items
  are predictable from the user and the time;
* timestamps (unix seconds) spread over about one year, in sessions, with repeated timestamps
  inside a session, as in the real data.

Same spec gives a byte-identical zip (fixed zip entry dates, seeded ``numpy`` generator).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import zipfile

import numpy as np

__all__ = [
    "ML100K_GENRES",
    "ML100K_OCCUPATIONS",
    "SyntheticSpec",
    "planted_clusters",
    "write_synthetic_zip",
]

#: The 19 genre flags of ``u.item``, in ml-100k's column order (``u.genre``).
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: The 21 occupation strings of ml-100k's ``u.occupation`` (what TFDS's parser maps).
ML100K_OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip

_IN_TASTE_SHARE = 0.8  # share of ratings drawn from the user's current taste cluster
_DRIFT = 0.7  # probability that an in-taste pick at the very end of a timeline is the 2nd cluster
_ZIPF_EXPONENT = 1.0
_MIN_RATINGS = 8
_START_TS = 883_612_800  # 1998-01-01T00:00:00Z
_YEAR_S = 365 * 24 * 3600
_ZIP_DATE = (2000, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """Size and seed of a synthetic MovieLens-100K-format data set.

    Attributes:
        num_users: number of users (ids ``"1"`` .. ``str(num_users)``).
        num_movies: number of movies (ids ``"1"`` .. ``str(num_movies)``).
        ratings_per_user: mean ratings per user; each user gets a random count, at least 8 and at
            most half of the catalogue.
        num_clusters: number of planted taste clusters.
        seed: seed of the random generator; same spec, byte-identical archive.
    """

    num_users: int = 600
    num_movies: int = 400
    ratings_per_user: int = 40
    num_clusters: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_users < 1:
            raise ValueError(f"num_users must be >= 1, got {self.num_users}")
        if self.num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {self.num_clusters}")
        if self.num_movies < 2 * _MIN_RATINGS or self.num_movies < self.num_clusters:
            raise ValueError(
                f"num_movies must be >= max({2 * _MIN_RATINGS}, num_clusters), got {self.num_movies}"
            )
        if self.ratings_per_user < _MIN_RATINGS:
            raise ValueError(
                f"ratings_per_user must be >= {_MIN_RATINGS}, got {self.ratings_per_user}"
            )


@dataclasses.dataclass(frozen=True)
class _Planted:
    """Ground truth of a synthetic data set (row i = user/movie id ``str(i + 1)``)."""

    user_cluster: np.ndarray  # int64 [num_users], home taste cluster
    user_second_cluster: np.ndarray  # int64 [num_users], cluster the taste drifts to
    movie_cluster: np.ndarray  # int64 [num_movies]


def planted_clusters(spec: SyntheticSpec) -> _Planted:
    """Returns the planted clusters of ``spec`` (for tests and diagnostics).

    Returns:
        An object with ``user_cluster`` and ``user_second_cluster`` (int64 ``[num_users]``) and
        ``movie_cluster`` (int64 ``[num_movies]``); index ``i`` is the entity with id
        ``str(i + 1)``.
    """
    rng = np.random.default_rng(spec.seed)
    return _draw_clusters(spec, rng)


def _draw_clusters(spec: SyntheticSpec, rng: np.random.Generator) -> _Planted:
    k = spec.num_clusters
    user_cluster = rng.integers(0, k, size=spec.num_users)
    # Second cluster: any cluster but the home one.
    second = (user_cluster + rng.integers(1, k, size=spec.num_users)) % k
    # Movies: balanced cluster sizes, random assignment.
    movie_cluster = rng.permutation(np.arange(spec.num_movies) % k)
    return _Planted(
        user_cluster.astype(np.int64), second.astype(np.int64), movie_cluster.astype(np.int64)
    )


def _users_file(spec: SyntheticSpec, planted: _Planted, rng: np.random.Generator) -> str:
    """``u.user`` rows ``id|age|gender|occupation|zip``, demographics correlated with cluster."""
    k = spec.num_clusters
    cluster_age = rng.uniform(16, 60, size=k)
    cluster_p_male = rng.uniform(0.25, 0.9, size=k)
    cluster_occupation = rng.integers(0, len(ML100K_OCCUPATIONS), size=k)
    c = planted.user_cluster
    n = spec.num_users
    age = np.clip(np.rint(rng.normal(cluster_age[c], 7.0)), 7, 73).astype(int)
    male = rng.random(n) < cluster_p_male[c]
    occupation = np.where(
        rng.random(n) < 0.5,
        cluster_occupation[c],
        rng.integers(0, len(ML100K_OCCUPATIONS), size=n),
    )
    zips = rng.integers(0, 100_000, size=n)
    lines = [
        f"{i + 1}|{age[i]}|{'M' if male[i] else 'F'}|{ML100K_OCCUPATIONS[occupation[i]]}|"
        f"{zips[i]:05d}\n"
        for i in range(n)
    ]
    return "".join(lines)


def _items_file(spec: SyntheticSpec, planted: _Planted, rng: np.random.Generator) -> str:
    """``u.item`` rows: id|title|release date|video release date|IMDb URL|19 genre flags."""
    k = spec.num_clusters
    n = spec.num_movies
    real_genres = len(ML100K_GENRES) - 1  # flag 0 is "unknown"
    main = 1 + rng.permutation(real_genres)[np.arange(k) % real_genres]
    side = 1 + (main - 1 + rng.integers(1, real_genres, size=k)) % real_genres
    flags = np.zeros((n, len(ML100K_GENRES)), dtype=int)
    c = planted.movie_cluster
    rows = np.arange(n)
    flags[rows, main[c]] = rng.random(n) < 0.85
    flags[rows, side[c]] |= rng.random(n) < 0.4
    flags[rows, 1 + rng.integers(0, real_genres, size=n)] |= rng.random(n) < 0.15
    flags[flags.sum(axis=1) == 0, 0] = 1  # no genre -> "unknown", as in the real data
    years = rng.integers(1930, 1998, size=n)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    month = rng.integers(0, 12, size=n)
    day = rng.integers(1, 29, size=n)
    lines = []
    for i in range(n):
        title = f"Synthetic Movie {i + 1} ({years[i]})"
        url = f"http://us.imdb.com/M/title-exact?Synthetic%20Movie%20{i + 1}%20({years[i]})"
        date = f"{day[i]:02d}-{months[month[i]]}-{years[i]}"
        genre_flags = "|".join(str(f) for f in flags[i])
        lines.append(f"{i + 1}|{title}|{date}||{url}|{genre_flags}\n")
    return "".join(lines)


def _weighted_sample(
    rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray, k: int
) -> np.ndarray:
    """``k`` distinct items of ``candidates`` drawn by ``weights`` (Gumbel top-k)."""
    if k <= 0 or candidates.size == 0:
        return candidates[:0]
    keys = np.log(weights) + rng.gumbel(size=candidates.size)
    return candidates[np.argsort(-keys, kind="stable")[:k]]


def _timestamps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Non-decreasing unix seconds for one user's ``n`` ratings, in sessions."""
    start = _START_TS + rng.integers(0, int(0.75 * _YEAR_S))
    span = rng.integers(3600, _START_TS + _YEAR_S - start)
    num_sessions = max(1, int(rng.integers(1, max(2, n // 4) + 1)))
    session_starts = np.sort(start + rng.integers(0, span, size=num_sessions))
    session = np.sort(rng.integers(0, num_sessions, size=n))
    # Inside a session: ~35% of consecutive ratings share the previous timestamp, else + a few s.
    step = np.where(rng.random(n) < 0.35, 0, rng.integers(1, 240, size=n))
    cumulative = np.cumsum(step)
    first_of_session = np.searchsorted(session, session, side="left")
    ts = session_starts[session] + cumulative - cumulative[first_of_session]
    return np.maximum.accumulate(ts)


def _ratings_file(spec: SyntheticSpec, planted: _Planted, rng: np.random.Generator) -> str:
    """``u.data`` rows ``user\\tmovie\\trating\\ttimestamp``, shuffled like the real file."""
    k = spec.num_clusters
    n_movies = spec.num_movies
    movie_ids = np.arange(n_movies)
    members = [movie_ids[planted.movie_cluster == c] for c in range(k)]
    # Zipf-like popularity inside each cluster (random rank order).
    weights = [
        1.0 / (1.0 + rng.permutation(m.size)) ** _ZIPF_EXPONENT for m in members
    ]
    quality = rng.normal(0.0, 0.4, size=n_movies)  # per-movie rating bias
    max_per_user = n_movies // 2
    counts = np.clip(
        rng.negative_binomial(4, 4 / (4 + spec.ratings_per_user - _MIN_RATINGS), spec.num_users)
        + _MIN_RATINGS,
        _MIN_RATINGS,
        max_per_user,
    )
    out_users, out_movies, out_ratings, out_ts = [], [], [], []
    for u in range(spec.num_users):
        n = int(counts[u])
        pos = np.linspace(0.0, 1.0, n)
        in_taste = rng.random(n) < _IN_TASTE_SHARE
        use_second = rng.random(n) < _DRIFT * pos
        slot_cluster = np.where(
            use_second, planted.user_second_cluster[u], planted.user_cluster[u]
        )
        chosen = np.full(n, -1, dtype=np.int64)
        for c in np.unique(slot_cluster[in_taste]):
            slots = np.flatnonzero(in_taste & (slot_cluster == c))
            picks = _weighted_sample(rng, members[c], weights[c], slots.size)
            chosen[slots[: picks.size]] = picks
        free = np.setdiff1d(movie_ids, chosen[chosen >= 0])
        rest = np.flatnonzero(chosen < 0)
        chosen[rest] = rng.choice(free, size=rest.size, replace=False)
        liked = (planted.movie_cluster[chosen] == planted.user_cluster[u]) | (
            planted.movie_cluster[chosen] == planted.user_second_cluster[u]
        )
        score = np.where(liked, 4.1, 2.6) + quality[chosen] + rng.normal(0.0, 0.8, size=n)
        out_users.append(np.full(n, u + 1))
        out_movies.append(chosen + 1)
        out_ratings.append(np.clip(np.rint(score), 1, 5).astype(int))
        out_ts.append(_timestamps(rng, n))
    users = np.concatenate(out_users)
    movies = np.concatenate(out_movies)
    ratings = np.concatenate(out_ratings)
    ts = np.concatenate(out_ts)
    order = rng.permutation(users.size)
    lines = [
        f"{users[i]}\t{movies[i]}\t{ratings[i]}\t{ts[i]}\n" for i in order.tolist()
    ]
    return "".join(lines)


def write_synthetic_zip(spec: SyntheticSpec, path: str | os.PathLike) -> pathlib.Path:
    """Writes a synthetic data set as an ml-100k-layout zip archive.

    Args:
        spec: sizes and seed.
        path: the archive to write (parent folders are created; an existing file is replaced).

    Returns:
        The path of the written archive. Its content is a deterministic function of ``spec``
        (byte-identical for the same spec).
    """
    rng = np.random.default_rng(spec.seed)
    planted = _draw_clusters(spec, rng)
    users = _users_file(spec, planted, rng)
    items = _items_file(spec, planted, rng)
    data = _ratings_file(spec, planted, rng)
    n_ratings = data.count("\n")
    files = {
        "u.data": data,
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n",
        "u.info": f"{spec.num_users} users\n{spec.num_movies} items\n{n_ratings} ratings\n",
        "u.item": items,
        "u.occupation": "".join(f"{o}\n" for o in ML100K_OCCUPATIONS),
        "u.user": users,
        "README": f"Synthetic data in the MovieLens 100K file format. Spec: {spec}\n",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("ml-100k/", date_time=_ZIP_DATE), b"")
        for name, text in files.items():
            info = zipfile.ZipInfo(f"ml-100k/{name}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, text.encode("latin-1"))
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return out
