"""Model paths as users give them: version dir, export base or run dir, everywhere, or a refusal
that names the fix."""

from __future__ import annotations

import os

import pytest

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import query, start
from tfrs_lab.serving.config import ConfigError
from tfrs_lab.serving.paths import model_config_from_flag, resolve_version_dir

from serving_fixtures import install_version


@pytest.fixture()
def run_dir(model_store, tmp_path):
    """``run/export/retrieval/{1,2}`` with titles in version 2."""
    run = tmp_path / "run"
    base = run / "export" / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    v2 = install_version(model_store["table_v2"], str(base), 2)
    with open(os.path.join(v2, "assets.extra", sig.ITEM_TITLES_FILE), "w", encoding="utf-8") as f:
        f.write("v2_m0\tThe First Movie (1999)\n")
    return run


def test_a_version_directory_serves_exactly_that_version(run_dir):
    config = model_config_from_flag(f"retrieval={run_dir / 'export' / 'retrieval' / '1'}")
    assert config.base_path == str(run_dir / "export" / "retrieval")
    assert config.policy == "specific" and config.versions == (1,)


@pytest.mark.parametrize("given", ["run", "export/retrieval"])
def test_a_run_directory_or_export_base_serves_the_latest_version(run_dir, given):
    path = run_dir if given == "run" else run_dir / "export" / "retrieval"
    config = model_config_from_flag(f"retrieval={path}")
    assert config.base_path == str(run_dir / "export" / "retrieval") and config.policy == "latest"
    assert resolve_version_dir(str(path)) == str(run_dir / "export" / "retrieval" / "2")


def test_unservable_paths_are_refused_with_the_fix(run_dir, model_store, tmp_path):
    bare = tmp_path / "saved_model_dir"
    install_version(model_store["table_v1"], str(tmp_path), 7)
    os.rename(tmp_path / "7", bare)
    with pytest.raises(ConfigError, match=r"outside a numbered version directory; move it to .*/1/"):
        model_config_from_flag(f"m={bare}")
    install_version(model_store["table_v1"], str(run_dir / "export" / "ranking"), 1)
    with pytest.raises(ConfigError, match="holds exports ranking, retrieval; pass .*export/<name>"):
        model_config_from_flag(f"other={run_dir}")
    assert model_config_from_flag(f"ranking={run_dir}").base_path == str(run_dir / "export" / "ranking")


def test_start_cli_refuses_a_bare_saved_model(model_store, tmp_path, capsys):
    install_version(model_store["table_v1"], str(tmp_path), 3)
    os.rename(tmp_path / "3", tmp_path / "model")
    assert start.main(["--model", f"m={tmp_path / 'model'}", "--engine", "builtin"]) == 2
    assert "move it to" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["run", "base", "version"])
def test_query_titles_from_any_model_dir(run_dir, given):
    path = {"run": run_dir, "base": run_dir / "export" / "retrieval",
            "version": run_dir / "export" / "retrieval" / "2"}[given]
    assert query.load_titles(str(path)) == {"v2_m0": "The First Movie (1999)"}


def test_query_refuses_a_model_dir_without_titles(run_dir):
    with pytest.raises(ConfigError, match="has no assets.extra/item_titles.tsv"):
        query.load_titles(str(run_dir / "export" / "retrieval" / "1"))


def test_query_warns_when_k_is_above_the_exports_k(served, capsys):
    assert query.main(["--target", f"127.0.0.1:{served.grpc_port}", "--model", "retrieval", "--user-id", "1",
                       "--k", "50"]) == 0
    captured = capsys.readouterr()
    assert "warning: --k 50 is more than retrieval returns (5: the export's k)" in captured.err
    assert captured.out.splitlines()[0] == "user 1: top 5"
