"""``python -m tfrs_lab.serving.query``: ask a serving endpoint for items.

    python -m tfrs_lab.serving.query [recommend] --target localhost:8500 --model retrieval --user-id 42 --k 10
    python -m tfrs_lab.serving.query --target localhost:8501 --rest --model retrieval --user-id 42 --json
    python -m tfrs_lab.serving.query rank --target localhost:8500 --model ranking --user-id 42 --item-ids 1,50,181
    python -m tfrs_lab.serving.query history --target localhost:8500 --model sequential --history 1,50,181 --k 10
    python -m tfrs_lab.serving.query --target localhost:8500 --model retrieval --user-id 42 --explain --model-dir runs/r1
    python -m tfrs_lab.serving.query cascade --target localhost:8500 --model cascade --user-id 42 --k 20 --allow 1,50,181

The optional first word picks the variant: ``recommend`` (default; a retrieval model's
``serving_default``), ``rank`` (a ranking model's ``rerank``: the given items, best first),
``history`` (a sequential model's ``serving_default``: the next items after a viewing history,
oldest first, newest last) or ``cascade`` (a retrieve -> rank cascade's ``recommend``: k, exclude
and allow lists answered by the model). Titles are printed from the ``item_titles.tsv`` (``item_id<TAB>title``, under ``assets.extra/`` or
``assets/``) of the export ``--model-dir`` points at: a run directory, an export base path or a
version directory (an export without titles is an error, never silently ignored). A ``--k`` above
what the model returns (the export's k) prints what there is, with a warning.
``--explain`` (``recommend`` and ``history``) asks the export's ``explain`` signature and prints, under
each item, "because you watched: A, B": the items of the user's history (``recommend``: the one
stored in the export; ``history``: the given one) most similar to it, titled when the export has titles.
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
from .config import ConfigError
from .paths import resolve_version_dir

__all__ = ["build_parser", "COMMANDS", "DEFAULT_COMMAND", "load_titles", "main", "split_command", "TITLES_FILE"]

TITLES_FILE = sig_names.ITEM_TITLES_FILE
_USER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


COMMANDS = ("recommend", "rank", "history", "cascade")
_NEEDS = {"recommend": "a retrieval model", "rank": "a ranking model with a `rerank` signature", "history": "a sequential model",
          "cascade": "a retrieve -> rank cascade (python -m tfrs_lab.export cascade)"}
_WRONG_MODEL = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
DEFAULT_COMMAND = "recommend"


def build_parser(command: str = DEFAULT_COMMAND) -> argparse.ArgumentParser:
    """The argument parser of one variant (``recommend``, ``rank`` or ``history``)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    prog = "python -m tfrs_lab.serving.query" + ("" if command == DEFAULT_COMMAND else f" {command}")
    description = {
        "recommend": __doc__.split("\n\n")[0] + " Variants: [recommend] (default), rank, history"
                     " (`python -m tfrs_lab.serving.query rank --help`).",
        "rank": "Re-rank the given items for a user with a ranking model's `rerank` signature.",
        "history": "Next items after a viewing history from a sequential model's `serving_default`.",
        "cascade": "Top k for users from a retrieve -> rank cascade's `recommend` signature (exclude / allow lists).",
    }[command]
    p = _Parser(prog=prog, description=description)
    p.add_argument("--target", default="localhost:8500", help="host:port (gRPC 8500, REST 8501)")
    p.add_argument("--model", required=True, help="served model name")
    if command in ("recommend", "cascade"):
        p.add_argument("--user-id", required=True, action="append", help="user id (repeat for several users)")
        p.add_argument("--k", type=int, default=10, help="number of items to print (<= the model's k)"
                       if command == "recommend" else "number of items (<= the cascade's candidates)")
        if command == "recommend":
            p.add_argument("--explain", action="store_true", help="print the user's history items each "
                           "recommendation is most like (the export's explain signature); not with --exclude")
        p.add_argument("--exclude", type=_id_list, default=None, metavar="IDS",
                       help="comma-separated item ids never to return (besides the items the user rated, "
                            "which exports exclude by default), e.g. 50,181")
        if command == "cascade":
            p.add_argument("--allow", type=_id_list, default=(), metavar="IDS",
                           help="comma-separated item ids: return only these (default: any item)")
    elif command == "rank":
        p.add_argument("--user-id", required=True, help="user id")
        p.add_argument("--item-ids", required=True, help="comma-separated candidate item ids, e.g. 1,50,181")
        p.add_argument("--k", type=int, help="print only the best k (default: every candidate)")
    else:
        p.add_argument("--history", required=True, help="comma-separated item ids, oldest first, newest last")
        p.add_argument("--k", type=int, default=10, help="number of items to print (<= the model's k)")
        p.add_argument("--explain", action="store_true", help="print the history items each recommendation is "
                       "most like (the export's explain signature)")
    p.add_argument("--version", type=int, help="model version (default: latest)")
    p.add_argument("--label", help="version label (e.g. stable)")
    p.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    p.add_argument("--model-dir", help="run directory, export base path or version dir (for titles)")
    return p


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(command, rest)``: the optional leading command word, ``recommend`` when absent."""
    argv = list(argv)
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    return DEFAULT_COMMAND, argv


def _id_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def load_titles(model_dir: str | None) -> dict[str, str]:
    """item_id -> title from ``item_titles.tsv`` of the export ``model_dir`` points at (a run
    directory, an export base path or a version directory); {} without ``model_dir``.

    Raises :class:`ConfigError` when ``model_dir`` holds no export or the export has no titles.
    """
    if not model_dir:
        return {}
    version_dir = resolve_version_dir(model_dir)
    if version_dir is None:
        raise ConfigError(f"--model-dir {model_dir} holds no exported version; pass a run directory, "
                          "export/<name> or export/<name>/<version>")
    for sub in ("assets.extra", "assets"):
        path = os.path.join(version_dir, sub, TITLES_FILE)
        if os.path.isfile(path):
            titles = {}
            with open(path, encoding="utf-8") as f:
                for line in f:
                    item_id, sep, title = line.rstrip("\n").partition("\t")
                    if sep:
                        titles[item_id] = title
            return titles
    old = sig_names.pre_rename_export(version_dir)
    if old:
        raise ConfigError(sig_names.pre_rename_error(f"--model-dir {model_dir}", old))
    raise ConfigError(f"--model-dir {model_dir}: {version_dir} has no assets.extra/{TITLES_FILE}; "
                      "drop --model-dir to print ids only")


def _items_json(row: Sequence[tuple], titles: dict[str, str]) -> list[dict[str, object]]:
    """Entries ``(item_id, score)``, or ``(item_id, score, because)`` from ``explain``, as JSON objects."""
    def one(m: str, s: float) -> dict[str, object]:
        return {"item_id": m, "score": s, **({"title": titles[m]} if m in titles else {})}

    return [{**one(*entry[:2]), **({"because": [one(*b) for b in entry[2]]} if len(entry) > 2 else {})}
            for entry in row]


def _print_rows(row: Sequence[tuple], titles: dict[str, str]) -> None:
    for rank, (item_id, score, *because) in enumerate(row, start=1):
        title = f"  {titles[item_id]}" if item_id in titles else ""
        print(f"{rank:3d}. {item_id:>8s}  {score:8.4f}{title}")
        if because:
            cited = ", ".join(titles.get(m, m) for m, _ in because[0]) or "(no history)"
            print(f"{'':15s}because you watched: {cited}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    command, rest = split_command(sys.argv[1:] if argv is None else argv)
    renamed = sig_names.legacy_flag_error(rest)
    if renamed:
        print(f"error: {renamed}", file=sys.stderr)
        return 2
    try:
        args = build_parser(command).parse_args(rest)
    except _UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.k is not None and args.k < 1:
        print(f"error: --k must be >= 1, got {args.k}", file=sys.stderr)
        return 2
    if args.version is not None and args.label:
        print("error: give --version or --label, not both", file=sys.stderr)
        return 2
    if getattr(args, "exclude", None) and getattr(args, "explain", False):
        print("error: --explain cannot be combined with --exclude (explain excludes the user's known items only); "
              "drop one of them", file=sys.stderr)
        return 2
    items: list[str] = []
    if command in ("rank", "history"):
        flag = "--item-ids" if command == "rank" else "--history"
        items = _id_list(args.item_ids if command == "rank" else args.history)
        if not items:
            print(f"error: {flag} needs at least one item id (comma-separated, e.g. 1,50,181)", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        titles = load_titles(args.model_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with ServingClient(
            args.target, protocol="rest" if args.rest else "grpc", timeout_s=args.timeout, retries=max(0, args.retries)
        ) as client:
            spec = {"version": args.version, "label": args.label}
            if command == "recommend":
                results = client.recommend(args.model, args.user_id, k=args.k, exclude=args.exclude,
                                           explain=args.explain, **spec)
            elif command == "cascade":
                results = client.recommend(args.model, args.user_id, k=args.k, exclude=args.exclude,
                                           allow=args.allow, **spec)
            elif command == "rank":
                results = client.rerank(args.model, [args.user_id], [items], k=args.k, **spec)
            else:
                results = client.recommend_from_history(args.model, [items], k=args.k, explain=args.explain,
                                                        **spec)
    except ServingClientError as e:
        wrong_model = {grpc.StatusCode.FAILED_PRECONDITION} if command == "cascade" else _WRONG_MODEL  # k: INVALID_ARGUMENT
        needs = _NEEDS[command] + (" exported with an `explain` signature" if getattr(args, "explain", False) else "")
        renamed = sig_names.RENAME_DOC in str(e)  # the movie -> item rename: the message says what to do
        hint = f" (`{command}` needs {needs})" if e.code in wrong_model and not renamed else ""
        print(f"error: {args.model} at {args.target}: {e}{hint}", file=sys.stderr)
        return 2 if e.code in _USER_ERRORS else 1
    if command not in ("rank", "cascade") and args.k is not None and any(len(row) < args.k for row in results):
        got = min(len(row) for row in results)
        print(f"warning: --k {args.k} is more than {args.model} returns ({got}: the export's k); "
              f"printing {got}. Re-export with a larger export.k for more.", file=sys.stderr)

    if command == "rank":
        [row] = results
        if args.json:
            print(json.dumps({"user_id": args.user_id, "items": _items_json(row, titles)}))
        else:
            print(f"user {args.user_id}: {len(row)} items, best first")
            _print_rows(row, titles)
        return 0
    if command == "history":
        [row] = results
        if args.json:
            print(json.dumps({"history": items, "items": _items_json(row, titles)}))
        else:
            print(f"after {','.join(items)}: top {len(row)}")
            _print_rows(row, titles)
        return 0
    if args.json:
        out = [{"user_id": uid, "items": _items_json(row, titles)} for uid, row in zip(args.user_id, results)]
        print(json.dumps(out if len(out) > 1 else out[0]))
        return 0
    for uid, row in zip(args.user_id, results):
        print(f"user {uid}: top {len(row)}")
        _print_rows(row, titles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
