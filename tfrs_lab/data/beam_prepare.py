"""The prepared dataset (:mod:`tfrs_lab.data.prepared`) built by an Apache Beam pipeline, on any
Beam runner (``DirectRunner`` here and in the tests; ``DataflowRunner``, ``FlinkRunner``,
``SparkRunner`` on a cluster; docs/own-data.md#preparing-with-apache-beam).

The pipeline runs the single-machine path's own steps (the functions of :mod:`tfrs_lab.data.prepared`),
one interactions file (shard) per element::

    files -> Reshuffle -> Parse (_interaction_file, _filter_shard) -> shards, stats, errors
    items / users tables (_side_tables)                            -> one element, a side input
    shards -> IdCounts (_id_counts) -> CombinePerKey(sum)          -> vocabulary counts
    stats + errors + counts + tables -> Plan (_check_rows, _check_kept, _vocabulary): a side input
    shards -> Encode (_encode_shard; columns written at the shard's row offset) -> blocks of users
           -> GroupByKey -> Sequence (_sequence_rows; written at the block's offset)

Typed features (``data.source.features``; the steps of :mod:`tfrs_lab.data.typed`): a shard's
context (interactions table) features are converted in Parse (``interaction_values``), their values
counted with the ids (``count_values``) and fitted in Plan (``fit_vocabulary``), which also encodes
and writes the items / users tables' features (``side_features``) and preallocates the context
features' arrays; Encode writes a shard's arrays at its offsets (``encode_values``); numeric and
timestamp statistics are computed over the whole column in shard order (GroupByKey by feature ->
``column_stats``), so they equal the single-machine ones exactly.

and writes exactly the files :func:`~tfrs_lab.data.prepared.prepare_dataset` writes (same bytes,
manifest and fingerprint, so either path reuses the other's directory). Workers write into the
hidden staging directory beside the target: positional writes into preallocated ``.npy`` files (each
shard its rows, each block of users its sequence rows), so the output directory and the source
files must be on a filesystem every worker mounts (local disk for ``DirectRunner``; NFS or another
shared mount on a cluster). The launcher hashes the sources (fingerprint) and renames the staging
directory into place when the pipeline succeeded. Source URLs (``gs://``, ``s3://``, ...;
:mod:`tfrs_lab.data.filesystem`) are read by each worker through a local copy of its shard; a URL
``cache_dir`` works with the runners that run on the launcher (``DirectRunner``): the pipeline
writes the local mirror, which is then uploaded.

Bad input: every shard's error is collected (never raised inside a worker, where runners wrap it);
the launcher raises the one the single-machine path would raise first (file order, then the
checks over all rows in its order), as the same one-line :class:`DataError`, and nothing is left
behind A source changed or removed while the pipeline ran and a worker's failed write (a
full disk) are the same one-line :class:`DataError`. Apache Beam is imported only here, lazily: ``pip install 'tfrs-lab[beam]'``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.filesystem import RemoteFile, is_url, local_path
from tfrs_lab.data.prepared import (_ARRAYS, PreparedDataset, _cached, _check_kept, _check_rows, _clear_incomplete,
                                    _encode_shard, _filter_shard, _id_counts, _interaction_file, _manifest,
                                    _published, _sequence_rows, _Shard, _ShardStats, _side_tables, _sorted_counts,
                                    _target, _Vocabulary, _vocabulary, _write_manifest, _write_tables, as_file,
                                    check_unchanged, writing)
from tfrs_lab.data.readers import resolve_paths
from tfrs_lab.data.spec import FeatureSpec, SourceSpec
from tfrs_lab.data.typed import (_PARTS, FeatureColumn, column_stats, count_values, encode_values, feature_entry,
                                 fit_vocabulary, interaction_part, interaction_values, offsets_of, save_features,
                                 save_vocabulary, side_features)
from tfrs_lab.schema import ConfigError
from tfrs_lab.staging import staged_directory

__all__ = ["BEAM_INSTALL", "USERS_PER_BLOCK", "pipeline_options", "prepare_dataset_beam"]

logger = logging.getLogger(__name__)

BEAM_INSTALL = "pip install 'tfrs-lab[beam]'"
"""How to install the optional Apache Beam dependency."""
USERS_PER_BLOCK = 4096
"""Users per sequence-ordering element (a block's rows are sorted and written together)."""
_ERRORS = ".errors.json"  # in the staging directory: the error the pipeline collected (bad input)
_COUNTS = ".counts.json"  # in the staging directory: the manifest's counts (removed before publishing)
_SIDE_FEATURES = ".features.json"  # in the staging directory: the items / users features' manifest entries
_STATS = ".stats.{}.json"  # in the staging directory: a numeric / timestamp context feature's statistics
_COLUMNS = ("user", "item", "rating", "timestamp")
_LOCAL_RUNNERS = {"DirectRunner": "FnApiRunner"}
"""Beam 2.77's ``DirectRunner`` first fetches the Prism runner's binary from GitHub (every run, when
it is not cached) and falls back to the in-process ``FnApiRunner`` when that fails; a preparation
never downloads anything, so ``DirectRunner`` means that in-process runner here (``PrismRunner``
can still be named explicitly)."""
_LAUNCHER_RUNNERS = {"DirectRunner", "FnApiRunner", "PrismRunner"}
"""Runners whose workers run on the launcher's machine (they see its local staging directory)."""


def _beam() -> Any:
    """The ``apache_beam`` module; ConfigError with the install command when it is missing."""
    try:
        import apache_beam as beam  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ConfigError(f"--runner needs Apache Beam, which is not installed: {BEAM_INSTALL}") from e
    return beam


def pipeline_options(runner: str, beam_options: Sequence[str] = ()) -> Any:
    """Beam ``PipelineOptions`` of ``runner`` plus ``KEY=VALUE`` pairs (``--beam-option``), e.g.
    ``project=my-project``, ``temp_location=gs://bucket/tmp``, ``flink_master=host:8081``.

    ``DirectRunner`` runs on Beam's in-process Python runner (``FnApiRunner``; it honours
    ``direct_num_workers`` and ``direct_running_mode``), never fetching the Prism binary.

    Raises ConfigError for an unknown runner, a pair without ``=`` or naming the runner (pass it as
    ``runner``), and when Apache Beam is not installed.
    """
    beam = _beam()
    if not runner or not runner.strip():
        raise ConfigError("--runner: name a Beam runner such as DirectRunner, DataflowRunner, FlinkRunner or "
                          "SparkRunner")
    from apache_beam.runners.runner import create_runner  # pylint: disable=import-outside-toplevel

    try:
        create_runner(runner)
    except ValueError as e:
        raise ConfigError(f"--runner {runner}: {' '.join(str(e).split())}") from e
    flags = [f"--runner={_LOCAL_RUNNERS.get(runner, runner)}"]
    for pair in beam_options:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"--beam-option {pair!r}: expected KEY=VALUE, such as temp_location=/shared/tmp "
                              "(a Beam pipeline option without its leading --)")
        if key == "runner":
            raise ConfigError(f"--beam-option {pair!r}: name the runner with --runner, not as a Beam option")
        flags.append(f"--{key}={value}")
    return beam.options.pipeline_options.PipelineOptions(flags)


