"""The query CLI's ``rank`` and ``history`` variants (and the client's ``rerank`` /
``recommend_from_history``) against a ranking and a sequential model exported by our own exporter.

One tiny synthetic model per task is trained through the real ``tfrs_lab.train.main`` and served by
the built-in server on 127.0.0.1; every call goes over real gRPC or REST with deadlines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import query
from tfrs_lab.serving.client import ServingClient
from tfrs_lab.serving.config import ModelConfig

from serving_fixtures import make_server

# The same synthetic catalogue for both tasks, so the sequential export's titles fit the ranking model.
DATA = ["--dataset", "synthetic", "--epochs", "1", "--set", "data.synthetic.num_users=60",
        "--set", "data.synthetic.num_movies=40", "--set", "data.synthetic.ratings_per_user=15",
        "--set", "export.verify=false"]  # these tests are the verification
SEQ_K = 10
SEQUENTIAL = ["--set", "model.max_length=10", "--set", "model.embedding_dim=8", "--set", "model.num_blocks=1",
              "--set", f"export.k={SEQ_K}", "--set", "export.max_exclude=20", "--set", "export.index=brute_force"]
CANDIDATES = ["1", "5", "9", "13", "22", "31"]
HISTORY = ["3", "17", "8", "25"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Export base paths ``ranking`` (explicit ratings) and ``sequential``, both with titles."""
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("variants")
    assert main(["ranking", *DATA, "--output-dir", str(root / "rank")]) == 0
    assert main(["sequential", *DATA, *SEQUENTIAL, "--output-dir", str(root / "seq")]) == 0
    return {"ranking": root / "rank" / "export" / "ranking", "sequential": root / "seq" / "export" / "sequential"}


@pytest.fixture(scope="module")
def server(exports):
    srv = make_server([ModelConfig(name=name, base_path=str(path)) for name, path in exports.items()], poll_interval_s=0)
    try:
        yield srv
    finally:
        srv.stop(grace_s=1)


def _target(server, rest: bool) -> str:
    return f"127.0.0.1:{server.rest_port if rest else server.grpc_port}"


def _titles(exports) -> dict[str, str]:
    return query.load_titles(str(exports["sequential"]))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = query.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_exports_have_the_expected_signatures_and_titles(exports):
    from tfrs_lab.serving.servable import read_saved_model_proto

    ranking = read_saved_model_proto(str(exports["ranking"] / "1")).meta_graphs[0].signature_def
    sequential = read_saved_model_proto(str(exports["sequential"] / "1")).meta_graphs[0].signature_def
    assert {sig.SERVING_DEFAULT, sig.RERANK} <= set(ranking)
    assert {sig.SERVING_DEFAULT, sig.RECOMMEND_FOR_USER} <= set(sequential)
    assert set(CANDIDATES + HISTORY) <= set(_titles(exports))
    assert query.load_titles(str(exports["ranking"])) == _titles(exports)  # same catalogue, same titles


# -- rank ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_rank_json_is_the_direct_predict_order(server, capsys, rest):
    code, out, err = _run(capsys, "rank", "--target", _target(server, rest), *(["--rest"] if rest else []), "--json",
                          "--model", "ranking", "--user-id", "7", "--item-ids", ",".join(CANDIDATES))
    assert code == 0, err
    data = json.loads(out)
    assert data["user_id"] == "7"
    got = [(m["item_id"], m["score"]) for m in data["items"]]
    assert sorted(m for m, _ in got) == sorted(CANDIDATES)
    assert all("title" not in m for m in data["items"])  # no --model-dir: ids only

    # The same scores from serving_default, one Predict call per (user, movie) pair.
    with ServingClient(_target(server, False), timeout_s=20, retries=0) as client:
        direct = client.predict("ranking", {sig.USER_ID: ["7"] * len(CANDIDATES), sig.ITEM_ID: CANDIDATES})
    ratings = dict(zip(CANDIDATES, np.asarray(direct[sig.RATING], dtype=np.float64).tolist()))
    expected = sorted(CANDIDATES, key=lambda m: -ratings[m])
    if len(set(ratings.values())) == len(ratings):  # no ties: the order is fully determined
        assert [m for m, _ in got] == expected
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)
    for movie, score in got:
        assert score == pytest.approx(ratings[movie], rel=1e-5, abs=1e-5)


