"""Issue 16's data path against a real Redis: the pub/sub loop's fast lane (batches
forwarded in the source's callback) and the task's ordinary way, interleaved, keep the
order; replies read aside by the writer are all counted once traffic stops; a sink that
goes silent or closes while its replies are read aside is noticed; and the event loop
a node runs is uvloop unless asked otherwise."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import cast

import pytest
import redis
import redis.asyncio

from redis_forwarder import eventloop
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.pubsub import PubSubLoop
from redis_forwarder.resp import ConnectionLost, RespConnection, encode
from redis_forwarder.retry import Deadline
from redis_forwarder.sink.commands import SinkKind, SinkShape
from redis_forwarder.sink.writer import PipelineWriter
from tests.integration.test_data_path import forwarding, run_until, writer_of
from tests.support.commands import Entry
from tests.support.commands import command as redis_command
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration


async def forward_all(
    task: PubSubLoop, publish: Callable[[], None], total: int, timeout: float
) -> None:
    """Run ``task`` while ``publish`` runs in a thread, until ``total`` are forwarded."""
    thread = threading.Thread(target=publish)

    async def done() -> bool:
        if thread.ident is None:  # started once the task runs: nothing is published early
            thread.start()
        return task.metrics.forwarded >= total

    await run_until(task, done, timeout=timeout)
    thread.join(10)


def test_fast_lane_and_task_interleaved_keep_the_order(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """One PUBLISH at a time (the fast lane) mixed with pipelined bursts that find the
    writer's pipeline full (the task's way, since max_in_flight is small): every
    message arrives, in publish order, and both ways were taken."""
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    channel = f"order.{uuid.uuid4().hex[:8]}"
    out = f"ordered:{uuid.uuid4().hex[:8]}"
    total = 3000

    def publish() -> None:
        publisher = redis.Redis(host=server.host, port=server.port)
        seq = 0
        while seq < total:
            if (seq // 100) % 2:  # a burst of 100 in one write
                pipe = publisher.pipeline(transaction=False)
                for i in range(seq, seq + 100):
                    pipe.publish(channel, str(i))
                pipe.execute()
                seq += 100
            else:
                publisher.publish(channel, str(seq))
                seq += 1

    async def scenario() -> tuple[int, int]:
        task = await forwarding(server, [channel.encode()], [], SinkShape(SinkKind.STREAM), out)
        writer_of(task).max_in_flight = 5
        await forward_all(task, publish, total, timeout=60)
        return task.fast, task.metrics.batches

    fast, batches = asyncio.run(scenario())
    entries = cast(list[Entry], client.xrange(out))
    client.delete(out)
    assert [int(fields[b"payload"]) for _id, fields in entries] == list(range(total))
    assert 0 < fast < batches, (fast, batches)  # both ways were taken


def test_steady_traffic_in_the_fast_lane_sends_no_heartbeat(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """Messages the fast lane forwards keep the subscription alive as the task's do: no
    PING while they flow (a PING queued behind a backlog in Redis' output buffer could
    take over a heartbeat to come back, and end a healthy subscription)."""
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    channel = f"steady.{uuid.uuid4().hex[:8]}"
    out = f"steady:{uuid.uuid4().hex[:8]}"
    total = 120

    def publish() -> None:
        publisher = redis.Redis(host=server.host, port=server.port)
        for i in range(total):  # 1.2 s: six heartbeats of 0.2 s
            publisher.publish(channel, str(i))
            time.sleep(0.01)

    async def scenario() -> tuple[int, int]:
        task = await forwarding(
            server, [channel.encode()], [], SinkShape(SinkKind.STREAM), out, heartbeat=0.2
        )
        await forward_all(task, publish, total, timeout=30)
        return task.fast, task.heartbeats

    fast, heartbeats = asyncio.run(scenario())
    client.delete(out)
    assert fast > total // 2, fast  # the lane carried the traffic
    assert heartbeats <= 1, heartbeats  # at most one before the first message


def test_replies_read_aside_are_all_counted_when_traffic_stops(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """The writer reads replies aside while it writes; once the writes stop, the event
    loop reads the rest within the settle time: nothing stays owed, nothing waits for
    a flush."""
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    channel = f"aside.{uuid.uuid4().hex[:8]}"
    out = f"aside:{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[int, int, float]:
        task = await forwarding(server, [channel.encode()], [], SinkShape(SinkKind.STREAM), out)
        runner = asyncio.create_task(task.run())
        try:
            publisher = redis.asyncio.Redis(host=server.host, port=server.port)
            for i in range(500):
                await publisher.publish(channel, str(i))
            await publisher.aclose()
            sent_at = time.monotonic()
            deadline = Deadline(5)
            while task.metrics.forwarded < 500 and not deadline.expired:
                await asyncio.sleep(0.001)
            answered_after = time.monotonic() - sent_at
            return task.metrics.forwarded, writer_of(task).in_flight, answered_after
        finally:
            task.stop_reading()
            await asyncio.gather(runner, return_exceptions=True)
            await writer_of(task).close()

    forwarded, in_flight, answered_after = asyncio.run(scenario())
    assert client.xlen(out) == 500
    client.delete(out)
    assert (forwarded, in_flight) == (500, 0)
    assert answered_after < 1.0  # the settle time is 5 ms; a read left waiting is seconds


@pytest.mark.parametrize("fault", ["close", "silence"])
def test_a_sink_lost_while_replies_are_read_aside_is_noticed(
    fault: str, fresh_deployment: Callable[[str], Deployment]
) -> None:
    """``close``: the server closes the writer's connection (CLIENT KILL) between
    writes; the next write fails, not later. ``silence``: the server stops (SIGSTOP)
    with replies owed: the writer gives up after its timeout (2 s), as when the event
    loop read the replies."""
    deployment = fresh_deployment("standalone")
    lab = deployment.require_lab()
    server = deployment.spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)

    async def scenario() -> float:
        connection = RespConnection(server.host, server.port, timeout=2.0)
        await connection.open()
        writer = PipelineWriter(connection, TaskMetrics.alone())
        writer.start()
        ping = encode(b"PING")
        for _ in range(20):  # replies read aside by the writes that follow
            await writer.send(ping, 1)
        started = time.monotonic()
        try:
            if fault == "close":
                port = connection._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
                redis_command(client, "CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
                with pytest.raises(ConnectionLost):
                    deadline = Deadline(5)
                    while not deadline.expired:
                        await writer.send(ping, 1)
                        await asyncio.sleep(0.01)
            else:
                lab.send_signal("main-master", signal.SIGSTOP)
                await writer.send(ping, 1)
                with pytest.raises(ConnectionLost, match="timed out"):
                    await writer.flush()
            return time.monotonic() - started
        finally:
            if fault == "silence":
                lab.send_signal("main-master", signal.SIGCONT)
            await writer.close()

    took = asyncio.run(scenario())
    assert took < (1.0 if fault == "close" else 6.0), took


def test_the_event_loop_is_uvloop_unless_asked_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.chosen() == "uvloop"

    async def loop_name() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(loop_name()).startswith("uvloop")
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.chosen() == "asyncio"
    assert eventloop.run(loop_name()).startswith("asyncio")
    monkeypatch.setenv(eventloop.ENV, "tokio")
    with pytest.raises(ValueError, match="choose uvloop or asyncio"):
        eventloop.chosen()
    assert os.environ[eventloop.ENV] == "tokio"