def prepare_dataset_beam(spec: SourceSpec, *, runner: str, beam_options: Sequence[str] = (),
                         cache_dir: str | os.PathLike | None = None, where: str = "data.source",
                         users_per_block: int = USERS_PER_BLOCK) -> PreparedDataset:
    """:func:`~tfrs_lab.data.prepared.prepare_dataset` as an Apache Beam pipeline on ``runner``.

    Reuses a dataset already prepared with the same fingerprint (by either path); otherwise runs the
    pipeline into a staging directory beside the target and renames it into place on success.

    Args:
        spec: the source spec (``data.source``); its files must be readable by every worker.
        runner: a Beam runner name (``DirectRunner``, ``DataflowRunner``, ``FlinkRunner``, ...).
        beam_options: ``KEY=VALUE`` Beam pipeline options passed through (:func:`pipeline_options`).
        cache_dir: the folder of prepared datasets (a path every worker can write).
        where: the spec's dotted path in messages.
        users_per_block: users per sequence-ordering element (memory per element vs. parallelism).

    Raises:
        ConfigError: Beam missing, a bad option or runner. DataError: the single-machine path's
        one-line error; nothing is left behind (not even a folder this call created).
    """
    if users_per_block < 1:
        raise ConfigError(f"users_per_block must be at least 1, got {users_per_block}")
    options = pipeline_options(runner, beam_options)
    if is_url(local_path(cache_dir)) and runner not in _LAUNCHER_RUNNERS:
        raise ConfigError(f"--output-dir {cache_dir}: with --runner {runner} the workers write the prepared arrays "
                          "in place, which needs a filesystem they all mount (a shared path, not a URL); a URL "
                          f"works with {' or '.join(sorted(_LAUNCHER_RUNNERS))}, or without --runner")
    target, fp, sources, stats = _target(spec, cache_dir, where)
    if (found := _cached(spec, target, fp)) is not None:
        return found
    files = resolve_paths(spec.interactions.path, f"{where}.interactions.path")
    local = target.local
    _clear_incomplete(local, fp)
    created = [p for p in [local.parent, *local.parent.parents] if not p.exists()]
    try:
        with writing(local), staged_directory(local, replace=False) as stage:
            _run_pipeline(options, spec, files, stage, where, users_per_block)
            errors = stage / _ERRORS
            if errors.exists():
                raise DataError(json.loads(errors.read_text(encoding="utf-8"))["error"])
            check_unchanged(stats)
            counts = json.loads((stage / _COUNTS).read_text(encoding="utf-8"))
            (stage / _COUNTS).unlink()
            shapes = {k: np.load(stage / f"{k}.npy", mmap_mode="r").shape for k in _ARRAYS}
            _write_manifest({**_manifest(spec, fp, sources, counts, shapes), "features": _features_manifest(spec, stage)},
                            stage)
    except BaseException:
        for folder in created:  # innermost first: only the folders this call made, only when empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    logger.info("prepared %s into %s with Beam (%s)", spec.name, local, runner)
    return _published(spec, target)


