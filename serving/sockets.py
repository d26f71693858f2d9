"""Listening sockets for the front ends: a real backlog, and ``SO_REUSEPORT`` so that several
worker processes can share one port (the kernel spreads connections across them)."""

from __future__ import annotations

import socket

__all__ = ["bound_socket", "DEFAULT_BACKLOG", "grpc_address", "listening_socket"]

DEFAULT_BACKLOG = 4096  # TF Serving's gRPC front end (and Linux's somaxconn default) use 4096


def _address(host: str, port: int) -> tuple[int, tuple[object, ...]]:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot resolve --host {host!r}: {e.strerror}; pass an address such as 127.0.0.1") from e
    family, _type, _proto, _name, address = infos[0]
    return family, address


def bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0 picks a free port), not yet listening."""
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot bind {host}:{port} ({e.strerror}); choose a free port") from e
    return sock


def listening_socket(host: str, port: int, *, reuse_port: bool, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` with ``backlog`` pending connections."""
    sock = bound_socket(host, port, reuse_port=reuse_port)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC spells it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
