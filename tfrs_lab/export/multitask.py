"""Export a trained multitask model: one SavedModel answering retrieval and ranking.

The retrieval exporter (:func:`tfrs_lab.export.retrieval.export_retrieval`) writes the model with its
ScaNN (or brute-force) index and the retrieval signatures — ``serving_default`` (top-k, the user's
known items excluded by default), ``query_with_features``, ``recommend_excluding``,
``similar_items`` — and :class:`RatingSignatures` adds the rating head's, served by the ranking
exporter's :class:`tfrs_lab.export.ranking.RankingServer` on the same model object (the variables
are saved once):

* ``rate(user_id: string [batch], item_id: string [batch])`` -> ``rating`` float32 [batch], clipped
  to the rating range (the ranking export's ``serving_default``);
* ``rerank(user_id [batch], candidate_item_ids string [batch, n])`` -> ``item_ids``, ``scores``
  (the predicted ratings), best first, '' pads last with ``-inf``;
* ``score_with_features(user_id, item_id, timestamp, bucketized_user_age, user_gender,
  user_occupation_label, user_zip_code[, history])`` -> ``rating`` (``user_zip_code`` is ignored);
* ``score_with_context(user_id, item_id, <each context feature by name>)`` -> ``rating``: only when
  the towers read typed context features (as the ranking export's; the retrieval side answers
  ``query_with_context``).

Warm-up records cover ``serving_default``, ``rate`` and ``rerank``; the fresh-process reload check
compares ``serving_default``'s items and ``rerank``'s items and scores (and ``score_with_context``'s
ratings) with the in-memory model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from tfrs_lab.export import signatures as sig
from tfrs_lab.export.ranking import RankingServer, probe_pairs, verify_rerank
from tfrs_lab.export.result import ExportResult
from tfrs_lab.export.retrieval import RetrievalServer, export_retrieval

__all__ = ["RatingSignatures", "export_multitask"]


class RatingSignatures:
    """The rating head's signatures (``rate``, ``rerank``, ``score_with_features`` and, with typed
    context features, ``score_with_context``) for a retrieval export of the same model (a
    :class:`tfrs_lab.export.retrieval.SignatureExtension`). The rating head serves from the retrieval
    server's user table variables (saved once)."""

    def __init__(self, model, sample_users: list[str], sample_movies: list[str]) -> None:
        self.model = model
        self.users, self.movies = probe_pairs(sample_users, sample_movies)
        self.server: RankingServer | None = None

    def attach(self, server: RetrievalServer) -> dict[str, Any]:
        # the retrieval server's user table variables serve the rating head too (saved once)
        self.server = server.ranking = RankingServer(self.model, server.user_table)
        signatures = {sig.RATE: self.server.serve, sig.RERANK: self.server.rerank,
                      sig.SCORE_WITH_FEATURES: self.server.serve_with_features}
        if self.server.context:
            signatures[sig.SCORE_CONTEXT] = self.server.serve_context
        return signatures

    def warmup_requests(self) -> dict[str, list[dict[str, list]]]:
        return {sig.RATE: [{sig.USER_ID: self.users, sig.ITEM_ID: self.movies}],
                sig.RERANK: [{sig.USER_ID: self.users[:2], sig.CANDIDATE_ITEM_IDS: [self.movies, self.movies]}]}

    def verify(self, path: Path, *, import_scann: bool) -> None:
        verify_rerank(self.server, path, self.users, self.movies, import_scann=import_scann)


def export_multitask(model, export_base: Path, *, sample_movies: list[str], **retrieval: Any) -> ExportResult:
    """Writes ``export_base/<model_name>/<version>/`` with the retrieval and the rating signatures.

    Args:
      model: a trained ``MultitaskModel``.
      sample_movies: known item ids for the rating signatures' warm-up and reload check.
      retrieval: the keyword arguments of :func:`tfrs_lab.export.retrieval.export_retrieval`
        (``user_table`` serves both heads; ``sample_users`` both checks).
    """
    extension = RatingSignatures(model, retrieval["sample_users"][:4], sample_movies)
    return export_retrieval(model, export_base, extension=extension, **retrieval)