# --------------------------------------------------------------------------- the pipeline


@dataclasses.dataclass
class _Plan:
    """What the writing steps need (a side input): the vocabularies and every shard's offsets."""

    vocab: _Vocabulary
    first_kept: dict[int, int]  # shard -> its first row in the prepared columns
    first_read: dict[int, int]  # shard -> its first row among all rows read (row-number timestamps)
    sequence_offsets: np.ndarray  # int64 [U+1]
    feature_vocabularies: dict[str, Any] = dataclasses.field(default_factory=dict)  # context feature -> pyarrow strings
    first_value: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)  # multi_categorical: shard -> first code


def _run_pipeline(options: Any, spec: SourceSpec, files: list[Path | RemoteFile], stage: Path, where: str,
                  block: int) -> None:
    """:func:`_run`; an OSError of a worker's write (a full disk), which runners re-raise wrapped or
    re-typed, is raised as the OSError itself (one line through :func:`writing`)."""
    try:
        _run(options, spec, files, stage, where, block)
    except Exception as e:  # pylint: disable=broad-except  # only to find the OSError inside
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from e


def _run(options: Any, spec: SourceSpec, files: list[Path | RemoteFile], stage: Path, where: str, block: int) -> None:
    beam = _beam()
    w = f"{where}.interactions"
    side = beam.pvalue.AsSingleton
    with beam.Pipeline(options=options) as p:
        tables = (p | "TablesSeed" >> beam.Create([None])
                  | "ReadTables" >> beam.Map(_read_side_tables, spec=spec, where=where))
        parsed = (p | "Files" >> beam.Create(list(enumerate(str(f) for f in files)))
                  | "Spread" >> beam.Reshuffle()
                  | "Parse" >> beam.FlatMap(_parse, spec=spec, where=w, source=where, tables=side(tables)).with_outputs(
                      "stats", "errors", "feature_errors", "feature_sizes", main="shards"))
        counts = (parsed.shards
                  | "IdCounts" >> beam.FlatMap(_shard_id_counts)
                  | "SumCounts" >> beam.CombinePerKey(sum))
        plan = (p | "PlanSeed" >> beam.Create([None])
                | "Plan" >> beam.Map(_plan, spec=spec, files=[str(f) for f in files], where=where, stage=str(stage),
                                     tables=side(tables), stats=beam.pvalue.AsList(parsed.stats),
                                     errors=beam.pvalue.AsList(parsed.errors), counts=beam.pvalue.AsList(counts),
                                     feature_errors=beam.pvalue.AsList(parsed.feature_errors),
                                     feature_sizes=beam.pvalue.AsList(parsed.feature_sizes)))
        (parsed.shards
         | "Encode" >> beam.FlatMap(_encode_and_write, plan=side(plan), stage=str(stage), spec=spec,
                                    users_per_block=block)
         | "ByUserBlock" >> beam.GroupByKey()
         | "Sequence" >> beam.Map(_sequence_block, plan=side(plan), stage=str(stage), users_per_block=block))
        (parsed.shards
         | "StatsValues" >> beam.FlatMap(_stats_values, spec=spec)
         | "ByFeature" >> beam.GroupByKey()
         | "FeatureStats" >> beam.Map(_feature_stats, spec=spec, plan=side(plan), stage=str(stage)))


