"""Brokers with TLS, SASL and ACLs for the security tests, and a raw client.

Certificates come from trustme (a throwaway CA per test). Brokers run in the
test's nursery with a TOML configuration written to tmp_path, exactly as an
operator would write it.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trustme

from tailrace.broker.app import Broker
from tailrace.broker.config import load_config
from tailrace.broker.security.users import add_user
from tailrace.client import AsyncAdmin
from tailrace.client.security import SecurityConfig
from tailrace.client.transport.connection import BrokerConnection

ADMIN = ("admin", "admin-secret")


@dataclass
class Certs:
    """A CA, a broker certificate for 127.0.0.1/localhost, and files of both."""

    ca: trustme.CA
    ca_file: Path
    broker_pem: Path
    dir: Path

    def client_cert(self, name: str) -> tuple[Path, str]:
        """A client certificate (cert and key in one PEM) with CN=name, and
        the principal the broker derives from it."""
        from cryptography import x509

        cert = self.ca.issue_cert(f"{name}@example.test", common_name=name)
        path = self.dir / f"client-{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        subject = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).subject
        return path, "User:" + subject.rfc4514_string()


def make_certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    d = tmp_path / "certs"
    d.mkdir(exist_ok=True)
    ca_file = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    broker_pem = d / "broker.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(broker_pem)
    )
    return Certs(ca, ca_file, broker_pem, d)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path, listeners: list[dict[str, Any]], security: dict[str, Any] | None = None, **top: Any
) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for lc in listeners:
        lines.append("[[listeners]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in lc.items()]
    if security:
        lines.append("[security]")
        lines += [f"{k} = {toml_value(v)}" for k, v in security.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class SecureBroker:
    broker: Broker
    addresses: dict[str, str]
    tmp: Path
    users_file: Path
    certs: Certs | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    def address(self, listener: str) -> str:
        return self.addresses[listener]

    def scram(self, user: str, **tls: Any) -> SecurityConfig:
        return SecurityConfig(
            sasl_mechanism="SCRAM-SHA-256", username=user, password=self.passwords[user], **tls
        )

    def admin_security(self, **tls: Any) -> SecurityConfig:
        return self.scram(ADMIN[0], **tls)

    def tls(self, **more: Any) -> dict[str, Any]:
        assert self.certs is not None
        return {"ssl_cafile": str(self.certs.ca_file), **more}


async def start_broker(
    nursery: trio.Nursery,
    tmp_path: Path,
    listeners: list[dict[str, Any]],
    *,
    security: dict[str, Any] | None = None,
    users: dict[str, str] | None = None,
    certs: Certs | None = None,
    data_dir: Path | None = None,
    **top: Any,
) -> SecureBroker:
    """A broker with ``listeners`` (address defaults to 127.0.0.1:0), a users
    file holding ``users`` plus the admin super user, and ``security``."""
    users_file = tmp_path / "users.json"
    passwords = {ADMIN[0]: ADMIN[1], **(users or {})}
    if not users_file.exists():
        for name, password in passwords.items():
            add_user(users_file, name, password)
    sec = {"users_file": str(users_file), "super_users": f"User:{ADMIN[0]}", **(security or {})}
    listeners = [{"address": "127.0.0.1:0", **lc} for lc in listeners]
    path = write_config(tmp_path / "broker.toml", listeners, sec, **top)
    data = data_dir or tmp_path / "data"
    broker = Broker(load_config(str(path), env={}, flags={"data_dir": str(data)}))
    bound = await nursery.start(broker.serve)
    addresses = {b.name: b.address for b in bound}
    return SecureBroker(broker, addresses, tmp_path, users_file, certs, passwords)


async def admin_client(address: str, security: SecurityConfig | None) -> AsyncAdmin:
    return AsyncAdmin(address, security=security, request_timeout_ms=10_000)


async def raw_connection(
    nursery: trio.Nursery, address: str, ssl_context: Any = None
) -> BrokerConnection:
    """A bare protocol connection: no authentication, no retries."""
    return await BrokerConnection.connect(
        nursery, address, ssl_context=ssl_context, request_timeout=10
    )


def host_address() -> str | None:
    """An IPv4 address of this machine other than loopback (its own, so a
    test's traffic to it never leaves the machine), or None."""
    candidates = []
    with contextlib.suppress(OSError):  # a host name that does not resolve: none
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        # connect() on UDP sends nothing: it only picks the source address
        # the routing table would use (TEST-NET-2 never answers anyway)
        udp.connect(("198.51.100.1", 9))
        candidates.append(udp.getsockname()[0])
    for address in candidates:
        if not address.startswith("127."):
            try:
                with socket.socket() as s:
                    s.bind((address, 0))
            except OSError:
                continue
            return address
    return None


async def open_tcp(address: str) -> trio.SocketStream:
    host, port = address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))
