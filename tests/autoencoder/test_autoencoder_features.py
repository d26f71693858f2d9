"""The autoencoders read no typed features: a spec (or ``from_frame`` data) with ``features`` is
refused with one line naming the fix, exit code 2, nothing written (never a silent warning)."""

from __future__ import annotations

import pytest
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.train import main


@pytest.mark.parametrize("architecture", ["vae", "dae", "autorec"])
def test_a_spec_with_features_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, architecture):
    source = write_cold_catalogue(tmp_path / "files", users=6, categories=2, warm=2, cold=2, seed=1)
    source["features"] = source["features"][:2]  # category, tags (items)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(source))
    out = tmp_path / "run"
    assert main(["autoencoder", "--data", str(spec), "--set", f"model.architecture={architecture}",
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err == (f"error: task autoencoder (model.architecture={architecture}) does not read data.source.features "
                   "(category, tags): drop the features, or train sequential (item features), retrieval or multitask "
                   "(every side) or ranking with model.architecture dcn, mlp, neumf")
    assert not out.exists()


def test_from_frame_features_are_refused_before_training(tmp_path):
    import pandas as pd

    source = write_cold_catalogue(tmp_path / "files", users=6, categories=2, warm=2, cold=2, seed=1)
    files = tmp_path / "files"
    data = tfrs_lab.data.from_frame(pd.read_csv(files / "clicks.csv"), columns={"user": "uid", "item": "sku", "time": "ts"},
                                    items=pd.read_csv(files / "items.csv"), item_columns={"id": "sku"},
                                    features=source["features"][:1])
    with pytest.raises(ConfigError, match=r"does not read data.source.features \(category\): drop the features"):
        tfrs_lab.train("autoencoder", data=data, output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
