"""Names shared by the exporter and by anything that serves or queries exported models.

Keep these the single source of truth: ``serving/`` imports them (docs/architecture.md#layers-and-imports), tests import them.

Naming scheme (docs/architecture.md#signatures): catalogue entries are *items*, whatever the data
calls them. One id per row is ``item_id`` (string [batch]); a list of ids per row is ``item_ids`` or
``<role>_item_ids`` (string [batch, n], '' pads): ``exclude_item_ids``, ``allow_item_ids``,
``candidate_item_ids``, ``seen_item_ids``; a user's past items are ``history``. Titles travel in
``assets.extra/item_titles.tsv``. Exports written before this scheme used ``item`` for ``item``
(:data:`LEGACY_NAMES`); :func:`pre_rename_names` detects them and :func:`pre_rename_error` says what to do.
"""

from collections.abc import Iterable
from pathlib import Path

__all__ = ["ALLOW_ITEM_IDS", "BECAUSE_IDS", "BECAUSE_SCORES", "CANDIDATE_ITEM_IDS", "EXCLUDE_ITEM_IDS",
           "EXCLUDE_SEEN", "EXPLAIN", "HISTORY", "ITEM_ID", "ITEM_IDS", "ITEM_TITLES_FILE", "K",
           "LEGACY_FLAGS", "LEGACY_NAMES", "LEGACY_TITLES_FILE", "MAX_BECAUSE", "PREDICT_RATINGS", "QUERY_CONTEXT", "QUERY_FEATURES", "RATE",
           "RATING", "RATINGS", "RECOMMEND", "RECOMMEND_FOR_USER", "RERANK", "RETRIEVAL_SCORES", "SCORE",
           "SCORES", "SCORE_CONTEXT", "SCORE_WITH_FEATURES", "SEEN_ITEM_IDS", "SEEN_RATINGS", "SERVING_DEFAULT", "SIMILAR_ITEMS",
           "TIMESTAMP", "USER_ID", "RENAME_DOC", "WARMUP_FILE", "legacy_flag_error", "pre_rename_error", "pre_rename_export", "pre_rename_names"]

SERVING_DEFAULT = "serving_default"
"""Retrieval: ``user_id`` (string [batch]) -> ``item_ids`` (string [batch, k]), ``scores`` (float32 [batch, k])."""

QUERY_FEATURES = "query_with_features"
"""Retrieval: every query feature given explicitly (user_id, timestamp, demographics, ``history``) -> item_ids, scores."""

QUERY_CONTEXT = "query_with_context"
"""Retrieval on your own data with typed context features: ``user_id`` (string [batch]) plus each
context feature by its name (docs/own-data.md#typed-features) -> item_ids, scores, excluding as
``serving_default`` does."""

EXCLUDE_SEEN = "recommend_excluding"
"""Retrieval: ``user_id`` [batch] + ``exclude_item_ids`` (string [batch, m], '' = padding) -> item_ids, scores."""

# Input / output tensor names.
USER_ID = "user_id"
ITEM_ID = "item_id"
EXCLUDE_ITEM_IDS = "exclude_item_ids"
TIMESTAMP = "timestamp"
ITEM_IDS = "item_ids"
SCORES = "scores"

WARMUP_FILE = "tf_serving_warmup_requests"
"""File name of TF Serving warm-up records under ``<version>/assets.extra/``."""

ITEM_TITLES_FILE = "item_titles.tsv"
"""``<version>/assets.extra/item_titles.tsv``: one ``item_id<TAB>title`` line per catalogue item."""

HISTORY = "history"
"""A user's past items, string [batch, L], '' pads (anywhere, any amount), unknown ids ignored.
Sequential ``serving_default`` / ``explain`` input: oldest first, newest last; longer than the model's
``max_length`` is fine. Retrieval ``query_with_features`` input: any order (the model averages them).
Ranking ``score_with_features`` input (when the model reads a history): most recent first."""

# Sequential (next-item) models.

