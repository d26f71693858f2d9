"""The dataset spec of your own data (``data.dataset: own``, ``data.source: ...``; docs/own-data.md).

A spec names the files and which of their columns play which role. It is part of the task config
(``data.source``), built and validated by :func:`tfrs_lab.config.build` like every other section,
so errors name the dotted path (``data.source.interactions.columns.user must not be empty``) and
a run's ``config.yaml`` reproduces it. :mod:`tfrs_lab.data.readers` turns the files it names into
the in-memory :class:`~tfrs_lab.data.movielens.MovieLensData` every task consumes.

Example (``--data spec.yaml`` holds the ``data.source`` mapping)::

    interactions:
      path: logs/plays-*.csv          # a file or a glob of shards
      columns: {user: uid, item: sku, rating: plays, label: implicit, time: ts, time_format: iso8601}
    items:
      path: catalogue.parquet
      columns: {id: sku, text: name, categories: tags, separator: "|"}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from tfrs_lab.data.filesystem import is_url
from tfrs_lab.schema import ConfigError

__all__ = ["CsvOptions", "FEATURE_SIDES", "FEATURE_TYPES", "FORMATS", "FeatureSpec", "RESERVED_FEATURE_NAMES", "InteractionColumns", "InteractionsSource", "ItemColumns", "ItemsSource",
           "OWN", "QUICK_FLAGS", "SourceSpec", "UserColumns", "UsersSource", "parse_columns", "quick_source",
           "resolve_spec_paths"]

OWN = "own"
"""``data.dataset`` value that reads ``data.source``."""

FORMATS = ("auto", "csv", "tsv", "parquet", "jsonl", "tfrecord")
"""File formats; ``auto`` picks by suffix (``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``,
``.jsonl``/``.json``/``.ndjson``, ``.tfrecord``/``.tfrecords``/``.gz``; any other suffix, such as
``.dat`` or ``.txt``, is delimited text whose delimiter is sniffed from its first line)."""

Format = Literal["auto", "csv", "tsv", "parquet", "jsonl", "tfrecord"]


def _non_empty(value: str | None, path: str) -> None:
    if value is not None and not value.strip():
        raise ConfigError(f"{path} must not be empty: name a column of the file")


@dataclass(frozen=True, kw_only=True)
class CsvOptions:
    """How delimited text (csv, tsv, sniffed text) is read.

    ``delimiter``: one character; ``null`` = ``,`` for csv, tab for tsv, sniffed otherwise.
    ``header``: whether the first line names the columns; without it ``names`` must list them.
    ``quoting``: whether ``quotechar`` quotes values; ``null`` = on for csv, off for tsv and
    sniffed text (tab-separated exports often hold bare quotes inside values).
    ``encoding``: the text encoding (``utf-8``, ``latin-1``, ...); values are decoded to ``str``.
    """

    delimiter: str | None = None
    header: bool = True
    names: tuple[str, ...] = ()
    quoting: bool | None = None
    quotechar: str = '"'
    encoding: str = "utf-8"

    def validate(self, path: str) -> None:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError(f"{path}.delimiter must be one character, got {self.delimiter!r}")
        if len(self.quotechar) != 1:
            raise ConfigError(f"{path}.quotechar must be one character, got {self.quotechar!r}")
        if not self.header and not self.names:
            raise ConfigError(f"{path}.names must list the column names when {path}.header is false")
        if self.header and self.names:
            raise ConfigError(f"{path}.names renames the columns of a file without a header: set {path}.header "
                              "to false or drop the names")
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"{path}.encoding {self.encoding!r} is not a known text encoding: "
                              "use e.g. utf-8 or latin-1") from None


@dataclass(frozen=True, kw_only=True)
class InteractionColumns:
    """Column roles of the interactions table (one row per user-item interaction).

    ``user``, ``item``: id columns (any type; ids become strings). ``rating``: optional value column,
    read as ``label``: ``explicit`` (a rating, kept as is), ``implicit`` (a weight such as a play
    count, kept as is; without ``rating`` every row weighs 1.0) or ``binary`` (0/1, false/true:
    only the positive rows are kept, as 1.0). ``time``: optional, ``unix`` seconds (numbers) or
    ``iso8601`` text (``2011-05-01T12:00:00Z``, offsets allowed); without it the row order
    within the table is the time order (timestamps 0, 1, 2, ... as row numbers).
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    label: Literal["explicit", "implicit", "binary"] = "explicit"
    time: str | None = None
    time_format: Literal["unix", "iso8601"] = "unix"

    def validate(self, path: str) -> None:
        for name in ("user", "item", "rating", "time"):
            _non_empty(getattr(self, name), f"{path}.{name}")
        if self.user == self.item:
            raise ConfigError(f"{path}.user and {path}.item name the same column {self.user!r}: name two columns")

    def columns(self) -> dict[str, str]:
        """Role -> column name of the roles in use (``user``, ``item``, and ``rating``/``time`` if set)."""
        return {r: c for r, c in (("user", self.user), ("item", self.item), ("rating", self.rating),
                                   ("time", self.time)) if c is not None}


