"""Synthetic MovieLens-format data with planted structure.

Two writers: :func:`write_synthetic_zip` (MovieLens 100K's archive layout, small) and
:func:`write_synthetic_parquet` (MovieLens-25M-shaped own-data Parquet shards at any size, e.g. 25M
ratings; CLI ``python -m tfrs_lab.data.generate``).

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
    "ITEM_COLUMNS",
    "ML100K_GENRES",
    "ML100K_OCCUPATIONS",
    "ML25M_GENRES",
    "ML25M_SHAPE",
    "PARQUET_COLUMNS",
    "ParquetShape",
    "count_label",
    "SPEC_FILE",
    "SyntheticParquet",
    "SyntheticSpec",
    "parse_count",
    "planted_clusters",
    "write_synthetic_parquet",
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


# --------------------------------------------------------------------------- MovieLens-25M-shaped Parquet

#: MovieLens 25M's shape: 25,000,095 ratings of 59,047 movies by 162,541 users (each >= 20 ratings),
#: half-star ratings 0.5-5.0, timestamps 1995-01-09 .. 2019-11-21. :func:`write_synthetic_parquet`
#: keeps these ratios at every size.
ML25M_SHAPE = {"ratings": 25_000_095, "users": 162_541, "movies": 59_047, "min_ratings": 20,
               "first_ts": 789_652_009, "last_ts": 1_574_327_703}

#: The 20 genres of MovieLens 25M's ``movies.csv`` (the last one is what a movie without genres gets).
ML25M_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western", "(no genres listed)",
)  # fmt: skip

_MIN_ITEMS = 1000  # catalogue floor for tiny sizes (the ML-25M ratio would give 47 items at 20k ratings)
_ACTIVITY_SIGMA = 1.3  # log-normal spread of ratings per user beyond the minimum (ML-25M: median ~71, mean ~154)
_POPULARITY_EXPONENT = 1.0  # item weight 1 / (rank + offset) ** exponent
_POPULARITY_OFFSET_SHARE = 1 / 2000  # offset = catalogue / 2000: ML-25M-like head (top movie ~0.4% of ratings)
_IN_CLUSTER_FLATTENING = 0.5  # in-taste picks follow weight ** 0.5: a user's taste reaches beyond the hits
_DEDUPE_ROUNDS = 12  # redraws of a user's repeated items: 3 as drawn, then from global popularity, then uniform
_UNIFORM_FROM = 7

PARQUET_COLUMNS = {"user": "user_id", "item": "item_id", "rating": "rating", "time": "timestamp"}
"""Interaction columns of :func:`write_synthetic_parquet` (own-data roles -> Parquet column names)."""

ITEM_COLUMNS = {"id": "item_id", "text": "title", "categories": "genres"}
"""Items-table columns of :func:`write_synthetic_parquet` (genres joined with ``|``)."""

SPEC_FILE = "dataset.yaml"


def parse_count(text: str | int) -> int:
    """``"25M"`` -> 25,000,000; ``"20k"`` -> 20,000; ``"1_000"`` / ``1000`` -> 1,000 (a positive count).

    Raises:
        ValueError: naming the text and the accepted forms.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().replace("_", "")
        scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(s[-1:].lower(), 1)
        try:
            value = int(round(float(s[:-1] if scale > 1 else s) * scale))
        except ValueError:
            value = 0
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive count: write e.g. 20000, 20k, 1M or 25M")
    return value


