"""Small questions the lab asks its processes, each with a short timeout.

Every probe either answers or raises :class:`ProbeFailed` with a short reason; the
redis-py and socket exceptions stop here.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from redis_forwarder.model import Address

PROBE_TIMEOUT = 1.0


class ProbeFailed(Exception):
    """The process did not answer as hoped; the message says what happened."""


# The addresses of TLS labs, with the client certificate to reach them: registered by
# the Lab when it works on one (its servers take nothing but TLS). Per address, so
# that labs of both kinds can be probed from one process (the test suite).
_tls: dict[Address, dict[str, Any]] = {}


def use_tls(addresses: Iterable[Address], ca: Path, cert: Path, key: Path) -> None:
    """Probe these addresses with TLS from now on."""
    options = {
        "ssl": True,
        "ssl_ca_certs": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    for address in addresses:
        _tls[address] = options


@contextmanager
def redis_client(address: Address, timeout: float = PROBE_TIMEOUT) -> Iterator[redis.Redis]:
    client = redis.Redis(
        host=address.host,
        port=address.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        **_tls.get(address, {}),
    )
    try:
        yield client
    except redis.RedisError as exc:
        raise ProbeFailed(f"{address}: {exc}") from exc
    finally:
        client.close()


def redis_call(address: Address, *command: Any, timeout: float = PROBE_TIMEOUT) -> Any:
    with redis_client(address, timeout) as client:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]


def redis_role(address: Address) -> str:
    """``master``, ``replica of HOST:PORT``, or ``sentinel``."""
    reply = redis_call(address, "ROLE")
    role = reply[0]
    if role == "slave":
        return f"replica of {reply[1]}:{reply[2]}"
    return str(role)


def info(address: Address, section: str) -> dict[str, Any]:
    """``INFO section`` as redis-py parses it (numbers as numbers)."""
    with redis_client(address) as client:
        return dict(client.info(section))


def zookeeper_command(address: Address, word: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Send a four-letter word (``srvr``, ``ruok``) and return the whole answer."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
            sock.sendall(word.encode("ascii"))
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:
        raise ProbeFailed(f"{address}: {exc}") from exc
    return b"".join(chunks).decode("utf-8", "replace")


def zookeeper_mode(address: Address) -> str:
    """``standalone``, ``leader`` or ``follower``; ProbeFailed while it does not serve."""
    answer = zookeeper_command(address, "srvr")
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    reason = answer.strip() or "no answer"
    raise ProbeFailed(f"{address}: not serving ({reason})")


def cluster_info(address: Address) -> dict[str, str]:
    """``CLUSTER INFO`` as a dict of strings."""
    text = str(redis_call(address, "CLUSTER", "INFO"))
    pairs = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, sep, value in pairs if sep}


def forwarder_ready(address: Address) -> dict[str, Any]:
    """A forwarder node's /readyz answer (its role and ZooKeeper session in it)."""
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=PROBE_TIMEOUT) as answer:
            body: dict[str, Any] = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise ProbeFailed(f"{address}: no /readyz answer ({exc})") from exc
    return body
