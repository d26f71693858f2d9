"""TLS for both front ends from TF Serving's ``--ssl_config_file``: a text-format ``SSLConfig``::

    server_key: "-----BEGIN PRIVATE KEY-----\n..."
    server_cert: "-----BEGIN CERTIFICATE-----\n..."
    custom_ca: "-----BEGIN CERTIFICATE-----\n..."   # optional: CA for client certificates
    client_verify: true                              # optional: require client certificates (mTLS)

The proto (``tensorflow_serving/config/ssl_config.proto``) is not shipped in
``tensorflow-serving-api``, so its four fields are declared here and parsed with protobuf's real
text-format parser.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from .config import ConfigError, read_config_file

__all__ = ["load_ssl_config", "parse_ssl_config", "SslConfig"]

_FIELDS = (("server_key", 1, "TYPE_STRING"), ("server_cert", 2, "TYPE_STRING"),
           ("custom_ca", 3, "TYPE_STRING"), ("client_verify", 4, "TYPE_BOOL"))


def _ssl_config_class() -> type:
    pool = descriptor_pool.DescriptorPool()
    file_proto = descriptor_pb2.FileDescriptorProto(name="tfrs_lab_ssl_config.proto", package="tensorflow.serving",
                                                    syntax="proto3")
    message = file_proto.message_type.add(name="SSLConfig")
    for name, number, kind in _FIELDS:
        message.field.add(name=name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                          type=getattr(descriptor_pb2.FieldDescriptorProto, kind))
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SslConfig:
    """PEM server key and certificate, optional client CA, whether client certificates are required."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    def __post_init__(self) -> None:
        if not self.server_key or not self.server_cert:
            raise ConfigError("ssl config: server_key and server_cert are required (PEM text)")
        if self.client_verify and not self.custom_ca:
            raise ConfigError("ssl config: client_verify needs custom_ca (the CA that signs client certificates)")

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials (mutual TLS when ``client_verify``)."""
        return grpc.ssl_server_credentials(
            [(self.server_key.encode(), self.server_cert.encode())],
            root_certificates=self.custom_ca.encode() if self.custom_ca else None,
            require_client_auth=self.client_verify,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server ``SSLContext`` for the REST front end."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="tfrs-tls-") as tmp:  # load_cert_chain reads files only
            key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
            for path, text in ((key, self.server_key), (cert, self.server_cert)):
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="ascii") as f:
                    f.write(text)
            try:
                context.load_cert_chain(cert, key)
            except ssl.SSLError as e:
                raise ConfigError(f"ssl config: server_key/server_cert are not a matching PEM pair: {e}") from e
        if self.custom_ca:
            try:
                context.load_verify_locations(cadata=self.custom_ca)
            except ssl.SSLError as e:
                raise ConfigError(f"ssl config: custom_ca is not PEM certificates: {e}") from e
        context.verify_mode = ssl.CERT_REQUIRED if self.client_verify else ssl.CERT_NONE
        return context


def parse_ssl_config(text: str, *, source: str = "<string>") -> SslConfig:
    """Parse a text-format ``SSLConfig``."""
    proto = _ssl_config_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: not a valid text SSLConfig ({e}); fields: server_key, server_cert, "
                          "custom_ca, client_verify") from e
    return SslConfig(server_key=proto.server_key, server_cert=proto.server_cert,
                     custom_ca=proto.custom_ca, client_verify=proto.client_verify)


def load_ssl_config(path: str) -> SslConfig:
    """Read and parse an ``--ssl-config-file``."""
    return parse_ssl_config(read_config_file(path, "ssl config file"), source=path)