def _read_side_tables(_: None, spec: SourceSpec, where: str) -> dict[str, Any]:
    """The catalogue and users table (one worker), or the error reading them raised."""
    try:
        catalogue, user_table = _side_tables(spec, where)
    except DataError as e:
        return {"error": str(e)}
    return {"catalogue": catalogue, "user_table": user_table}


def _parse(element: tuple[int, str], spec: SourceSpec, where: str, source: str,
           tables: dict[str, Any]) -> Iterator[Any]:
    """One file -> ``(index, _Shard, its context features' Values)``; ``stats``: ``(index,
    _ShardStats)``; ``errors``: ``(index, message)``; ``feature_errors``: ``(index, message)`` of
    its context features (raised after the checks over all shards, as on one machine);
    ``feature_sizes``: ``(index, {multi_categorical feature: values})``. ``source``: the spec's
    dotted path, ``where`` its interactions table's."""
    beam = _beam()
    index, file = element
    try:
        parsed = _interaction_file(as_file(file), spec, where)
    except DataError as e:
        yield beam.pvalue.TaggedOutput("errors", (index, str(e)))
        return
    if "error" in tables:  # reported in the order the single-machine path reads the tables
        yield beam.pvalue.TaggedOutput("stats", (index, _ShardStats(len(parsed[0]), 0, 0, [])))
        return
    catalogue = tables["catalogue"]
    catalogue_ids = None
    if catalogue is not None:
        import pyarrow as pa  # pylint: disable=import-outside-toplevel

        catalogue_ids = pa.array(catalogue[0], pa.string())
    shard, stats = _filter_shard(parsed, spec, catalogue_ids)
    yield beam.pvalue.TaggedOutput("stats", (index, stats))
    try:
        values = interaction_values(spec, interaction_part(spec, as_file(file), shard.row, source), source)
    except DataError as e:
        yield beam.pvalue.TaggedOutput("feature_errors", (index, str(e)))
        return
    yield beam.pvalue.TaggedOutput("feature_sizes", (index, {name: len(v.strings) for name, v in values.items()
                                                            if v.lengths is not None}))
    yield index, shard, values


