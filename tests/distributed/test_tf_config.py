"""``train.distribution`` configuration and ``TF_CONFIG`` validation (no cluster started)."""

from __future__ import annotations

import json

import pytest

from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.train import main
from tfrs_lab.training.distribute import backup_dir, is_chief, parse_tf_config

CLUSTER = {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}


def env(cluster, task_type="worker", index=0) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_parse_tf_config_reads_cluster_and_task():
    spec = parse_tf_config("multi_worker_mirrored", env(CLUSTER, "worker", 1))
    assert (spec.task_type, spec.task_index, spec.num_workers) == ("worker", 1, 2)
    assert not is_chief(spec)
    assert is_chief(parse_tf_config("multi_worker_mirrored", env(CLUSTER, "worker", 0)))
    with_chief = {"chief": ["127.0.0.1:2000"], **CLUSTER}
    assert not is_chief(parse_tf_config("multi_worker_mirrored", env(with_chief, "worker", 0)))
    assert is_chief(parse_tf_config("multi_worker_mirrored", env(with_chief, "chief", 0)))


@pytest.mark.parametrize("distribution, environ, message", [
    ("multi_worker_mirrored", {}, "needs the TF_CONFIG environment variable"),
    ("multi_worker_mirrored", {"TF_CONFIG": "{not json"}, "TF_CONFIG is not valid JSON"),
    ("multi_worker_mirrored", env({"worker": ["no-port"]}), "cluster.worker must be a non-empty list of 'host:port'"),
    ("multi_worker_mirrored", env(CLUSTER, "worker", 2), "task.index must be an integer in [0, 2)"),
    ("multi_worker_mirrored", env(CLUSTER, "ps", 0), "task.type must be one of chief, worker"),
    ("multi_worker_mirrored", env({**CLUSTER, "ps": ["127.0.0.1:3000"]}), "job(s) ['ps']"),
    ("parameter_server", env(CLUSTER), "needs one 'chief' (the coordinator), 'worker' and 'ps' jobs"),
])
def test_bad_tf_config_is_a_config_error_naming_the_fix(distribution, environ, message):
    with pytest.raises(ConfigError) as e:
        parse_tf_config(distribution, environ)
    assert message in str(e.value)


def test_distribution_keys_validated_per_task():
    cfg = load_config("retrieval", [], ["train.distribution=parameter_server", "train.ps_min_shard_bytes=1024"])
    assert (cfg.train.distribution, cfg.train.ps_min_shard_bytes) == ("parameter_server", 1024)
    with pytest.raises(ConfigError, match="train.distribution must be one of default, mirrored"):
        load_config("retrieval", [], ["train.distribution=horovod"])
    for task in ("ranking", "sequential", "autoencoder", "multitask"):
        for name in ("mirrored", "multi_worker_mirrored"):
            assert load_config(task, [], [f"train.distribution={name}"]).train.distribution == name
    ps = "train.distribution=parameter_server"
    for task, sets in (("sequential", []), ("multitask", []), ("ranking", ["model.architecture=mf"]),
                       ("ranking", ["model.architecture=dcn"]),
                       ("ranking", ["model.architecture=mf", "model.objective=implicit", "train.loss=listwise"]),
                       ("ranking", ["model.architecture=neumf", "model.objective=implicit"])):
        assert load_config(task, [], [ps, *sets]).train.distribution == "parameter_server"
    # the autoencoders and the ranking model that reads a whole table: one line naming the fix
    with pytest.raises(ConfigError, match=r"^train.distribution=parameter_server is not supported by this task: "
                                          r"choose default or mirrored or multi_worker_mirrored \(an autoencoder's"):
        load_config("autoencoder", [], [ps])
    with pytest.raises(ConfigError, match=rf"^{ps}: .*reads a dense.*; use train.distribution=multi_worker_mirrored"):
        load_config("ranking", [], [ps, "model.architecture=autorec"])
    with pytest.raises(ConfigError, match="model.neumf_pretrain=true fits three models in one run"):
        load_config("ranking", [], ["train.distribution=multi_worker_mirrored", "model.architecture=neumf",
                                    "model.neumf_pretrain=true"])
    with pytest.raises(ConfigError, match="train.ps_min_shard_bytes must be > 0"):
        load_config("retrieval", [], ["train.ps_min_shard_bytes=0"])


def test_backup_dir_is_stable_beside_the_output_dir(tmp_path):
    cfg = load_config("retrieval", [], [])
    assert backup_dir(cfg.train, tmp_path / "run") == tmp_path / ".run.backup"
    cfg = load_config("retrieval", [], [f"train.backup_dir={tmp_path / 'shared'}"])
    assert backup_dir(cfg.train, tmp_path / "run") == tmp_path / "shared"


def test_cli_without_tf_config_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "run"
    code = main(["retrieval", "--dataset", "synthetic", "--output-dir", str(out),
                 "--set", "train.distribution=multi_worker_mirrored"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.distribution=multi_worker_mirrored needs the TF_CONFIG") and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
