"""The dataset presets under configs/datasets/: every MovieLens release and the synthetic data as
config overlays (``--config``), Last.fm as a ``--data`` spec whose relative paths resolve beside the
spec file. Loaded without any download; Last.fm prepared from tiny generated files in its layout."""

from __future__ import annotations

import shutil

import pytest

from tfrs_lab.config import load_config, shipped_config
from tfrs_lab.data.__main__ import main as data_main
from tfrs_lab.train import build_parser, flag_overrides

MOVIELENS = {"movielens-100k": "movielens/100k-ratings", "movielens-1m": "movielens/1m-ratings",
             "movielens-20m": "movielens/20m-ratings", "movielens-25m": "movielens/25m-ratings",
             "movielens-latest-small": "movielens/latest-small-ratings", "synthetic": "synthetic"}


@pytest.mark.parametrize("preset", MOVIELENS)
@pytest.mark.parametrize("task", ["retrieval", "ranking"])
def test_dataset_presets_are_config_overlays(preset, task):
    cfg = load_config(task, [shipped_config(f"datasets/{preset}.yaml")], overrides=["data.split=leave-last-out"])
    assert cfg.data.dataset == MOVIELENS[preset] and cfg.data.source is None


def test_lastfm_preset_is_a_data_spec_relative_to_its_file(tmp_path, capsys):
    spec = tmp_path / "lastfm-2k.yaml"
    shutil.copy(shipped_config("datasets/lastfm-2k.yaml"), spec)
    args = build_parser().parse_args(["retrieval", "--data", str(spec)])
    cfg = load_config("retrieval", extra=flag_overrides(args))
    assert cfg.data.dataset == "own" and cfg.data.source.name == "lastfm-2k"
    assert cfg.data.source.interactions.path == str(tmp_path / "lastfm-2k" / "user_artists.dat")
    # the archive's layout and quirks: tab-separated .dat files, a bare quote inside a name
    (tmp_path / "lastfm-2k").mkdir()
    (tmp_path / "lastfm-2k" / "user_artists.dat").write_text(
        "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t228\n3\t53\t90\n")
    (tmp_path / "lastfm-2k" / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://b\n52\tMorcheeba\thttp://c\thttp://d\n"
        '53\tThe "Band\thttp://e\thttp://f\n')
    assert data_main(["prepare", "--data", str(spec), "--output-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "4 interactions, 2 users, 3 items, 0 categories"
