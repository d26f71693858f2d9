"""Names shared by the exporter and by anything that serves or queries exported models.

Keep these the single source of truth: ``serving/`` imports them (docs/architecture.md#layers-and-imports), tests import them.
"""

__all__ = ["ALLOW_MOVIE_IDS", "BECAUSE_IDS", "BECAUSE_SCORES", "CANDIDATE_MOVIE_IDS", "EXCLUDE_MOVIE_IDS",
           "EXCLUDE_SEEN", "EXPLAIN", "HISTORY", "HISTORY_MOVIE_IDS", "K", "MAX_BECAUSE", "MOVIE_ID",
           "MOVIE_IDS", "MOVIE_TITLES_FILE", "PREDICT_RATINGS", "QUERY_FEATURES", "RATE", "RATING", "RATINGS",
           "RECOMMEND", "RECOMMEND_FOR_USER", "RERANK", "RETRIEVAL_SCORES", "SCORE", "SCORES",
           "SCORE_WITH_FEATURES", "SEEN_MOVIE_IDS", "SEEN_RATINGS", "SERVING_DEFAULT", "SIMILAR_ITEMS",
           "TIMESTAMP", "USER_ID", "WARMUP_FILE"]

SERVING_DEFAULT = "serving_default"
"""Retrieval: ``user_id`` (string [batch]) -> ``movie_ids`` (string [batch, k]), ``scores`` (float32 [batch, k])."""

QUERY_FEATURES = "query_with_features"
"""Retrieval: every query feature given explicitly (user_id, timestamp, demographics, history) -> movie_ids, scores."""

EXCLUDE_SEEN = "recommend_excluding"
"""Retrieval: ``user_id`` [batch] + ``exclude_movie_ids`` (string [batch, m], '' = padding) -> movie_ids, scores."""

# Input / output tensor names.
USER_ID = "user_id"
MOVIE_ID = "movie_id"
EXCLUDE_MOVIE_IDS = "exclude_movie_ids"
TIMESTAMP = "timestamp"
HISTORY_MOVIE_IDS = "history_movie_ids"
MOVIE_IDS = "movie_ids"
SCORES = "scores"

WARMUP_FILE = "tf_serving_warmup_requests"
"""File name of TF Serving warm-up records under ``<version>/assets.extra/``."""

MOVIE_TITLES_FILE = "movie_titles.tsv"
"""``<version>/assets.extra/movie_titles.tsv``: one ``movie_id<TAB>title`` line per catalogue movie."""

# Sequential (next-item) models.
HISTORY = "history"
"""Sequential ``serving_default`` input: string [batch, L] movie ids, oldest first, newest last; ''
pads (anywhere, any amount); unknown ids are ignored; longer than the model's ``max_length`` is fine."""

RECOMMEND_FOR_USER = "recommend_for_user"
"""Sequential: ``user_id`` (string [batch]) -> movie_ids, scores, from the user's history stored in the model."""

# Ranking models.
RATING = "rating"
"""Explicit ranking ``serving_default`` output: float32 [batch] predicted rating, clipped to the rating range."""

SCORE = "score"
"""Implicit ranking ``serving_default`` output: float32 [batch] logit (higher = more likely to watch)."""

SCORE_WITH_FEATURES = "score_with_features"
"""Ranking: ``user_id``, ``movie_id`` and every user/context feature explicit (each [batch]) -> rating or score."""

RERANK = "rerank"
"""Ranking: ``user_id`` (string [batch]) + ``candidate_movie_ids`` (string [batch, n], '' pads) ->
``movie_ids`` (string [batch, n], best first, '' pads last) and ``scores`` (float32 [batch, n], -inf for pads)."""

CANDIDATE_MOVIE_IDS = "candidate_movie_ids"

RATE = "rate"
"""Multitask: ``user_id`` and ``movie_id`` (string [batch] each) -> ``rating`` (float32 [batch], clipped to
the rating range): the ranking ``serving_default`` of a model whose ``serving_default`` is retrieval."""

# Item-to-item ("more like this") on retrieval, sequential and autoencoder exports.
SIMILAR_ITEMS = "similar_items"
"""``movie_id`` (string [batch]) -> ``movie_ids`` (string [batch, k]) and ``scores`` (float32 [batch, k],
cosine similarity): the query movie itself excluded; unknown ids get '' ids and -inf scores."""

# "Why this movie" explanations on retrieval and sequential exports.
EXPLAIN = "explain"
"""Retrieval: ``user_id`` (string [batch]); sequential: ``history`` (string [batch, L]) -> the
``serving_default`` answer (``movie_ids``, ``scores``) plus :data:`BECAUSE_IDS` and
:data:`BECAUSE_SCORES`: for each recommended movie, the movies of the user's history (retrieval: the
history stored in the export; sequential: the given one) most similar to it by cosine similarity of
the model's item (candidate-tower) vectors, most similar first."""

BECAUSE_IDS = "because_ids"
"""Output of :data:`EXPLAIN`: string [batch, k, e], e = min(:data:`MAX_BECAUSE`, history width); '' pads
(fewer known history movies, an unknown user, or a '' recommendation)."""

BECAUSE_SCORES = "because_scores"
"""Output of :data:`EXPLAIN`: float32 [batch, k, e] cosine similarity of each ``because_ids`` entry
with its recommended movie; -inf at pads."""

MAX_BECAUSE = 3
"""At most this many history movies explain each recommendation."""

# Autoencoder models (fold-in of any user from the movies they rated / watched).
SEEN_MOVIE_IDS = "seen_movie_ids"
"""Autoencoder input: string [batch, n] movies the user rated or watched, any order; '' pads; unknown ids ignored."""

SEEN_RATINGS = "seen_ratings"
"""AutoRec input: float32 [batch, n] the user's rating of each ``seen_movie_ids`` entry (ignored at pads)."""

PREDICT_RATINGS = "predict_ratings"
"""AutoRec: ``seen_movie_ids``, ``seen_ratings`` and ``candidate_movie_ids`` (string [batch, m]) ->
``ratings`` (float32 [batch, m], clipped to the training rating range)."""

RATINGS = "ratings"
"""Output of :data:`PREDICT_RATINGS`: float32 [batch, m] predicted ratings."""

# Retrieve -> rank cascades (python -m tfrs_lab.export cascade).
RECOMMEND = "recommend"
"""Cascade: ``user_id`` (string [batch]), ``k`` (int32 [batch], 1 <= k <= the export's ``max_k``),
``exclude_movie_ids`` (string [batch, m], '' pads) and ``allow_movie_ids`` (string [batch, a], '' pads; a
row of only '' = no restriction) -> ``movie_ids`` (string [batch, max k]), ``scores`` (float32, the ranking
score) and ``retrieval_scores`` (float32), best first; a row's entries past its own k are '' / -inf."""

K = "k"
"""Cascade ``recommend`` input: int32 [batch] how many movies each row wants."""

ALLOW_MOVIE_IDS = "allow_movie_ids"
"""Cascade ``recommend`` input: string [batch, a] the only movies a row may return ('' pads; all '' = any)."""

RETRIEVAL_SCORES = "retrieval_scores"
"""Cascade output: float32 [batch, k] the retrieval (two-tower) score of each returned movie."""
