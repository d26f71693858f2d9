"""``python -m tfrs_lab.export reindex``: a retrieval run's index rebuilt over its catalogue plus new
items (no retraining) as the next export version — the new items served (a twin of a catalogue movie
lands next to it in ``similar_items``), the old items' scores unchanged, the version incremented,
titles and the fresh-process check, the CLI, and the inputs it must refuse."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.data.movielens import GENRE_NAMES
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.reindex import ReindexError, reindex
from tfrs_lab.export.titles import read_titles
from tfrs_lab.export.verify import answer_in_fresh_process

DATA = ["--dataset", "synthetic", "--epochs", "2", "--set", "data.synthetic.num_users=60",
        "--set", "data.synthetic.num_movies=40", "--set", "data.synthetic.ratings_per_user=15",
        "--set", "export.verify=false", "--set", "export.index=brute_force", "--set", "export.k=10",
        "--set", "export.max_exclude=20"]
USERS = ["1", "2", "3", "7", "11"]
TWINS = 3  # new items whose title and genres copy a catalogue movie's


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("reindex-run")
    assert main(["retrieval", *DATA, "--output-dir", str(root / "ret")]) == 0
    return root / "ret"


def _catalogue(run: Path) -> dict[str, str]:
    return read_titles(run / "export" / "retrieval" / "1")


@pytest.fixture(scope="module")
def items_file(run, tmp_path_factory) -> Path:
    """Twins of the first catalogue movies (new ids, the same title and genres), an item with an
    unseen title and category, and a catalogue id with another title (must update nothing)."""
    from tfrs_lab.training.retrieval import TASK
    from tfrs_lab.training.runner import load_run

    _, prepared = load_run(TASK, run)
    movies = prepared.data.movies
    path = tmp_path_factory.mktemp("items") / "items.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "genres"])
        for i in range(TWINS):
            genres = "|".join(GENRE_NAMES[j] for j in np.flatnonzero(movies["movie_genres"][i]))
            w.writerow([f"new-{i}", movies["movie_title"][i], genres])
        w.writerow(["new-other", "Zzyzx Quux (2031)", "Space Opera"])
        w.writerow([movies["movie_id"][0], "A Renamed Title", "Drama"])
    return path


@pytest.fixture(scope="module")
def reindexed(run, items_file):
    return reindex(run, items_file)


def _load(path: Path):
    return tf.saved_model.load(str(path))


def test_the_version_increments_next_to_the_run_export(run, reindexed):
    assert reindexed.version == 2
    assert reindexed.path == run / "export" / "retrieval" / "2"
    assert (reindexed.path / "saved_model.pb").is_file()
    assert (reindexed.path / "assets.extra" / sig.WARMUP_FILE).is_file()
    assert (run / "export" / "retrieval" / "1" / "saved_model.pb").is_file()  # the old version is kept


def test_new_items_are_added_and_existing_ids_update_nothing(run, reindexed):
    old = _catalogue(run)
    titles = read_titles(reindexed.path)
    assert list(reindexed.new_items) == [f"new-{i}" for i in range(TWINS)] + ["new-other"]
    assert reindexed.existing_items == 1
    assert set(titles) == set(old) | set(reindexed.new_items)
    assert {m: titles[m] for m in old} == old  # the catalogue id with another title kept its own
    assert titles["new-other"] == "Zzyzx Quux (2031)"


def _feature_rows(model, ids: list[str], wanted: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Title tokens and genres rows the candidate tower reads for ``wanted`` (index = row + 1)."""
    index = [ids.index(m) + 1 for m in wanted]
    features = model.movie_features
    return features.title_tokens.numpy()[index], features.genres.numpy()[index]


def test_a_twin_lands_next_to_its_original_in_similar_items(run, reindexed):
    ids = [m.decode() for m in reindexed.model.movie_ids.numpy()]
    twins = [f"new-{i}" for i in range(TWINS)]
    tokens, genres = _feature_rows(reindexed.model, ids, twins)
    want_tokens, want_genres = _feature_rows(reindexed.model, ids, ids[:TWINS])
    np.testing.assert_array_equal(tokens, want_tokens)  # encoded through the run's title vocabulary
    np.testing.assert_array_equal(genres, want_genres)  # onto the run's genre columns
    other_tokens, other_genres = _feature_rows(reindexed.model, ids, ["new-other"])
    assert set(other_tokens[0][other_tokens[0] > 0]) == {1} and not other_genres.any()  # unknown words, category
    loaded = _load(reindexed.path)
    similar = loaded.signatures[sig.SIMILAR_ITEMS](**{sig.ITEM_ID: tf.constant(ids[:TWINS])})
    answers = np.asarray(similar[sig.ITEM_IDS]).astype(str)
    for i in range(TWINS):
        assert f"new-{i}" in answers[i][:5], (ids[i], answers[i])
    # an item with nothing in common (unknown words and category, OOV id) is not anyone's nearest twin
    assert all("new-other" != row[0] for row in answers)


