"""ExampleGen: MovieLens (TFDS, a local zip or synthetic), your own data, TFRecord or CSV input -> ``Examples``.

Your own data (docs/own-data.md): ``source`` (the ``data.source`` mapping of a dataset spec), or the
quick path ``input_path`` + ``columns`` (``user=userId,item=movieId[,rating=..][,time=..]``) and
optionally ``movies_path`` + ``item_columns`` (``id=movieId,text=title,categories=genres:|``), read
by :mod:`tfrs_lab.data.readers` exactly as ``train`` reads them.

Output layout (TFX's): ``Split-train/``, ``Split-validation/``, ``Split-test/`` each holding
``data_tfrecord-00000-of-00001.gz`` (GZIP TFRecords of ``tf.train.Example``, one per rating), plus
``catalogue/`` (one Example per movie). Every rating keeps its original row number in the
``_row`` feature, so reading the artifact back gives exactly the table that was loaded.

Splits (docs/architecture.md#splits): ``split: hash | leave-last-out | time | held-out-users |
predefined``, the rows computed by :func:`tfrs_lab.data.splits.make_split` with the task config's own
options (``time_cutoff: {validation, test}``, ``held_out_users: {validation, test, target_share}``,
``predefined: u1..u5 | ua | ub | <test file>``), so the Trainer's run re-splits identically. ``hash``
alone also takes ``split_config`` (each split's number of buckets, default train 8, validation 1,
test 1 of 10 — TFX's ``hash_buckets``; the Trainer accepts only the default). ``held-out-users``
writes two more splits, ``Split-fold_in_validation/`` and ``Split-fold_in_test/``: the held-out
users' older ratings, which the model reads (folds in) when it predicts their ``validation`` /
``test`` targets; ``Split-train`` holds only the other users' ratings, exactly the run's training
rows. The artifact records the split (property ``split``) and its options (``split_options``: the
task config's ``data`` settings, which :func:`data_section` hands to Transform, Tuner and Trainer).

Your own data goes through the prepared-dataset cache as ``train``'s does
(:func:`tfrs_lab.data.prepared.prepare_dataset`, or with ``beam_runner`` the same preparation as an
Apache Beam pipeline, :func:`tfrs_lab.data.beam_prepare.prepare_dataset_beam`; in
``<data_dir>/prepared`` or else ``<pipeline root>/prepared``): a repeated run reuses it by the files'
fingerprint. Its Examples are the prepared dataset itself, never string records: ``prepared.json``
(the directory, its fingerprint and name) and ``Split-<name>/rows.npy`` (int64 row indices into
the prepared rows), property ``payload_format: FORMAT_PREPARED``; :func:`read_examples` gives the
codes as :class:`~tfrs_lab.data.interactions.Interactions` (``LoadedExamples.prepared``: the
:class:`~tfrs_lab.data.prepared.PreparedDataset`), which Transform, Trainer, Tuner, Evaluator,
BulkInferrer, InfraValidator and StatisticsGen read without ``to_data()``. The splits are computed
from the codes (:meth:`Interactions.split`, equal to :func:`make_split` on the string columns);
``predefined`` alone matches its test file on the string keys, as ``train`` does.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param
from tfrs_lab.config import DataConfig
from tfrs_lab.data.splits import SPLIT_NAMES

__all__ = ["CATALOGUE_COLUMNS", "column_spec", "COLUMNS", "data_section", "DEFAULT_SPLIT_CONFIG", "ExampleGen",
           "FOLD_IN_SPLITS", "FORMAT_PREPARED", "FORMAT_TF_EXAMPLE", "load_table", "LoadedExamples", "open_prepared",
           "PAYLOAD_FORMAT", "PREPARED_FILE", "read_examples", "read_records", "ROW", "ROWS_FILE", "split_rows",
           "SPLIT_OPTIONS", "SPLITS", "write_examples", "write_records"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
FOLD_IN_SPLITS = ("fold_in_validation", "fold_in_test")  # held-out-users: the held-out users' fold-in input
SPLIT_OPTIONS = "split_options"  # property: the task config's data settings of the split, as JSON
DEFAULT_SPLIT_CONFIG = {"train": 8, "validation": 1, "test": 1}
ROW = "_row"
COLUMNS = "columns"  # property: {name: [dtype, width]} of the rating features
CATALOGUE_COLUMNS = "catalogue_columns"
PAYLOAD_FORMAT = "payload_format"  # property (TFX's name): how the Examples hold their rows
FORMAT_TF_EXAMPLE = "FORMAT_TF_EXAMPLE"  # GZIP TFRecords of tf.train.Example (MovieLens, CSV input)
FORMAT_PREPARED = "FORMAT_PREPARED"  # a reference to a prepared dataset (your own data) + split row indices
PREPARED_FILE = "prepared.json"  # FORMAT_PREPARED: {"path", "fingerprint", "name", "counts"} of the prepared dataset
ROWS_FILE = "rows.npy"  # FORMAT_PREPARED: Split-<name>/rows.npy, int64 row indices into the prepared rows


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
    """An Examples artifact read back: the table (original row order) and each split's rows.

    ``data`` is a ``MovieLensData`` (string columns) for TFRecord Examples, and for your own data
    (``FORMAT_PREPARED``) the prepared dataset's codes as ``Interactions`` (``prepared``: the
    ``PreparedDataset`` itself); :meth:`ids`, :meth:`labels` and :meth:`users` answer for both."""

    data: Any  # MovieLensData | Interactions
    splits: dict[str, np.ndarray]  # split name -> row indices into the data's rows, ascending
    protocol: str  # the split's name (tfrs_lab.data.splits.SPLIT_NAMES); its evaluation protocol is PROTOCOLS[protocol]
    split_config: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPLIT_CONFIG))
    split_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # see data_section
    prepared: Any = None  # PreparedDataset of FORMAT_PREPARED Examples, else None

    @property
    def split_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`write_examples` that pass these split settings on."""
        return {"protocol": self.protocol, "split_config": self.split_config, "split_options": self.split_options}

    def ids(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user ids, item ids), object ``[len(rows)]`` of ``str`` each, of ``rows`` (own data: gathered
        from the vocabularies for those rows only)."""
        d = self.data
        if self.prepared is None:
            return d.ratings["user_id"][rows], d.ratings["movie_id"][rows]
        return d.user_ids[d.user[rows]], d.item_ids[d.item[rows]]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """float32 ``[len(rows)]``: the rating (or implicit weight) of ``rows``."""
        d = self.data
        return np.asarray(d.ratings["user_rating"][rows] if self.prepared is None else d.rating[rows], np.float32)

    def users(self) -> np.ndarray:
        """object ``[U]``: every user id with a row, ascending (as strings)."""
        d = self.data
        if self.prepared is None:
            return np.unique(d.ratings["user_id"].astype(str)).astype(object)
        return d.user_ids[np.unique(d.user)]


def open_prepared(examples: Artifact):
    """The :class:`~tfrs_lab.data.prepared.PreparedDataset` a ``FORMAT_PREPARED`` Examples artifact
    references; ComponentError when it is gone or holds other data than the Examples recorded."""
    from tfrs_lab.data.movielens import DataError
    from tfrs_lab.data.prepared import load_prepared

    ref = json.loads((examples.path / PREPARED_FILE).read_text())
    try:
        prepared = load_prepared(ref["path"])
    except DataError as e:
        raise ComponentError(f"examples: {examples.uri} references the prepared dataset {ref['path']}, which cannot be "
                             f"read ({e}): run its ExampleGen again (--no-cache)") from e
    if prepared.fingerprint != ref["fingerprint"]:
        raise ComponentError(f"examples: {examples.uri} references the prepared dataset {ref['path']} with fingerprint "
                             f"{ref['fingerprint'][:16]}, but it now holds {prepared.fingerprint[:16]}: run its "
                             "ExampleGen again (--no-cache)")
    return prepared


def read_examples(examples: Artifact) -> LoadedExamples:
    """Reads an ``Examples`` artifact written by ExampleGen back: TFRecords into a ``MovieLensData``,
    a prepared dataset (``FORMAT_PREPARED``) as ``Interactions`` of its codes (never ``to_data()``)."""
    from tfrs_lab.data.movielens import MovieLensData

    settings = (examples.properties.get("split", "hash"),
                json.loads(examples.properties.get("split_config", json.dumps(DEFAULT_SPLIT_CONFIG))),
                json.loads(examples.properties.get(SPLIT_OPTIONS, "{}")))
    if examples.properties.get(PAYLOAD_FORMAT) == FORMAT_PREPARED:
        from tfrs_lab.data.interactions import Interactions

        prepared = open_prepared(examples)
        rows = {s: np.load(examples.split_uri(s) / ROWS_FILE) for s in examples.split_names}
        return LoadedExamples(Interactions.from_prepared(prepared), rows, *settings, prepared=prepared)
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
    return LoadedExamples(data, splits, *settings)


def data_section(examples: Artifact) -> dict[str, Any]:
    """The task config's ``data`` settings an Examples artifact was split with: ``split`` and, as
    the split needs them, ``time_cutoff``, ``held_out_users`` or ``predefined`` (with the ``data_zip``
    or ``dataset: own`` + ``source`` its files are read from), so a run re-splits identically."""
    return {**json.loads(examples.properties.get(SPLIT_OPTIONS, "{}")), "split": examples.properties.get("split", "hash")}


def write_examples(out: Artifact, data: Any, splits: dict[str, np.ndarray], *, protocol: str = "hash",
                   split_config: dict[str, int] | None = None, split_options: dict[str, Any] | None = None) -> None:
    """Writes ``data`` as the Examples artifact ``out``: a ``MovieLensData`` as ``Split-<name>/``
    records of each split's rows (indices into ``data.ratings``) and the catalogue; a
    ``PreparedDataset`` (your own data) as a reference to it (``prepared.json``) and each split's
    row indices (``Split-<name>/rows.npy``), no record per row. Plus every property readers need,
    the split (``protocol``: its name), ``split_config`` and ``split_options`` (see
    :func:`data_section`) the Trainer checks included. A custom component deriving Examples from
    Examples passes on its input's settings: ``**loaded.split_settings`` (:class:`LoadedExamples`),
    and own data as ``loaded.prepared``."""
    from tfrs_lab.data.prepared import PreparedDataset

    settings = {
        A.SPLIT_NAMES: json.dumps(list(splits)), "split": protocol,
        "split_config": json.dumps(DEFAULT_SPLIT_CONFIG if split_config is None else split_config),
        SPLIT_OPTIONS: json.dumps(split_options or {}, sort_keys=True),
        **{f"num_{k}": int(len(v)) for k, v in splits.items()},
    }
    if isinstance(data, PreparedDataset):
        for name, rows in splits.items():
            logger.info("writing %d %s rows of prepared %s to %s", len(rows), name, data.name, out.uri)
            out.split_uri(name).mkdir(parents=True, exist_ok=True)
            np.save(out.split_uri(name) / ROWS_FILE, np.asarray(rows, np.int64))
        where = str(Path(data.path).absolute())
        (out.path / PREPARED_FILE).write_text(json.dumps(
            {"path": where, "fingerprint": data.fingerprint, "name": data.name, "counts": data.manifest.get("counts", {})},
            indent=1))
        out.properties.update({**settings, PAYLOAD_FORMAT: FORMAT_PREPARED, "dataset": data.name,
                               "prepared_uri": where, "prepared_fingerprint": data.fingerprint})
        return
    columns = {**data.ratings, ROW: np.arange(data.num_ratings, dtype=np.int64)}
    for name, rows in splits.items():
        logger.info("writing %d %s examples to %s", len(rows), name, out.uri)
        write_records(out.split_uri(name) / A.EXAMPLES_FILE, columns, rows)
    write_records(out.path / A.CATALOGUE_DIR / A.EXAMPLES_FILE, data.movies, np.arange(len(data.movies["movie_id"])))
    spec, cat = column_spec(data.ratings), column_spec(data.movies)
    (out.path / "examples_columns.json").write_text(json.dumps(spec))
    (out.path / "catalogue_columns.json").write_text(json.dumps(cat))
    out.properties.update({**settings, PAYLOAD_FORMAT: FORMAT_TF_EXAMPLE, "dataset": data.dataset,
                           COLUMNS: json.dumps(spec), CATALOGUE_COLUMNS: json.dumps(cat)})


def split_rows(protocol: str, ratings: Any, split_config: dict[str, int] | None = None,
               options: Any = None) -> dict[str, np.ndarray]:
    """Row indices per split (int64, ascending): :func:`tfrs_lab.data.splits.make_split`'s ``train``,
    ``validation``, ``test`` (+ ``fold_in_validation``, ``fold_in_test`` on ``held-out-users``) of the
    split ``protocol`` with ``options`` (a ``SplitOptions``); ``hash`` with a ``split_config`` other than
    :data:`DEFAULT_SPLIT_CONFIG` buckets by it instead (TFX's ``hash_buckets``). ``ratings``: the
    string columns (``MovieLensData.ratings``), or ``Interactions`` (the codes of a prepared dataset:
    :meth:`~tfrs_lab.data.interactions.Interactions.split`, the same rows)."""
    from tfrs_lab.data.interactions import Interactions
    from tfrs_lab.data.splits import HASH, HELD_OUT_USERS, hash_buckets, make_split

    coded = isinstance(ratings, Interactions)
    if protocol != HASH or split_config is None or split_config == DEFAULT_SPLIT_CONFIG:
        s = ratings.split(protocol, options) if coded else make_split(protocol, ratings, options)
        out = {"train": s.train, "validation": s.validation, "test": s.test}
        if protocol == HELD_OUT_USERS:
            out.update(zip(FOLD_IN_SPLITS, (s.fold_in_validation, s.fold_in_test)))
        return out
    total = sum(split_config.values())
    buckets = ratings.hash_buckets(total) if coded else hash_buckets(ratings["user_id"], ratings["movie_id"], total)
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
        if (art_dir / PREPARED_FILE).exists():
            raise ComponentError(f"{component}.input_path: {art_dir} is ExampleGen's output of your own data (a "
                                 f"reference to its prepared dataset, no records): give {component} the same source "
                                 "(or input_path + columns) instead; it reuses the preparation")
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


class _AnySplitData(DataConfig):  # pylint: disable=too-few-public-methods
    """``DataConfig`` accepting every split: ExampleGen writes any; a task refuses one it cannot use."""

    supported_splits = SPLIT_NAMES


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
        "split": Param(str, "hash", "hash | leave-last-out | time | held-out-users | predefined "
                       "(docs/architecture.md#splits)"),
        "split_config": Param(dict, DEFAULT_SPLIT_CONFIG, "split: hash: hash buckets per split (train, validation, test)"),
        "time_cutoff": Param(dict, None, "split: time: {validation, test} cut-offs, each a quantile in (0, 1), unix "
                             "seconds or an ISO-8601 date (default 0.8, 0.9)"),
        "held_out_users": Param(dict, None, "split: held-out-users: {validation, test, target_share} (default 0.1, "
                                "0.1, 0.2)"),
        "predefined": Param(str, None, "split: predefined: u1..u5, ua, ub (MovieLens 100K, with data_zip) or a file "
                            "of test interactions of your own data"),
        "beam_runner": Param(str, None, "your own data: prepare it as an Apache Beam pipeline on this runner "
                             "(DirectRunner, FlinkRunner, SparkRunner, DataflowRunner; needs tfrs-lab[beam]); the "
                             "same files and fingerprint as without"),
        "beam_options": Param(list, [], "with beam_runner: Beam pipeline options as KEY=VALUE (flink_master=host:8081)"),
    }

    def __init__(self, id: str | None = None, **parameters: Any) -> None:
        super().__init__(id, **parameters)

        p = self.parameters
        cfg = p["split_config"]
        if list(cfg) != list(SPLITS) or not all(isinstance(v, int) and v > 0 for v in cfg.values()):
            raise ComponentError(f"{self.id}.split_config: give positive bucket counts for train, validation, test "
                                 f"in that order, got {cfg!r}")
        self._own = self._checked_own_source()  # built once: split_data, fingerprint_extra and load reuse it
        self.split_data()  # a bad split option, spec or quick-path column list fails here, naming the parameter
        self._check_beam()

    def split_data(self):
        """The task config's ``DataConfig`` of this ExampleGen's split and options (every split
        allowed: a task refuses the ones it cannot use when its config loads), validated like a
        task config's; ComponentError naming the parameter (``<id>.time_cutoff.validation``)."""
        from tfrs_lab.config import ConfigError, to_dict
        from tfrs_lab.data.predefined import MOVIELENS_100K_SPLITS
        from tfrs_lab.data.spec import OWN
        from tfrs_lab.data.splits import HASH, HELD_OUT_USERS, PREDEFINED, TIME
        from tfrs_lab.schema import build

        p, split = self.parameters, self.parameters["split"]
        if split not in SPLIT_NAMES:
            raise ComponentError(f"{self.id}.split: must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
        if split != HASH and p["split_config"] != DEFAULT_SPLIT_CONFIG:
            raise ComponentError(f"{self.id}.split_config: hash buckets are only read with {self.id}.split=hash, got "
                                 f"split={split}: drop {self.id}.split_config")
        for key, needs in (("time_cutoff", TIME), ("held_out_users", HELD_OUT_USERS)):
            if p[key] is not None and split != needs:
                raise ComponentError(f"{self.id}.{key} is only read with {self.id}.split={needs}, got split={split}: "
                                     f"set {self.id}.split={needs} or drop {self.id}.{key}")
        own = self.own_source()
        name = p["predefined"]
        if split == PREDEFINED and name in MOVIELENS_100K_SPLITS and (
                own is not None or p["input_path"] or p["dataset"] != "movielens/100k-ratings" or not p["data_zip"]):
            raise ComponentError(f"{self.id}.predefined={name} is a split of the MovieLens 100K archive: read the "
                                 f"archive with {self.id}.dataset=movielens/100k-ratings and {self.id}.data_zip "
                                 "(or the pipeline's --data-zip)")
        if split == PREDEFINED and name is not None and name not in MOVIELENS_100K_SPLITS and own is None:
            raise ComponentError(f"{self.id}.predefined={name!r}: choose {', '.join(MOVIELENS_100K_SPLITS)} (MovieLens "
                                 f"100K with {self.id}.data_zip), or a file of test interactions of your own data "
                                 f"({self.id}.source, or input_path + columns)")
        values = {"dataset": OWN if own is not None else p["dataset"], "split": split, "predefined": name,
                  "data_zip": None if own is not None else p["data_zip"],
                  "source": None if own is None else to_dict(own),
                  **{k: p[k] for k in ("time_cutoff", "held_out_users") if p[k] is not None}}
        try:
            return build(_AnySplitData, values, self.id)
        except ConfigError as e:
            raise ComponentError(str(e)) from e

    def _check_beam(self) -> None:
        """``beam_runner`` / ``beam_options``: only for your own data, the runner and options valid
        (Beam imported only when a runner is named); ComponentError naming the parameter."""
        from tfrs_lab.schema import ConfigError

        p = self.parameters
        if p["beam_options"] and not p["beam_runner"]:
            raise ComponentError(f"{self.id}.beam_options needs {self.id}.beam_runner (e.g. beam_runner: DirectRunner)")
        if not p["beam_runner"]:
            return
        if self._own is None:
            raise ComponentError(f"{self.id}.beam_runner prepares your own data: set {self.id}.source (or input_path "
                                 f"+ columns), or drop {self.id}.beam_runner")
        from tfrs_lab.data.beam_prepare import pipeline_options

        try:
            pipeline_options(p["beam_runner"], [str(o) for o in p["beam_options"]])
        except ConfigError as e:
            raise ComponentError(f"{self.id}.beam_runner: {e}") from e

    def split_options(self, data) -> dict[str, Any]:
        """What the Examples record as ``split_options`` (:func:`data_section`) for ``data``, the
        :meth:`split_data`: the options of the split, as the task config's ``data`` keys."""
        from tfrs_lab.config import to_dict
        from tfrs_lab.data.spec import OWN
        from tfrs_lab.data.splits import HELD_OUT_USERS, PREDEFINED, TIME

        if data.split == TIME:
            return {"time_cutoff": to_dict(data.time_cutoff)}
        if data.split == HELD_OUT_USERS:
            return {"held_out_users": to_dict(data.held_out_users)}
        if data.split == PREDEFINED:  # where the split files are read from
            where = {"source": to_dict(data.source)} if data.dataset == OWN else {"data_zip": data.data_zip}
            return {"predefined": data.predefined, "dataset": data.dataset, **where}
        return {}

    def own_source(self):
        """The :class:`~tfrs_lab.data.spec.SourceSpec` of ``source`` or of the quick path, or None
        (built and checked once, when the component is created)."""
        return self._own

    def _checked_own_source(self):
        """:meth:`_own_source`, with a ConfigError turned into a ComponentError naming the parameter."""
        from tfrs_lab.schema import ConfigError

        try:
            return self._own_source()
        except ComponentError:
            raise
        except ConfigError as e:
            raise ComponentError(str(e)) from e

    def _own_source(self):
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

    def prepare(self, cache_dir: str | Path | None = None):
        """Your own data's :class:`~tfrs_lab.data.prepared.PreparedDataset`, prepared as ``train``
        prepares it (:func:`~tfrs_lab.data.prepared.prepare_dataset`; with ``beam_runner`` as an Apache
        Beam pipeline, :func:`~tfrs_lab.data.beam_prepare.prepare_dataset_beam`: the same files and
        fingerprint), cached under ``cache_dir`` (default ``<data_dir>/prepared``, else
        ``$TFRS_LAB_DATA_DIR/prepared``) and reused from there by fingerprint."""
        from tfrs_lab.data.prepared import PREPARED_DIR, prepare_dataset
        from tfrs_lab.schema import ConfigError

        p, own = self.parameters, self.own_source()
        if own is None:
            raise ComponentError(f"{self.id}: prepare() needs your own data ({self.id}.source, or input_path + columns)")
        if cache_dir is None and p["data_dir"]:
            cache_dir = Path(p["data_dir"]).expanduser() / PREPARED_DIR
        if not p["beam_runner"]:
            return prepare_dataset(own, cache_dir=cache_dir, where=f"{self.id}.source")
        from tfrs_lab.data.beam_prepare import prepare_dataset_beam

        try:
            return prepare_dataset_beam(own, runner=p["beam_runner"], beam_options=[str(o) for o in p["beam_options"]],
                                        cache_dir=cache_dir, where=f"{self.id}.source")
        except ConfigError as e:
            raise ComponentError(f"{self.id}.beam_runner: {e}") from e

    def load(self, cache_dir: str | Path | None = None):
        """The ratings and catalogue: a ``MovieLensData`` (MovieLens, synthetic, a CSV or earlier
        Examples), or for your own data its :class:`~tfrs_lab.data.prepared.PreparedDataset`
        (:meth:`prepare`; never converted to string columns)."""
        from tfrs_lab.data.movielens import load_movielens
        from tfrs_lab.data.synthetic import SyntheticSpec

        p = self.parameters
        if self.own_source() is not None:
            return self.prepare(cache_dir)
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
        from tfrs_lab.data.movielens import DataError
        from tfrs_lab.data.prepared import PREPARED_DIR
        from tfrs_lab.training.task import data_split_options

        from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions
        from tfrs_lab.data.prepared import PreparedDataset

        p = self.parameters
        data = self.load(None if p["data_dir"] else ctx.pipeline_root / PREPARED_DIR)
        split = self.split_data()
        if not isinstance(data, PreparedDataset):
            table = data.ratings
        elif p["split"] in STREAMED_SPLITS:  # the codes, as the task's own split computes them
            table = Interactions.from_prepared(data)
        else:  # predefined: the test file's rows are matched on their string keys, as train matches them
            table = data.to_data().ratings
        try:  # the messages name the task config's keys: say which component's parameters they are
            rows = split_rows(p["split"], table, p["split_config"], data_split_options(split, p["split"]))
        except DataError as e:  # a cut-off pair out of order, split files of other data: name our parameters
            raise ComponentError(re.sub(r"\bdata\.(?=time_cutoff|held_out_users|predefined)", f"{self.id}.", str(e))) from e
        options = self.split_options(split)
        if isinstance(data, PreparedDataset):  # the run's data settings, as train --data SPEC --data-dir DIR has them
            from tfrs_lab.config import to_dict
            from tfrs_lab.data.spec import OWN

            where = Path(p["data_dir"]).expanduser() if p["data_dir"] else ctx.pipeline_root
            options = {**options, "dataset": OWN, "source": to_dict(self.own_source()),
                       "data_dir": str(where.absolute())}
        write_examples(ctx.outputs["examples"], data, rows, protocol=p["split"], split_config=p["split_config"],
                       split_options=options)
