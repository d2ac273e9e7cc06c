"""Cut one process's (or one socket's) pub/sub subscriptions on a real server, with
CLIENT KILL: the server closes them, as it does to a subscriber past its output-buffer
limit or in a failover. Whose they are is told by the client's local port, found from
the process's own sockets in /proc (never by name: two forwarders subscribe to the
same channels from the same host)."""

from __future__ import annotations

import os

import redis

from tests.support.commands import command


def ports_of(pid: int) -> set[int]:
    """The local TCP ports of the sockets process ``pid`` holds."""
    inodes: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def kill_subscribers(client: redis.Redis, ports: set[int]) -> int:
    """CLIENT KILL every pub/sub client of the server whose local port is in ``ports``;
    returns how many."""
    listed = command(client, "CLIENT", "LIST", "TYPE", "pubsub")
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    killed = 0
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if int(fields["addr"].rsplit(":", 1)[1]) in ports:
            killed += int(command(client, "CLIENT", "KILL", "ID", fields["id"]))
    return killed