def test_old_items_scores_are_unchanged(run, reindexed):
    before = _load(run / "export" / "retrieval" / "1").signatures[sig.SERVING_DEFAULT]
    after = _load(reindexed.path).signatures[sig.SERVING_DEFAULT]
    a, b = before(**{sig.USER_ID: tf.constant(USERS)}), after(**{sig.USER_ID: tf.constant(USERS)})
    new = set(reindexed.new_items)
    for u in range(len(USERS)):
        ids_a = np.asarray(a[sig.ITEM_IDS][u]).astype(str).tolist()
        ids_b = np.asarray(b[sig.ITEM_IDS][u]).astype(str).tolist()
        kept = [(m, s) for m, s in zip(ids_b, np.asarray(b[sig.SCORES][u])) if m not in new and m]
        # new items can only push old ones down the list: the old ones left are v1's prefix, same scores
        assert [m for m, _ in kept] == ids_a[: len(kept)]
        np.testing.assert_allclose([s for _, s in kept], np.asarray(a[sig.SCORES][u])[: len(kept)], atol=1e-5)


def test_the_reindexed_export_reloads_in_a_fresh_process_with_the_same_answers(reindexed):
    here = _load(reindexed.path).signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: tf.constant(USERS)})
    there = answer_in_fresh_process(reindexed.path, USERS, import_scann=False)
    assert np.asarray(there[sig.ITEM_IDS]).astype(str).tolist() == np.asarray(here[sig.ITEM_IDS]).astype(str).tolist()


def test_cli_end_to_end_with_its_own_reload_check(run, items_file, tmp_path, capsys):
    from tfrs_lab.export.__main__ import main

    out = tmp_path / "served" / "retrieval"
    assert main(["reindex", "--run", str(run), "--items", str(items_file),
                 "--item-columns", "id=id,text=title,categories=genres:|", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / '1'}" in printed and "4 new items, 1 already in the catalogue" in printed
    assert (out / "1" / "saved_model.pb").is_file()
    assert "new-0" in read_titles(out / "1")


def _refused(capsys, argv: list[str]) -> str:
    from tfrs_lab.export.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    return err


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory) -> Path:
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("reindex-ranking")
    assert main(["ranking", *DATA[:10], "--set", "export.verify=false", "--output-dir", str(root / "rank")]) == 0
    return root / "rank"


def test_a_non_retrieval_run_is_refused(ranking_run, items_file, tmp_path, capsys):
    err = _refused(capsys, ["reindex", "--run", str(ranking_run), "--items", str(items_file),
                            "--output-dir", str(tmp_path / "out")])
    assert "is a ranking run, not a retrieval run" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, fragment", [
    ("missing-items", "--items"), ("no-id-column", "no column 'movieId' (--item-columns role id)"),
    ("id-not-named", "--item-columns must name the id column"), ("not-a-run", "no config.yaml"),
])
def test_bad_input_is_refused_with_one_line_and_nothing_written(run, items_file, tmp_path, capsys, case, fragment):
    flags = {"missing-items": ["--run", str(run), "--items", str(tmp_path / "nope.csv")],
             "no-id-column": ["--run", str(run), "--items", str(items_file), "--item-columns", "id=movieId"],
             "id-not-named": ["--run", str(run), "--items", str(items_file), "--item-columns", "text=title"],
             "not-a-run": ["--run", str(tmp_path), "--items", str(items_file)]}[case]
    versions = sorted(p.name for p in (run / "export" / "retrieval").iterdir())
    assert fragment in _refused(capsys, ["reindex", *flags])
    assert sorted(p.name for p in (run / "export" / "retrieval").iterdir()) == versions


def test_an_existing_version_is_refused(run, reindexed, items_file):
    with pytest.raises(ReindexError, match="already holds version 2: pass another --version"):
        reindex(run, items_file, version=reindexed.version)
    with pytest.raises(ReindexError, match="--version must be a positive integer"):
        reindex(run, items_file, version=0)


def test_an_own_data_run_reads_new_items_with_its_own_columns_and_category_names(tmp_path):
    """A quick-path run (items ``songId,name,styles`` split by ';'): the default columns are the run's,
    categories map by name onto its sorted category columns."""
    from tfrs_lab.train import main

    rng = np.random.default_rng(0)
    plays = ["listener,song"] + [f"fan-{u},S{s:03d}" for u in range(40)
                                 for s in rng.choice(np.arange(u % 2 * 20, u % 2 * 20 + 20), 10, replace=False)]
    (tmp_path / "plays.csv").write_text("\n".join(plays) + "\n")
    songs = ["songId,name,styles"] + [f"S{s:03d},Song {s},{'rock;indie' if s < 20 else 'jazz'}" for s in range(40)]
    (tmp_path / "songs.csv").write_text("\n".join(songs) + "\n")
    (tmp_path / "new.csv").write_text("songId,name,styles\nS900,Song 3,indie;rock\nS901,Song 30,jazz;polka\n")
    assert main(["retrieval", "--interactions", str(tmp_path / "plays.csv"), "--columns", "user=listener,item=song",
                 "--items", str(tmp_path / "songs.csv"), "--item-columns", "id=songId,text=name,categories=styles:;",
                 "--epochs", "1", *[a for v in ("model.embedding_dim=16", "model.id_embedding_dim=16",
                                                 "export.index=brute_force", "export.k=10", "export.max_exclude=10",
                                                 "export.verify=false") for a in ("--set", v)],
                 "--output-dir", str(tmp_path / "run")]) == 0
    done = reindex(tmp_path / "run", tmp_path / "new.csv", verify=False)
    assert list(done.new_items) == ["S900", "S901"] and done.version == 2
    ids = [m.decode() for m in done.model.movie_ids.numpy()]
    tokens, genres = _feature_rows(done.model, ids, ["S900", "S901"])
    want_tokens, want_genres = _feature_rows(done.model, ids, ["S003", "S030"])
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(genres, want_genres)  # columns indie, jazz, rock by name; polka dropped