@dataclass(frozen=True, kw_only=True)
class ItemColumns:
    """Column roles of the items table: ``id`` (unique per row), optional ``text`` (display name and
    the title feature) and optional ``categories`` (multi-valued: ``separator``-joined text, or a
    list column in Parquet / JSON Lines / TFRecord)."""

    id: str = "item_id"
    text: str | None = None
    categories: str | None = None
    separator: str = "|"

    def validate(self, path: str) -> None:
        for name in ("id", "text", "categories"):
            _non_empty(getattr(self, name), f"{path}.{name}")
        if not self.separator:
            raise ConfigError(f"{path}.separator must not be empty, e.g. '|'")

    def columns(self) -> dict[str, str]:
        """Role -> column name of the roles in use."""
        return {r: c for r, c in (("id", self.id), ("text", self.text), ("categories", self.categories))
                if c is not None}


@dataclass(frozen=True, kw_only=True)
class UserColumns:
    """Column roles of the users table: ``id`` (unique per row)."""

    id: str = "user_id"

    def validate(self, path: str) -> None:
        _non_empty(self.id, f"{path}.id")

    def columns(self) -> dict[str, str]:
        """Role -> column name."""
        return {"id": self.id}


@dataclass(frozen=True, kw_only=True)
class _TableSource:
    path: str = ""
    format: Format = "auto"
    csv: CsvOptions = field(default_factory=CsvOptions)

    def validate(self, path: str) -> None:
        if not self.path.strip():
            raise ConfigError(f"{path}.path is required: a file or a glob of shards (e.g. data/part-*.csv)")


@dataclass(frozen=True, kw_only=True)
class InteractionsSource(_TableSource):
    """The interactions table: ``path`` (a file or glob of shards), ``format``, ``csv`` options, ``columns``."""

    columns: InteractionColumns = field(default_factory=InteractionColumns)


@dataclass(frozen=True, kw_only=True)
class ItemsSource(_TableSource):
    """The optional items table (the catalogue): ``path``, ``format``, ``csv``, ``columns``."""

    columns: ItemColumns = field(default_factory=ItemColumns)


@dataclass(frozen=True, kw_only=True)
class UsersSource(_TableSource):
    """The optional users table: ``path``, ``format``, ``csv``, ``columns``. Its ids are checked for
    duplicates; users absent from it are counted in one log line (user features come later)."""

    columns: UserColumns = field(default_factory=UserColumns)


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """Your own data: ``interactions`` (required), ``items`` and ``users`` (optional).

    ``features``: typed feature columns of any table (:class:`FeatureSpec`); a feature of the items
    or users table needs that table.

    ``missing_items``: what to do with interactions whose item is absent from the items table:
    ``keep`` (the item joins the catalogue with an empty text and no categories) or ``drop`` (the
    interactions are removed); either way one log line counts them. ``name`` is the data set's
    name in ``metrics.json`` and the report.
    """

    name: str = OWN
    interactions: InteractionsSource = field(default_factory=InteractionsSource)
    items: ItemsSource | None = None
    users: UsersSource | None = None
    missing_items: Literal["keep", "drop"] = "keep"
    features: tuple[FeatureSpec, ...] = ()

    def validate(self, path: str) -> None:
        if not self.name.strip():
            raise ConfigError(f"{path}.name must not be empty")
        self.interactions.validate(f"{path}.interactions")
        seen: set[str] = set()
        for i, f in enumerate(self.features):
            if f.name in seen:
                raise ConfigError(f"{path}.features[{i}].name {f.name!r} is used twice: give every feature its own name")
            seen.add(f.name)
            if f.table != "interactions" and getattr(self, f.table) is None:
                raise ConfigError(f"{path}.features[{i}].table is {f.table} but {path}.{f.table} is not given: add "
                                  f"the {f.table} table (path, columns) or move the feature")