@dataclasses.dataclass(frozen=True)
class ParquetShape:
    """Sizes of a MovieLens-25M-shaped data set with ``interactions`` ratings (the ML-25M ratios).

    Attributes:
        interactions: ratings requested (the files hold at most this many; a few hundredths of a
            percent fewer when a heavy user's repeated picks cannot be redrawn).
        num_users: users (ids 1 .. num_users); ``interactions * 162541 / 25000095``.
        num_items: items (ids 1 .. num_items); ``interactions * 59047 / 25000095``, at least 1,000.
        min_ratings: ratings of the least active user (20 as in ML-25M; less when the catalogue is tiny).
    """

    interactions: int
    num_users: int
    num_items: int
    min_ratings: int

    @classmethod
    def of(cls, interactions: int) -> "ParquetShape":
        """The shape with ML-25M's users/ratings and movies/ratings ratios."""
        n = parse_count(interactions)
        users = max(1, round(n * ML25M_SHAPE["users"] / ML25M_SHAPE["ratings"]))
        items = max(_MIN_ITEMS, round(n * ML25M_SHAPE["movies"] / ML25M_SHAPE["ratings"]))
        min_ratings = max(1, min(ML25M_SHAPE["min_ratings"], n // users, items // 4))
        return cls(n, users, items, min_ratings)


@dataclasses.dataclass(frozen=True)
class SyntheticParquet:
    """What :func:`write_synthetic_parquet` wrote.

    Attributes:
        output_dir: the data set's directory.
        spec_path: ``output_dir/dataset.yaml``, the own-data spec (``--data SPEC``, docs/own-data.md).
        interaction_files: the Parquet shards, ``interactions/part-00000.parquet`` ...
        items_file: ``items.parquet`` (``item_id``, ``title``, ``genres``).
        num_interactions / num_users / num_items: rows written, users with ratings, catalogue size.
        shape: the requested shape; seed: the seed.
    """

    output_dir: pathlib.Path
    spec_path: pathlib.Path
    interaction_files: tuple[pathlib.Path, ...]
    items_file: pathlib.Path
    num_interactions: int
    num_users: int
    num_items: int
    shape: ParquetShape
    seed: int


def _user_counts(shape: ParquetShape, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user (int64 ``[num_users]``): ``min_ratings`` + a log-normal tail, scaled so the
    total is exactly ``shape.interactions``; nobody rates more than half the catalogue."""
    extra = rng.lognormal(0.0, _ACTIVITY_SIGMA, size=shape.num_users)
    budget = shape.interactions - shape.num_users * shape.min_ratings
    scaled = extra * (budget / extra.sum())
    base = np.floor(scaled).astype(np.int64)
    remainder = budget - int(base.sum())
    base[np.argsort(-(scaled - base), kind="stable")[:remainder]] += 1
    counts = base + shape.min_ratings
    cap = shape.num_items // 2
    for _ in range(20):  # users above the cap hand their excess to the others, in proportion
        excess = int(np.maximum(counts - cap, 0).sum())
        counts = np.minimum(counts, cap)
        room = cap - counts
        if not excess or not room.any():
            break
        share = np.minimum(np.floor(counts * (excess / counts[room > 0].sum())).astype(np.int64) * (room > 0), room)
        counts += share
        left = excess - int(share.sum())
        counts[np.flatnonzero(cap - counts > 0)[:left]] += 1
    return counts


def _item_table(shape: ParquetShape, planted: _Planted, rng: np.random.Generator):
    """The items table (``item_id`` int64, ``title``, ``genres`` ``"a|b"``), genres correlated with
    the item's cluster, as a ``pyarrow.Table``."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel

    n, k = shape.num_items, int(planted.movie_cluster.max()) + 1
    real = len(ML25M_GENRES) - 1
    main = rng.permutation(real)[np.arange(k) % real]
    side = (main + rng.integers(1, real, size=k)) % real
    c = planted.movie_cluster
    flags = np.zeros((n, len(ML25M_GENRES)), dtype=bool)
    rows = np.arange(n)
    flags[rows, main[c]] = rng.random(n) < 0.85
    flags[rows, side[c]] |= rng.random(n) < 0.4
    flags[rows, rng.integers(0, real, size=n)] |= rng.random(n) < 0.15
    flags[~flags.any(axis=1), real] = True  # "(no genres listed)"
    item_rows, genre = np.nonzero(flags)  # row-major: grouped by item
    offsets = np.concatenate([[0], np.cumsum(np.bincount(item_rows, minlength=n))]).astype(np.int32)
    genres = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pa.array(ML25M_GENRES).take(pa.array(genre))), "|")
    ids = np.arange(1, n + 1, dtype=np.int64)
    years = rng.integers(1900, 2020, size=n)
    title = pc.binary_join_element_wise("Synthetic Movie ", pc.cast(pa.array(ids), pa.string()), " (",
                                        pc.cast(pa.array(years), pa.string()), ")", "")
    return pa.table({ITEM_COLUMNS["id"]: ids, ITEM_COLUMNS["text"]: title, ITEM_COLUMNS["categories"]: genres})


class _Sampler:
    """Draws items by Zipf-like popularity, globally or inside a cluster (vectorised inverse-CDF)."""

    def __init__(self, shape: ParquetShape, planted: _Planted, rng: np.random.Generator) -> None:
        n = shape.num_items
        offset = max(1.0, n * _POPULARITY_OFFSET_SHARE)
        weight = 1.0 / (rng.permutation(n) + offset) ** _POPULARITY_EXPONENT
        self.order = np.argsort(planted.movie_cluster, kind="stable")  # items grouped by cluster
        self.cum = np.cumsum(weight[self.order])
        self.cum_in = np.cumsum(weight[self.order] ** _IN_CLUSTER_FLATTENING)
        k = int(planted.movie_cluster.max()) + 1
        ends = np.searchsorted(planted.movie_cluster[self.order], np.arange(k), side="right")
        self.cluster_hi = self.cum_in[ends - 1]
        self.cluster_lo = np.concatenate([[0.0], self.cum_in[ends[:-1] - 1]])
        self.num_items = n

    def draw(self, rng: np.random.Generator, cluster: np.ndarray, in_cluster: np.ndarray) -> np.ndarray:
        """Item indices (int64 ``[len(cluster)]``): from ``cluster`` where ``in_cluster`` (by the
        flattened weights), else from the whole catalogue (by the Zipf-like weights)."""
        u = rng.random(cluster.size)
        idx = np.empty(cluster.size, dtype=np.int64)
        lo, hi = self.cluster_lo[cluster[in_cluster]], self.cluster_hi[cluster[in_cluster]]
        idx[in_cluster] = np.searchsorted(self.cum_in, lo + u[in_cluster] * (hi - lo), side="right")
        idx[~in_cluster] = np.searchsorted(self.cum, u[~in_cluster] * self.cum[-1], side="right")
        return self.order[np.minimum(idx, self.num_items - 1)]


def _shard(shape: ParquetShape, planted: _Planted, sampler: _Sampler, quality: np.ndarray,
           user_bias: np.ndarray, counts: np.ndarray, first_user: int, rng: np.random.Generator):
    """Ratings of users ``first_user .. first_user + len(counts) - 1`` as a ``pyarrow.Table``
    (rows by user, then time), each user's items distinct."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    n_users = counts.size
    local = np.repeat(np.arange(n_users), counts)
    user = local + first_user
    n = local.size
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = (np.arange(n) - start[local]) / np.maximum(counts[local] - 1, 1)  # 0 .. 1 along the timeline
    # Temporal drift: late in-taste picks come more and more from the second cluster.
    cluster = np.where(rng.random(n) < _DRIFT * position, planted.user_second_cluster[user], planted.user_cluster[user])
    in_taste = rng.random(n) < _IN_TASTE_SHARE
    item = sampler.draw(rng, cluster, in_taste)
    keep = np.ones(n, dtype=bool)
    for round_ in range(_DEDUPE_ROUNDS):  # a user rates an item once: redraw repeats
        key = local * shape.num_items + item
        first = np.unique(key, return_index=True)[1]
        repeat = np.ones(n, dtype=bool)
        repeat[first] = False
        where = np.flatnonzero(repeat)
        if not where.size:
            break
        if round_ == _DEDUPE_ROUNDS - 1:
            keep[where] = False
        elif round_ >= _UNIFORM_FROM:
            item[where] = rng.integers(0, shape.num_items, size=where.size)
        else:
            in_taste[where] &= round_ < 3
            item[where] = sampler.draw(rng, cluster[where], in_taste[where])
    liked = (planted.movie_cluster[item] == planted.user_cluster[user]) | (
        planted.movie_cluster[item] == planted.user_second_cluster[user])
    score = np.where(liked, 4.0, 2.9) + quality[item] + user_bias[user] + rng.normal(0.0, 0.7, size=n)
    rating = np.clip(np.rint(score * 2.0) / 2.0, 0.5, 5.0).astype(np.float32)
    # Timestamps: each user rates from a start time over a span (half of them within a day), in order.
    first_ts, last_ts = ML25M_SHAPE["first_ts"], ML25M_SHAPE["last_ts"]
    begin = rng.integers(first_ts, last_ts - 86_400, size=n_users)
    span = np.where(rng.random(n_users) < 0.5, rng.integers(600, 86_400, size=n_users),
                    rng.exponential(_YEAR_S, size=n_users).astype(np.int64) + 86_400)
    span = np.minimum(span, last_ts - begin)
    offset = np.sort(local + rng.random(n)) - local  # sorted uniforms inside each user
    ts = begin[local] + (span[local] * offset).astype(np.int64)
    c = PARQUET_COLUMNS
    return pa.table({c["user"]: (user + 1)[keep], c["item"]: (item + 1)[keep], c["rating"]: rating[keep],
                     c["time"]: ts[keep]})


def _spec_text(name: str) -> str:
    c, i = PARQUET_COLUMNS, ITEM_COLUMNS
    return (f"# Synthetic MovieLens-25M-shaped data (tfrs_lab.data.synthetic.write_synthetic_parquet).\n"
            f"name: {name}\n"
            f"interactions:\n  path: interactions/part-*.parquet\n"
            f"  columns: {{user: {c['user']}, item: {c['item']}, rating: {c['rating']}, time: {c['time']}}}\n"
            f"items:\n  path: items.parquet\n"
            f"  columns: {{id: {i['id']}, text: {i['text']}, categories: {i['categories']}, separator: '|'}}\n")


def write_synthetic_parquet(output_dir: str | os.PathLike, *, interactions: int | str, seed: int = 0,
                            num_clusters: int = 20, shard_rows: int = 1_000_000,
                            overwrite: bool = False) -> SyntheticParquet:
    """Writes MovieLens-25M-shaped synthetic data in the own-data format (docs/own-data.md).

    Layout (built in a hidden sibling directory, renamed into place when complete)::

        output_dir/dataset.yaml                      the own-data spec: --data output_dir/dataset.yaml
        output_dir/interactions/part-00000.parquet   user_id, item_id (int64), rating (float32, 0.5-5.0
                                                     in half stars), timestamp (int64 unix s); whole users
        output_dir/items.parquet                     item_id, title, genres ("Drama|War")

    Shape (:class:`ParquetShape`): ML-25M's users/ratings and items/ratings ratios; users rate at
    least 20 items plus a log-normal tail (median ~80, mean ~154, the heaviest half the catalogue);
    item popularity is Zipf-like (weight ``1 / (rank + items/2000)``; in-taste picks follow the
    square root of it), so the head is ML-like (the top item is rated by most users) but the tail is
    flatter than ML-25M's (top 10% of items hold ~25% of the ratings, the bottom half ~1/3).
    Planted structure as in :func:`write_synthetic_zip` (:func:`planted_clusters` of the matching
    :class:`SyntheticSpec`): 80% of a user's ratings come from their taste cluster, drifting
    towards a second cluster along their timeline; in-taste items are rated higher. A user rates an
    item at most once. Generated shard by shard (``shard_rows`` ratings of whole users at a time,
    fully vectorised), so memory stays at a few hundred MB at any size.

    Args:
        output_dir: directory to create (must not exist or be empty unless ``overwrite``).
        interactions: ratings to write, e.g. ``25_000_000`` or ``"25M"``.
        seed: the same seed, size, clusters and shard size give the same rows.
        num_clusters: planted taste clusters (>= 2).
        shard_rows: ratings per Parquet shard (approximate: shards hold whole users).
        overwrite: replace a non-empty ``output_dir``.

    Returns:
        What was written (:class:`SyntheticParquet`).

    Raises:
        ValueError: bad size, clusters or shard size, or a non-empty ``output_dir`` without ``overwrite``.
    """
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    from tfrs_lab.staging import staged_directory  # pylint: disable=import-outside-toplevel

    shape = ParquetShape.of(interactions)
    if shard_rows <= 0:
        raise ValueError(f"shard_rows must be > 0, got {shard_rows}")
    out = pathlib.Path(output_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ValueError(f"{out} exists and is not an empty directory: choose another output directory or overwrite it (--overwrite)")
    spec = SyntheticSpec(num_users=shape.num_users, num_movies=shape.num_items, num_clusters=num_clusters,
                         ratings_per_user=max(_MIN_RATINGS, shape.interactions // shape.num_users), seed=seed)
    planted = planted_clusters(spec)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the clusters stay planted_clusters(spec)'s
    counts = _user_counts(shape, rng)
    sampler = _Sampler(shape, planted, rng)
    quality = rng.normal(0.0, 0.4, size=shape.num_items)  # per-item rating bias
    user_bias = rng.normal(0.0, 0.3, size=shape.num_users)
    items = _item_table(shape, planted, rng)
    bounds = np.searchsorted(np.cumsum(counts), np.arange(shard_rows, int(counts.sum()), shard_rows), side="left") + 1
    bounds = np.unique(np.concatenate([[0], bounds, [shape.num_users]]))
    files, rows, users = [], 0, 0
    with staged_directory(out) as stage:
        (stage / "interactions").mkdir()
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            table = _shard(shape, planted, sampler, quality, user_bias, counts[lo:hi], int(lo),
                           np.random.default_rng([seed, 2, i]))
            name = pathlib.Path("interactions") / f"part-{i:05d}.parquet"
            pq.write_table(table, stage / name)
            files.append(out / name)
            rows += table.num_rows
            users += int(hi - lo)
            del table
        pq.write_table(items, stage / "items.parquet")
        label = f"synthetic-{count_label(shape.interactions)}"
        (stage / SPEC_FILE).write_text(_spec_text(label))
    return SyntheticParquet(out, out / SPEC_FILE, tuple(files), out / "items.parquet", rows, users,
                            shape.num_items, shape, seed)


def count_label(n: int) -> str:
    """25000000 -> ``25M``, 20000 -> ``20k``, 12345 -> ``12345``."""
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)
