"""``python -m tfrs_lab.components.run PIPELINE.yaml``: run a component pipeline end to end.

Examples::

    python -m tfrs_lab.components.run configs/pipelines/movielens_retrieval.yaml \\
        --data-zip ml-100k.zip --pipeline-root /tmp/pipelines/retrieval
    python -m tfrs_lab.components.run configs/pipelines/movielens_retrieval.yaml --set trainer.overrides.train.epochs=3
    python -m tfrs_lab.components.run configs/pipelines/movielens_retrieval.yaml --no-cache
"""

from __future__ import annotations

import sys
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, configure_logging, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.components.run", description=__doc__.split("\n\n")[0])
    p.add_argument("pipeline", help="pipeline YAML (configs/pipelines/*.yaml)")
    p.add_argument("--pipeline-root", help="artifacts, lineage database and push destination (default from the file)")
    p.add_argument("--data-zip", help="official MovieLens zip for every ExampleGen (offline)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="ID.PARAM=VALUE",
                   help="override a component parameter, e.g. trainer.overrides.train.epochs=3 (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="re-run every component even if its inputs are unchanged")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error such as a bad pipeline or an anomaly)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        configure_logging(args.verbose)
        from tfrs_lab.components.runner import load_pipeline, run_pipeline

        pipeline = load_pipeline(args.pipeline, overrides=args.overrides, pipeline_root=args.pipeline_root,
                                 data_zip=args.data_zip)
        print(f"pipeline {pipeline.name}: {len(pipeline.nodes)} components, root {pipeline.root}", flush=True)
        result = run_pipeline(pipeline, cache=not args.no_cache, progress=lambda line: print(line, flush=True))
        cached = sum(r.state == "CACHED" for r in result.results.values())
        print(f"done in {result.seconds:.1f} s ({cached} of {len(result.results)} components from cache)")
        for r in result.results.values():
            for art in r.outputs.values():
                if art.type_name == "PushedModel":
                    print(f"  {r.node_id}: " + (f"pushed version {art.pushed_version} to {art.pushed_destination}"
                                                if art.pushed else "not pushed (a blessing said no)"))
                if art.type_name == "ModelBlessing":
                    print(f"  {r.node_id}: {'BLESSED' if art.blessed else 'NOT_BLESSED'}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