RECOMMEND_FOR_USER = "recommend_for_user"
"""Sequential: ``user_id`` (string [batch]) -> item_ids, scores, from the user's history stored in the model."""

# Ranking models.
RATING = "rating"
"""Explicit ranking ``serving_default`` output: float32 [batch] predicted rating, clipped to the rating range."""

SCORE = "score"
"""Implicit ranking ``serving_default`` output: float32 [batch] logit (higher = more likely to watch)."""

SCORE_WITH_FEATURES = "score_with_features"
"""Ranking: ``user_id``, ``item_id`` and every user/context feature explicit (each [batch]) -> rating or score."""

SCORE_CONTEXT = "score_with_context"
"""Ranking on your own data with typed context features: ``user_id``, ``item_id`` (string [batch]) plus
each context feature by its name (docs/own-data.md#typed-features) -> rating or score, as
``serving_default`` (which answers with the context missing)."""

RERANK = "rerank"
"""Ranking: ``user_id`` (string [batch]) + ``candidate_item_ids`` (string [batch, n], '' pads) ->
``item_ids`` (string [batch, n], best first, '' pads last) and ``scores`` (float32 [batch, n], -inf for pads)."""

CANDIDATE_ITEM_IDS = "candidate_item_ids"

RATE = "rate"
"""Multitask: ``user_id`` and ``item_id`` (string [batch] each) -> ``rating`` (float32 [batch], clipped to
the rating range): the ranking ``serving_default`` of a model whose ``serving_default`` is retrieval."""

# Item-to-item ("more like this") on retrieval, sequential and autoencoder exports.
SIMILAR_ITEMS = "similar_items"
"""``item_id`` (string [batch]) -> ``item_ids`` (string [batch, k]) and ``scores`` (float32 [batch, k],
cosine similarity): the query item itself excluded; unknown ids get '' ids and -inf scores."""

# "Why this item" explanations on retrieval and sequential exports.
EXPLAIN = "explain"
"""Retrieval: ``user_id`` (string [batch]); sequential: ``history`` (string [batch, L]) -> the
``serving_default`` answer (``item_ids``, ``scores``) plus :data:`BECAUSE_IDS` and
:data:`BECAUSE_SCORES`: for each recommended item, the items of the user's history (retrieval: the
history stored in the export; sequential: the given one) most similar to it by cosine similarity of
the model's item (candidate-tower) vectors, most similar first."""

BECAUSE_IDS = "because_ids"
"""Output of :data:`EXPLAIN`: string [batch, k, e], e = min(:data:`MAX_BECAUSE`, history width); '' pads
(fewer known history items, an unknown user, or a '' recommendation)."""

BECAUSE_SCORES = "because_scores"
"""Output of :data:`EXPLAIN`: float32 [batch, k, e] cosine similarity of each ``because_ids`` entry
with its recommended item; -inf at pads."""

MAX_BECAUSE = 3
"""At most this many history items explain each recommendation."""

# Autoencoder models (fold-in of any user from the items they rated / watched).
SEEN_ITEM_IDS = "seen_item_ids"
"""Autoencoder input: string [batch, n] items the user rated or watched, any order; '' pads; unknown ids ignored."""

SEEN_RATINGS = "seen_ratings"
"""AutoRec input: float32 [batch, n] the user's rating of each ``seen_item_ids`` entry (ignored at pads)."""

PREDICT_RATINGS = "predict_ratings"
"""AutoRec: ``seen_item_ids``, ``seen_ratings`` and ``candidate_item_ids`` (string [batch, m]) ->
``ratings`` (float32 [batch, m], clipped to the training rating range)."""

RATINGS = "ratings"
"""Output of :data:`PREDICT_RATINGS`: float32 [batch, m] predicted ratings."""

