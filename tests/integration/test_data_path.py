"""The raw data path against a real Redis: subscriptions in, pipelined writes out,
binary payloads byte for byte, order per channel, refusals counted, and the heartbeat
noticing a source that stopped answering (SIGSTOP)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import redis

from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.pubsub import PubSubLoop
from redis_forwarder.model import Address
from redis_forwarder.resp import ConnectionLost, RespConnection, encode
from redis_forwarder.sink.commands import SinkKind, SinkShape, sink_command
from redis_forwarder.sink.pubsub import NodePubSubSink
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.templates import compile_template
from tests.support.commands import Entry, pubsub_of
from tests.support.commands import command as redis_command
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def forwarding(
    server: Address,
    channels: list[bytes],
    patterns: list[bytes],
    shape: SinkShape,
    template: str,
    heartbeat: float = 1.0,
) -> PubSubLoop:
    source = RespConnection(server.host, server.port, timeout=2.0)
    await source.open()
    reader = PubSubReader(source)
    await reader.subscribe(channels, patterns)
    target = RespConnection(server.host, server.port, timeout=2.0)
    await target.open()
    metrics = TaskMetrics.alone()
    writer = PipelineWriter(target, metrics, max_in_flight=500)
    writer.start()
    command = sink_command(shape, compile_template(template).bind(route="r", shard="s"), "s")
    sink = NodePubSubSink(writer, command, replies_each=shape.replies_per_message)
    return PubSubLoop(reader, sink, metrics, heartbeat)


def writer_of(task: PubSubLoop) -> PipelineWriter:
    assert isinstance(task.sink, NodePubSubSink)
    return task.sink.writer


async def run_until(
    task: PubSubLoop, done: Callable[[], Awaitable[bool]], timeout: float = 20.0
) -> None:
    runner = asyncio.create_task(task.run())
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                if runner.done():
                    runner.result()
                await asyncio.sleep(0.02)
        await writer_of(task).flush()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await writer_of(task).close()
        await task.reader.connection.close()


def test_channels_and_patterns_into_streams(shared_deployment: Callable[[str], Deployment]) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8].encode()
    plain, binary = b"plain." + tag, b"bin.\xff\x00." + tag
    payloads = [bytes([i % 256]) * (i % 7) + b"\x00\xff\r\n" for i in range(300)]

    async def scenario() -> None:
        task = await forwarding(
            server, [plain], [b"bin.*." + tag], SinkShape(SinkKind.STREAM), "out:{route}:{channel}"
        )
        for i, payload in enumerate(payloads):
            client.publish(plain if i % 2 else binary, payload)

        def total() -> int:
            return client.xlen(b"out:r:" + plain) + client.xlen(b"out:r:" + binary)

        async def all_there() -> bool:
            return bool(total() == len(payloads))

        await run_until(task, all_there)
        assert writer_of(task).refused == 0

    asyncio.run(scenario())
    for channel, expected in ((plain, payloads[1::2]), (binary, payloads[0::2])):
        entries = cast(list[Entry], client.xrange(b"out:r:" + channel))  # a bytes key
        assert [fields[b"payload"] for _, fields in entries] == expected  # order kept
        assert all(fields[b"channel"] == channel for _, fields in entries)
        assert all(fields[b"shard"] == b"s" for _, fields in entries)
    binary_fields = cast(list[Entry], client.xrange(b"out:r:" + binary))[0][1]
    assert binary_fields[b"pattern"] == b"bin.*." + tag
    client.delete(b"out:r:" + plain, b"out:r:" + binary)


def test_channel_and_list_sinks(shared_deployment: Callable[[str], Deployment]) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    source_channel = f"src.{tag}".encode()
    listener = pubsub_of(client, ignore_subscribe_messages=True)
    listener.subscribe(f"copy.{tag}.src.{tag}")

    async def scenario() -> None:
        to_channel = await forwarding(
            server, [source_channel], [], SinkShape(SinkKind.CHANNEL), f"copy.{tag}.{{channel}}"
        )
        to_list = await forwarding(
            server, [source_channel], [], SinkShape(SinkKind.LIST), f"list:{tag}"
        )
        to_short_list = await forwarding(
            server, [source_channel], [], SinkShape(SinkKind.LIST, maxlen=10), f"short:{tag}"
        )
        for i in range(50):
            client.publish(source_channel, f"m{i}")

        async def listed() -> bool:
            return bool(client.llen(f"list:{tag}") == 50)

        async def copied() -> bool:
            return to_channel.metrics.received == 50

        async def trimmed() -> bool:  # RPUSH and LTRIM answered for each message
            return writer_of(to_short_list).confirmed == 100

        await asyncio.gather(
            run_until(to_list, listed),
            run_until(to_channel, copied),
            run_until(to_short_list, trimmed),
        )

    asyncio.run(scenario())
    assert client.lrange(f"list:{tag}", 0, -1) == [f"m{i}".encode() for i in range(50)]
    assert client.lrange(f"short:{tag}", 0, -1) == [f"m{i}".encode() for i in range(40, 50)]
    got: list[bytes] = []

    def all_copied() -> bool:
        message = listener.get_message(timeout=0.1)  # the first is the subscribe confirmation
        if message is not None:
            got.append(message["data"])
        return len(got) == 50

    wait_until(all_copied, "50 messages copied to the channel")
    assert got == [f"m{i}".encode() for i in range(50)]
    listener.close()
    client.delete(f"list:{tag}", f"short:{tag}")


def test_refused_writes_are_counted(shared_deployment: Callable[[str], Deployment]) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    client.set(f"taken:{tag}", "a string, so XADD gets WRONGTYPE")

    async def scenario() -> PubSubLoop:
        task = await forwarding(
            server, [f"c.{tag}".encode()], [], SinkShape(SinkKind.STREAM), f"taken:{tag}"
        )
        for i in range(10):
            client.publish(f"c.{tag}", str(i))

        async def answered() -> bool:
            return writer_of(task).confirmed == 10

        await run_until(task, answered)
        return task

    task = asyncio.run(scenario())
    assert writer_of(task).refused == 10 and "WRONGTYPE" in writer_of(task).last_refusal
    client.delete(f"taken:{tag}")


def test_heartbeat_notices_a_stopped_source(fresh_deployment: Callable[[str], Deployment]) -> None:
    deployment = fresh_deployment("standalone")
    lab = deployment.require_lab()
    server = deployment.spec.shards[0].master

    async def scenario() -> None:
        task = await forwarding(
            server, [b"quiet"], [], SinkShape(SinkKind.LIST), "l", heartbeat=0.3
        )
        runner = asyncio.create_task(task.run())
        async with asyncio.timeout(10):
            while task.heartbeats < 2:  # PINGs answered while the server runs
                await asyncio.sleep(0.05)
            lab.send_signal("main-master", signal.SIGSTOP)
            with pytest.raises(ConnectionLost, match="heartbeat"):
                await runner
        await writer_of(task).close()
        await task.reader.connection.close()

    try:
        asyncio.run(scenario())
    finally:
        lab.send_signal("main-master", signal.SIGCONT)


@pytest.mark.parametrize("policy", ["block", "drop-oldest"])
def test_overflow_policy_with_a_paused_sink(
    policy: str,
    shared_deployment: Callable[[str], Deployment],
    fresh_deployment: Callable[[str], Deployment],
) -> None:
    """The sink stops answering for a while (CLIENT PAUSE WRITE) under a burst: block
    loses nothing; drop-oldest keeps reading, drops the oldest, counts every drop."""
    from redis_forwarder.sink.overflow import DropOldestBuffer

    source = shared_deployment("standalone").spec.shards[0].master
    target = fresh_deployment("standalone").spec.shards[0].master
    publisher = redis.Redis(host=source.host, port=source.port)
    sink_client = redis.Redis(host=target.host, port=target.port)
    channel = f"burst.{uuid.uuid4().hex[:8]}"
    total = 5000

    async def scenario() -> tuple[int, int]:
        src = RespConnection(source.host, source.port, timeout=2.0)
        await src.open()
        reader = PubSubReader(src)
        await reader.subscribe([channel.encode()], [])
        sink = RespConnection(target.host, target.port, timeout=5.0)
        await sink.open()
        metrics = TaskMetrics.alone()
        writer = PipelineWriter(sink, metrics, max_in_flight=100)
        writer.start()
        overflow = DropOldestBuffer(writer, 500, metrics) if policy == "drop-oldest" else None
        command = sink_command(SinkShape(SinkKind.STREAM), compile_template("out").bind(), "s")
        task = PubSubLoop(reader, NodePubSubSink(writer, command, overflow), metrics)
        redis_command(sink_client, "CLIENT", "PAUSE", 1500, "WRITE")
        pipe = publisher.pipeline(transaction=False)
        for i in range(total):
            pipe.publish(channel, str(i))
        pipe.execute()

        async def settled() -> bool:
            # Block: every message answered. Reading them all is not enough: the loop
            # counts a batch as read before its write waits for room in flight, and the
            # last batches were still waiting when the runner was cancelled (3,946 of
            # 5,000 in the sink, twice in a day's full runs).
            if overflow is None:
                return task.metrics.forwarded == total
            return task.metrics.received == total and (
                overflow.queued == 0 and writer.in_flight == 0
            )

        await run_until(task, settled, timeout=30)
        return metrics.dropped, int(sink_client.xlen("out"))

    dropped, forwarded = asyncio.run(scenario())
    last = cast(list[Entry], sink_client.xrevrange("out", count=1))[0][1][b"payload"]
    sink_client.delete("out")
    assert last == str(total - 1).encode()  # the newest is never the one dropped
    if policy == "block":
        assert (dropped, forwarded) == (0, total)
    else:
        assert dropped > 0 and dropped + forwarded == total


def test_subscribing_under_traffic_keeps_early_messages(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """Messages arrive as soon as the first subscription is confirmed, before the
    others: subscribing under load must keep them, not fail."""
    import threading

    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    channels = [f"busy.{tag}.{i}".encode() for i in range(3)]
    halt = threading.Event()

    def flood() -> None:
        while not halt.is_set():
            client.publish(channels[0], "x")

    thread = threading.Thread(target=flood)
    thread.start()
    try:

        async def scenario() -> int:
            total = 0
            for _ in range(20):  # each a fresh subscription racing the flood
                connection = RespConnection(server.host, server.port, timeout=2.0)
                await connection.open()
                reader = PubSubReader(connection)
                await reader.subscribe(channels, [b"busy." + tag.encode() + b".*"])
                total += len(await reader.messages(1.0))
                await connection.close()
            return total

        assert asyncio.run(scenario()) > 0
    finally:
        halt.set()
        thread.join(10)


def test_writes_never_answered_are_counted_at_risk(
    fresh_deployment: Callable[[str], Deployment],
) -> None:
    """A sink that stops answering (CLIENT PAUSE WRITE: it reads the XADDs and holds
    their replies), then the connection closed at once, as a rehome does: the batches
    written and never answered are counted (``unanswered``), not forwarded, not silent
    (a chaos campaign: 603 replayed into a master frozen a moment later, none counted)."""
    target = fresh_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=target.host, port=target.port)
    key = f"unanswered.{uuid.uuid4().hex[:8]}"

    async def scenario() -> TaskMetrics:
        sink = RespConnection(target.host, target.port, timeout=5.0)
        await sink.open()
        metrics = TaskMetrics.alone()
        writer = PipelineWriter(sink, metrics, max_in_flight=1000)
        writer.start()
        await writer.send(encode(b"XADD", key.encode(), b"*", b"n", b"0"), 1)
        await writer.flush()  # one answered: forwarded
        redis_command(client, "CLIENT", "PAUSE", 5000, "WRITE")
        for _ in range(3):
            body = b"".join(encode(b"XADD", key.encode(), b"*", b"n", b"%d" % i) for i in range(10))
            await writer.send(body, 10)
        await asyncio.sleep(0.2)  # no answer comes while paused (CLIENT PAUSE holds them)
        assert writer.in_flight == 30
        await writer.close(abort=True)
        return metrics

    try:
        metrics = asyncio.run(scenario())
    finally:
        redis_command(client, "CLIENT", "UNPAUSE")
        client.delete(key)
    assert (metrics.forwarded, metrics.unanswered_count) == (1, 30)
    counter = metrics.registry.unanswered.labels(route="bench", shard="bench")
    assert counter._value.get() == 30
