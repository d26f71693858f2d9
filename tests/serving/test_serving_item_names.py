"""The movie -> item rename (docs/serving.md#item-names): today's names on the wire, and a
pre-rename export or flag recognised with one line that says what to do."""

from __future__ import annotations

import logging
import os

import grpc
import pytest
import yaml

from serving_fixtures import install_version, make_server, save_pre_rename_model
from tfrs_lab import similar
from tfrs_lab.config import load_config
from tfrs_lab.export import __main__ as export_cli
from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import query
from tfrs_lab.serving.client import ServingClient, ServingClientError
from tfrs_lab.serving.config import ModelConfig


@pytest.fixture(scope="module")
def old_version(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_pre_rename_model(str(tmp_path_factory.mktemp("pre_rename") / "1"))


@pytest.fixture(scope="module")
def old_and_new(old_version, model_store, tmp_path_factory):
    """A server with a pre-rename export (``old``) and a current one (``retrieval``)."""
    root = tmp_path_factory.mktemp("served_names")
    install_version(old_version, str(root / "old"), 1)
    install_version(model_store["table_v1"], str(root / "retrieval"), 1)
    server = make_server([ModelConfig(name="old", base_path=str(root / "old")),
                          ModelConfig(name="retrieval", base_path=str(root / "retrieval"))], poll_interval_s=0)
    try:
        yield server
    finally:
        server.stop(grace_s=1)


def _client(server, protocol: str) -> ServingClient:
    port = server.grpc_port if protocol == "grpc" else server.rest_port
    return ServingClient(f"127.0.0.1:{port}", protocol=protocol, timeout_s=20, retries=0)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text.strip(), text
    return text


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_new_names_on_the_wire_and_the_old_export_still_served(old_and_new, protocol):
    with _client(old_and_new, protocol) as client:
        new = client.predict("retrieval", {sig.USER_ID: ["1", "2"]})
        assert set(new) == {sig.ITEM_IDS, sig.SCORES} and new[sig.ITEM_IDS].shape == (2, 5)
        assert client.recommend("retrieval", ["1"], k=3, exclude=["v1_m0"])[0]  # exclude_item_ids accepted
        old = client.predict("old", {sig.USER_ID: ["1"]})  # TF Serving would serve it as it is, so do we
        assert set(old) == {"movie_ids", sig.SCORES}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_client_names_a_pre_rename_export_in_one_line(old_and_new, protocol):
    with _client(old_and_new, protocol) as client:
        with pytest.raises(ServingClientError) as e:  # serving_default: the outputs give it away
            client.recommend("old", ["1"], k=3)
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "movie_ids -> item_ids" in _one_line(e.value) and "export it again" in str(e.value)
        with pytest.raises(ServingClientError) as e:  # recommend_excluding: the server sees the inputs
            client.recommend("old", ["1"], k=3, exclude=["v1_m0"])
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "exclude_movie_ids -> exclude_item_ids" in _one_line(e.value) and sig.RENAME_DOC in str(e.value)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_old_input_names_to_a_new_export_are_refused_naming_the_new_one(old_and_new, protocol):
    with _client(old_and_new, protocol) as client:
        with pytest.raises(ServingClientError) as e:
            client.predict("retrieval", {sig.USER_ID: ["1"], "exclude_movie_ids": [["v1_m0"]]},
                           signature_name=sig.EXCLUDE_SEEN)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes item names now (exclude_movie_ids -> exclude_item_ids)" in _one_line(e.value)


def test_server_warns_once_when_it_loads_a_pre_rename_export(old_version, tmp_path, caplog):
    install_version(old_version, str(tmp_path / "old"), 1)
    with caplog.at_level(logging.WARNING, logger="tfrs_lab.serving.servable"):
        server = make_server([ModelConfig(name="old", base_path=str(tmp_path / "old"))], poll_interval_s=0)
        server.stop(grace_s=1)
    warned = [r.getMessage() for r in caplog.records if "before the item names" in r.getMessage()]
    assert len(warned) == 1 and "model 'old' version 1" in warned[0]
    assert "exclude_movie_ids -> exclude_item_ids" in warned[0] and "movie_ids -> item_ids" in warned[0]


def test_query_refuses_the_old_flag_naming_the_new_one_before_sending(capsys):
    code = query.main(["rank", "--target", "127.0.0.1:1", "--model", "ranking", "--user-id", "1",
                       "--movie-ids", "1,50"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0  # 127.0.0.1:1 unreachable: a sent request would exit 1
    assert err == "error: --movie-ids was renamed --item-ids (same values): pass --item-ids - " + sig.RENAME_DOC


def test_query_model_dir_of_a_pre_rename_export_is_one_line(old_version, capsys):
    code = query.main(["--target", "127.0.0.1:1", "--model", "old", "--user-id", "1", "--model-dir", old_version])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(f"error: --model-dir {old_version} is an export from before the item names (")
    assert "movie_titles.tsv -> item_titles.tsv" in err and "export it again" in err


def test_similar_cli_refuses_the_old_flag_and_an_old_export(old_version, capsys):
    assert similar.main(["--model-dir", old_version, "--movie-id", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --movie-id was renamed --item-id (same values): pass "
                                                f"--item-id - {sig.RENAME_DOC}")
    assert similar.main(["--model-dir", old_version, "--item-id", "v1_m0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "before the item names (" in err and "movie_ids -> item_ids" in err


def test_cascade_refuses_a_run_with_a_pre_rename_export(old_version, tmp_path, capsys):
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "retrieval"}))
    x = load_config("retrieval", [run / "config.yaml"]).export
    install_version(old_version, str(run / "export" / x.model_name), x.version)
    out = tmp_path / "cascade"
    code = export_cli.main(["cascade", "--retrieval", str(run), "--ranking", str(run), "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and not out.exists()
    assert err.startswith(f"error: --retrieval '{run}': its export") and "before the item names" in err