def test_rank_text_with_titles_and_k(server, exports, capsys):
    titles = _titles(exports)
    code, out, err = _run(capsys, "rank", "--target", _target(server, False), "--model", "ranking", "--user-id", "7",
                          "--item-ids", " 1, 5,,9 ", "--k", "2", "--model-dir", str(exports["sequential"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "user 7: 2 items, best first" and len(lines) == 3
    movies = [line.split()[1] for line in lines[1:]]
    assert set(movies) <= {"1", "5", "9"}
    for line, movie in zip(lines[1:], movies):
        assert line.endswith(titles[movie])


def test_client_rerank_pads_ragged_candidates(server):
    with ServingClient(_target(server, True), protocol="rest", timeout_s=20, retries=0) as client:
        rows = client.rerank("ranking", ["7", "8"], [CANDIDATES[:2], CANDIDATES])
    assert [sorted(m for m, _ in row) for row in rows] == [sorted(CANDIDATES[:2]), sorted(CANDIDATES)]
    assert all(np.isfinite(s) for row in rows for _, s in row)  # the '' pads (-inf) are dropped


# -- history ---------------------------------------------------------------------------------


def test_history_over_grpc_and_rest(server, exports, capsys):
    answers = []
    for rest in (False, True):
        code, out, err = _run(capsys, "history", "--target", _target(server, rest), *(["--rest"] if rest else []),
                              "--json", "--model", "sequential", "--history", ",".join(HISTORY), "--k", "5")
        assert code == 0, err
        data = json.loads(out)
        assert data["history"] == HISTORY
        answers.append([(m["item_id"], m["score"]) for m in data["items"]])
    grpc_answer, rest_answer = answers
    assert [m for m, _ in grpc_answer] == [m for m, _ in rest_answer]
    np.testing.assert_allclose([s for _, s in grpc_answer], [s for _, s in rest_answer], rtol=1e-5, atol=1e-5)
    movies = [m for m, _ in grpc_answer]
    assert len(movies) == 5 and len(set(movies)) == 5
    assert not set(movies) & set(HISTORY), "the history's own movies must not be recommended"
    assert set(movies) <= set(_titles(exports))

    with ServingClient(_target(server, False), timeout_s=20, retries=0) as client:
        direct = client.predict("sequential", {sig.HISTORY: [HISTORY]})
    direct_ids = [m.decode() if isinstance(m, bytes) else str(m) for m in np.asarray(direct[sig.ITEM_IDS])[0]]
    assert movies == [m for m in direct_ids if m][:5]


def test_history_text_prints_titles(server, exports, capsys):
    titles = _titles(exports)
    code, out, err = _run(capsys, "history", "--target", _target(server, False), "--model", "sequential",
                          "--history", ",".join(HISTORY), "--model-dir", str(exports["sequential"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"after {','.join(HISTORY)}: top {SEQ_K}" and len(lines) == SEQ_K + 1
    for line in lines[1:]:
        assert line.endswith(titles[line.split()[1]])


def test_history_explain_cites_the_given_history(server, exports, capsys):
    """``history --explain`` over gRPC: each movie's "because" ids come from the given history, in the
    order of the export's ``explain`` signature; the text form prints their titles."""
    titles = _titles(exports)
    target = ["--target", _target(server, False), "--model", "sequential", "--history", ",".join(HISTORY)]
    code, out, err = _run(capsys, "history", *target, "--k", "4", "--explain", "--json")
    assert code == 0, err
    data = json.loads(out)
    with ServingClient(_target(server, False), timeout_s=20, retries=0) as client:
        direct = client.predict("sequential", {sig.HISTORY: [HISTORY]}, signature_name=sig.EXPLAIN)
    because = [[m.decode() for m in row if m] for row in np.asarray(direct[sig.BECAUSE_IDS])[0][:4]]
    assert [[b["item_id"] for b in m["because"]] for m in data["items"]] == because
    assert all(len(row) == 3 and set(row) <= set(HISTORY) for row in because)
    code, out, err = _run(capsys, "history", *target, "--k", "4", "--explain", "--model-dir", str(exports["sequential"]))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 9 and lines[2].strip() == "because you watched: " + ", ".join(titles[m] for m in because[0])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, fragment", [
    (["rank", "--model", "ranking", "--user-id", "7", "--item-ids", ""], "--item-ids needs at least one item id"),
    (["rank", "--model", "ranking", "--user-id", "7", "--item-ids", " , ,"], "--item-ids needs at least one item id"),
    (["history", "--model", "sequential", "--history", ","], "--history needs at least one item id"),
    (["rank", "--model", "ranking", "--user-id", "7"], "--item-ids"),
    (["rank", "--model", "ranking", "--item-ids", "1", "--user-id", "7", "--k", "0"], "--k must be >= 1"),
    (["rank", "--model", "nope", "--user-id", "7", "--item-ids", "1,5"], "Servable not found"),
    (["history", "--model", "nope", "--history", "1,5"], "Servable not found"),
    (["rank", "--model", "sequential", "--user-id", "7", "--item-ids", "1,5"], "needs a ranking model"),
    (["history", "--model", "ranking", "--history", "1,5"], "needs a sequential model"),
    (["recommend", "--model", "ranking", "--user-id", "7"], "needs a retrieval model"),
    (["rnak", "--model", "ranking", "--user-id", "7"], "unrecognized arguments: rnak"),
])
@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_user_errors_are_one_line_exit_2(server, capsys, argv, fragment, rest):
    command, rest_argv = argv[0], argv[1:]
    code, out, err = _run(capsys, command, "--target", _target(server, rest), *(["--rest"] if rest else []), *rest_argv)
    assert code == 2, (out, err)
    assert fragment in err and err.startswith("error: ") and "Traceback" not in err, err
    assert err.strip().count("\n") == 0, err
    assert out == ""


@pytest.mark.parametrize("argv", [
    ["rank", "--model", "ranking", "--user-id", "7", "--item-ids", "1,5"],
    ["history", "--model", "sequential", "--history", "1,5"],
])
def test_unreachable_is_exit_1(capsys, argv):
    code, _, err = _run(capsys, argv[0], "--target", "127.0.0.1:1", "--retries", "0", "--timeout", "2", *argv[1:])
    assert code == 1 and err.startswith(f"error: {argv[2]} at 127.0.0.1:1: UNAVAILABLE"), err
