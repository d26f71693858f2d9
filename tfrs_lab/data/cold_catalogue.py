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

:func:`write_rated_catalogue` plants the same kind of signal in explicit ratings (multitask: both
heads), under column names that are not MovieLens's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLD_FEATURES", "RATED_FEATURES", "write_cold_catalogue", "write_rated_catalogue"]

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
                         cold: int = 20, seed: int = 0, cold_clicks: int = 1) -> dict[str, Any]:
    """Writes the three CSV files into ``directory`` (created) and returns their ``data.source``
    mapping (absolute paths, :data:`COLD_FEATURES`). Module docstring: what is planted;
    ``cold_clicks`` > 1: every user ends with that many cold items of their category (distinct), so
    under ``leave-last-out`` the validation row is a cold item too (what early stopping then selects on)."""
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
        picks = [f"sku-{c}-{j:03d}" for j in rng.permutation(warm)]
        if cold_clicks == 1:  # the single cold click as drawn before cold_clicks existed (same files)
            picks.append(f"sku-{c}-{warm + rng.integers(0, cold):03d}")
        else:
            picks += [f"sku-{c}-{warm + j:03d}" for j in rng.choice(cold, cold_clicks, replace=False)]
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


RATED_FEATURES: tuple[dict[str, Any], ...] = (
    {"name": "family", "table": "items", "column": "family", "type": "categorical"},
    {"name": "region", "table": "users", "column": "region", "type": "categorical"},
    {"name": "channel", "table": "interactions", "column": "channel", "type": "categorical"},
)
"""``data.source.features`` of :func:`write_rated_catalogue`: the item ``family`` carries the
signal, ``region`` (users) and ``channel`` (context) are noise."""


def write_rated_catalogue(directory: str | os.PathLike, *, members: int = 120, families: int = 3, warm: int = 15,
                          cold: int = 10, rated_warm: int = 16, rated_cold: int = 2, liked_share: float = 0.75,
                          seed: int = 0) -> dict[str, Any]:
    """Writes ``products.csv`` (``product``, ``family``), ``members.csv`` (``member``, ``region``) and
    ``reviews.csv`` (``member``, ``product``, ``score``, ``when`` unix seconds, ``channel``) into
    ``directory`` (created); returns their ``data.source`` mapping (absolute paths, :data:`RATED_FEATURES`).

    Planted (seeded): member m likes family ``m % families``: ``score`` about 4.5 there and 1.5
    elsewhere (+ N(0, 0.25), clipped to 1..5). Each family has ``warm`` products reviewed first (every
    member ``rated_warm`` of them, ``int(liked_share * rated_warm)`` from the liked family) and ``cold`` products
    reviewed only at the end (every member ``rated_cold``, ``int(liked_share * rated_cold)`` liked), members interleaved in
    time; so under ``data.split: time`` the test rows review products nobody reviewed in training, which
    only their ``family`` can rate and place."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pools = {"w": warm, "c": cold}
    (d / "products.csv").write_text("product,family\n" + "".join(
        f"{kind}{f}-{j},f{f}\n" for kind, n in pools.items() for f in range(families) for j in range(n)))
    (d / "members.csv").write_text("member,region\n" + "".join(
        f"m{m:03d},{['north', 'south', 'east'][rng.integers(0, 3)]}\n" for m in range(members)))
    rows, when = ["member,product,score,when,channel"], 1_700_000_000
    for kind, count in (("w", rated_warm), ("c", rated_cold)):
        events = []
        for m in range(members):
            liked = m % families
            n_liked = min(int(liked_share * count), pools[kind])
            others = [f"{kind}{f}-{j}" for f in range(families) if f != liked for j in range(pools[kind])]
            picks = [f"{kind}{liked}-{j}" for j in rng.choice(pools[kind], n_liked, replace=False)]
            picks += list(rng.choice(others, count - n_liked, replace=False))
            events += [(m, p, p.startswith(f"{kind}{liked}-")) for p in picks]
        for i in rng.permutation(len(events)):  # members interleaved in time
            m, product, likes = events[i]
            when += 60
            score = np.clip((4.5 if likes else 1.5) + rng.normal(0, 0.25), 1, 5)
            rows.append(f"m{m:03d},{product},{score:.2f},{when},{['web', 'app', 'shop'][rng.integers(0, 3)]}")
    (d / "reviews.csv").write_text("\n".join(rows) + "\n")
    return {"name": "rated-catalogue",
            "interactions": {"path": str((d / "reviews.csv").resolve()),
                             "columns": {"user": "member", "item": "product", "rating": "score", "time": "when"}},
            "items": {"path": str((d / "products.csv").resolve()), "columns": {"id": "product"}},
            "users": {"path": str((d / "members.csv").resolve()), "columns": {"id": "member"}},
            "features": [dict(f) for f in RATED_FEATURES]}