def _shard_id_counts(element: tuple[int, _Shard, dict]) -> Iterator[tuple[tuple[str, str], int]]:
    """``(("user" | "item" | "feature:<name>", value), count)`` of one shard's kept rows: ids and
    the values (words) of its context features with a vocabulary (summed over shards by the combine)."""
    _, shard, features = element
    for kind, values in (("user", shard.users), ("item", shard.items)):
        ids, counts = _id_counts(values)
        yield from zip(((kind, v) for v in ids.to_pylist()), counts.tolist())
    for name, values in features.items():
        if values.strings is not None:
            distinct, counts = count_values(values)
            yield from zip(((f"feature:{name}", v) for v in distinct.to_pylist()), counts.tolist())


def _plan(_: None, spec: SourceSpec, files: list[str], where: str, stage: str, tables: dict[str, Any],
          stats: list[tuple[int, _ShardStats]], errors: list[tuple[int, str]],
          counts: list[tuple[tuple[str, str], int]], feature_errors: list[tuple[int, str]],
          feature_sizes: list[tuple[int, dict[str, int]]]) -> _Plan | None:
    """The checks over all shards (the single-machine order), the vocabularies, the items / users
    tables' features (written here), the tables and the preallocated columns (context features'
    too); None (and the first error written for the launcher) on bad input."""
    stage_dir = Path(stage)
    try:
        if errors:
            raise DataError(min(errors)[1])
        _check_rows(sum(s.rows for _, s in stats), [as_file(f) for f in files], where)
        if "error" in tables:
            raise DataError(tables["error"])
        ordered = [s for _, s in sorted(stats, key=lambda x: x[0])]
        _check_kept(ordered, spec)
    except DataError as e:
        (stage_dir / _ERRORS).write_text(json.dumps({"error": str(e)}), encoding="utf-8")
        return None
    by_kind: dict[str, tuple[list[str], list[int]]] = {"user": ([], []), "item": ([], [])}
    for (kind, value), count in counts:
        by_kind.setdefault(kind, ([], []))
        by_kind[kind][0].append(value)
        by_kind[kind][1].append(count)
    vocab = _vocabulary(_sorted_counts(*by_kind["user"]), _sorted_counts(*by_kind["item"]), tables["catalogue"],
                        tables["user_table"], sorted({x for s in ordered for x in s.absent_ids}), spec)
    try:
        side = side_features(spec, where, item_ids=vocab.item_ids.to_numpy(zero_copy_only=False),
                             user_ids=vocab.user_ids.to_numpy(zero_copy_only=False))
        if feature_errors:
            raise DataError(min(feature_errors)[1])
    except DataError as e:
        (stage_dir / _ERRORS).write_text(json.dumps({"error": str(e)}), encoding="utf-8")
        return None
    kept = np.concatenate([[0], np.cumsum([s.positive - (s.absent_rows if spec.missing_items == "drop" else 0)
                                           for s in ordered])]).astype(np.int64)
    read = np.concatenate([[0], np.cumsum([s.rows for s in ordered])]).astype(np.int64)
    indices = sorted(i for i, _ in stats)
    n = int(kept[-1])
    offsets = vocab.sequence_offsets()
    for k in _COLUMNS + ("sequence_rows",):
        np.lib.format.open_memmap(stage_dir / f"{k}.npy", mode="w+", dtype=_ARRAYS[k], shape=(n,)).flush()
    np.save(stage_dir / "sequence_offsets.npy", offsets)
    vocabularies, first_value = _plan_features(spec, stage_dir, side, by_kind, n,
                                               [sizes for _, sizes in sorted(feature_sizes, key=lambda x: x[0])],
                                               indices)
    _write_tables(*vocab.tables(), stage_dir)
    (stage_dir / _COUNTS).write_text(json.dumps(
        {"interactions": n, "users": len(vocab.user_counts), "items": len(vocab.item_counts),
         "categories": vocab.num_categories}), encoding="utf-8")
    return _Plan(vocab, {i: int(kept[j]) for j, i in enumerate(indices)},
                 {i: int(read[j]) for j, i in enumerate(indices)}, offsets, vocabularies, first_value)


