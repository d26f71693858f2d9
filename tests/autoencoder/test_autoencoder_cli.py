"""``python -m tfrs_lab.train autoencoder`` and ``python -m tfrs_lab.similar`` end to end; bad input -> exit 2."""

from __future__ import annotations

import json
import re

import pytest
import tensorflow as tf

from tfrs_lab import similar, train
from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.models.autoencoder import masked_mse

from autoencoder_fixtures import FAST, synthetic_overrides


def test_masked_mse_ignores_unobserved_entries():
    ratings = tf.constant([[5.0, 0.0, 2.0], [3.0, 4.0, 0.0]])
    mask = tf.constant([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    predictions = tf.constant([[4.0, 100.0, 2.0], [3.0, 2.0, -50.0]])
    # Observed errors: 1, 0, 0, 2 -> (1 + 0 + 0 + 4) / 4 observed entries.
    assert float(masked_mse(ratings, predictions, mask)) == pytest.approx(1.25)
    wild = tf.constant([[4.0, -7.0, 2.0], [3.0, 2.0, 9.0]])  # only unobserved entries changed
    assert float(masked_mse(ratings, wild, mask)) == pytest.approx(1.25)
    assert float(masked_mse(ratings, predictions, tf.zeros_like(mask))) == 0.0


@pytest.mark.parametrize("override, message", [
    ("model.mult.latent_dim=0", "model.mult.latent_dim must be > 0, got 0"),
    ("model.autorec.hidden_units=-3", "model.autorec.hidden_units must be > 0"),
    ("model.mult.dropout=1.0", "model.mult.dropout must be in [0, 1)"),
    ("model.autorec.dropout=-0.1", "model.autorec.dropout must be in [0, 1)"),
    ("model.mult.kl_anneal_epochs=500", "model.mult.kl_anneal_epochs (500) must be <= train.epochs"),
    ("data.split=hash", "data.split must be leave-last-out or held-out-users (or auto) for model.architecture=vae"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    code = train.main(["autoencoder", "--dataset", "synthetic", "--set", "model.architecture=vae",
                       "--set", override, "--output-dir", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_split_auto_picks_the_protocol():
    assert load_config("autoencoder").protocol == "hash"
    assert load_config("autoencoder", overrides=["model.architecture=dae"]).protocol == "leave-last-out"
    with pytest.raises(ConfigError, match="data.split must be hash"):
        load_config("autoencoder", overrides=["data.split=leave-last-out"])


@pytest.mark.slow
def test_train_then_similar_cli(tmp_path, capsys, synthetic_spec, synthetic_data_dir, movie_cluster):
    out = tmp_path / "dae"
    sets = [*synthetic_overrides(synthetic_spec, synthetic_data_dir), *FAST["dae"], "train.epochs=5",
            "export.k=10", "export.index=brute_force", "export.verify=false"]
    args = ["autoencoder", "--set", "model.architecture=dae", "--output-dir", str(out)]
    for s in sets:
        args += ["--set", s]
    assert train.main(args) == 0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "run directory" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "leave-last-out" and metrics["epochs_trained"] <= 5
    assert (out / "export" / "autoencoder" / "1" / "saved_model.pb").is_file()
    assert (out / "config.yaml").is_file() and (out / "logs").is_dir()
    page = (out / "report.html").read_text()  # ranks of the report are the run's test ranks
    row = re.search(r"<tr><td>recall@10</td><td>([0-9.]+)</td>", page)
    assert row and float(row.group(1)) == pytest.approx(metrics["recall@10"], abs=1e-4)
    assert "popularity (same test rows)" in page and "Synthetic Movie" in page

    # similar: run dir, model dir and version dir all work; titles printed, the query never listed.
    for model_dir in (out, out / "export" / "autoencoder", out / "export" / "autoencoder" / "1"):
        assert similar.main(["--model-dir", str(model_dir), "--item-id", "3", "--k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-5:]
    assert lines[0].startswith("items similar to 3 Synthetic Movie 3")
    assert len(lines) == 5 and all("Synthetic Movie" in line for line in lines[1:])
    assert all(line.split()[1] != "3" for line in lines[1:])

    # bad input: unknown item, k above the export's k, a directory without a model
    assert similar.main(["--model-dir", str(out), "--item-id", "99999"]) == 2
    assert "--item-id 99999 is not an item the model knows" in capsys.readouterr().err
    assert similar.main(["--model-dir", str(out), "--item-id", "3", "--k", "11"]) == 2
    assert "--k must be <= 10" in capsys.readouterr().err
    assert similar.main(["--model-dir", str(tmp_path / "nothing"), "--item-id", "3"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert similar.main(["--model-dir", str(out), "--item-id", "3", "--k", "0"]) == 2


def test_similar_cli_model_without_signature(tmp_path, capsys):
    class Plain(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, x):
            return {"y": x}

    version = tmp_path / "plain" / "1"
    module = Plain()
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve})
    assert similar.main(["--model-dir", str(tmp_path / "plain"), "--item-id", "1"]) == 2
    err = capsys.readouterr().err
    assert "has no similar_items signature" in err and "Traceback" not in err
