"""Bad own-data input through the real CLI: one ``error:`` line naming the file, column and fix,
exit code 2, no run directory and nothing in the data cache."""

from __future__ import annotations

import os
import re

import pytest

from tfrs_lab.train import main

GOOD = "listener,track,stars\nanna,t1,4\nanna,t2,5\nben,t1,3\n"


def files(tmp_path, **contents):
    for name, text in contents.items():
        path = tmp_path / name.replace("_", ".", 1)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())


CASES = {
    "missing file": ({}, ["--interactions", "{d}/nope.csv", "--columns", "user=listener,item=track"],
                     r"data.source.interactions.path: .*nope.csv does not exist"),
    "missing column": ({"plays_csv": GOOD}, ["--interactions", "{d}/plays.csv", "--columns", "user=userId,item=track"],
                       r"plays.csv: no column 'userId' \(data.source.interactions.columns.user\); its columns are "
                       r"'listener', 'track', 'stars'"),
    "wrong type": ({"plays_csv": GOOD + "cid,t3,five\n"},
                   ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track,rating=stars"],
                   r"plays.csv, line 5, column 'stars' \(data.source.interactions.columns.rating\): 'five' is not a "
                   r"rating \(a number\)"),
    "empty id": ({"plays_csv": GOOD + ",t3,1\n"},
                 ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track"],
                 r"plays.csv, line 5, column 'listener' .*an empty value is not an id"),
    "empty table": ({"plays_csv": "listener,track\n"},
                    ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track"],
                    r"plays.csv: the interactions table has no rows"),
    "duplicate item ids": ({"plays_csv": GOOD, "items_csv": "id,name\nt1,A\nt2,B\nt1,C\n"},
                           ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track",
                            "--items", "{d}/items.csv", "--item-columns", "id=id,text=name"],
                           r"items.csv: id 't1' appears 2 times in column 'id' \(data.source.items.columns.id\)"),
    "non-UTF-8": ({"plays_csv": b"listener,track\nJos\xe9,t1\n"},
                  ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track"],
                  r"plays.csv is not valid UTF-8 text .*set data.source.interactions.csv.encoding"),
    "ragged rows": ({"plays_csv": GOOD + "cid,t3,1,extra\n"},
                    ["--interactions", "{d}/plays.csv", "--columns", "user=listener,item=track"],
                    r"plays.csv: line 5: ragged row .*same number of ','-separated values"),
    "bad timestamp": ({"plays_csv": "u,i,when\na,t1,2020-01-01T00:00:00Z\na,t2,yesterday\n"},
                      ["--interactions", "{d}/plays.csv", "--columns", "user=u,item=i,time=when,time_format=iso8601"],
                      r"plays.csv, line 3, column 'when' .*'yesterday' is not an ISO-8601 time"),
    "bad unix timestamp": ({"plays_csv": "u,i,when\na,t1,2020-01-01\n"},
                           ["--interactions", "{d}/plays.csv", "--columns", "user=u,item=i,time=when"],
                           r"line 2, column 'when' .*is not a unix time in seconds: .*time_format: iso8601"),
    "unknown spec key": ({"spec_yaml": "interactions:\n  path: plays.csv\n  colums: {user: listener}\n"},
                         ["--data", "{d}/spec.yaml"],
                         r"unknown config key 'data.source.interactions.colums': valid keys here are columns, csv, "
                         r"format, path"),
    "unknown role": ({"plays_csv": GOOD}, ["--interactions", "{d}/plays.csv", "--columns", "user=listener,itm=track"],
                     r"--columns: unknown role 'itm'"),
    "columns without file": ({}, ["--columns", "user=a,item=b"], r"pass --interactions FILE too"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys, monkeypatch):
    contents, argv, message = CASES[case]
    data_dir, cache = tmp_path / "in", tmp_path / "cache"
    data_dir.mkdir()
    cache.mkdir()
    files(data_dir, **contents)
    monkeypatch.setenv("TFRS_LAB_DATA_DIR", str(cache))
    out = tmp_path / "run"
    code = main(["retrieval", *[a.format(d=data_dir) for a in argv], "--output-dir", str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(message, err), err
    assert not out.exists() and os.listdir(cache) == []
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(n.replace("_", ".", 1) for n in contents)