def _context_shapes(spec: FeatureSpec, n: int, values: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """part -> (dtype, shape) of a context feature's arrays over ``n`` rows (``values``: its
    multi_categorical values in all)."""
    t = spec.type
    if t == "categorical":
        return {"codes": (np.int32, (n,))}
    if t == "multi_categorical":
        return {"codes": (np.int32, (values,)), "offsets": (np.int64, (n + 1,))}
    if t == "text":
        return {"codes": (np.int32, (n, spec.max_tokens))}
    return {"values": ({"numeric": np.float32, "timestamp": np.int64, "dense": np.float32}[t],
                       (n, spec.size) if t == "dense" else (n,))}


def _plan_features(spec: SourceSpec, stage: Path, side: dict[str, FeatureColumn],
                   counts: dict[str, tuple[list[str], list[int]]], n: int, sizes: list[dict[str, int]],
                   indices: list[int]) -> tuple[dict[str, Any], dict[str, dict[int, int]]]:
    """Writes the items / users tables' features (their manifest entries into ``.features.json``),
    the context features' vocabularies and their preallocated arrays; returns (context feature ->
    its vocabulary, multi_categorical feature -> shard -> its first value's position)."""
    if not spec.features:
        return {}, {}
    folder = stage / "features"
    folder.mkdir(exist_ok=True)
    (stage / _SIDE_FEATURES).write_text(json.dumps(save_features(side, stage)), encoding="utf-8")
    vocabularies, first_value = {}, {}
    for f in spec.features:
        if f.table != "interactions":
            continue
        vocab, vcounts = fit_vocabulary(f, *counts.get(f"feature:{f.name}", ([], [])))
        if f.type in ("categorical", "multi_categorical", "text"):
            vocabularies[f.name] = vocab
        save_vocabulary(f.name, vocab.to_pylist(), vcounts, folder)
        per_shard = [s.get(f.name, 0) for s in sizes]
        starts = np.concatenate([[0], np.cumsum(per_shard)]).astype(np.int64)
        if f.type == "multi_categorical":
            first_value[f.name] = {i: int(starts[j]) for j, i in enumerate(indices)}
        for part, (dtype, shape) in _context_shapes(f, n, int(starts[-1])).items():
            np.lib.format.open_memmap(folder / f"{f.name}.{part}.npy", mode="w+", dtype=dtype, shape=shape).flush()
    return vocabularies, first_value


def _features_manifest(spec: SourceSpec, stage: Path) -> dict[str, Any]:
    """The manifest's ``features`` (as :func:`~tfrs_lab.data.typed.save_features` gives it) from
    what the pipeline wrote; removes its working files."""
    if not spec.features:
        return {}
    side = json.loads((stage / _SIDE_FEATURES).read_text(encoding="utf-8"))
    (stage / _SIDE_FEATURES).unlink()
    out = {}
    for f in spec.features:
        if f.table != "interactions":
            out[f.name] = side[f.name]
            continue
        shapes = {}
        for part in _context_shapes(f, 0, 0):
            array = np.load(stage / "features" / f"{f.name}.{part}.npy", mmap_mode="r")
            shapes[part] = (array.dtype.name, array.shape)
        stats = {}
        if f.type in ("numeric", "timestamp"):
            path = stage / _STATS.format(f.name)
            stats = json.loads(path.read_text(encoding="utf-8"))
            path.unlink()
        out[f.name] = feature_entry(f, dict(sorted(shapes.items(), key=lambda kv: _PARTS.index(kv[0]))), stats)
    return out


def _stats_values(element: tuple[int, _Shard, dict], spec: SourceSpec) -> Iterator[tuple[str, tuple[int, np.ndarray]]]:
    """``(feature, (shard, values))`` of every numeric / timestamp context feature of one shard."""
    index, _, features = element
    for f in spec.features:
        if f.table == "interactions" and f.type in ("numeric", "timestamp"):
            yield f.name, (index, features[f.name].numbers)


def _feature_stats(element: tuple[str, Iterable[tuple[int, np.ndarray]]], spec: SourceSpec, plan: _Plan | None,
                   stage: str) -> None:
    """A numeric / timestamp context feature's statistics over every shard's values, in shard
    order (the whole column, as on one machine: exact mean, std and quantiles), into the stage."""
    if plan is None:
        return
    name, pieces = element
    feature = next(f for f in spec.features if f.name == name)
    pieces = sorted(pieces, key=lambda piece: piece[0])
    values = np.concatenate([v for _, v in pieces]) if pieces else np.zeros(0)
    Path(stage, _STATS.format(name)).write_text(json.dumps(column_stats(feature, values)), encoding="utf-8")


def _write_at(path: Path, start: int, values: np.ndarray) -> None:
    """Writes ``values`` into the preallocated ``.npy`` file ``path`` from row ``start`` on (a row
    of a 2-D file being its second dimension's values)."""
    if not len(values):
        return
    header = np.load(path, mmap_mode="r")
    values = np.ascontiguousarray(values, dtype=header.dtype)
    offset = header.offset + start * header.dtype.itemsize * int(np.prod(header.shape[1:]))
    del header
    fd = os.open(path, os.O_WRONLY)
    try:
        data = memoryview(values.tobytes())
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


def _encode_and_write(element: tuple[int, _Shard, dict], plan: _Plan | None, stage: str, spec: SourceSpec,
                      users_per_block: int) -> Iterable[tuple[int, Any]]:
    """Encodes one shard, writes its columns (its context features' too) at its row offset;
    ``(user block, piece)`` for the sequence order, a piece being (shard, user codes, timestamps,
    item ranks, rows)."""
    if plan is None:
        return []
    index, shard, features = element
    columns = _encode_shard(shard, plan.vocab, plan.first_read[index])
    first = plan.first_kept[index]
    for k in _COLUMNS:
        _write_at(Path(stage) / f"{k}.npy", first, columns[k])
    for f in spec.features:
        if f.table == "interactions":
            encoded = encode_values(f, features[f.name], plan.feature_vocabularies.get(f.name))
            path = Path(stage) / "features" / f"{f.name}.{{}}.npy"
            if f.type == "multi_categorical":
                start = plan.first_value[f.name][index]
                _write_at(Path(str(path).format("codes")), start, encoded["codes"])
                _write_at(Path(str(path).format("offsets")), first + 1, offsets_of(encoded["lengths"], start))
            else:
                part = "values" if "values" in encoded else "codes"
                _write_at(Path(str(path).format(part)), first, encoded[part])
    user = columns["user"]
    rank = plan.vocab.item_rank[columns["item"]]
    block = user // users_per_block
    rows = first + np.arange(len(user), dtype=np.int64)
    out = []
    for b in np.unique(block):
        mask = block == b
        out.append((int(b), (index, user[mask], columns["timestamp"][mask], rank[mask], rows[mask])))
    return out


def _sequence_block(element: tuple[int, Iterable[tuple]], plan: _Plan | None, stage: str,
                    users_per_block: int) -> None:
    """Orders one block of users' rows by (user, time, item) and writes them at the block's offset.
    Pieces in shard order keep ties in row order, as the single-machine stable sort does."""
    if plan is None:
        return
    block, pieces = element
    pieces = sorted(pieces, key=lambda piece: piece[0])
    user, timestamp, rank, rows = (np.concatenate([piece[k] for piece in pieces]) for k in range(1, 5))
    lo = block * users_per_block
    hi = min(lo + users_per_block, len(plan.vocab.user_counts))
    order = _sequence_rows(user - lo, timestamp, rank, hi - lo, len(plan.vocab.item_counts))
    _write_at(Path(stage) / "sequence_rows.npy", int(plan.sequence_offsets[lo]), rows[order])
