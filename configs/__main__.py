"""Prints where the shipped configs are installed, to copy or pass them to a command.

    python -m tfrs_lab.configs                                # the folder, then every shipped file
    python -m tfrs_lab.configs pipelines/movielens_retrieval.yaml   # that file's path
    python -m tfrs_lab.components.run "$(python -m tfrs_lab.configs pipelines/movielens_retrieval.yaml)"
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tfrs_lab.config import ConfigError, shipped_config, shipped_config_files


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfrs_lab.configs", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="a shipped file, e.g. retrieval.yaml or tuning/ranking.yaml")
    args = p.parse_args(argv)
    try:
        paths = [shipped_config(name) for name in args.names] or [shipped_config(), *shipped_config_files()]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
