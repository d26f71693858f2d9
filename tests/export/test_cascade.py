"""The retrieve -> rank cascade (``python -m tfrs_lab.export cascade``): one SavedModel whose answers are
the retrieval top N, scored by the ranking model, filtered and cut to k — computed here by hand from
the two source exports and compared, plus the filters, k, the fresh-process reload, the CLI and the
runs it must refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.cascade import CASCADE_FILE, CascadeError, export_cascade
from tfrs_lab.export.verify import answer_in_fresh_process

DATA = ["--dataset", "synthetic", "--epochs", "1", "--set", "data.synthetic.num_users=60",
        "--set", "data.synthetic.num_movies=40", "--set", "data.synthetic.ratings_per_user=15",
        "--set", "export.verify=false"]
RETRIEVAL = ["--set", "export.k=20", "--set", "export.max_exclude=40"]  # ScaNN index (the default)
N, K = 15, 5
USERS = ["1", "2", "3", "7", "11", "<unknown-user>"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny retrieval and ranking runs on one synthetic catalogue, and a ranking run on another."""
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("cascade-runs")
    assert main(["retrieval", *DATA, *RETRIEVAL, "--output-dir", str(root / "ret")]) == 0
    assert main(["ranking", *DATA, "--output-dir", str(root / "rank")]) == 0
    assert main(["ranking", *DATA, "--set", "data.synthetic.num_movies=30", "--output-dir", str(root / "other")]) == 0
    return {"retrieval": root / "ret", "ranking": root / "rank", "other": root / "other", "root": root}


@pytest.fixture(scope="module")
def cascade(runs) -> Path:
    """The cascade written by the CLI, end to end (with the exporter's own fresh-process check)."""
    from tfrs_lab.export.__main__ import main

    out = runs["root"] / "served" / "cascade"
    assert main(["cascade", "--retrieval", str(runs["retrieval"]), "--ranking", str(runs["ranking"]),
                 "--candidates", str(N), "--k", str(K), "--output-dir", str(out)]) == 0
    return out / "1"


@pytest.fixture(scope="module")
def models(runs, cascade):
    import scann  # noqa: F401  (the retrieval export and the cascade hold a ScaNN index)

    return {"cascade": tf.saved_model.load(str(cascade)),
            "retrieval": tf.saved_model.load(str(runs["retrieval"] / "export" / "retrieval" / "1")),
            "ranking": tf.saved_model.load(str(runs["ranking"] / "export" / "ranking" / "1"))}


def _text(array) -> list[list[str]]:
    return np.asarray(array).astype(str).tolist()


def _recommend(model, users, k, exclude, allow):
    def rows(ids):  # one list per row, or one list (possibly empty) for every row
        per_row = bool(ids) and isinstance(ids[0], (list, tuple))
        return tf.constant([list(r) for r in ids] if per_row else [list(ids) or [""]] * len(users))

    return model.signatures[sig.RECOMMEND](**{
        sig.USER_ID: tf.constant(users), sig.K: tf.constant(k if isinstance(k, list) else [k] * len(users), tf.int32),
        sig.EXCLUDE_ITEM_IDS: rows(exclude), sig.ALLOW_ITEM_IDS: rows(allow)})


