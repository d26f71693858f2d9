"""``python -m tfrs_lab.serving.query``: ask a serving endpoint for a user's top movies.

    python -m tfrs_lab.serving.query --target localhost:8500 --model retrieval --user-id 42 --k 10
    python -m tfrs_lab.serving.query --target localhost:8501 --rest --model retrieval --user-id 42 --json

Titles are printed when ``--model-dir`` (an export base path or version directory) holds a
``movie_titles.tsv`` (``movie_id<TAB>title``) under ``assets.extra/`` or ``assets/``.
Exit codes: 0 ok, 2 usage or request error (bad arguments, unknown model, bad input),
1 server/transport failure (unreachable, internal error).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

import grpc

from tfrs_lab.export import signatures as sig_names

from .client import ServingClient, ServingClientError
from .servable import list_versions

TITLES_FILE = sig_names.MOVIE_TITLES_FILE
_USER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = _Parser(prog="python -m tfrs_lab.serving.query", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="localhost:8500", help="host:port (gRPC 8500, REST 8501)")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--user-id", required=True, action="append", help="user id (repeat for several users)")
    p.add_argument("--k", type=int, default=10, help="number of movies to print (<= the model's k)")
    p.add_argument("--version", type=int, help="model version (default: latest)")
    p.add_argument("--label", help="version label (e.g. stable)")
    p.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    p.add_argument("--model-dir", help="export base path or version dir holding movie_titles.tsv")
    return p


def load_titles(model_dir: str | None) -> dict[str, str]:
    """movie_id -> title from ``movie_titles.tsv`` in the model dir, or {} when absent."""
    if not model_dir:
        return {}
    candidates = [model_dir]
    versions = list_versions(model_dir)
    if versions:
        candidates.insert(0, os.path.join(model_dir, str(versions[0])))
    for base in candidates:
        for sub in ("assets.extra", "assets", ""):
            path = os.path.join(base, sub, TITLES_FILE)
            if os.path.isfile(path):
                titles = {}
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        movie_id, sep, title = line.rstrip("\n").partition("\t")
                        if sep:
                            titles[movie_id] = title
                return titles
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.k < 1:
        print(f"error: --k must be >= 1, got {args.k}", file=sys.stderr)
        return 2
    if args.version is not None and args.label:
        print("error: give --version or --label, not both", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    titles = load_titles(args.model_dir)
    try:
        with ServingClient(
            args.target, protocol="rest" if args.rest else "grpc", timeout_s=args.timeout, retries=max(0, args.retries)
        ) as client:
            results = client.recommend(args.model, args.user_id, k=args.k, version=args.version, label=args.label)
    except ServingClientError as e:
        print(f"error: {args.model} at {args.target}: {e}", file=sys.stderr)
        return 2 if e.code in _USER_ERRORS else 1
    if args.json:
        out = [
            {"user_id": uid, "movies": [
                {"movie_id": m, "score": s, **({"title": titles[m]} if m in titles else {})} for m, s in row
            ]}
            for uid, row in zip(args.user_id, results)
        ]
        print(json.dumps(out if len(out) > 1 else out[0]))
        return 0
    for uid, row in zip(args.user_id, results):
        print(f"user {uid}: top {len(row)}")
        for rank, (movie_id, score) in enumerate(row, start=1):
            title = f"  {titles[movie_id]}" if movie_id in titles else ""
            print(f"{rank:3d}. {movie_id:>8s}  {score:8.4f}{title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
