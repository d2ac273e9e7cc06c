"""Frozen values shared across the package."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Address:
    """A TCP endpoint, ``host:port``. IPv6 hosts are written ``[::1]:port``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``; raise ``ValueError`` with a message fit for the user."""
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]:")
        else:
            host, sep, rest = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:7000)")
        try:
            port = int(rest)
        except ValueError:
            raise ValueError(f"{text!r} has a port that is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"{text!r} has port {port}, outside 1..65535")
        return cls(host, port)

    def with_port(self, port: int) -> Address:
        return Address(self.host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
