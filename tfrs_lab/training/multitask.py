"""The ``multitask`` task (the TFRS multitask tutorial): retrieval and rating on shared towers.

Everything the retrieval task does — the split, the vocabularies, the towers and their columns,
full-catalogue evaluation (``hit_rate@K`` and ``hit_rate_seen_excluded@K`` on ``hash``;
``recall@K``/``ndcg@K``/``mrr`` on ``leave-last-out``), the report and the ScaNN export — applies
unchanged; this task adds the rating head (:class:`tfrs_lab.models.multitask.MultitaskModel`), the
``label`` column it regresses, ``rmse``/``mae`` on validation and test, and the ranking signatures
in the same SavedModel (:mod:`tfrs_lab.export.multitask`).

Early stopping maximises the retrieval task's validation metric (``hit_rate@100`` on ``hash``,
``ndcg@50`` on ``leave-last-out``), or ``-rmse`` when ``model.retrieval_weight`` is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrs_lab.config import MultitaskConfig, MultitaskModelConfig
from tfrs_lab.data.features import Vocabularies
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.export.multitask import export_multitask
from tfrs_lab.models.multitask import MultitaskModel
from tfrs_lab.training.ranking import explicit_metrics
from tfrs_lab.training.retrieval import RetrievalState, RetrievalTask, split_columns
from tfrs_lab.training.task import RunContext, Trained

__all__ = ["MultitaskTask", "TASK"]

Columns = dict[str, np.ndarray]


class MultitaskTask(RetrievalTask):
    """Retrieval (in-batch softmax) and explicit rating regression with weighted losses."""

    name = "multitask"

    def columns(self, data: MovieLensData, split: Split, hp: MultitaskModelConfig) -> dict[str, Columns]:
        """The retrieval columns plus ``label``: the star rating (float32) the rating head regresses."""
        ratings = data.ratings["user_rating"]
        if hp.rating_weight > 0 and len(np.unique(ratings[split.train])) < 2:
            raise DataError(f"{data.dataset} has one rating value only (implicit feedback): the rating head needs "
                            "explicit ratings; set model.rating_weight=0 or train the retrieval task")
        cols = split_columns(data, split, hp)
        for name in cols:
            cols[name]["label"] = ratings[getattr(split, name)].astype(np.float32)
        return cols

    def build_model(self, vocab: Vocabularies, hp: MultitaskModelConfig, cols: dict[str, Columns]) -> MultitaskModel:
        return MultitaskModel(vocab, hp, global_offset=float(np.mean(cols["train"]["label"])))

    def validation_metrics(self, model: MultitaskModel, vocab: Vocabularies, state: RetrievalState,
                           cfg: MultitaskConfig, protocol: str) -> dict[str, float]:
        """The retrieval task's validation metrics plus ``rmse``, ``mae`` (and ``neg_rmse`` to monitor)."""
        metrics = super().validation_metrics(model, vocab, state, cfg, protocol)
        rating = explicit_metrics(model, state.cols["validation"])
        return {**metrics, **rating, "neg_rmse": -rating["rmse"]}

    def monitor(self, cfg: MultitaskConfig, protocol: str) -> str:
        return super().monitor(cfg, protocol) if cfg.model.retrieval_weight > 0 else "neg_rmse"

    def train(self, ctx: RunContext) -> Trained:
        trained = super().train(ctx)
        m = ctx.cfg.model
        trained.metrics.update(retrieval_weight=m.retrieval_weight, rating_weight=m.rating_weight)
        return trained

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        """The retrieval task's test metrics plus ``rmse`` and ``mae`` of the clipped predicted ratings."""
        return {**super().evaluate(ctx, trained), **explicit_metrics(trained.model, trained.state.cols["test"])}

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        result = export_multitask(trained.model, export_dir, sample_movies=[str(m) for m in ctx.vocab.movie_ids[:4]],
                                  **self.export_arguments(ctx, trained))
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}


TASK = MultitaskTask()