def _by_hand(models, user: str, k: int, exclude=(), allow=()) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Retrieval's top N (seen and ``exclude`` removed by its own signature) -> keep allowed ->
    ranking score per pair -> stable sort -> first k."""
    out = models["retrieval"].signatures[sig.EXCLUDE_SEEN](**{
        sig.USER_ID: tf.constant([user]), sig.EXCLUDE_ITEM_IDS: tf.constant([list(exclude) or [""]])})
    ids = np.asarray(out[sig.ITEM_IDS][0, :N]).astype(str)
    retrieval_scores = out[sig.SCORES].numpy()[0, :N]
    keep = [i for i, m in enumerate(ids) if m and m not in exclude and (not allow or m in allow)]
    ranked = models["ranking"].signatures[sig.SERVING_DEFAULT](**{
        sig.USER_ID: tf.constant([user] * len(keep)), sig.ITEM_ID: tf.constant(ids[keep])})[sig.RATING].numpy()
    order = np.argsort(-ranked, kind="stable")[:k]
    return [ids[keep][i] for i in order], ranked[order], retrieval_scores[keep][order]


def _seen(runs) -> dict[str, set[str]]:
    from tfrs_lab.config import load_config
    from tfrs_lab.training.runner import load_data

    data = load_data(load_config("retrieval", [runs["retrieval"] / "config.yaml"]))
    seen: dict[str, set[str]] = {}
    for u, m in zip(data.ratings["user_id"].astype(str), data.ratings["movie_id"].astype(str)):
        seen.setdefault(u, set()).add(m)
    return seen


def test_serving_default_is_retrieval_then_ranking_then_top_k_by_hand(models):
    got = models["cascade"].signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: tf.constant(USERS)})
    assert got[sig.ITEM_IDS].shape == (len(USERS), K)
    for row, user in enumerate(USERS):
        ids, scores, retrieval_scores = _by_hand(models, user, K)
        assert _text(got[sig.ITEM_IDS])[row] == ids, user
        np.testing.assert_allclose(got[sig.SCORES].numpy()[row], scores, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[sig.RETRIEVAL_SCORES].numpy()[row], retrieval_scores, rtol=1e-5, atol=1e-5)
        assert list(scores) == sorted(scores, reverse=True)  # best first by the ranking score
    # the ranking model really reorders: the cascade is not the retrieval top k
    plain = models["retrieval"].signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: tf.constant(USERS)})
    assert any(_text(got[sig.ITEM_IDS])[r] != _text(plain[sig.ITEM_IDS])[r][:K] for r in range(len(USERS)))


def test_seen_and_excluded_movies_are_never_returned(runs, models):
    seen = _seen(runs)
    known = USERS[:-1]
    first = models["cascade"].signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: tf.constant(known)})
    for user, row in zip(known, _text(first[sig.ITEM_IDS])):
        assert not set(row) & seen[user] and all(row)
    banned = [row[:3] for row in _text(first[sig.ITEM_IDS])]
    again = _recommend(models["cascade"], known, K, banned, ())
    for user, bans, row in zip(known, banned, _text(again[sig.ITEM_IDS])):
        assert not set(row) & (set(bans) | seen[user]) and all(row)
        assert row == _by_hand(models, user, K, exclude=bans)[0]
    via_excluding = models["cascade"].signatures[sig.EXCLUDE_SEEN](**{
        sig.USER_ID: tf.constant(known), sig.EXCLUDE_ITEM_IDS: tf.constant(banned)})
    assert _text(via_excluding[sig.ITEM_IDS]) == _text(again[sig.ITEM_IDS])


def test_allow_list_restricts_rows_that_give_one(models):
    user = USERS[0]
    candidates = _by_hand(models, user, N)[0]
    allow = [candidates[-1], candidates[4], candidates[9], "no-such-movie"]
    got = _recommend(models["cascade"], [user, user], K, (), [allow, [""] * len(allow)])
    restricted, free = _text(got[sig.ITEM_IDS])
    expected = _by_hand(models, user, K, allow=allow)[0]
    assert len(expected) == 3 and restricted == expected + [""] * (K - 3)
    assert got[sig.SCORES].numpy()[0, 3:].tolist() == [-np.inf] * (K - 3)
    assert free == _by_hand(models, user, K)[0]  # a row of '' pads is unrestricted


def test_k_per_row_and_its_bounds(models):
    got = _recommend(models["cascade"], USERS[:3], [1, 3, N], (), ())
    ids = _text(got[sig.ITEM_IDS])
    assert got[sig.ITEM_IDS].shape == (3, N)
    assert [sum(1 for m in row if m) for row in ids] == [1, 3, N]
    assert ids[1][:3] == _by_hand(models, USERS[1], 3)[0] and ids[2] == _by_hand(models, USERS[2], N)[0]
    for bad in (0, N + 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"k must be between 1 and {N}"):
            _recommend(models["cascade"], USERS[:1], bad, (), ())


def test_reload_in_a_fresh_process_answers_the_same(cascade, models):
    inputs = {sig.USER_ID: USERS[:3], sig.K: [2, K, 4], sig.EXCLUDE_ITEM_IDS: [["1", ""], ["", ""], ["2", "3"]],
              sig.ALLOW_ITEM_IDS: [[""], [""], [""]]}
    here = _recommend(models["cascade"], inputs[sig.USER_ID], inputs[sig.K], inputs[sig.EXCLUDE_ITEM_IDS],
                      inputs[sig.ALLOW_ITEM_IDS])
    fresh = answer_in_fresh_process(cascade, import_scann=True, inputs=inputs, signature=sig.RECOMMEND)
    assert fresh[sig.ITEM_IDS] == _text(here[sig.ITEM_IDS])
    np.testing.assert_allclose(fresh[sig.SCORES], here[sig.SCORES].numpy(), rtol=1e-5)


def test_export_carries_warmup_titles_and_its_sources(runs, cascade):
    from tfrs_lab.export.titles import read_titles
    from tfrs_lab.export.warmup import read_warmup_requests

    requests = read_warmup_requests(cascade / "assets.extra" / sig.WARMUP_FILE)
    assert {name for name, _ in requests} == {sig.SERVING_DEFAULT, sig.RECOMMEND}
    recommend = next(inputs for name, inputs in requests if name == sig.RECOMMEND)
    assert recommend[sig.K].dtype == np.int32
    assert read_titles(cascade) == read_titles(runs["retrieval"] / "export" / "retrieval" / "1")
    assert '"candidates": 15' in (cascade / "assets.extra" / CASCADE_FILE).read_text()


def test_api_writes_the_next_version(runs, cascade):
    path = export_cascade(runs["retrieval"], runs["ranking"], cascade.parent, candidates=N, k=3, verify=False)
    assert path == cascade.parent / "2" and (path / "saved_model.pb").is_file()


def _refused(capsys, argv: list[str]) -> str:
    from tfrs_lab.export.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize("case, fragment", [
    ("missing", "--retrieval"), ("not-a-run", "no config.yaml"), ("swapped", "is a retrieval run, not a ranking run"),
    ("other-catalogue", "another catalogue"), ("too-many-candidates", "--candidates must be between 1 and 20"),
    ("k-above-candidates", "--k must be between 1 and --candidates (5)"), ("k-zero", "--k must be between 1"),
])
def test_bad_runs_and_settings_are_refused_with_one_line_and_nothing_written(runs, tmp_path, capsys, case, fragment):
    ret, rank = str(runs["retrieval"]), str(runs["ranking"])
    flags = {"missing": ["--retrieval", str(tmp_path / "nope"), "--ranking", rank],
             "not-a-run": ["--retrieval", ret, "--ranking", str(tmp_path)],
             "swapped": ["--retrieval", ret, "--ranking", ret],
             "other-catalogue": ["--retrieval", ret, "--ranking", str(runs["other"])],
             "too-many-candidates": ["--retrieval", ret, "--ranking", rank, "--candidates", "21"],
             "k-above-candidates": ["--retrieval", ret, "--ranking", rank, "--candidates", "5", "--k", "6"],
             "k-zero": ["--retrieval", ret, "--ranking", rank, "--k", "0"]}[case]
    out = tmp_path / "out"
    assert fragment in _refused(capsys, ["cascade", *flags, "--output-dir", str(out)])
    assert not out.exists()


def test_an_existing_version_is_refused(runs, cascade, capsys):
    err = _refused(capsys, ["cascade", "--retrieval", str(runs["retrieval"]), "--ranking", str(runs["ranking"]),
                            "--output-dir", str(cascade.parent), "--version", "1"])
    assert "already holds version 1" in err
    with pytest.raises(CascadeError, match="--version must be a positive integer"):
        export_cascade(runs["retrieval"], runs["ranking"], cascade.parent, version=0)


def test_a_command_is_required(capsys):
    assert "a command is required" in _refused(capsys, [])
