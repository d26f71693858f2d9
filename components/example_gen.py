"""ExampleGen: MovieLens (TFDS, a local zip or synthetic), your own data, TFRecord or CSV input -> ``Examples``.

Your own data (docs/own-data.md): ``source`` (the ``data.source`` mapping of a dataset spec), or the
quick path ``input_path`` + ``columns`` (``user=userId,item=movieId[,rating=..][,time=..]``) and
optionally ``movies_path`` + ``item_columns`` (``id=movieId,text=title,categories=genres:|``), read
by :mod:`tfrs_lab.data.readers` exactly as ``train`` reads them.

Output layout (TFX's): ``Split-train/``, ``Split-validation/``, ``Split-test/`` each holding
``data_tfrecord-00000-of-00001.gz`` (GZIP TFRecords of ``tf.train.Example``, one per rating), plus
``catalogue/`` (one Example per movie). Every rating keeps its original row number in the
``_row`` feature, so reading the artifact back gives exactly the table that was loaded.

Splits: ``split: hash`` buckets ``"<user_id>:<movie_id>"`` with ``tf.strings.to_hash_bucket_fast``
(docs/architecture.md#splits; ``split_config`` gives each split's number of buckets, default train 8, validation
1, test 1 of 10 — TFX's ``hash_buckets``); ``split: leave-last-out`` takes each user's last rating as
test and the one before as validation.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import Channel, Component, ExecutionContext, Param

__all__ = ["CATALOGUE_COLUMNS", "column_spec", "COLUMNS", "DEFAULT_SPLIT_CONFIG", "ExampleGen", "load_table",
           "LoadedExamples", "read_examples", "read_records", "ROW", "split_rows", "SPLITS", "write_examples",
           "write_records"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_CONFIG = {"train": 8, "validation": 1, "test": 1}
ROW = "_row"
COLUMNS = "columns"  # property: {name: [dtype, width]} of the rating features
CATALOGUE_COLUMNS = "catalogue_columns"


def _kind(values: np.ndarray) -> str:
    if values.dtype == object or values.dtype.kind in "SU":
        return "bytes"
    if values.dtype.kind == "f":
        return "float"
    return "int"


def column_spec(columns: dict[str, np.ndarray]) -> dict[str, list]:
    """``{name: [kind, width, numpy dtype]}``; width 0 for scalars."""
    return {k: [_kind(v), int(v.shape[1]) if v.ndim == 2 else 0, str(v.dtype)] for k, v in columns.items()}


def write_records(path: Path, columns: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """GZIP TFRecords of one ``tf.train.Example`` per row in ``rows``."""
    import tensorflow as tf

    spec = column_spec(columns)
    values: dict[str, list] = {}
    for k, col in columns.items():  # Python lists once per column: the per-row loop only appends
        col = np.asarray(col)[rows]
        if spec[k][0] == "bytes":
            values[k] = [str(v).encode() for v in col.reshape(-1)]
        else:
            values[k] = col.astype(np.float32 if spec[k][0] == "float" else np.int64).reshape(len(rows), -1).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for i in range(len(rows)):
            ex = tf.train.Example()
            feature = ex.features.feature
            for k, (kind, _, _) in spec.items():
                if kind == "bytes":
                    feature[k].bytes_list.value.append(values[k][i])
                elif kind == "float":
                    feature[k].float_list.value.extend(values[k][i])
                else:
                    feature[k].int64_list.value.extend(values[k][i])
            w.write(ex.SerializeToString())


def read_records(files: list[Path], spec: dict[str, list]) -> dict[str, np.ndarray]:
    """Columns of the GZIP TFRecord ``files`` parsed with ``spec`` (see :func:`column_spec`)."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "float": tf.float32, "int": tf.int64}
    features = {k: tf.io.FixedLenFeature([w] if w else [], dtypes[kind]) for k, (kind, w, _) in spec.items()}
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in spec}
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").batch(1 << 16)
    for batch in ds:
        parsed = tf.io.parse_example(batch, features)
        for k, v in parsed.items():
            chunks[k].append(v.numpy())
    out = {}
    for k, (kind, width, dtype) in spec.items():
        arr = np.concatenate(chunks[k]) if chunks[k] else np.zeros((0, width) if width else (0,))
        out[k] = arr.astype(object) if kind == "bytes" else arr.astype(dtype)
        if kind == "bytes":
            out[k] = np.array([x.decode() if isinstance(x, bytes) else x for x in out[k]], dtype=object)
    return out


