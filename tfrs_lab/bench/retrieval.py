"""``python -m tfrs_lab.bench.retrieval``: our retrieval model vs popularity and the TFRS tutorial recipe.

Runs every method on the same deterministic splits (``hash`` and ``leave-last-out``) with the same
full-catalogue evaluator, on the same machine in one process, and writes one JSON file::

    python -m tfrs_lab.bench.retrieval --data-zip path/to/ml-100k.zip --output bench-out/retrieval.json
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from pathlib import Path
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, configure_logging, run_cli

logger = logging.getLogger(__name__)

KS = {"hash": (10, 50, 100), "leave-last-out": (10, 50)}


def run(dataset: str, data_zip: str | None, data_dir: str | None, overrides: Sequence[str] = ()) -> dict:
    """All methods on both splits: ``{split: {method: metrics}}`` plus machine facts.

    Methods: ``popularity``; ``tfrs_tutorial`` (the basic-retrieval recipe as published, top-K
    metrics on every training step); ``tfrs_tutorial_fast`` (the same without training-time
    metrics); ``tfrs_lab`` (our default config, the full ``train`` pipeline including export).
    """
    import os

    from tfrs_lab.bench.peers import popularity_metrics, tutorial_retrieval_metrics
    from tfrs_lab.config import load_config
    from tfrs_lab.data.splits import make_split
    from tfrs_lab.training.retrieval import load_data, train_retrieval

    results: dict = {"dataset": dataset, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    data = None
    for split_name, ks in KS.items():
        extra = {"data": {"dataset": dataset, "data_zip": data_zip, "data_dir": data_dir, "split": split_name}}
        cfg = load_config("retrieval", overrides=list(overrides) + ["export.verify=false"], extra=extra)
        if data is None:
            data = load_data(cfg)
        split = make_split(split_name, data.ratings)
        row = {"popularity": popularity_metrics(data, split, ks)}
        logger.info("%s: TFRS tutorial recipe", split_name)
        row["tfrs_tutorial"] = tutorial_retrieval_metrics(data, split, ks)
        row["tfrs_tutorial_fast"] = tutorial_retrieval_metrics(data, split, ks, metrics_in_training=False)
        logger.info("%s: tfrs_lab retrieval (default config)", split_name)
        with tempfile.TemporaryDirectory() as tmp:
            ours = train_retrieval(cfg, Path(tmp) / "run", verbose=0)
        row["tfrs_lab"] = {k: v for k, v in ours.items() if isinstance(v, (int, float))}
        results[split_name] = row
    return results


def _table(results: dict) -> str:
    lines = []
    for split_name, ks in KS.items():
        keys = [f"hit_rate@{k}" for k in ks] if split_name == "hash" else ["recall@10", "ndcg@10", "recall@50", "mrr"]
        keys += ["train_examples_per_second"]
        lines.append(f"{split_name}:")
        lines.append("  " + f"{'method':20s}" + "".join(f"{k:>28s}" for k in keys))
        for method, m in results[split_name].items():
            cells = "".join(f"{m[k]:>28.4f}" if k in m else f"{'-':>28s}" for k in keys)
            lines.append(f"  {method:20s}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        p = ArgumentParser(prog="python -m tfrs_lab.bench.retrieval", description=__doc__.split("\n\n")[0])
        p.add_argument("--dataset", default="movielens/100k-ratings")
        p.add_argument("--data-zip")
        p.add_argument("--data-dir")
        p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                       help="config override for our model (as in train)")
        p.add_argument("--output", default="bench-out/retrieval.json")
        args = p.parse_args(argv)
        configure_logging()
        results = run(args.dataset, args.data_zip, args.data_dir, args.overrides)
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(_table(results))
        print(f"written: {out}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
