"""A standby takes a pub/sub task over from the owner's watermark (issue 15), against
a real server, at the level of two tasks in one process: the node-level fleet test
(kill -9 of a forwarder process) is in test_standby_fleet.py.

A publisher sends numbered messages at about 1,000 a second all along. The owner dies
(every connection reset at once: what it had not sent is gone, as with a kill) or
hands off (a graceful stop); the standby, subscribed since the start, is promoted a
while later. Every number must be in the sink: lost 0. A death may double what the
owner wrote after its last watermark (counted); a hand-off doubles nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis

from redis_forwarder.forwarding.placement import Endpoint, Placement
from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.model import Address
from redis_forwarder.observe import Metrics
from redis_forwarder.routes import RouteConfig
from redis_forwarder.settings import Credentials
from redis_forwarder.standby.ring import Ring
from tests.support.commands import command, pubsub_of, xrange
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration
RATE = 1000.0  # messages per second


def route(tag: str, sink: str = "stream") -> RouteConfig:
    document = {"name": tag, "from": {"channels": [tag]}, "to": {sink: f"{tag}:out"}}
    return RouteConfig.model_validate(document)


def task(
    server: Address,
    tag: str,
    node: str,
    ring: Ring | None,
    metrics: Metrics,
    sink: str = "stream",
) -> Task:
    def here(_avoid: frozenset[Address]) -> Endpoint:
        return Endpoint(server, Credentials())

    spec = TaskSpec(route(tag, sink), "s", consumer=node, epoch=1, watermarks=True)
    placement = Placement(here, here, locate_standby=here)
    return Task(spec, placement, metrics, standby=ring)


class Publisher(threading.Thread):
    """Numbered messages at RATE until stopped; ``sent`` counts those Redis took."""

    def __init__(self, server: Address, channel: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(host=server.host, port=server.port)
        self.channel = channel
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.halt.is_set():
            self.client.publish(self.channel, str(self.sent))
            self.sent += 1
            delay = started + self.sent / RATE - time.monotonic()
            if delay > 0:
                self.halt.wait(delay)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout:.0f}s: {what}"
        await asyncio.sleep(0.01)


class Sink:
    """What arrived in the sink, by number: a stream's entries, a list's items, or what
    a subscriber to the sink channel received."""

    def __init__(self, server: Address, kind: str, key: str) -> None:
        self.client = redis.Redis(host=server.host, port=server.port)
        self.kind, self.key = kind, key
        self.heard: list[bytes] = []
        self.subscriber = None
        if kind == "channel":
            self.subscriber = pubsub_of(self.client, ignore_subscribe_messages=True)
            self.subscriber.subscribe(**{key: lambda m: self.heard.append(m["data"])})
            self.thread = self.subscriber.run_in_thread(sleep_time=0.01, daemon=True)

    def copies(self) -> Counter[int]:
        if self.kind == "stream":
            return Counter(int(f[b"payload"]) for _id, f in xrange(self.client, self.key))
        if self.kind == "list":
            items = command(self.client, "LRANGE", self.key, 0, -1)
            return Counter(int(item) for item in items)
        return Counter(int(item) for item in list(self.heard))

    def close(self) -> None:
        if self.subscriber is not None:
            self.thread.stop()


async def all_in_sink(publisher: Publisher, sink: Sink) -> None:
    """Stop the publisher and wait until its last message is in the sink."""
    publisher.halt.set()
    publisher.join()
    last = publisher.sent - 1
    await until(lambda: last in sink.copies(), "the last message in the sink")


def run_loaded(
    scenario: Callable[[], Coroutine[Any, Any, None]], publisher: Publisher, sink: Sink
) -> None:
    """Run ``scenario`` for at most a minute; the publisher stops and the sink closes
    however it ends."""
    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        publisher.halt.set()
        sink.close()


def run_takeover(
    server: Address,
    graceful: bool,
    window: float = 30.0,
    dead_for: float = 0.5,
    kind: str = "stream",
) -> tuple[Counter[int], int, Metrics]:
    """The owner forwards, dies (or hands off), the standby is promoted ``dead_for``
    seconds later; returns the sink's copies, how many were sent, and the standby's
    metrics."""
    tag = f"standby.{uuid.uuid4().hex[:8]}"
    sink = Sink(server, kind, f"{tag}:out")
    standby_metrics = Metrics()
    publisher = Publisher(server, tag)

    async def scenario() -> None:
        owner = task(server, tag, "node-a", None, Metrics(), kind)
        standby = task(server, tag, "node-b", Ring(window, 1 << 26), standby_metrics, kind)
        owner.start()
        standby.start()
        await until(lambda: owner.running and standby.state is TaskState.STANDBY, "both up")
        publisher.start()
        await until(lambda: publisher.sent > 500, "the publisher under way")
        await owner.stop(graceful=graceful)  # at once: every connection reset, as a kill
        assert standby.state is TaskState.STANDBY, "the standby wrote before its promotion"
        await asyncio.sleep(dead_for)  # the span no owner forwards: the ring holds it
        standby.promote(2)
        await until(lambda: standby.running, "the standby forwarding")
        await until(lambda: publisher.sent > 2500, "more sent after the takeover")
        await all_in_sink(publisher, sink)
        await standby.stop(graceful=True)

    run_loaded(scenario, publisher, sink)
    return sink.copies(), publisher.sent, standby_metrics


def sample(metrics: Metrics, name: str) -> float:
    return sum(s.value for f in metrics.registry.collect() for s in f.samples if s.name == name)


@pytest.mark.parametrize(
    "kind",
    [
        "stream",
        pytest.param("list", marks=pytest.mark.slow),
        pytest.param("channel", marks=pytest.mark.slow),
    ],
)
def test_the_owner_dies_and_its_standby_loses_nothing(
    kind: str, shared_deployment: Callable[[str], Deployment]
) -> None:
    """Every sink kind: XADD, RPUSH, PUBLISH (the watermark is a SET beside them)."""
    server = shared_deployment("standalone").spec.shards[0].master
    got, sent, metrics = run_takeover(server, graceful=False, kind=kind)
    lost = sent - len(got)
    doubled = sum(n - 1 for n in got.values())
    replayed = sample(metrics, "forwarder_standby_replayed_messages_total")
    print(
        f"TAKEOVER kill ({kind}): sent {sent}, lost {lost}, doubled {doubled}, replayed {replayed}"
    )
    assert lost == 0 and set(got) == set(range(sent))
    # The ring held the 0.5 s nobody forwarded (about 500 messages at 1,000/s).
    assert replayed >= 300
    # Duplicates: at most what the owner wrote after its last watermark (20 ms) and
    # what was in flight when it died; a tenth of a second of traffic is a generous bound.
    assert doubled <= 100
    assert sample(metrics, "forwarder_standby_unaccounted_seconds_total") == 0


def test_a_hand_off_loses_and_doubles_nothing(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    got, sent, _metrics = run_takeover(server, graceful=True)
    doubled = sum(n - 1 for n in got.values())
    print(f"TAKEOVER hand-off: sent {sent}, lost {sent - len(got)}, duplicated {doubled}")
    assert set(got) == set(range(sent)) and doubled == 0


@pytest.mark.slow
def test_a_ring_too_short_says_what_it_could_not_cover(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """A ring of 0.2 s and an owner dead for 1.5 s: the takeover forwards what the ring
    has and reports the span it cannot account for; nothing crashes, and everything
    published after the takeover arrives."""
    server = shared_deployment("standalone").spec.shards[0].master
    got, sent, metrics = run_takeover(server, graceful=False, window=0.2, dead_for=1.5)
    unaccounted = sample(metrics, "forwarder_standby_unaccounted_seconds_total")
    evicted = sample(metrics, "forwarder_standby_evicted_messages_total")
    print(
        f"TAKEOVER short ring: sent {sent}, lost {sent - len(got)}, unaccounted {unaccounted:.2f}s"
    )
    assert 0.5 < unaccounted < 5, unaccounted  # about 1.3 s of the 1.5 s
    assert evicted > 500
    assert sent - len(got) > 0  # lost, as reported
    assert max(got) == sent - 1 and all(n in got for n in range(sent - 400, sent))


def test_a_promotion_while_the_standby_connects_still_forwards(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """Promoted before its subscription is up (a standby just assigned, the owner dying
    at once): the task must end up writing, not listen on forever."""
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = f"standby.{uuid.uuid4().hex[:8]}"

    async def one(n: int, delay: float) -> None:
        standby = task(server, tag, "node-b", Ring(30, 1 << 20), Metrics())
        standby.start()
        await asyncio.sleep(delay)  # a point in its start, not a wait for a condition
        standby.promote(2)
        await until(lambda: standby.running, "the promoted task forwarding")
        before = client.xlen(f"{tag}:out")
        client.publish(tag, str(n))
        await until(lambda: client.xlen(f"{tag}:out") > before, "a message forwarded")
        await standby.stop(graceful=True)

    async def scenario() -> None:
        for n, delay in enumerate((0.0, 0.001, 0.005)):  # before, during, after its connect
            await one(n, delay)

    asyncio.run(asyncio.wait_for(scenario(), 30))