# Retrieve -> rank cascades (python -m tfrs_lab.export cascade).
RECOMMEND = "recommend"
"""Cascade: ``user_id`` (string [batch]), ``k`` (int32 [batch], 1 <= k <= the export's ``max_k``),
``exclude_item_ids`` (string [batch, m], '' pads) and ``allow_item_ids`` (string [batch, a], '' pads; a
row of only '' = no restriction) -> ``item_ids`` (string [batch, max k]), ``scores`` (float32, the ranking
score) and ``retrieval_scores`` (float32), best first; a row's entries past its own k are '' / -inf."""

K = "k"
"""Cascade ``recommend`` input: int32 [batch] how many items each row wants."""

ALLOW_ITEM_IDS = "allow_item_ids"
"""Cascade ``recommend`` input: string [batch, a] the only items a row may return ('' pads; all '' = any)."""

RETRIEVAL_SCORES = "retrieval_scores"
"""Cascade output: float32 [batch, k] the retrieval (two-tower) score of each returned item."""

LEGACY_TITLES_FILE = "movie_titles.tsv"
"""The titles file of a pre-rename export (now :data:`ITEM_TITLES_FILE`)."""

LEGACY_NAMES = {
    "movie_id": ITEM_ID,
    "movie_ids": ITEM_IDS,
    "exclude_movie_ids": EXCLUDE_ITEM_IDS,
    "allow_movie_ids": ALLOW_ITEM_IDS,
    "candidate_movie_ids": CANDIDATE_ITEM_IDS,
    "seen_movie_ids": SEEN_ITEM_IDS,
    "history_movie_ids": HISTORY,
    LEGACY_TITLES_FILE: ITEM_TITLES_FILE,
}
"""Input / output (and asset file) name of a pre-rename export -> today's name."""


LEGACY_FLAGS = {"--movie-ids": "--item-ids", "--movie-id": "--item-id"}
"""Command-line flag of the query / similar CLIs before the item names -> today's flag (old flags are refused)."""

RENAME_DOC = "docs/serving.md#item-names"
"""Where the rename and the migration are documented; every message about it ends with this."""


def legacy_flag_error(argv: Iterable[str]) -> str | None:
    """One line naming the new flag when ``argv`` uses a pre-rename flag (``--movie-ids 1,2`` or
    ``--movie-ids=1,2``); ``None`` otherwise."""
    for arg in argv:
        old = arg.split("=", 1)[0]
        if old in LEGACY_FLAGS:
            return f"{old} was renamed {LEGACY_FLAGS[old]} (same values): pass {LEGACY_FLAGS[old]} - {RENAME_DOC}"
    return None


def pre_rename_names(names: Iterable[str]) -> dict[str, str]:
    """The pre-rename names among ``names`` (signature inputs, outputs or asset files) -> their new names."""
    return {n: LEGACY_NAMES[n] for n in sorted(set(names)) if n in LEGACY_NAMES}


def pre_rename_error(what: str, old_to_new: dict[str, str]) -> str:
    """One line: ``what`` (e.g. ``"model 'm' version 1"``) is a pre-rename export and how to get a current one."""
    renamed = ", ".join(f"{old} -> {new}" for old, new in old_to_new.items())
    return (f"{what} is an export from before the item names ({renamed}); export it again with this "
            f"tfrs_lab (train the run again, or rebuild the cascade) - {RENAME_DOC}")


def pre_rename_export(version_dir: str | Path) -> dict[str, str]:
    """The pre-rename names an export version directory uses (signature inputs and outputs of
    ``saved_model.pb``, ``assets.extra/movie_titles.tsv``) -> their new names; empty for a current
    export or a directory without ``saved_model.pb``. Reads the proto only (no model is loaded)."""
    from tensorflow.core.protobuf import saved_model_pb2  # lazily: this module is names only

    path = Path(version_dir)
    names = [LEGACY_TITLES_FILE] if (path / "assets.extra" / LEGACY_TITLES_FILE).is_file() else []
    if (path / "saved_model.pb").is_file():
        proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        for meta_graph in proto.meta_graphs:
            for signature in meta_graph.signature_def.values():
                names += [*signature.inputs, *signature.outputs]
    return pre_rename_names(names)
