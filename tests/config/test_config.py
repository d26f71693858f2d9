"""Config loading, overlays, overrides and validation messages."""

import pytest
import yaml

from tfrs_lab.config import TASKS, ConfigError, default_config_file, dump_config, load_config


def test_defaults_file_matches_dataclass_defaults():
    from_file = load_config("retrieval", [default_config_file("retrieval")])
    assert from_file == load_config("retrieval")


def test_files_overlay_in_order_and_set_wins(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("model: {embedding_dim: 16, temperature: 0.2}\ntrain: {epochs: 4}\n")
    b.write_text("model: {embedding_dim: 24}\n")
    cfg = load_config("retrieval", [a, b], ["train.epochs=7", "model.tower_layers=[32, 16]"])
    assert cfg.model.embedding_dim == 24 and cfg.model.temperature == 0.2
    assert cfg.train.epochs == 7 and cfg.model.tower_layers == (32, 16)


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; configs read it as the number users mean.
    f = tmp_path / "lr.yaml"
    f.write_text("train: {learning_rate: 5e-4}\nmodel: {l2_regularization: 1E-5}\n")
    cfg = load_config("retrieval", [f])
    assert cfg.train.learning_rate == 0.0005 and cfg.model.l2_regularization == 0.00001
    assert load_config("retrieval", overrides=["train.learning_rate=1e-3"]).train.learning_rate == 0.001
    assert load_config("retrieval", overrides=["export.model_name=1e"]).export.model_name == "1e"  # not a number


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("retrieval", overrides=["data.split=leave-last-out", "export.index=brute_force"])
    dump_config(cfg, tmp_path / "config.yaml")
    assert load_config("retrieval", [tmp_path / "config.yaml"]) == cfg


@pytest.mark.parametrize("override, message", [
    ("model.embedding_dim=0", "model.embedding_dim must be > 0, got 0"),
    ("model.embeding_dim=8", "unknown config key 'model.embeding_dim'"),
    ("train.epochs=0", "train.epochs must be > 0"),
    ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch must be > 0, got 0"),
    ("data.split=random", "data.split must be one of hash, leave-last-out"),
    ("model.temperature=warm", "model.temperature must be a number"),
    ("model.query_features=[mood]", "model.query_features has unknown value 'mood'"),
    ("export.index=annoy", "export.index must be one of scann, brute_force"),
    ("nodots", "--set expects KEY=VALUE"),
])
def test_invalid_values_name_the_dotted_path(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("retrieval", overrides=[override])


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("retrieval", [tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("retrieval", [broken])
    wrong_task = tmp_path / "ranking.yaml"
    wrong_task.write_text(yaml.safe_dump({"task": "ranking"}))
    with pytest.raises(ConfigError, match="task"):
        load_config("retrieval", [wrong_task])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_task_yaml_states_the_library_defaults(task):
    """``configs/<task>.yaml`` says "these are the defaults": library callers (``load_config(task)``,
    pipeline components without a config file) and CLI users get the same configuration."""
    assert load_config(task, [default_config_file(task)]) == load_config(task)