@dataclasses.dataclass(frozen=True)
class LoadedExamples:
    """An Examples artifact read back: the table (original row order) and each split's rows."""

    data: Any  # MovieLensData
    splits: dict[str, np.ndarray]  # split name -> row indices into data.ratings, ascending
    protocol: str  # "hash" | "leave-last-out"
    split_config: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPLIT_CONFIG))


def read_examples(examples: Artifact) -> LoadedExamples:
    """Reads an ``Examples`` artifact written by ExampleGen back into a ``MovieLensData``."""
    from tfrs_lab.data.movielens import MovieLensData

    spec = json.loads(examples.properties[COLUMNS])
    parts = {s: read_records(sorted(examples.split_uri(s).glob("*.gz")), {**spec, ROW: ["int", 0, "int64"]})
             for s in examples.split_names}
    rows = np.concatenate([p[ROW] for p in parts.values()])
    order = np.argsort(rows, kind="stable")
    ratings = {k: np.concatenate([p[k] for p in parts.values()])[order] for k in spec}
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    splits, offset = {}, 0
    for name, p in parts.items():
        n = len(p[ROW])
        splits[name] = np.sort(position[offset:offset + n])
        offset += n
    movies = read_records(sorted((examples.path / A.CATALOGUE_DIR).glob("*.gz")),
                          json.loads(examples.properties[CATALOGUE_COLUMNS]))
    data = MovieLensData(examples.properties.get("dataset", "examples"), ratings, movies)
    return LoadedExamples(data, splits, examples.properties.get("split", "hash"),
                          json.loads(examples.properties.get("split_config", json.dumps(DEFAULT_SPLIT_CONFIG))))


def write_examples(out: Artifact, data: Any, splits: dict[str, np.ndarray], *, protocol: str = "hash",
                   split_config: dict[str, int] | None = None) -> None:
    """Writes ``data`` (a ``MovieLensData``) as the Examples artifact ``out``: ``Split-<name>/``
    records of each split's rows (indices into ``data.ratings``), the catalogue, and every property
    readers need, the split ``protocol`` and ``split_config`` the Trainer checks included. A custom
    component deriving Examples from Examples passes on its input's ``protocol``/``split_config``
    (:class:`LoadedExamples`)."""
    columns = {**data.ratings, ROW: np.arange(data.num_ratings, dtype=np.int64)}
    for name, rows in splits.items():
        logger.info("writing %d %s examples to %s", len(rows), name, out.uri)
        write_records(out.split_uri(name) / A.EXAMPLES_FILE, columns, rows)
    write_records(out.path / A.CATALOGUE_DIR / A.EXAMPLES_FILE, data.movies, np.arange(len(data.movies["movie_id"])))
    spec, cat = column_spec(data.ratings), column_spec(data.movies)
    (out.path / "examples_columns.json").write_text(json.dumps(spec))
    (out.path / "catalogue_columns.json").write_text(json.dumps(cat))
    out.properties.update({
        A.SPLIT_NAMES: json.dumps(list(splits)), "split": protocol,
        "split_config": json.dumps(DEFAULT_SPLIT_CONFIG if split_config is None else split_config),
        "dataset": data.dataset, COLUMNS: json.dumps(spec), CATALOGUE_COLUMNS: json.dumps(cat),
        **{f"num_{k}": int(len(v)) for k, v in splits.items()},
    })


def split_rows(protocol: str, ratings: dict[str, np.ndarray], split_config: dict[str, int]) -> dict[str, np.ndarray]:
    """Row indices per split (ascending)."""
    from tfrs_lab.data.splits import hash_buckets, leave_last_out_split

    if protocol == "leave-last-out":
        s = leave_last_out_split(ratings)
        return {"train": s.train, "validation": s.validation, "test": s.test}
    total = sum(split_config.values())
    buckets = hash_buckets(ratings["user_id"], ratings["movie_id"], total)
    out, start = {}, 0
    for name, n in split_config.items():
        out[name] = np.flatnonzero((buckets >= start) & (buckets < start + n)).astype(np.int64)
        start += n
    return out


