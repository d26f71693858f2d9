"""Reindex: a retrieval run's candidate index rebuilt over its catalogue plus new items, without retraining.

``python -m tfrs_lab.export reindex --run RUN --items FILE [--item-columns id=..,text=..,categories=..:|]
[--output-dir DIR]`` (:func:`reindex`) reads the run back as warm start does
(:func:`tfrs_lab.training.runner.load_run`: its config, vocabularies refitted from ``config.yaml``,
the weights of its export), appends the items of ``FILE`` the catalogue lacks and embeds every item
through the trained candidate tower: a new item's id embedding is the out-of-vocabulary row (it
was never trained), its title words (the run's title vocabulary; unknown words -> the unknown
token) and categories (the run's category columns; unknown ones are dropped, logged) are embedded
as for any catalogue item. The query tower, the old items' vectors and so every old score are
unchanged. It then writes a NEW export version with
:func:`tfrs_lab.export.retrieval.export_retrieval` (same signatures, ScaNN or brute-force index as
the run's ``export.index``, titles asset with the new items, warm-up records, fresh-process reload
check): ``RUN/export/<model_name>/<highest + 1>/``, or ``DIR/<highest + 1>/`` with ``--output-dir``.

Items of ``FILE`` whose id is already in the catalogue update nothing (logged and counted).
Refused before anything is written (:class:`ReindexError` / ``DataError``, one line, exit 2): a
``RUN`` that is not a finished retrieval run with an export, a missing or unreadable items file, a
missing column, an existing version.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.data.features import Vocabularies, encode_titles, title_word_ids
from tfrs_lab.data.movielens import GENRE_NAMES, DataError, MovieLensData
from tfrs_lab.data.readers import read_items
from tfrs_lab.data.spec import OWN, ItemsSource, parse_columns
from tfrs_lab.export.cascade import CascadeError, new_version, read_run
from tfrs_lab.export.retrieval import export_retrieval
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.schema import build

__all__ = ["ITEM_KEYS", "ReindexError", "Reindexed", "reindex"]

logger = logging.getLogger(__name__)

ITEM_KEYS = ("id", "text", "categories")
"""Roles ``--item-columns`` takes (the quick path's ``--item-columns``)."""

_MOVIELENS_COLUMNS = {"id": "id", "text": "title", "categories": "genres"}
"""``--item-columns`` of a run not trained on an items file (MovieLens, synthetic): ``id,title,genres``."""


class ReindexError(ValueError):
    """A run, items file or setting a reindex cannot use; the message names the flag and the fix."""


@dataclasses.dataclass(frozen=True)
class Reindexed:
    """What :func:`reindex` wrote.

    Attributes:
      path: the new version directory (``.../<model_name>/<version>``).
      version: its version number.
      new_items: ids of the items added to the catalogue (str [n], in file order).
      existing_items: how many rows of the file named an item already in the catalogue (updated nothing).
      model: the retrieval model over the extended catalogue, in this process.
    """

    path: Path
    version: int
    new_items: np.ndarray
    existing_items: int
    model: RetrievalModel


def _item_source(items: str | Path, item_columns: str | dict | None, cfg) -> ItemsSource:
    """The items table to read: the columns given, else the run's own items table's, else
    ``id,title,genres``."""
    path = Path(items).expanduser()
    if not path.is_file():
        raise ReindexError(f"--items {str(path)!r} is not a file: pass the items table (CSV/TSV/Parquet/JSONL) "
                           "holding the new items")
    own = cfg.data.source.items if cfg.data.dataset == OWN and cfg.data.source is not None else None
    if item_columns is None:
        columns = dataclasses.asdict(own.columns) if own is not None else dict(_MOVIELENS_COLUMNS)
    elif isinstance(item_columns, str):
        columns = parse_columns(item_columns, "--item-columns", ITEM_KEYS)
    else:
        columns = dict(item_columns)
    if "id" not in columns:
        raise ReindexError("--item-columns must name the id column, e.g. id=movieId,text=title")
    return build(ItemsSource, {"path": str(path.absolute()), "columns": columns}, "--item-columns")


def _read(source: ItemsSource, where: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """``read_items`` with messages naming ``--item-columns ROLE=`` rather than a config path."""
    try:
        return read_items(source, where=where)
    except DataError as e:
        raise DataError(str(e).replace(f"{where}.columns.", "--item-columns role ")) from e


def _category_names(cfg, vocab: Vocabularies, run_dir: Path) -> list[str]:
    """The run's category columns by name (column j of ``vocab.genres``); [] when it has none."""
    width = vocab.genres.shape[1]
    if cfg.data.dataset == OWN:
        own = cfg.data.source.items if cfg.data.source is not None else None
        names = [] if own is None else sorted({c for row in read_items(own, where="data.source.items")[2] for c in row})
    else:
        names = list(GENRE_NAMES)
    if len(names) != width and not (not names and width == 1):
        raise ReindexError(f"--run {str(run_dir)!r}: its catalogue has {width} category columns but its items "
                           f"table names {len(names)} categories now: its items file changed; reindex needs it unchanged")
    return names


def _extended(vocab: Vocabularies, data: MovieLensData, cfg, run_dir: Path, ids: np.ndarray, texts: np.ndarray,
              cats: list[list[str]]) -> tuple[Vocabularies, MovieLensData]:
    """The run's vocabularies and catalogue with the new items ``ids`` (str [n]) appended: their
    title tokens through the run's title vocabulary, their categories on the run's columns, zero
    training counts."""
    m = cfg.model
    titles = np.asarray(data.movies["movie_title"], dtype=object)
    words = title_word_ids(titles, m.title_vocab_size)
    same = (np.array_equal(np.asarray(data.movies["movie_id"]).astype(str), vocab.movie_ids.astype(str))
            and np.array_equal(encode_titles(titles, words, m.title_max_tokens), vocab.title_tokens[1:]))
    if not same:
        raise ReindexError(f"--run {str(run_dir)!r}: its vocabularies are not its data's catalogue (a warm start "
                           "from a run on another catalogue): reindex the run whose catalogue it kept")
    names = _category_names(cfg, vocab, run_dir)
    column = {name: j for j, name in enumerate(names)}
    hot = np.zeros((len(ids), vocab.genres.shape[1]), np.float32)
    unknown: set[str] = set()
    for i, row in enumerate(cats):
        for c in row:
            if c in column:
                hot[i, column[c]] = 1.0
            else:
                unknown.add(c)
    if unknown:
        logger.warning("categories the run never saw are dropped (no trained weights): %s", ", ".join(sorted(unknown)))
    tokens = encode_titles(texts, words, m.title_max_tokens)
    unknown_words = int(np.sum(tokens == 1))
    logger.info("new items' titles: %d tokens, %d of them words the run's title vocabulary lacks (unknown token)",
                int(np.sum(tokens > 0)), unknown_words)
    ext = dataclasses.replace(
        vocab, movie_ids=np.concatenate([vocab.movie_ids, ids.astype(object)]),
        title_tokens=np.concatenate([vocab.title_tokens, tokens]),
        genres=np.concatenate([vocab.genres, hot]),
        item_counts=np.concatenate([vocab.item_counts, np.zeros(len(ids), np.int64)]))
    movies = {"movie_id": ext.movie_ids, "movie_title": np.concatenate([titles, texts.astype(object)]),
              "movie_genres": np.concatenate([np.asarray(data.movies["movie_genres"], np.float32), hot])}
    return ext, dataclasses.replace(data, movies=movies)


def _copy_weights(trained: RetrievalModel, model: RetrievalModel, new: int) -> None:
    """``trained``'s weights into ``model`` (the same model over ``new`` more catalogue items): every
    variable as is, the movie-id table with ``new`` rows appended, each a copy of the
    out-of-vocabulary row 0 (a new item's id was never trained)."""
    table = trained.movie_embedding.embeddings
    for source, target in zip(trained.weights, model.weights):
        value = source.numpy()
        if source is table:
            value = np.concatenate([value, np.repeat(value[:1], new, axis=0)])
        if value.shape != tuple(target.shape):
            raise AssertionError(f"weight {source.name} {value.shape} does not fit {target.name} {target.shape}")
        target.assign(value)


def reindex(run: str | Path, items: str | Path, *, item_columns: str | dict | None = None,
            output_dir: str | Path | None = None, version: int | None = None,
            verify: bool = True) -> Reindexed:
    """Writes a new export version of the retrieval ``run`` over its catalogue plus the items of
    ``items`` and returns what it wrote (module docstring).

    Args:
      run: a finished ``python -m tfrs_lab.train retrieval`` run directory (with its export).
      items: the items table (CSV / TSV / Parquet / JSON Lines, read by :mod:`tfrs_lab.data.readers`).
      item_columns: ``"id=..,text=..,categories=..:|"`` or a role -> column mapping (default: the
        run's own items-table columns, else ``id=id,text=title,categories=genres``).
      output_dir: the model's base path for the new version (default ``RUN/export/<model_name>``).
      version: the version number (default: one above the highest there).
      verify: reload in a fresh process and require the same answers before publishing.

    Raises ReindexError / DataError / ConfigError (one line) before anything is written.
    """
    from tfrs_lab.training.retrieval import TASK, RetrievalState, feature_columns, hyperparameters, split_columns
    from tfrs_lab.training.runner import load_run
    from tfrs_lab.training.task import RunContext, Trained
    from tfrs_lab.evaluation.metrics import metric_ks

    try:
        exported = read_run(run, "retrieval", "--run")
        cfg = exported.config
        base = (exported.run_dir / "export" / cfg.export.model_name if output_dir is None
                else Path(output_dir).expanduser().absolute())
        version = new_version(base, version)
    except CascadeError as e:
        raise ReindexError(str(e)) from e
    if cfg.data.source is not None and any(f.table == "items" for f in cfg.data.source.features):
        raise ReindexError(f"--run {str(run)!r} was trained with item features (data.source.features), which "
                           "reindex does not encode for new items yet: add the items to the items table and train again")
    ids, texts, cats = _read(_item_source(items, item_columns, cfg), "--items")

    warm, prepared = load_run(TASK, exported.run_dir)
    vocab, data, split = warm.vocab, prepared.data, prepared.split
    known = np.isin(ids.astype(str), vocab.movie_ids.astype(str))
    logger.info("%s: %d items, %d already in the run's catalogue of %d (they update nothing), %d new",
                items, len(ids), int(known.sum()), len(vocab.movie_ids), int((~known).sum()))
    new = ~known
    ext_vocab, ext_data = _extended(vocab, data, cfg, exported.run_dir, ids[new], texts[new], [c for c, n in zip(cats, new) if n])

    hp = hyperparameters(cfg, vocab.has_user_features)
    sample = feature_columns(data, split.train[:2], hp, split.train)
    trained = RetrievalModel(vocab, hp)
    warm.restore(trained, lambda: RetrievalModel(vocab, hp), sample)
    model = RetrievalModel(ext_vocab, hp)
    model.compute_loss(sample)
    _copy_weights(trained, model, int(new.sum()))

    x = dataclasses.replace(cfg.export, version=version, verify=verify)
    run_cfg = dataclasses.replace(cfg, export=x)
    state = RetrievalState(hp, split_columns(ext_data, split, hp), metric_ks(split.protocol, cfg.eval.ks))
    ctx = RunContext(cfg=run_cfg, data=ext_data, split=split, vocab=ext_vocab, stage=exported.run_dir,
                     output_dir=exported.run_dir, verbose=0, distribution=None)
    arguments = TASK.export_arguments(ctx, Trained(model, state, [], 0, 0))
    arguments.update(model_name=base.name, version=version)
    result = export_retrieval(model, base.parent, **arguments)
    logger.info("reindexed %s: %d new items, %d catalogue items in %s", exported.run_dir, int(new.sum()),
                len(ext_vocab.movie_ids), result.path)
    return Reindexed(path=result.path, version=version, new_items=ids[new], existing_items=int(known.sum()),
                     model=model)
