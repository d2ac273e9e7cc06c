"""The traffic of a ``drill bridge-loop``: a load on both sides of the bridge, and
subscribers on every Redis node of both sides that record what they hear
(``bridge_check.py`` says what the lanes and payloads are).

The load: one sender thread per (side, lane), each at its share of the rate, sending
to the side's master as its sentinels name it now (asked every ``RELOCATE_EVERY``), so
that a failover costs the load failed sends, not seconds. Only what the server
acknowledged counts as sent.

The subscribers: one thread per Redis node, subscribed to the bridge's channels; a
connection that drops (Sentinel disconnects the clients of every node it reconfigures)
is made again at once, and the time it was down is an event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from redis_forwarder.drill.bridge_check import (
    REPEATED,
    STREAM,
    UNIQUE,
    Heard,
    Published,
    repeated_payload,
    unique_payload,
)
from redis_forwarder.drill.load import client, paced
from redis_forwarder.model import Address
from redis_forwarder.retry import Deadline

log = logging.getLogger(__name__)
RELOCATE_EVERY = 0.1  # seconds between asking where each side's master is
LANES = (UNIQUE, REPEATED, STREAM)
POLL = 0.05


@dataclass
class BridgeLoad:
    run: str
    sides: tuple[str, ...]
    channels: Mapping[str, str]  # lane -> channel (UNIQUE, REPEATED)
    stream: str
    locate: Callable[[str], Address]  # side -> its master now
    rate: float  # messages per second over every lane of both sides
    sent: list[Published] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    _halt: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _located: dict[str, Address] = field(default_factory=dict)

    def start(self) -> None:
        self._relocate()
        self._threads = [threading.Thread(target=self._follow, name="bridge-locate", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send_on, args=(side, lane), daemon=True)
            for side in self.sides
            for lane in LANES
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

    def _relocate(self) -> None:
        for side in self.sides:
            try:
                address = self.locate(side)
            except Exception as exc:  # a sentinel down: keep the last answer
                log.debug("locating %s: %s", side, exc)
                continue
            known = self._located.get(side)
            if known != address:
                if known is not None:
                    self.events.append((time.time(), f"load: {side}'s master is {address}"))
                self._located[side] = address

    def _send_on(self, side: str, lane: str) -> None:
        def send(server: redis.Redis, seq: int) -> None:
            sent = self._send(server, side, lane, seq)
            if sent is not None:
                self.sent.append(sent)

        interval = len(self.sides) * len(LANES) / self.rate
        paced(self._halt, interval, lambda: self._located.get(side), send)

    def _send(self, server: redis.Redis, side: str, lane: str, seq: int) -> Published | None:
        payload = unique_payload(self.run, side, seq) if lane == UNIQUE else repeated_payload(seq)
        try:
            if lane == STREAM:
                entry_id = server.xadd(self.stream, {"payload": payload})
                ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                return Published(lane, side, seq, payload, time.time(), ident)
            server.publish(self.channels[lane], payload)
        except (redis.RedisError, OSError):
            return None
        return Published(lane, side, seq, payload, time.time())


@dataclass
class Listeners:
    """A subscriber per Redis node of each side, recording what it hears of the run's
    lanes (``lane_of`` a payload: its lane, or None for other traffic)."""

    nodes: Mapping[str, list[Address]]  # side -> its Redis nodes
    channels: tuple[str, ...]
    lane_of: Callable[[str], str | None]
    heard: list[Heard] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    _subscribed: set[Address] = field(default_factory=set)
    _halt: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, timeout: float = 10.0) -> None:
        """Start every subscriber and return once each is subscribed."""
        self._threads = [
            threading.Thread(target=self._listen, args=(side, node), daemon=True)
            for side, addresses in self.nodes.items()
            for node in addresses
        ]
        for thread in self._threads:
            thread.start()
        deadline = Deadline(timeout)
        expected = {node for addresses in self.nodes.values() for node in addresses}
        while self._subscribed != expected:
            if deadline.expired:
                self.stop()
                missing = ", ".join(str(n) for n in sorted(expected - self._subscribed, key=str))
                raise RuntimeError(f"subscribers not subscribed after {timeout:.0f}s: {missing}")
            time.sleep(POLL)  # polling, bounded by the deadline

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(10)

    def count(self, side: str) -> int:
        return sum(1 for h in self.heard if h.side == side)

    def _listen(self, side: str, node: Address) -> None:
        channels = [channel.encode() for channel in self.channels]
        down_since: float | None = None
        while not self._halt.is_set():
            server = client(node, timeout=1.0)
            subscriber = server.pubsub()  # type: ignore[no-untyped-call]
            try:
                subscriber.subscribe(*channels)
                while not self._halt.is_set():
                    message = subscriber.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe" and message["data"] == len(channels):
                        self._subscribed.add(node)
                        if down_since is not None:
                            self._note(f"subscriber on {side} {node} back after "
                                       f"{time.time() - down_since:.2f}s")  # fmt: skip
                            down_since = None
                    elif message["type"] == "message":
                        payload = message["data"].decode(errors="replace")
                        lane = self.lane_of(payload)
                        if lane is not None:
                            self.heard.append(Heard(side, str(node), lane, payload, time.time()))
            except (redis.RedisError, OSError):
                if down_since is None:
                    down_since = time.time()
                    self._subscribed.discard(node)
                self._halt.wait(POLL)
            finally:
                subscriber.close()
                server.close()

    def _note(self, what: str) -> None:
        self.events.append((time.time(), what))