def _csv_table(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


_RATING_TYPES = {"user_rating": np.float32, "timestamp": np.int64, "bucketized_user_age": np.float32,
                 "user_gender": np.int64, "user_occupation_label": np.int64}


def load_table(input_path: Path, movies_path: Path | None, component: str):
    """Ratings (+ catalogue) from a CSV file or a directory/file of GZIP TFRecords written by
    ExampleGen (any ``*.gz`` under it, or an Examples artifact directory)."""
    from tfrs_lab.components.base import ComponentError
    from tfrs_lab.data.movielens import GENRE_NAMES, MovieLensData, NUM_GENRES

    if not input_path.exists():
        raise ComponentError(f"{component}.input_path: {input_path} does not exist")
    if input_path.suffix == ".csv":
        raw = _csv_table(input_path)
        missing = {"user_id", "movie_id", "user_rating", "timestamp"} - set(raw)
        if missing:
            raise ComponentError(f"{component}.input_path: CSV {input_path} lacks column(s) {', '.join(sorted(missing))} "
                                 f"(it has {', '.join(raw) or 'no rows'}): name your columns with {component}.columns, "
                                 "e.g. columns: user=userId,item=movieId,rating=rating,time=timestamp")
        ratings = {k: (v.astype(float).astype(_RATING_TYPES[k]) if k in _RATING_TYPES else v) for k, v in raw.items()}
    else:
        art_dir = input_path if input_path.is_dir() else input_path.parent
        meta = art_dir / "examples_columns.json"
        if not meta.exists():
            raise ComponentError(f"{component}.input_path: {input_path} has no examples_columns.json "
                                 "(point it at an ExampleGen output or a CSV file)")
        spec = json.loads(meta.read_text())
        files = sorted(p for p in art_dir.glob(f"{A.SPLIT_PREFIX}*/*.gz"))
        if not files:
            raise ComponentError(f"{component}.input_path: no Split-*/*.gz TFRecords under {art_dir}")
        ratings = read_records(files, spec)
        order = np.argsort(read_records(files, {ROW: ["int", 0, "int64"]})[ROW], kind="stable")
        ratings = {k: v[order] for k, v in ratings.items()}
        movies_path = movies_path or art_dir / A.CATALOGUE_DIR
    if movies_path is not None and movies_path.is_dir():
        spec = json.loads((movies_path.parent / "catalogue_columns.json").read_text())
        movies = read_records(sorted(movies_path.glob("*.gz")), spec)
    elif movies_path is not None:
        raw = _csv_table(movies_path)
        if "movie_id" not in raw:
            raise ComponentError(f"{component}.movies_path: CSV {movies_path} has no movie_id column (it has "
                                 f"{', '.join(raw) or 'no rows'}): name your columns with {component}.item_columns, "
                                 "e.g. item_columns: id=movieId,text=title,categories=genres:|")
        genres = np.zeros((len(raw["movie_id"]), NUM_GENRES), np.float32)
        for i, g in enumerate(raw.get("genres", [""] * len(raw["movie_id"]))):
            for name in filter(None, str(g).split("|")):
                if name in GENRE_NAMES:
                    genres[i, GENRE_NAMES.index(name)] = 1.0
        movies = {"movie_id": raw["movie_id"], "movie_title": raw.get("movie_title", raw["movie_id"]), "movie_genres": genres}
    else:
        ids = np.unique(ratings["movie_id"]).astype(object)
        movies = {"movie_id": ids, "movie_title": ids.copy(), "movie_genres": np.zeros((len(ids), NUM_GENRES), np.float32)}
    return MovieLensData(str(input_path.name), ratings, movies)


class ExampleGen(Component):
    """Loads ratings and writes them as split GZIP TFRecords of ``tf.train.Example``."""

    OUTPUTS = {"examples": Channel(A.EXAMPLES)}
    PARAMETERS = {
        "dataset": Param(str, "movielens/100k-ratings", "a TFDS MovieLens name or 'synthetic' (ignored with input_path)"),
        "data_zip": Param(str, None, "official MovieLens zip (offline)"),
        "data_dir": Param(str, None, "prepared TFDS cache"),
        "synthetic": Param(dict, {}, "SyntheticSpec fields for dataset 'synthetic'"),
        "input_path": Param(str, None, "a ratings CSV or an earlier ExampleGen output instead of MovieLens"),
        "movies_path": Param(str, None, "catalogue CSV (movie_id, movie_title, genres) for CSV input, or the items file "
                             "of the quick path (with item_columns)"),
        "columns": Param(str, None, "your own data, quick path: the roles of input_path's columns, "
                         "user=userId,item=movieId[,rating=..][,label=..][,time=..][,time_format=..]"),
        "item_columns": Param(str, None, "your own data, quick path: the roles of movies_path's columns, "
                              "id=movieId[,text=title][,categories=genres:|]"),
        "source": Param(dict, None, "your own data: a dataset spec (the data.source mapping; docs/own-data.md)"),
        "split": Param(str, "hash", "hash | leave-last-out"),
        "split_config": Param(dict, DEFAULT_SPLIT_CONFIG, "hash buckets per split (train, validation, test)"),
    }

    def __init__(self, id: str | None = None, **parameters: Any) -> None:
        super().__init__(id, **parameters)
        from tfrs_lab.components.base import ComponentError

        p = self.parameters
        if p["split"] not in ("hash", "leave-last-out"):
            raise ComponentError(f"{self.id}.split: must be hash or leave-last-out, got {p['split']!r}")
        cfg = p["split_config"]
        if list(cfg) != list(SPLITS) or not all(isinstance(v, int) and v > 0 for v in cfg.values()):
            raise ComponentError(f"{self.id}.split_config: give positive bucket counts for train, validation, test "
                                 f"in that order, got {cfg!r}")
        self.own_source()  # a bad spec or quick-path column list fails here, naming the parameter

    def own_source(self):
        """The :class:`~tfrs_lab.data.spec.SourceSpec` of ``source`` or of the quick path, or None;
        ComponentError naming the parameter when it is invalid."""
        from tfrs_lab.components.base import ComponentError
        from tfrs_lab.schema import ConfigError

        try:
            return self._own_source()
        except ComponentError:
            raise
        except ConfigError as e:
            raise ComponentError(str(e)) from e

    def _own_source(self):
        from tfrs_lab.components.base import ComponentError
        from tfrs_lab.data.spec import SourceSpec, quick_source
        from tfrs_lab.schema import build

        p = self.parameters
        if p["source"] is not None:
            if p["columns"] or p["item_columns"]:
                raise ComponentError(f"{self.id}.source names the columns: drop {self.id}.columns/item_columns")
            return build(SourceSpec, p["source"], f"{self.id}.source")
        if p["columns"] is None:
            if p["item_columns"]:
                raise ComponentError(f"{self.id}.item_columns needs {self.id}.columns (and input_path) too")
            return None
        if not p["input_path"]:
            raise ComponentError(f"{self.id}.columns describes input_path: set {self.id}.input_path to your file")
        flags = tuple(f"{self.id}.{k}" for k in ("input_path", "columns", "movies_path", "item_columns"))
        return build(SourceSpec, quick_source(p["input_path"], p["columns"], p["movies_path"], p["item_columns"],
                                              flags=flags), f"{self.id}.source")

    def fingerprint_extra(self) -> str:
        """The data's identity: the zip's / input files' SHA-256 (TFDS data is named by its version)."""
        from tfrs_lab.data.readers import resolve_paths

        h = hashlib.sha256()
        own = self.own_source()
        values = [self.parameters[k] for k in ("data_zip", "input_path", "movies_path")]
        if own is not None:
            tables = [t for t in (own.interactions, own.items, own.users) if t is not None]
            values = [str(f) for t in tables for f in resolve_paths(t.path, f"{self.id}.source")]
        for value in values:
            if value and Path(value).is_file():
                h.update(Path(value).read_bytes())
            elif value and Path(value).is_dir():
                for f in sorted(Path(value).rglob("*")):
                    if f.is_file():
                        h.update(f.name.encode() + f.read_bytes())
        return h.hexdigest()

    def load(self):
        from tfrs_lab.components.base import ComponentError
        from tfrs_lab.data.movielens import load_movielens
        from tfrs_lab.data.synthetic import SyntheticSpec

        from tfrs_lab.data.readers import read_source

        p = self.parameters
        own = self.own_source()
        if own is not None:
            return read_source(own, where=f"{self.id}.source")
        if p["input_path"]:
            return load_table(Path(p["input_path"]).expanduser(), Path(p["movies_path"]) if p["movies_path"] else None, self.id)
        synthetic = None
        if p["dataset"] == "synthetic":
            try:
                synthetic = SyntheticSpec(**p["synthetic"])
            except (TypeError, ValueError) as e:
                raise ComponentError(f"{self.id}.synthetic: {e}") from e
        return load_movielens(p["dataset"], data_zip=p["data_zip"], data_dir=p["data_dir"], synthetic=synthetic)

    def execute(self, ctx: ExecutionContext) -> None:
        data = self.load()
        p = self.parameters
        write_examples(ctx.outputs["examples"], data, split_rows(p["split"], data.ratings, p["split_config"]),
                       protocol=p["split"], split_config=p["split_config"])
