"""Hyperparameter search with Keras Tuner over the ``train`` code of each task.

Public API (stable; the pipeline's ``Tuner`` component calls it)::

    from tfrs_lab.tuning import run_search, SearchResult, TrialRecord

    result: SearchResult = run_search(
        "ranking", "runs/tune-ranking",
        space_file=None,            # default configs/tuning/ranking.yaml
        config_files=(),            # default configs/ranking.yaml
        overrides=["data.data_zip=ml-100k.zip"], extra=None,
        tuner="bayesian",           # random | bayesian | hyperband | grid
        max_trials=10, seed=None, resume=False, overwrite=False,
        final_fit=False,            # retrain the best on train + validation, evaluate test once
        progress=None)              # callable(TrialRecord) at each trial's start and end
    result.best_hyperparameters_txt  # TFX Tuner format: json.dumps(HyperParameters.get_config())
    result.tuner_results_json        # TFX Tuner format: [{"trial_id", "score", <hp>: value}] best first
    result.best_overlay_yaml         # config overlay for ``train --config configs/<task>.yaml --config ...``
    result.best_overlay, result.best_value, result.objective, result.direction, result.trials

``output_dir`` holds: ``best_hyperparameters.yaml``, ``best_hyperparameters.txt``,
``tuner_results.json``, ``trials.csv`` (per trial: id, status, validation objective, seconds,
seed, best epoch, tuner id, hyperparameters, error), ``search.json`` (what a resume must match),
``keras_tuner/search/`` (Keras Tuner's oracle state and ``trial_<id>/`` folders, each with the
trial's run directory ``run/`` minus its export) and, with ``final_fit``, ``final/`` (a normal
run directory: config.yaml, metrics.json, logs/, export/).

The objective is always a *validation* metric (``validation_<name>`` in ``metrics.json``) with its
direction (rmse/mae minimised, ranking metrics maximised); the test split is only evaluated by
the trainers as usual and, for the decision that matters, once by ``final_fit``.

Distributed search uses Keras Tuner's chief/worker mode: with ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID`` set, ``run_search`` in the ``chief``
process serves the oracle and writes the results when every trial has ended; in a worker
(``tuner0``, ``tuner1`` ...) it runs trials and returns a result with ``role == "worker"`` and no
result paths. All processes must see the same ``output_dir``.
"""

from tfrs_lab.tuning.search import TUNERS, SearchResult, TrialRecord, distributed_role, run_search
from tfrs_lab.tuning.space import SearchSpace, default_space_file, load_space

__all__ = ["TUNERS", "SearchResult", "SearchSpace", "TrialRecord", "default_space_file", "distributed_role",
           "load_space", "run_search"]