FEATURE_TYPES = ("categorical", "multi_categorical", "text", "numeric", "timestamp", "dense")
"""Types of a typed feature column (``data.source.features[i].type``)."""

FEATURE_SIDES = {"users": "user", "items": "item", "interactions": "context"}
"""Table -> the side a feature of it feeds: the user tower (looked up by user id), the item tower
(looked up by item id) or the query's context (a per-interaction input, named after the feature)."""

RESERVED_FEATURE_NAMES = ("user_id", "item_id", "movie_id", "item_ids", "history", "timestamp", "user_rating",
                          "bucketized_user_age", "user_gender", "user_occupation_label", "user_zip_code",
                          "exclude_item_ids", "k", "sample_weight", "label", "negative_movie_id",
                          "candidate_item_ids")
"""Names a feature may not take: the models' own inputs and the signatures' fixed input names."""

_FEATURE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """One typed feature column (``data.source.features[i]``; docs/own-data.md#typed-features).

    ``name``: the feature's name (letters, digits, ``_``; a context feature's signature input is
    named after it). ``table``: ``interactions``, ``items`` or ``users`` (its side: context, item
    tower, user tower). ``column``: the table's column. ``type``: one of :data:`FEATURE_TYPES`.

    Options by type: ``categorical`` / ``multi_categorical``: ``min_count`` (values seen fewer times
    share the out-of-vocabulary row), ``max_size`` (keep the most frequent; 0 = all),
    ``hash_buckets`` (> 0: hash values into that many buckets instead of a vocabulary);
    ``multi_categorical``: ``separator`` for text columns (list columns need none); ``text``:
    ``max_tokens`` words per value, ``max_size`` words in the vocabulary (0 = 20000); ``numeric``:
    ``normalize`` (``zscore``, ``log``: z-score of ``log1p(max(x, 0))``, ``none``) and
    ``buckets`` (> 0: also a quantile-bucket embedding); ``timestamp``: ``time_format`` (``unix``
    seconds or ``iso8601`` text) and ``buckets`` (quantile-bucket embedding, default 10);
    ``dense``: ``size`` floats per value (a list column, or text joined by ``separator``).
    """

    name: str = ""
    table: Literal["interactions", "items", "users"] = "items"
    column: str = ""
    type: Literal["categorical", "multi_categorical", "text", "numeric", "timestamp", "dense"] = "categorical"
    separator: str = "|"
    min_count: int = 1
    max_size: int = 0
    hash_buckets: int = 0
    normalize: Literal["zscore", "log", "none"] = "zscore"
    buckets: int = 0
    time_format: Literal["unix", "iso8601"] = "unix"
    max_tokens: int = 16
    size: int = 0

    @property
    def side(self) -> str:
        """``user``, ``item`` or ``context`` (:data:`FEATURE_SIDES`)."""
        return FEATURE_SIDES[self.table]

    def validate(self, path: str) -> None:
        if not _FEATURE_NAME.match(self.name):
            raise ConfigError(f"{path}.name must start with a letter and hold only letters, digits and _, "
                              f"got {self.name!r}")
        if self.name in RESERVED_FEATURE_NAMES:
            raise ConfigError(f"{path}.name {self.name!r} is reserved for the models' own inputs: rename the "
                              "feature (e.g. item_category)")
        if not self.column.strip():
            raise ConfigError(f"{path}.column is required: name a column of the {self.table} table")
        for option in ("min_count", "max_size", "hash_buckets", "buckets", "size"):
            if getattr(self, option) < 0:
                raise ConfigError(f"{path}.{option} must be >= 0, got {getattr(self, option)}")
        if self.min_count < 1:
            raise ConfigError(f"{path}.min_count must be >= 1, got {self.min_count}")
        if self.max_tokens < 1:
            raise ConfigError(f"{path}.max_tokens must be >= 1, got {self.max_tokens}")
        if not self.separator:
            raise ConfigError(f"{path}.separator must not be empty, e.g. '|'")
        if self.type == "dense" and self.size < 1:
            raise ConfigError(f"{path}.size is required for a dense feature: the number of floats per value")
        if self.type != "dense" and self.size:
            raise ConfigError(f"{path}.size is only read for type dense, got type {self.type}: drop it")
        if self.hash_buckets and self.type not in ("categorical", "multi_categorical"):
            raise ConfigError(f"{path}.hash_buckets is only read for categorical and multi_categorical features, "
                              f"got type {self.type}: drop it")
        if self.type == "text" and self.table == "interactions":
            raise ConfigError(f"{path}.type text is not supported on the interactions table: a context feature is "
                              "an input of the exported model, which does not tokenise text yet (items and users "
                              "text is tokenised when prepared and looked up by id); put the text in the items or "
                              "users table, or give its words as a multi_categorical feature")


