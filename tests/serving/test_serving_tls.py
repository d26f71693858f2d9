"""TLS on both front ends from a TF Serving ``SSLConfig`` text file (self-signed certificates made
with the ``openssl`` CLI; skipped where it is missing)."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfrs_lab.serving.config import ConfigError, ModelConfig
from tfrs_lab.serving.tls import load_ssl_config, parse_ssl_config

from serving_fixtures import install_version, make_server, predict_request

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not on PATH")


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return key.read_text(), cert.read_text()


def _config_text(key: str, cert: str, ca: str = "", verify: bool = False) -> str:
    text = f"server_key: {json.dumps(key)}\nserver_cert: {json.dumps(cert)}\n"
    if ca:
        text += f"custom_ca: {json.dumps(ca)}\n"
    return text + f"client_verify: {'true' if verify else 'false'}\n"


@pytest.fixture()
def base(model_store, tmp_path):
    path = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], path, 1)
    return path


def test_grpc_and_rest_over_tls(base, tmp_path):
    key, cert = _self_signed(tmp_path, "server")
    config_file = tmp_path / "ssl.config"
    config_file.write_text(_config_text(key, cert))
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0,
                         ssl=load_ssl_config(str(config_file)))
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.encode())
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(predict_request("retrieval", ["1"]), timeout=10).model_spec.version.value == 1
        context = ssl.create_default_context(cadata=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", server.rest_port, timeout=10, context=context)
        conn.request("POST", "/v1/models/retrieval:predict", body=b'{"instances": ["1"]}')
        assert conn.getresponse().status == 200
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("GET", "/v1/models/retrieval")
            plain.getresponse()
        plain.close()
    finally:
        server.stop(grace_s=1)


def test_mutual_tls_refuses_clients_without_a_certificate(base, tmp_path):
    key, cert = _self_signed(tmp_path, "server")
    client_key, client_cert = _self_signed(tmp_path, "client")
    ssl_config = parse_ssl_config(_config_text(key, cert, ca=client_cert, verify=True))
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0, ssl=ssl_config)
    try:
        anonymous = ssl.create_default_context(cadata=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", server.rest_port, timeout=10, context=anonymous)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            conn.request("GET", "/v1/models/retrieval")
            conn.getresponse()
        conn.close()
        (tmp_path / "c.key").write_text(client_key)
        (tmp_path / "c.pem").write_text(client_cert)
        known = ssl.create_default_context(cadata=cert)
        known.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
        conn = http.client.HTTPSConnection("127.0.0.1", server.rest_port, timeout=10, context=known)
        conn.request("GET", "/v1/models/retrieval")
        assert conn.getresponse().status == 200
        conn.close()
        anonymous_grpc = grpc.ssl_channel_credentials(root_certificates=cert.encode())  # no client certificate
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", anonymous_grpc,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.Predict(predict_request("retrieval", ["1"]), timeout=10)
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.encode(), private_key=client_key.encode(),
                                                   certificate_chain=client_cert.encode())
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(predict_request("retrieval", ["1"]), timeout=10).outputs
    finally:
        server.stop(grace_s=1)


def test_bad_ssl_configs_name_the_fix():
    with pytest.raises(ConfigError, match="server_key and server_cert are required"):
        parse_ssl_config('server_cert: "x"')
    with pytest.raises(ConfigError, match="client_verify needs custom_ca"):
        parse_ssl_config('server_key: "k" server_cert: "c" client_verify: true')
    with pytest.raises(ConfigError, match="not a valid text SSLConfig"):
        parse_ssl_config("server_key: 5 nonsense {")
