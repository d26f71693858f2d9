"""Interrupting a search and resuming it: finished trials are not repeated; a changed space is refused."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import write_space

from tfrs_lab.tune import main
from tfrs_lab.tuning import TrialRecord, run_search


@pytest.mark.slow
def test_resume_does_not_repeat_finished_trials(tmp_path, data_args, capsys):
    space = write_space(tmp_path / "space.yaml", {"model.embedding_dim": {"type": "choice", "values": [4, 8, 16]}},
                        trial_config={"train": {"epochs": 1}, "export": {"verify": False, "index": "brute_force",
                                                                           "k": 20, "max_exclude": 20}})
    out = tmp_path / "search"
    started: list[str] = []

    def interrupt_third(record: TrialRecord) -> None:
        if record.status == "RUNNING":
            started.append(record.trial_id)
            if len(started) == 2:
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C while trial 2 ran

    overrides = data_args[5::2]  # the values of data_args' --set flags
    extra = {"data": {"dataset": "synthetic", "data_dir": data_args[3]}}
    with pytest.raises(KeyboardInterrupt):
        run_search("retrieval", out, space_file=space, overrides=overrides, extra=extra, tuner="bayesian",
                   max_trials=3, progress=interrupt_third)
    finished = started[:1]
    records = {t: json.loads((out / "keras_tuner" / "search" / f"trial_{t}" / "tfrs_lab_trial.json").read_text())
               for t in finished}
    assert all(r["status"] == "COMPLETED" for r in records.values())

    # A changed space is refused with the reason, before any trial runs.
    changed = write_space(tmp_path / "changed.yaml",
                          {"model.embedding_dim": {"type": "choice", "values": [4, 64]}})
    assert main(["retrieval", *data_args, "--space", str(changed), "--tuner", "bayesian", "--max-trials", "3",
                 "--resume", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "model.embedding_dim" in err

    # Resuming with --max-trials <= the finished trials only writes the results from them.
    assert main(["retrieval", *data_args, "--space", str(space), "--tuner", "bayesian", "--max-trials", "1",
                 "--resume", "--output-dir", str(out)]) == 0
    assert " started" not in capsys.readouterr().out
    with open(out / "trials.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["COMPLETED", "INTERRUPTED"]

    assert main(["retrieval", *data_args, "--space", str(space), "--tuner", "bayesian", "--max-trials", "3",
                 "--resume", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    rerun = {line.split()[1] for line in printed.splitlines() if line.startswith("trial ") and " started" in line}
    assert finished == ["0"] and rerun == {"1", "2"}  # the interrupted trial again, then a new one
    for t in finished:  # the finished trials' records were not rewritten
        again = json.loads((out / "keras_tuner" / "search" / f"trial_{t}" / "tfrs_lab_trial.json").read_text())
        assert again == records[t]
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