# --------------------------------------------------------------------------- the quick path

_INTERACTION_KEYS = ("user", "item", "rating", "label", "time", "time_format")
_ITEM_KEYS = ("id", "text", "categories")


def parse_columns(text: str, flag: str, keys: tuple[str, ...]) -> dict[str, str]:
    """``"user=userId,item=movieId"`` -> ``{"user": "userId", "item": "movieId"}``; ConfigError
    naming ``flag`` for a malformed pair or a key not in ``keys``. For ``categories=genres:|`` the
    character after the colon becomes ``separator``."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ConfigError(f"{flag} expects ROLE=COLUMN pairs separated by commas, e.g. user=userId,item=movieId; "
                              f"got {pair!r}")
        if key not in keys:
            raise ConfigError(f"{flag}: unknown role {key!r}: choose from {', '.join(keys)}")
        if key == "categories" and ":" in value:
            value, _, separator = value.rpartition(":")
            if not separator:
                raise ConfigError(f"{flag}: categories=COLUMN:SEP needs a separator character after the colon")
            out["separator"] = separator
        out[key] = value
    return out


QUICK_FLAGS = ("--interactions", "--columns", "--items", "--item-columns")
"""Names of the quick path's four inputs in messages (ExampleGen passes its parameter names)."""


def quick_source(interactions: str, columns: str | None, items: str | None = None,
                 item_columns: str | None = None, *, flags: tuple[str, str, str, str] = QUICK_FLAGS) -> dict[str, Any]:
    """The ``data.source`` mapping of the quick path ``--interactions FILE --columns user=..,item=..
    [--items FILE --item-columns id=..,text=..,categories=..:|]`` (paths made absolute); messages
    name ``flags``."""
    f_inter, f_cols, f_items, f_icols = flags
    if not columns:
        raise ConfigError(f"{f_inter} needs {f_cols} naming at least user=COLUMN,item=COLUMN")
    cols = parse_columns(columns, f_cols, _INTERACTION_KEYS)
    for role in ("user", "item"):
        if role not in cols:
            raise ConfigError(f"{f_cols} must name the {role} column, e.g. user=userId,item=movieId")
    source: dict[str, Any] = {"interactions": {"path": _absolute(interactions), "columns": cols}}
    if items is not None:
        if not item_columns:
            raise ConfigError(f"{f_items} needs {f_icols} naming at least id=COLUMN")
        icols = parse_columns(item_columns, f_icols, _ITEM_KEYS)
        if "id" not in icols:
            raise ConfigError(f"{f_icols} must name the id column, e.g. id=movieId,text=title")
        source["items"] = {"path": _absolute(items), "columns": icols}
    elif item_columns:
        raise ConfigError(f"{f_icols} describes the {f_items} file: pass {f_items} too")
    return source


def resolve_spec_paths(source: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``source`` (a ``data.source`` mapping read from a file in ``base``) with relative table
    paths made relative to ``base`` and absolute, so the run's ``config.yaml`` reproduces it."""
    out = dict(source)
    for table in ("interactions", "items", "users"):
        t = out.get(table)
        if isinstance(t, Mapping) and isinstance(t.get("path"), str) and t["path"]:
            p = t["path"] if is_url(t["path"]) else os.path.expanduser(t["path"])
            out[table] = {**t, "path": p if is_url(p) or os.path.isabs(p) else os.path.abspath(os.path.join(base, p))}
    return out


def _absolute(path: str) -> str:
    return path if is_url(path) else os.path.abspath(os.path.expanduser(path))
