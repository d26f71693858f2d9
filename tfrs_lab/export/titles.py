"""``assets.extra/item_titles.tsv``: the catalogue titles an export carries for its clients."""

from __future__ import annotations

from pathlib import Path

from tfrs_lab.export import signatures as sig

__all__ = ["read_titles", "write_item_titles"]


def write_item_titles(version_dir: Path, item_ids, titles) -> None:
    """Writes ``assets.extra/item_titles.tsv`` (``item_id<TAB>title`` per item) for clients."""
    lines = (f"{m}\t{' '.join(str(t).split())}\n" for m, t in zip(item_ids, titles))
    path = Path(version_dir) / "assets.extra" / sig.ITEM_TITLES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def read_titles(saved_model_dir: Path) -> dict[str, str]:
    """``item_id -> title`` from ``assets.extra/item_titles.tsv`` (empty when absent)."""
    path = Path(saved_model_dir) / "assets.extra" / sig.ITEM_TITLES_FILE
    if not path.is_file():
        return {}
    pairs = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return {m: t for m, t in pairs}
