"""The drill's steady load: sequence-numbered messages on every lane of the workload
(``workload.py``), at a fixed total rate, each sent to wherever its lane's server is
now (``locate``: a shard's master, or the owner of a key's slot).

Every message carries the run id, so a drill reads back only its own run. Payload:
``"<run> <seq> <send µs>"``; stream entries: ``run``, ``seq``, ``at`` fields. The
sequence number counts per lane and is never reused. Only messages the server
acknowledged count as sent; one whose send failed may still have arrived (its reply
lost) and is then ignored by the checker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_forwarder.drill.checker import Sent
from redis_forwarder.drill.workload import Lane
from redis_forwarder.model import Address

log = logging.getLogger(__name__)
RELOCATE_EVERY = 0.1  # seconds between asking where each lane's server is


@dataclass
class Load:
    """One sender thread per lane, each at its share of the rate, so that a server
    that hangs (SIGSTOP) holds up only its own lanes; one more thread asks where each
    lane's server is, every RELOCATE_EVERY seconds."""

    run: str
    lanes: tuple[Lane, ...]
    locate: Callable[[str], Address]  # lane.where -> its server now
    rate: float  # messages per second over all lanes
    sent: list[Sent] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    _halt: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _located: dict[str, Address] = field(default_factory=dict)

    def start(self) -> None:
        self._relocate()  # every lane knows its server before the first send
        self._threads = [threading.Thread(target=self._follow, name="drill-locate", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send_on, args=(lane,), name="drill-load", daemon=True)
            for lane in self.lanes
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(10)

    def _follow(self) -> None:
        while not self._halt.wait(RELOCATE_EVERY):
            self._relocate()

    def _send_on(self, lane: Lane) -> None:
        def send(server: redis.Redis, number: int) -> None:
            if self._send(server, lane, number):
                self.sent.append(Sent(lane.route, lane.label, number, time.time()))

        paced(self._halt, len(self.lanes) / self.rate, lambda: self._located.get(lane.where), send)

    def _send(self, client: redis.Redis, lane: Lane, number: int) -> bool:
        now_us = time.time_ns() // 1000
        try:
            if lane.stream:
                client.xadd(lane.key, {"run": self.run, "seq": number, "at": now_us})
            else:
                client.publish(lane.key, f"{self.run} {number} {now_us}")
        except (redis.RedisError, OSError):
            return False
        return True

    def _relocate(self) -> None:
        for name in sorted({lane.where for lane in self.lanes}):
            try:
                address = self.locate(name)
            except Exception as exc:  # a sentinel or cluster node down: keep the last answer
                log.debug("locating %s: %s", name, exc)
                continue
            known = self._located.get(name)
            if known != address:
                if known is not None:
                    self.events.append((time.time(), f"load: {name} is on {address}"))
                self._located[name] = address


def paced(
    halt: threading.Event,
    interval: float,
    where: Callable[[], Address | None],
    send: Callable[[redis.Redis, int], None],
) -> None:
    """``send(server, number)`` every ``interval`` seconds until ``halt``, to the server
    ``where`` names now (nothing while it names none), a client per server kept."""
    clients: dict[Address, redis.Redis] = {}
    started = time.monotonic()
    tick = number = 0
    while not halt.is_set():
        address = where()
        if address is not None:
            server = clients.get(address)
            if server is None:
                server = clients[address] = client(address)
            # Never reused: a send that failed may still have reached the server (its
            # reply lost), and a reused number would look like a duplicate.
            number += 1
            send(server, number)
        tick += 1
        delay = started + tick * interval - time.monotonic()
        if delay > 0:
            halt.wait(delay)
        else:  # fell behind (a hung server): skip the missed ticks, keep the rate
            tick = int((time.monotonic() - started) / interval)
    for server in clients.values():
        server.close()


def client(address: Address, timeout: float = 0.5) -> redis.Redis:
    """No retries and short timeouts: a dead master must cost the load a failed send,
    not seconds of redis-py's backoff that would starve the other lanes."""
    return redis.Redis(
        host=address.host,
        port=address.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
