"""A small own-data set with one typed feature of each type, where an item feature carries the signal
(docs/own-data.md#typed-features): shop users, a catalogue with cold items, a click log.

Planted structure (seeded, deterministic): ``categories`` item categories; every item belongs to
one (``items.csv`` column ``category``). Per category ``warm`` items are clicked in training and
``cold`` items never are. Every user belongs to one category (``user index % categories``) and
clicks every warm item of it (``warm - 1`` training rows, then the validation row) and finally one
cold item of it (the test row under ``leave-last-out``). Ranked with the user's training and
validation items excluded, only a model that knows the cold items' category can place the test
item in its top 10 (about ``10 / cold``); popularity never can (cold items have no clicks), and item
ids alone cannot either (a cold item's id embedding is never trained).

Files (CSV with a header, in ``directory``):

* ``items.csv``: ``sku``, ``category`` (categorical: the signal), ``tags`` (``|``-joined:
  multi_categorical), ``title`` (text), ``price`` (numeric), ``vector`` (4 space-joined floats:
  dense, noise);
* ``users.csv``: ``uid``, ``country`` (categorical, noise), ``age`` (numeric, noise);
* ``clicks.csv``: ``uid``, ``sku``, ``ts`` (unix seconds: timestamp), ``device`` (categorical
  context, noise), ``dwell`` (numeric context, noise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLD_FEATURES", "write_cold_catalogue"]

COLD_FEATURES: tuple[dict[str, Any], ...] = (
    {"name": "category", "table": "items", "column": "category", "type": "categorical"},
    {"name": "tags", "table": "items", "column": "tags", "type": "multi_categorical", "separator": "|"},
    {"name": "title", "table": "items", "column": "title", "type": "text", "max_tokens": 6},
    {"name": "price", "table": "items", "column": "price", "type": "numeric", "normalize": "log", "buckets": 4},
    {"name": "vector", "table": "items", "column": "vector", "type": "dense", "size": 4, "separator": " "},
    {"name": "country", "table": "users", "column": "country", "type": "categorical", "hash_buckets": 16},
    {"name": "age", "table": "users", "column": "age", "type": "numeric"},
    {"name": "device", "table": "interactions", "column": "device", "type": "categorical"},
    {"name": "dwell", "table": "interactions", "column": "dwell", "type": "numeric"},
    {"name": "clicked_at", "table": "interactions", "column": "ts", "type": "timestamp"},
)
"""``data.source.features`` of the files: one feature of each type, every table."""


def write_cold_catalogue(directory: str | os.PathLike, *, users: int = 80, categories: int = 4, warm: int = 6,
                         cold: int = 20, seed: int = 0) -> dict[str, Any]:
    """Writes the three CSV files into ``directory`` (created) and returns their ``data.source``
    mapping (absolute paths, :data:`COLD_FEATURES`). Module docstring: what is planted."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = warm + cold
    words = ["red", "blue", "green", "gold", "black", "white", "grey", "pink"]
    item_lines = ["sku,category,tags,title,price,vector"]
    for c in range(categories):
        for j in range(per):
            tags = "|".join(sorted({f"tag{rng.integers(0, 6)}", f"tag{rng.integers(0, 6)}"}))
            vector = " ".join(f"{v:.3f}" for v in rng.normal(size=4))
            title = f"{words[rng.integers(0, len(words))]} thing {j % 5}"
            item_lines.append(f"sku-{c}-{j:03d},cat-{c},{tags},{title},{rng.uniform(1, 200):.2f},{vector}")
    (d / "items.csv").write_text("\n".join(item_lines) + "\n")
    user_lines = ["uid,country,age"] + [f"u{u:03d},{['de', 'fr', 'it'][rng.integers(0, 3)]},{rng.integers(18, 70)}"
                                        for u in range(users)]
    (d / "users.csv").write_text("\n".join(user_lines) + "\n")
    click_lines = ["uid,sku,ts,device,dwell"]
    t0 = 1_600_000_000
    for u in range(users):
        c = u % categories
        picks = [f"sku-{c}-{j:03d}" for j in rng.permutation(warm)] + [f"sku-{c}-{warm + rng.integers(0, cold):03d}"]
        for step, sku in enumerate(picks):
            device = ["web", "app"][rng.integers(0, 2)]
            click_lines.append(f"u{u:03d},{sku},{t0 + 3600 * step + u},{device},{rng.uniform(0, 60):.1f}")
    (d / "clicks.csv").write_text("\n".join(click_lines) + "\n")
    return {"name": "cold-catalogue",
            "interactions": {"path": str((d / "clicks.csv").resolve()),
                             "columns": {"user": "uid", "item": "sku", "time": "ts"}},
            "items": {"path": str((d / "items.csv").resolve()), "columns": {"id": "sku"}},
            "users": {"path": str((d / "users.csv").resolve()), "columns": {"id": "uid"}},
            "features": [dict(f) for f in COLD_FEATURES]}
