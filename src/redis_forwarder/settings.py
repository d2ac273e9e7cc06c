"""How to reach a deployment: its kind, seed addresses, master names and credentials.

Passwords come from the environment or a file, resolved once when settings are built,
and are kept out of ``repr`` so that no log line or traceback shows them.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_forwarder.errors import UsageError
from redis_forwarder.model import Address, DeploymentKind

DEFAULT_SOCKET_TIMEOUT = 2.0


@dataclass(frozen=True)
class Tls:
    """TLS to a kind of server: the CA that signs the servers' certificates, and the
    client's own certificate and key when the servers ask for one. The server's
    certificate must name the address connected to (an IP or DNS SAN) unless
    ``check_name`` is off."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    check_name: bool = True

    def context(self) -> ssl.SSLContext:
        """A client context, built once per settings (and checked then: a missing or
        unreadable file is a usage error naming it)."""
        return _context(self)

    def redis_py(self) -> dict[str, Any]:
        """The same settings as redis-py's keyword arguments."""
        return {
            "ssl": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_check_hostname": self.check_name,
            "ssl_cert_reqs": "required",
        }


@functools.cache
def _context(tls: Tls) -> ssl.SSLContext:
    for key, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file),
                      ("key_file", tls.key_file)):  # fmt: skip
        if path and not os.access(path, os.R_OK):
            raise UsageError(f"tls {key} {path} cannot be read (missing, or no permission)")
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"tls: {tls.ca_file} or the client certificate is not usable PEM: {exc}"
        ) from None
    context.check_hostname = tls.check_name
    return context


@dataclass(frozen=True)
class Credentials:
    """An ACL user and password (both optional), and TLS (optional). The password never
    shows in repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Tls | None = None

    @property
    def given(self) -> bool:
        return self.password is not None


def read_password(*, env: str | None, file: str | None, what: str) -> str | None:
    """The password named by an environment variable or a file; None if neither is set."""
    if env and file:
        raise UsageError(f"{what}: give password_env or password_file, not both")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise UsageError(f"{what}: password_env names {env}, which is not set")
        return value
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"{what}: password_file {file} cannot be read: {exc}") from exc
    return None


def shape_problem(kind: DeploymentKind, addresses: int, has_masters: bool) -> str | None:
    """What is wrong with a deployment's addresses and master names, if anything."""
    if not addresses:
        return f"a {kind} deployment needs at least one address"
    if kind is DeploymentKind.SENTINEL and not has_masters:
        return 'a sentinel deployment needs masters = ["name", ...]: the master names to follow'
    if kind is not DeploymentKind.SENTINEL and has_masters:
        return f"master names are for sentinel deployments, not {kind}"
    if kind is DeploymentKind.STANDALONE and addresses != 1:
        return "a standalone deployment is one server: give one address"
    return None


@dataclass(frozen=True)
class DeploymentSettings:
    """Everything topology discovery needs to reach a deployment.

    ``addresses`` are sentinels (sentinel), cluster seeds (cluster) or the server
    (standalone). ``redis`` authenticates to Redis nodes, ``sentinel`` to sentinels.
    TLS will be a field here too (the security issue); nothing else builds connections.
    """

    kind: DeploymentKind
    addresses: tuple[Address, ...]
    masters: tuple[str, ...] = ()
    redis: Credentials = Credentials()
    sentinel: Credentials = Credentials()
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT

    def __post_init__(self) -> None:
        problem = shape_problem(self.kind, len(self.addresses), bool(self.masters))
        if problem:
            raise UsageError(problem)
