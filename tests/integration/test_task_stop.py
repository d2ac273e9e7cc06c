"""A task's stop is immediate and final, against a real server (issue 13).

The campaign that found it: tasks "dropped" after a lost session kept running for
5 s (STOP_TIMEOUT): a cancellation swallowed during clean-up let them re-subscribe,
and a stream task read on with XREADGROUP as a zombie consumer, taking entries that
the real owner later wrote out of order. Here: from the moment ``stop`` begins, the
task opens no connection and reads, subscribes or claims nothing more, whatever it
was doing (forwarding, failing, backing off); and a healthy stop takes milliseconds,
never the stop timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from redis_forwarder.forwarding.placement import Endpoint, Placement
from redis_forwarder.forwarding.spec import TaskSpec
from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import STOP_TIMEOUT, Task
from redis_forwarder.model import Address
from redis_forwarder.observe import Metrics
from redis_forwarder.routes import RouteConfig
from redis_forwarder.settings import Credentials
from tests.support.commands import command, xadd
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration
HEALTHY_STOP = 1.0  # seconds: a healthy stop is milliseconds; STOP_TIMEOUT is 5


def route(tag: str, streams: bool) -> RouteConfig:
    source = {"streams": [f"{tag}.in"], "group": "g"} if streams else {"channels": [tag]}
    document = {"name": tag, "from": source, "to": {"stream": f"{tag}:out"}, "heartbeat": 0.5}
    return RouteConfig.model_validate(document)


def make_task(server: Address, tag: str, streams: bool, consumer: str = "node-a") -> Task:
    def here(_avoid: frozenset[Address]) -> Endpoint:
        return Endpoint(server, Credentials())

    spec = TaskSpec(route(tag, streams), "s", consumer=consumer)
    return Task(spec, Placement(here, here), Metrics())


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout:.0f}s: {what}"
        await asyncio.sleep(0.01)


def subscribers(client: redis.Redis, channel: str) -> int:
    reply = command(client, "PUBSUB", "NUMSUB", channel)
    return int(reply[1])


def standalone(shared_deployment: Callable[[str], Deployment]) -> tuple[Address, redis.Redis]:
    server = shared_deployment("standalone").spec.shards[0].master
    return server, redis.Redis(host=server.host, port=server.port)


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "at-once"])
def test_a_healthy_stop_is_quick_and_leaves_nothing_behind(
    graceful: bool, shared_deployment: Callable[[str], Deployment]
) -> None:
    server, client = standalone(shared_deployment)
    tag = f"stop.{uuid.uuid4().hex[:8]}"

    async def scenario() -> float:
        pubsub, stream = make_task(server, tag, False), make_task(server, tag, True)
        for task in (pubsub, stream):
            task.start()
        await until(lambda: pubsub.running and stream.running, "both tasks forwarding")
        client.publish(tag, "m")
        xadd(client, f"{tag}.in", {"payload": "e"})
        await until(lambda: client.xlen(f"{tag}:out") == 2, "both forwarded")
        started = time.monotonic()
        await asyncio.gather(pubsub.stop(graceful), stream.stop(graceful))
        took = time.monotonic() - started
        assert pubsub.state is TaskState.STOPPED and stream.state is TaskState.STOPPED
        return took

    took = asyncio.run(scenario())
    print(f"STOP graceful={graceful}: {took * 1000:.1f} ms")
    assert took < HEALTHY_STOP < STOP_TIMEOUT, f"a healthy stop took {took:.2f}s"
    # The resets reached the server: no subscriber, no reader left.
    deadline = time.monotonic() + 2
    while subscribers(client, tag) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert subscribers(client, tag) == 0
    assert client.xpending(f"{tag}.in", "g")["pending"] == 0  # forwarded and acknowledged


def test_a_stop_in_any_state_is_final(fresh_deployment: Callable[[str], Deployment]) -> None:
    """Stop tasks at random moments around a connection loss (CLIENT KILL of their
    subscriptions and blocked reads), 40 rounds: after ``stop`` returns, nothing of
    theirs is subscribed, and stream entries added afterwards are delivered to no one
    (no zombie consumer): they wait for the next owner."""
    server, client = standalone(fresh_deployment)  # its own: every client is killed
    tag = f"final.{uuid.uuid4().hex[:8]}"
    rounds = 40
    rng = random.Random(13)
    took: list[float] = []

    async def one_round(index: int) -> list[Task]:
        consumer = f"node-{index}"
        tasks = [make_task(server, tag, False, consumer), make_task(server, tag, True, consumer)]
        for task in tasks:
            task.start()
        await until(lambda: all(t.running for t in tasks), "both tasks forwarding")
        # The loss and the stop race: the tasks see their connections reset and start
        # to reconnect; the stop comes at a random point 0-30 ms into that.
        for kind in ("pubsub", "normal"):
            command(client, "CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
        await asyncio.sleep(rng.uniform(0, 0.03))  # a random point, not a wait
        started = time.monotonic()
        await asyncio.gather(*(task.stop(graceful=index % 2 == 0) for task in tasks))
        took.append(time.monotonic() - started)
        return tasks

    async def scenario() -> list[Task]:
        stopped: list[Task] = []
        for index in range(rounds):
            stopped += await one_round(index)
        return stopped

    stopped = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert all(t.state is TaskState.STOPPED for t in stopped)
    # A stop whose cancellation is swallowed lasts until the stop timeout's reset.
    assert max(took) < HEALTHY_STOP, f"stops took up to {max(took):.2f}s"
    # Every task is stopped and its loop ended: nothing of theirs can run any more, so
    # what the server sees now is final.
    assert subscribers(client, tag) == 0, "a stopped task re-subscribed"
    added = [xadd(client, f"{tag}.in", {"payload": f"after-{i}"}) for i in range(5)]
    # A zombie consumer would read them within a heartbeat (0.5 s) of reconnecting:
    # look for 2 s, polling (the span of observation, not a wait for a condition).
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        (group,) = client.xinfo_groups(f"{tag}.in")
        assert group["last-delivered-id"] < added[0], "a stopped task read on (a zombie)"
        assert client.xpending(f"{tag}.in", "g")["pending"] == 0
        assert subscribers(client, tag) == 0, "a stopped task re-subscribed"
        time.sleep(0.1)
