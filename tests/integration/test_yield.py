"""An owner that loses its subscription yields to its standby (``forwarding.yielding``),
against a real server, at the level of tasks in one process; the fleet's part (the
controller moving the task) is in test_standby_fleet.py.

The server cuts the owner's subscription (CLIENT KILL, as it does past the output
buffer's limit or in a failover) while a publisher sends numbered messages at about
1,000 a second. Before, the owner resubscribed and lost what was published meanwhile,
though its standby had heard it (a chaos campaign: 796 messages). Now it writes
nothing more and listens into a ring of its own: promoted, the standby replays from
the owner's last watermark and nothing is lost; with nobody to take over, the owner
takes its task back after ``YIELD_WAIT``, writing what its own ring heard, and only
what was published before it resubscribed is lost, inside a gap it reports.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from functools import partial

import pytest
import redis

from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.forwarding.yielding import YIELD_WAIT
from redis_forwarder.model import Address
from redis_forwarder.observe import Metrics
from redis_forwarder.standby.ring import Ring
from tests.integration.test_standby_takeover import (
    Publisher,
    Sink,
    all_in_sink,
    run_loaded,
    sample,
    task,
    until,
)
from tests.support.deployments import Deployment
from tests.support.subscribers import kill_subscribers, ports_of

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]
RINGS = partial(Ring, 30.0, 1 << 26)


def owner_task(server: Address, tag: str, metrics: Metrics, covered: bool = True) -> Task:
    """An owner as a fleet's node makes it: watermarks, rings to yield with, and a
    standby named for it (``covered``) or not."""
    made = task(server, tag, "node-a", None, metrics)
    return Task(made.spec, made.placement, metrics, None, rings=RINGS, covered=lambda: covered)


async def started_alone(start: Callable[[], Task], client: redis.Redis) -> tuple[Task, set[int]]:
    """Start a task and return it with the local ports it opened (its subscription among
    them): the ports this process held before are not its."""
    before = ports_of(os.getpid())
    started = start()
    started.start()
    await until(lambda: started.running, "the owner forwarding")
    return started, ports_of(os.getpid()) - before


def test_an_owner_that_lost_its_subscription_yields_and_its_standby_loses_nothing(
    shared_deployment: Shared,
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = f"yield.{uuid.uuid4().hex[:8]}"
    sink = Sink(server, "stream", f"{tag}:out")
    publisher = Publisher(server, tag)
    owner_metrics = Metrics()

    async def scenario() -> None:
        standby = task(server, tag, "node-b", RINGS(), Metrics())
        standby.start()
        await until(lambda: standby.state is TaskState.STANDBY, "the standby listening")
        owner, ports = await started_alone(partial(owner_task, server, tag, owner_metrics), client)
        publisher.start()
        await until(lambda: publisher.sent > 500, "the publisher under way")
        assert kill_subscribers(client, ports) == 1  # the owner's, not the standby's
        await until(lambda: owner.state is TaskState.YIELDING, "the owner yielding")
        # Closed by the server, not silent: the controller need not wait for the
        # standby's next report (``Control.confirmed``).
        assert owner.yielding is not None and not owner.yielding.silent
        written = len(sink.copies())
        await asyncio.sleep(0.3)  # a span of traffic while it yields, not a wait
        assert len(sink.copies()) == written, "a yielding owner wrote"
        # The controller's part: the owner lets go, the standby is promoted.
        await owner.stop(graceful=False)
        standby.promote(2)
        await until(lambda: standby.running, "the standby forwarding")
        await until(lambda: publisher.sent > 2500, "more sent after the takeover")
        await all_in_sink(publisher, sink)
        await standby.stop(graceful=True)

    run_loaded(scenario, publisher, sink)
    got, sent = sink.copies(), publisher.sent
    doubled = sum(n - 1 for n in got.values())
    print(f"YIELD to the standby: sent {sent}, lost {sent - len(got)}, doubled {doubled}")
    assert set(got) == set(range(sent))
    assert doubled <= 100  # what the owner wrote after its last watermark (20 ms)
    assert sample(owner_metrics, "forwarder_standby_yields_total") == 1
    assert sample(owner_metrics, "forwarder_gaps_total") == 0  # the standby filled it


def test_with_nobody_to_take_over_the_owner_takes_its_task_back(
    shared_deployment: Shared,
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = f"yield.{uuid.uuid4().hex[:8]}"
    sink = Sink(server, "stream", f"{tag}:out")
    publisher = Publisher(server, tag)
    metrics = Metrics()
    found: dict[str, float] = {}  # the gap's length
    sent_at: dict[str, int] = {}  # how many were sent at the cut, and when it was back

    async def scenario() -> None:
        owner, ports = await started_alone(partial(owner_task, server, tag, metrics), client)
        publisher.start()
        await until(lambda: publisher.sent > 500, "the publisher under way")
        sent_at["cut"] = publisher.sent
        assert kill_subscribers(client, ports) == 1
        await until(lambda: owner.state is TaskState.YIELDING, "the owner yielding")
        await until(lambda: owner.running, "the owner forwarding again", timeout=YIELD_WAIT + 5)
        gap = owner.gaps[-1]
        assert gap.end is not None
        found["gap"] = gap.end - gap.start
        sent_at["back"] = publisher.sent
        await until(lambda: publisher.sent > sent_at["back"] + 1000, "more sent after it")
        await all_in_sink(publisher, sink)
        await owner.stop(graceful=True)

    run_loaded(scenario, publisher, sink)
    got, sent = sink.copies(), publisher.sent
    missing = sorted(set(range(sent)) - set(got))
    print(f"YIELD taken back: sent {sent}, lost {len(missing)}, gap {found['gap']:.3f}s")
    # Lost: only what was published between the cut and the resubscription (the gap,
    # well under a second); everything its own ring heard in the 3 s is written.
    assert found["gap"] < 1.0
    assert len(missing) <= 1000 * found["gap"] + 50
    assert all(sent_at["cut"] - 100 <= n <= sent_at["cut"] + 1100 for n in missing)
    assert all(n in got for n in range(sent_at["back"] - 2000, sent))
    assert sum(n - 1 for n in got.values()) == 0
    assert sample(metrics, "forwarder_standby_yields_total") == 1
    assert sample(metrics, "forwarder_gaps_total") == 1
    takeovers = [
        s
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "forwarder_standby_takeovers_total"
    ]
    assert [(s.labels["found"], s.value) for s in takeovers] == [("own ring", 1.0)]


def test_an_owner_with_no_standby_named_resubscribes_at_once(
    shared_deployment: Shared,
) -> None:
    """A fleet of one node, or a task whose standby is not assigned yet: nobody to
    yield to, so no wait either."""
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = f"yield.{uuid.uuid4().hex[:8]}"
    metrics = Metrics()

    async def scenario() -> None:
        make = partial(owner_task, server, tag, metrics, covered=False)
        owner, ports = await started_alone(make, client)
        assert kill_subscribers(client, ports) == 1
        await until(lambda: bool(owner.gaps) and owner.running, "the owner back at once", 2.0)
        assert owner.yielding is None
        await owner.stop(graceful=True)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert sample(metrics, "forwarder_standby_yields_total") == 0
    assert sample(metrics, "forwarder_gaps_total") == 1
