"""A forwarder node in a network namespace of its own, reaching the lab through two
veth links (one carrying Redis, one carrying ZooKeeper), so that a drill can cut either
link: a silent partition, since a veth whose peer is down drops what it is given.

The lab listens on loopback, which a namespace does not share; so each link carries a
pair of TCP relays (``relay.py``): inside the namespace one listens on every address the
node uses (the same 127.x addresses it knows) and sends to the host's end of the link;
outside, the other listens there and sends to the real server.

    node ─▶ 127.x:P (relay in ns) ─▶ veth 10.213.K.2 ──▶ 10.213.K.1:P (relay) ─▶ 127.x:P

Needs root and ``ip`` (iproute2). Everything made here is undone by ``close``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from redis_forwarder.drill import relay
from redis_forwarder.errors import UsageError
from redis_forwarder.model import Address

SUBNET = "10.213"
LINKS = ("redis", "zookeeper")
TAGS = 250  # a namespace's tag is the third octet of its links' addresses
NAMESPACES = Path("/run/netns")  # where ``ip netns add`` names them


def free_tags(count: int, start: int) -> list[int]:
    """``count`` tags whose namespace does not exist yet, looked for from ``start`` on.
    Two drills at once (two labs, or the tests' two workers) each drew their tags from
    their pid, the same ones one time in 80, and the second ``ip netns add`` failed."""
    taken = {path.name for path in NAMESPACES.glob("rfdrill*")}
    tags = [t for i in range(TAGS) if f"rfdrill{(t := (start + i) % TAGS)}" not in taken]
    if len(tags) < count:
        raise UsageError(
            f"no {count} free network namespace tags: {len(taken)} rfdrill* namespaces "
            "are left over from drills; list them with `ip netns list` and delete the "
            "ones no drill runs in with `ip netns delete NAME`"
        )
    return tags[:count]


def partition_unavailable() -> str:
    """Why this machine cannot run partition drills, or ""."""
    if os.geteuid() != 0:
        return "partition drills need root: they make a network namespace and veth links"
    if shutil.which("ip") is None:
        return "partition drills need `ip` (Debian package iproute2)"
    return ""


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    result = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Partition:
    """``addresses``: per link ("redis", "zookeeper"), the servers the node talks to."""

    addresses: dict[str, list[Address]]
    tag: int = field(default_factory=lambda: os.getpid() % TAGS)
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)
    made: bool = False

    @property
    def namespace(self) -> str:
        return f"rfdrill{self.tag}"

    def _host_side(self, link: str) -> str:
        return f"rfd{self.tag}{link[0]}h"

    def _ends(self, link: str) -> tuple[str, str]:
        base = 4 * LINKS.index(link)
        third = self.tag
        return f"{SUBNET}.{third}.{base + 1}", f"{SUBNET}.{third}.{base + 2}"

    def open(self) -> None:
        problem = partition_unavailable()
        if problem:
            raise UsageError(problem)
        _ip("netns", "add", self.namespace)
        self.made = True
        _ip("link", "set", "lo", "up", namespace=self.namespace)
        for link in LINKS:
            host_side, inner = self._host_side(link), f"rfd{self.tag}{link[0]}n"
            host_ip, inner_ip = self._ends(link)
            _ip("link", "add", host_side, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", self.namespace)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_side)
            _ip("link", "set", host_side, "up")
            _ip("addr", "add", f"{inner_ip}/30", "dev", inner, namespace=self.namespace)
            _ip("link", "set", inner, "up", namespace=self.namespace)
        outside = [
            f"{self._ends(link)[0]}:{a.port}={a}" for link in LINKS for a in self.addresses[link]
        ]
        inside = [
            f"{a}={self._ends(link)[0]}:{a.port}" for link in LINKS for a in self.addresses[link]
        ]
        self._relay(outside, namespace=None)
        self._relay(inside, namespace=self.namespace)

    def _relay(self, mappings: list[str], namespace: str | None) -> None:
        wrap = ["ip", "netns", "exec", namespace] if namespace else []
        self.relays.append(relay.start(mappings, wrap))

    @property
    def wrap(self) -> tuple[str, ...]:
        """The prefix that starts a command inside the namespace."""
        return ("ip", "netns", "exec", self.namespace)

    def cut(self, link: str) -> None:
        _ip("link", "set", self._host_side(link), "down")

    def heal(self, link: str) -> None:
        _ip("link", "set", self._host_side(link), "up")

    def close(self) -> None:
        for process in self.relays:
            relay.stop(process)
        self.relays.clear()
        if self.made:  # deleting the namespace deletes its veth ends, and so the pairs
            _ip("netns", "delete", self.namespace)
            self.made = False
