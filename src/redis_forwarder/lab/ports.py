"""Checking that the ports a spec names are free before anything is started."""

from __future__ import annotations

import errno
import socket

from redis_forwarder.errors import LabError, PortInUseError
from redis_forwarder.model import Address


def is_free(address: Address) -> bool:
    """Whether a server could listen on ``address`` now.

    SO_REUSEADDR, as redis-server and ZooKeeper set it, so that connections lingering in
    TIME_WAIT from an earlier lab do not count as a conflict, while a listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address.host, address.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise LabError(f"cannot bind {address} to check it is free: {exc}") from exc
    return True


def check_free(addresses: list[tuple[Address, str]], source: str) -> None:
    """Raise :class:`PortInUseError` for the first address that is taken."""
    for address, owner in addresses:
        if not is_free(address):
            raise PortInUseError(str(address), owner, source)
