"""The drill's steady load: on every shard, sequence-numbered messages published on
``CHANNELS`` channels (for the pub/sub route) and added to the drill stream (for the
stream route), at a fixed total rate, each to wherever the shard's master is now.

Every message carries the run id, so a drill reads back only its own run. Payload:
``"<run> <seq> <send µs>"``; stream entries: ``run``, ``seq``, ``at`` fields. The
sequence number counts per (shard, channel) and is never reused. Only messages the
server acknowledged count as sent; one whose send failed may still have arrived (its
reply lost) and is then ignored by the checker.
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
from redis_forwarder.model import Address

log = logging.getLogger(__name__)
CHANNELS = 4
PUBSUB_PREFIX = "drill."
STREAM = "drill-stream"
RELOCATE_EVERY = 0.1  # seconds between asking where each master is


@dataclass
class Load:
    run: str
    shards: list[str]
    locate: Callable[[str], Address]  # shard -> its master now
    rate: float  # messages per second in all, pub/sub and stream together
    sent: list[Sent] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    _halt: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        clients: dict[str, tuple[Address, redis.Redis]] = {}
        located_at = 0.0
        seq: dict[tuple[str, str], int] = {}
        # One tick sends a message per shard and channel, and one stream entry per shard.
        per_tick = len(self.shards) * (CHANNELS + 1)
        interval = per_tick / self.rate
        started = time.monotonic()
        tick = 0
        while not self._halt.is_set():
            if time.monotonic() - located_at > RELOCATE_EVERY:
                located_at = time.monotonic()
                self._relocate(clients)
            for shard in self.shards:
                if shard not in clients:
                    continue
                _address, client = clients[shard]
                for index in range(CHANNELS + 1):
                    channel = f"{PUBSUB_PREFIX}{index}" if index < CHANNELS else STREAM
                    route = f"pubsub@{shard}" if index < CHANNELS else f"stream@{shard}"
                    key = (shard, channel)
                    number = seq.get(key, 0)
                    # Never reused: a send that failed may still have reached the server
                    # (its reply lost), and a reused number would look like a duplicate.
                    seq[key] = number + 1
                    if not self._send(client, channel, number):
                        break  # this shard's master is down: the other shards go on
                    self.sent.append(Sent(route, f"{shard}:{channel}", number, time.time()))
            tick += 1
            delay = started + tick * interval - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)

    def _send(self, client: redis.Redis, channel: str, number: int) -> bool:
        now_us = time.time_ns() // 1000
        try:
            if channel == STREAM:
                client.xadd(STREAM, {"run": self.run, "seq": number, "at": now_us})
            else:
                client.publish(channel, f"{self.run} {number} {now_us}")
        except (redis.RedisError, OSError):
            return False
        return True

    def _relocate(self, clients: dict[str, tuple[Address, redis.Redis]]) -> None:
        for shard in self.shards:
            try:
                address = self.locate(shard)
            except Exception as exc:  # a sentinel down: keep the last answer
                log.debug("locating %s: %s", shard, exc)
                continue
            known = clients.get(shard)
            if known is None or known[0] != address:
                if known is not None:
                    self.events.append((time.time(), f"load: master of {shard} is {address}"))
                    known[1].close()
                clients[shard] = (address, _client(address))


def _client(address: Address) -> redis.Redis:
    """No retries and short timeouts: a dead master must cost the load a failed send,
    not seconds of redis-py's backoff that would starve the other shards."""
    return redis.Redis(
        host=address.host,
        port=address.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
