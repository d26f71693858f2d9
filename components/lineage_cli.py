"""``python -m tfrs_lab.components.lineage_cli``: query a pipeline root's lineage store.

Examples::

    # which data, config and hyperparameters produced the model now serving?
    python -m tfrs_lab.components.lineage_cli serving --pipeline-root /tmp/pipelines/retrieval
    python -m tfrs_lab.components.lineage_cli executions --pipeline-root /tmp/pipelines/retrieval
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli
from tfrs_lab.components.lineage import DB_FILE, PIPELINE, RUNNING, Execution, LineageStore, serving_provenance

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.components.lineage_cli", description=__doc__.split("\n\n")[0])
    p.add_argument("query", choices=("serving", "executions"),
                   help="serving: provenance of the newest pushed model; executions: every execution and its state "
                        "(one left RUNNING by a process that died is marked FAILED)")
    p.add_argument("--pipeline-root", required=True, help="the pipeline root holding metadata.sqlite")
    p.add_argument("--pipeline", help="pipeline name (default: any)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _execution_json(ex: Execution) -> dict[str, Any]:
    proc = ex.process
    return {"id": ex.id, "type": ex.type_name, "node": ex.node_id, "state": ex.state, "error": ex.error,
            "cached_from": ex.cached_from, "pid": proc and proc.pid, "host": proc and proc.host,
            "process_start": proc and proc.started}


def _execution_line(ex: Execution) -> str:
    if ex.error:
        extra = f" ({ex.error})"
    elif ex.cached_from:
        extra = f" (from #{ex.cached_from})"
    elif ex.state == RUNNING and ex.process is not None:
        extra = f" ({ex.process.describe()})"
    else:
        extra = ""
    return f"#{ex.id:<4d} {ex.type_name:16s} {ex.node_id:20s} {ex.state}{extra}"


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        configure_logging(False)

        db = Path(args.pipeline_root) / DB_FILE
        if not db.is_file():
            raise UsageError(f"--pipeline-root: no lineage database at {db}: run a pipeline there first")
        with LineageStore(db) as store:
            if args.query == "executions":
                store.fail_dead_executions()  # a RUNNING execution whose process died is shown FAILED
                rows = store.get_executions(context=None if args.pipeline is None else (PIPELINE, args.pipeline))
                for ex in rows:
                    print(json.dumps(_execution_json(ex)) if args.json else _execution_line(ex))
                return 0
            prov = serving_provenance(store, args.pipeline)
            if prov is None:
                print("no model has been pushed from this pipeline root")
                return 1
            info = prov.to_json()
            if args.json:
                print(json.dumps(info, indent=1, sort_keys=True, default=str))
                return 0
            print(f"serving: {info['pushed_destination']} (version {info['pushed_version']})")
            print(f"model:   {info['model']['uri']}")
            print(f"data:    {json.dumps(info['data'], sort_keys=True)}")
            print(f"config:  {json.dumps(info['trainer'], sort_keys=True)}")
            print(f"hyperparameters: {json.dumps(info['hyperparameters'], sort_keys=True)}")
            print(f"evaluation: {json.dumps(info['evaluation'], sort_keys=True)}")
            print(f"chain:   {' <- '.join(info['chain'])}")
            return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
