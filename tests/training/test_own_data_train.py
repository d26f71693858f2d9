"""Your own data end to end: the CLI quick path trains every task on a small CSV with non-MovieLens
column names, ``--data SPEC.yaml`` and ``tune`` take the same data, the Python path trains from a
DataFrame, and the exported model answers for an id from the CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import tfrs_lab
from tfrs_lab.train import main

TASK_FAST = {
    "retrieval": ["model.embedding_dim=16", "model.id_embedding_dim=16"],
    "ranking": ["model.autorec.hidden_units=16"],
    "sequential": ["model.max_length=8", "model.embedding_dim=16", "model.num_blocks=1"],
    "autoencoder": ["model.autorec.hidden_units=16"],
    "multitask": ["model.embedding_dim=16", "model.id_embedding_dim=16", "model.rating_layers=[16]"],
}
INDEX = ["export.index=brute_force", "export.k=10", "export.max_exclude=10"]
COMMON = {"retrieval": [*INDEX, "export.verify=false"], "ranking": ["export.verify=false"],
          "sequential": [*INDEX, "export.verify=false"], "autoencoder": [*INDEX, "export.verify=false"],
          "multitask": [*INDEX, "export.verify=false"]}


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    """``plays.csv`` (listener, song, stars, played_at ISO) for 50 users x 12 of 40 songs, and
    ``songs.csv`` (songId, name, styles joined by ';') for the 40 songs."""
    d = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    lines = ["listener,song,stars,played_at"]
    for u in range(50):
        group = u % 2  # two taste groups, so there is something to learn
        for j, s in enumerate(rng.choice(np.arange(group * 20, group * 20 + 20), size=12, replace=False)):
            lines.append(f"fan-{u},S{s:03d},{rng.integers(1, 6)},2021-03-{1 + j:02d}T{u % 24:02d}:00:00Z")
    (d / "plays.csv").write_text("\n".join(lines) + "\n")
    songs = ["songId,name,styles"] + [f'S{s:03d},"Song {s}, take {s % 3}",{"rock;indie" if s < 20 else "jazz"}'
                                      for s in range(40)]
    (d / "songs.csv").write_text("\n".join(songs) + "\n")
    return d


def quick(files) -> list[str]:
    return ["--interactions", str(files / "plays.csv"),
            "--columns", "user=listener,item=song,rating=stars,time=played_at,time_format=iso8601",
            "--items", str(files / "songs.csv"), "--item-columns", "id=songId,text=name,categories=styles:;"]


def sets(*values) -> list[str]:
    return [a for v in values for a in ("--set", v)]


@pytest.mark.parametrize("task", ["ranking", "sequential", "autoencoder", "multitask"])
def test_cli_quick_path_trains_every_task(task, own_files, tmp_path):
    out = tmp_path / task
    assert main([task, *quick(own_files), "--epochs", "1", "--output-dir", str(out),
                 *sets(*TASK_FAST[task], *COMMON[task])]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "own" and metrics["num_train_examples"] > 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["dataset"] == "own"
    assert cfg["data"]["source"]["interactions"]["columns"]["user"] == "listener"
    # train.optimizer: auto (every task's default) resolved by the size rule, recorded in both files
    assert metrics["optimizer"] == cfg["train"]["optimizer"] == "adam"


def test_cli_retrieval_export_answers_for_an_id_from_the_csv(own_files, tmp_path):
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig

    out = tmp_path / "retrieval"
    assert main(["retrieval", *quick(own_files), "--split", "leave-last-out", "--epochs", "2",
                 "--output-dir", str(out), *sets(*TASK_FAST["retrieval"], "export.k=10", "export.max_exclude=10",
                                                 "export.index=brute_force")]) == 0  # export.verify: one round trip
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["source"]["items"]["columns"] == {"id": "songId", "text": "name", "categories": "styles",
                                                         "separator": ";"}
    loaded = tf.saved_model.load(str(out / "export" / "retrieval" / "1"))
    ids = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(["fan-3"]))[sig.ITEM_IDS].numpy().astype(str)
    songs = {f"S{s:03d}" for s in range(40)}
    assert ids.shape == (1, 10) and set(ids[0]) <= songs
    # the config.yaml of the run reproduces it: the same data loads from it alone
    from tfrs_lab.config import load_config
    from tfrs_lab.training.runner import load_data

    data = load_data(load_config("retrieval", [out / "config.yaml"]))
    assert data.num_ratings == 600 and sorted(data.movies["movie_id"]) == sorted(songs)
    assert data.movies["movie_genres"].shape == (40, 3)  # indie, jazz, rock


def test_data_spec_file_with_relative_paths_and_tune(own_files, tmp_path):
    (own_files / "spec.yaml").write_text(yaml.safe_dump({
        "name": "plays",
        "interactions": {"path": "plays.csv", "columns": {"user": "listener", "item": "song"}},
    }))
    from tfrs_lab.tune import main as tune

    out = tmp_path / "tune"
    code = tune(["retrieval", "--data", str(own_files / "spec.yaml"), "--tuner", "random", "--max-trials", "1",
                 "--epochs", "1", "--output-dir", str(out), *sets(*TASK_FAST["retrieval"], *COMMON["retrieval"])])
    assert code == 0
    assert any(out.rglob("metrics.json"))


def test_python_path_trains_from_a_dataframe(own_files, tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(own_files / "plays.csv")
    data = tfrs_lab.data.from_frame(df, columns={"user": "listener", "item": "song", "rating": "stars"})
    assert data.num_ratings == len(df)
    run = tfrs_lab.train("ranking", config={"train": {"epochs": 1}}, data=data, output_dir=tmp_path / "py",
                         overrides=[*TASK_FAST["ranking"], *COMMON["ranking"]], verbose=0)
    assert run.metrics["dataset"] == "own" and np.isfinite(run.metrics["rmse"])
    with pytest.raises(tfrs_lab.data.DataError, match=r"data= takes a MovieLensData .*got DataFrame: wrap .*from_frame"):
        tfrs_lab.train("ranking", data=df, output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()
