"""A retrieve -> rank cascade (``python -m tfrs_lab.export cascade``) served like any export: its
``serving_default`` and ``recommend`` (int32 ``k``, exclude and allow lists) over real gRPC and REST on
127.0.0.1, the client's ``recommend(..., allow=...)``, the query CLI's ``cascade`` variant, warm-up
and a ``k`` above the export's maximum answered as a user error."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import query
from tfrs_lab.serving.client import ServingClient, ServingClientError
from tfrs_lab.serving.config import ModelConfig

from serving_fixtures import make_server

DATA = ["--dataset", "synthetic", "--epochs", "1", "--set", "data.synthetic.num_users=60",
        "--set", "data.synthetic.num_movies=40", "--set", "data.synthetic.ratings_per_user=15",
        "--set", "export.verify=false"]
N, K = 12, 4
USERS = ["1", "5", "<unknown-user>"]


@pytest.fixture(scope="module")
def cascade(tmp_path_factory) -> Path:
    """The base path of a cascade over tiny retrieval (ScaNN) and ranking runs."""
    from tfrs_lab.export.cascade import export_cascade
    from tfrs_lab.train import main

    root = tmp_path_factory.mktemp("served-cascade")
    assert main(["retrieval", *DATA, "--set", "export.k=20", "--set", "export.max_exclude=40",
                 "--output-dir", str(root / "ret")]) == 0
    assert main(["ranking", *DATA, "--output-dir", str(root / "rank")]) == 0
    export_cascade(root / "ret", root / "rank", root / "cascade", candidates=N, k=K, verify=False)
    return root / "cascade"


@pytest.fixture(scope="module")
def server(cascade):
    srv = make_server([ModelConfig(name="cascade", base_path=str(cascade))], poll_interval_s=0)
    try:
        yield srv
    finally:
        srv.stop(grace_s=1)


@pytest.fixture(scope="module")
def local(cascade):
    import scann  # noqa: F401

    return tf.saved_model.load(str(cascade / "1"))


def _client(server, protocol: str) -> ServingClient:
    port = server.grpc_port if protocol == "grpc" else server.rest_port
    return ServingClient(f"127.0.0.1:{port}", protocol=protocol, timeout_s=20, retries=0)


def _local_recommend(local, users, k, exclude, allow):
    out = local.signatures[sig.RECOMMEND](**{
        sig.USER_ID: tf.constant(users), sig.K: tf.constant([k] * len(users), tf.int32),
        sig.EXCLUDE_ITEM_IDS: tf.constant([exclude or [""]] * len(users)),
        sig.ALLOW_ITEM_IDS: tf.constant([allow or [""]] * len(users))})
    return [[(m.decode(), float(s)) for m, s in zip(ids, scores) if m]
            for ids, scores in zip(out[sig.ITEM_IDS].numpy(), out[sig.SCORES].numpy())]


def test_warmup_covers_both_signatures_and_metadata_lists_k_as_int32(server, cascade):
    records = sum(1 for _ in tf.data.TFRecordDataset(str(cascade / "1" / "assets.extra" / sig.WARMUP_FILE)))
    assert records == 3 and server.manager.resolve("cascade").warmup_count == records
    with _client(server, "grpc") as client:
        inputs = client.signature_defs("cascade")[sig.RECOMMEND]["inputs"]
    assert inputs[sig.K]["dtype"] == "DT_INT32"
    assert set(inputs) == {sig.USER_ID, sig.K, sig.EXCLUDE_ITEM_IDS, sig.ALLOW_ITEM_IDS}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_serving_default_matches_the_in_process_call(server, local, protocol):
    here = local.signatures[sig.SERVING_DEFAULT](**{sig.USER_ID: tf.constant(USERS)})
    with _client(server, protocol) as client:
        out = client.predict("cascade", {sig.USER_ID: np.array(USERS, dtype=object)})
    assert set(out) == {sig.ITEM_IDS, sig.SCORES, sig.RETRIEVAL_SCORES}
    assert np.asarray(out[sig.ITEM_IDS]).astype(str).tolist() == here[sig.ITEM_IDS].numpy().astype(str).tolist()
    np.testing.assert_allclose(np.asarray(out[sig.SCORES], np.float32), here[sig.SCORES].numpy(), rtol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_client_recommend_with_k_exclude_and_allow(server, local, protocol):
    free = _local_recommend(local, USERS, N, [], [])
    banned = [free[0][0][0]]
    allow = [m for m, _ in free[0][1:8:2]] + ["no-such-movie"]
    with _client(server, protocol) as client:
        top = client.recommend("cascade", USERS, k=7, allow=())
        assert top == _local_recommend(local, USERS, 7, [], []) and [len(r) for r in top] == [7, 7, 7]
        got = client.recommend("cascade", USERS, k=3, exclude=banned, allow=allow)
    assert got == _local_recommend(local, USERS, 3, banned, allow)
    assert set(m for m, _ in got[0]) <= set(allow) and len(got[0]) == 3
    assert all(m not in banned for row in got for m, _ in row)


def test_rest_row_format_takes_k_as_a_json_number(server, local):
    body = {"signature_name": sig.RECOMMEND, "instances": [
        {sig.USER_ID: "1", sig.K: 2, sig.EXCLUDE_ITEM_IDS: [""], sig.ALLOW_ITEM_IDS: [""]}]}
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/cascade:predict",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        [row] = json.loads(resp.read())["predictions"]
    assert row[sig.ITEM_IDS] == [m for m, _ in _local_recommend(local, ["1"], 2, [], [])[0]]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_k_above_the_maximum_is_invalid_argument_and_the_server_keeps_serving(server, protocol):
    with _client(server, protocol) as client:
        with pytest.raises(ServingClientError, match=f"k must be between 1 and {N}") as info:
            client.recommend("cascade", ["1"], k=N + 1, allow=())
        assert info.value.code.name == "INVALID_ARGUMENT"
        assert len(client.recommend("cascade", ["1"], k=N, allow=())[0]) == N


@pytest.mark.parametrize("rest", [False, True])
def test_query_cli_cascade_variant(server, local, cascade, capsys, rest):
    allow = [m for m, _ in _local_recommend(local, ["1"], N, [], [])[0][2:6]]
    port = server.rest_port if rest else server.grpc_port
    argv = ["cascade", "--target", f"127.0.0.1:{port}", "--model", "cascade", "--user-id", "1", "--k", "3",
            "--allow", ",".join(allow), "--json", "--model-dir", str(cascade), *(["--rest"] if rest else [])]
    assert query.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [m["item_id"] for m in printed["items"]] == [m for m, _ in _local_recommend(local, ["1"], 3, [], allow)[0]]
    assert all(m["title"] for m in printed["items"])
    assert query.main([*argv[:8], str(N + 1), *argv[9:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cascade at") and err.endswith(f"k must be between 1 and {N} (the number of candidates)")
