"""``python -m tfrs_lab.similar``: print the movies most similar to a movie, with titles.

Examples::

    python -m tfrs_lab.similar --model-dir runs/ae/export/autoencoder/1 --movie-id 50 --k 10
    python -m tfrs_lab.similar --model-dir runs/quickstart --movie-id 1     # a run directory works too

Reads the export's ``similar_items`` signature (every retrieval, sequential and autoencoder export
has one) and its ``assets.extra/movie_titles.tsv``.
"""

from __future__ import annotations

from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.similar", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True,
                   help="export version dir, export/<name> (latest version) or a run directory")
    p.add_argument("--movie-id", required=True, help="MovieLens movie id, e.g. 50 (Star Wars)")
    p.add_argument("--k", type=int, default=10, help="how many similar movies to print (default 10)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.k < 1:
            raise UsageError(f"--k must be >= 1, got {args.k}")
        configure_logging(args.verbose)
        from tfrs_lab.export.similar import SimilarItemsError, similar_movies

        try:
            title, answer = similar_movies(args.model_dir, args.movie_id, args.k)
        except SimilarItemsError as e:
            raise UsageError(str(e)) from e
        print(f"movies similar to {args.movie_id} {title}".rstrip() + ":")
        for rank, (movie_id, movie_title, score) in enumerate(answer, 1):
            print(f"{rank:3d}. {movie_id:>6s}  {score:6.3f}  {movie_title}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
