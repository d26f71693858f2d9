"""ExampleGen on your own data: the quick-path columns and a dataset spec, read exactly as ``train``
reads them (MovieLens's own ``movieId`` header used to crash with a raw ``KeyError``)."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_lab.components.base import ComponentError
from tfrs_lab.components.example_gen import ExampleGen, read_examples
from tfrs_lab.data import DataError, read_source
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import build


@pytest.fixture()
def ml_latest_csv(tmp_path):
    """ratings.csv / movies.csv in MovieLens latest-small's own layout (userId, movieId, ...)."""
    rng = np.random.default_rng(1)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, 21):
        for j, m in enumerate(rng.choice(np.arange(1, 16), size=6, replace=False)):
            lines.append(f"{u},{m},{rng.integers(1, 6)}.5,{964980000 + 60 * j + u}")
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = ["movieId,title,genres"] + [f'{m},"Movie {m}, The (1999)",Comedy|Drama' for m in range(1, 16)]
    (tmp_path / "movies.csv").write_text("\n".join(movies) + "\n")
    return tmp_path


def test_quick_path_columns_read_movielens_own_headers(ml_latest_csv, tmp_path):
    gen = ExampleGen(input_path=str(ml_latest_csv / "ratings.csv"), movies_path=str(ml_latest_csv / "movies.csv"),
                     columns="user=userId,item=movieId,rating=rating,time=timestamp",
                     item_columns="id=movieId,text=title,categories=genres:|", split="leave-last-out")
    loaded = read_examples(gen.run(tmp_path / "out")["examples"])
    assert loaded.data.num_ratings == 120 and loaded.protocol == "leave-last-out"
    assert loaded.data.movies["movie_title"][0] == "Movie 1, The (1999)"
    assert loaded.data.movies["movie_genres"].shape == (15, 2)
    same = read_source(build(SourceSpec, {
        "interactions": {"path": str(ml_latest_csv / "ratings.csv"),
                         "columns": {"user": "userId", "item": "movieId", "rating": "rating", "time": "timestamp"}},
    }, "data.source"))
    everything = np.arange(loaded.data.num_ratings)  # the prepared codes (no string records) ...
    users, items = loaded.ids(everything)
    for name, column in {"user_id": users, "movie_id": items, "user_rating": loaded.labels(everything),
                         "timestamp": loaded.data.timestamp}.items():  # ... give every column as train reads it
        np.testing.assert_array_equal(column, same.ratings[name], err_msg=name)
    assert len(loaded.splits["test"]) == 20  # one per user


def test_spec_parameter_and_its_errors(ml_latest_csv, tmp_path):
    source = {"interactions": {"path": str(ml_latest_csv / "ratings.csv"), "columns": {"user": "userId",
                                                                                      "item": "movieId"}}}
    loaded = read_examples(ExampleGen(source=source).run(tmp_path / "out")["examples"])
    assert loaded.data.num_ratings == 120
    with pytest.raises(ComponentError, match=r"unknown config key 'gen.source.interactions.colums'"):
        ExampleGen(id="gen", source={"interactions": {"path": "x.csv", "colums": {}}})
    with pytest.raises(DataError, match=r"no column 'user_id' \(gen.source.interactions.columns.user\); its "
                                        r"columns are 'userId', 'movieId', 'rating', 'timestamp'"):
        ExampleGen(id="gen", input_path=str(ml_latest_csv / "ratings.csv"), columns="user=user_id,item=movieId") \
            .run(tmp_path / "bad")
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.gz"))


def test_quick_path_errors_name_the_parameters(ml_latest_csv):
    with pytest.raises(ComponentError, match=r"gen.columns: unknown role 'usr'"):
        ExampleGen(id="gen", input_path=str(ml_latest_csv / "ratings.csv"), columns="usr=userId,item=movieId")
    with pytest.raises(ComponentError, match=r"gen.item_columns must name the id column"):
        ExampleGen(id="gen", input_path=str(ml_latest_csv / "ratings.csv"), columns="user=userId,item=movieId",
                   movies_path=str(ml_latest_csv / "movies.csv"), item_columns="text=title")


def test_internal_names_without_columns_say_how_to_name_them(ml_latest_csv, tmp_path):
    with pytest.raises(ComponentError, match=r"lacks column\(s\) movie_id, .*name your columns with gen.columns"):
        ExampleGen(id="gen", input_path=str(ml_latest_csv / "ratings.csv")).run(tmp_path / "out")
