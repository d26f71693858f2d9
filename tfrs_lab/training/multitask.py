"""The ``multitask`` task (the TFRS multitask tutorial): retrieval and rating on shared towers.

Everything the retrieval task does — the split, the vocabularies, the towers and their columns,
full-catalogue evaluation (``hit_rate@K`` and ``hit_rate_seen_excluded@K`` on ``hash``;
``recall@K``/``ndcg@K``/``mrr`` on ``leave-last-out``), the report and the ScaNN export — applies
unchanged; this task adds the rating head (:class:`tfrs_lab.models.multitask.MultitaskModel`), the
``label`` column it regresses, ``rmse``/``mae`` on validation and test, and the ranking signatures
in the same SavedModel (:mod:`tfrs_lab.export.multitask`). Its batches are the retrieval stream's
(:class:`~tfrs_lab.training.stream.RetrievalStream`, your own data read from the prepared dataset's
codes) with each row's rating as ``label``, so the typed features of ``data.source.features`` feed
both towers (and so both heads) exactly as in retrieval: item features the candidate tower, user and
context features the query tower.

Early stopping maximises the retrieval task's validation metric (``hit_rate@100`` on ``hash``,
``ndcg@50`` on ``leave-last-out``), or ``-rmse`` when ``model.retrieval_weight`` is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrs_lab.config import MultitaskConfig, MultitaskModelConfig
from tfrs_lab.data.features import Vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.splits import Split
from tfrs_lab.evaluation.metrics import rating_metrics
from tfrs_lab.export.multitask import export_multitask
from tfrs_lab.models.multitask import MultitaskModel
from tfrs_lab.training.retrieval import RetrievalTask, StreamState
from tfrs_lab.training.stream import RetrievalStream
from tfrs_lab.training.task import RunContext, Trained

__all__ = ["MultitaskTask", "TASK", "rating_head_metrics"]


def rating_head_metrics(model: MultitaskModel, stream: RetrievalStream, name: str,
                        batch_size: int = 8192) -> dict[str, float]:
    """``rmse`` and ``mae`` of the clipped predicted ratings of every row of split ``name`` against
    the stream's labels (batches of ``batch_size`` rows)."""
    rows = np.arange(len(stream.parts[name]))
    predicted = [model.predict_scores(b).numpy() for b in stream.batches(name, rows, batch_size)]
    return rating_metrics(np.concatenate(predicted) if predicted else np.zeros(0, np.float32),
                          stream.labels[stream.parts[name].rows])


class MultitaskTask(RetrievalTask):
    """Retrieval (in-batch softmax) and explicit rating regression with weighted losses."""

    name = "multitask"

    def stream_labels(self, data: Interactions, split: Split, hp: MultitaskModelConfig) -> np.ndarray:
        """float32 ``[n]``: the star rating each row's ``label`` carries (what the rating head regresses).

        Raises:
          DataError: the training rows hold one rating value (implicit feedback) and the rating head trains.
        """
        ratings = np.ones(data.num_ratings, np.float32) if data.rating is None else np.asarray(data.rating, np.float32)
        if hp.rating_weight > 0 and len(np.unique(ratings[split.train])) < 2:
            raise DataError(f"{data.dataset} has one rating value only (implicit feedback): the rating head needs "
                            "explicit ratings; set model.rating_weight=0 or train the retrieval task")
        return ratings

    def build_model(self, vocab: Vocabularies, hp: MultitaskModelConfig, stream: RetrievalStream) -> MultitaskModel:
        train = stream.labels[stream.parts["train"].rows]
        return MultitaskModel(vocab, hp, global_offset=float(np.mean(train)) if len(train) else 0.0)

    def validation_metrics(self, model: MultitaskModel, state: StreamState, cfg: MultitaskConfig, protocol: str,
                           positions: np.ndarray) -> dict[str, float]:
        """The retrieval task's validation metrics plus ``rmse``, ``mae`` over every validation row
        (and ``neg_rmse`` to monitor)."""
        metrics = super().validation_metrics(model, state, cfg, protocol, positions)
        rating = rating_head_metrics(model, state.stream, "validation")
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
        return {**super().evaluate(ctx, trained), **rating_head_metrics(trained.model, trained.state.stream, "test")}

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        result = export_multitask(trained.model, export_dir, sample_movies=[str(m) for m in ctx.vocab.movie_ids[:4]],
                                  **self.export_arguments(ctx, trained))
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}


TASK = MultitaskTask()
