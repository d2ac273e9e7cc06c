"""The forwarders the bench compares, each run as its own process:

- ``naive``: redis-py, one message, one round trip, as a blog post writes it;
- ``raw``: a bare raw-socket loop with hiredis and one buffer per read, no features
  (no reply checks, no heartbeat, no backpressure): the ceiling for a Python loop;
- ``ours``: the forwarder's own data path (PubSubReader, sink command, PipelineWriter
  or ClusterPubSubSink, PubSubLoop, TaskMetrics), with heartbeat, reply checks and
  the per-batch counts a node keeps; into a stream on one node, the ids XADD returns
  are kept as a node keeps them (``SinkWatch``: looked for after a sink failover).
  It runs on the event loop a node runs (``eventloop``: uvloop when installed);
  ``ours-asyncio`` is the same on asyncio's own loop.

Each subscribes to ``PATTERN`` on HOST:PORT and writes every message to ``OUT`` +
its channel: a stream (``XADD key * payload P channel C``) or a channel (``PUBLISH``).
On a cluster (KIND ``cluster``) each key goes to the master of its slot. Each prints
"ready" once subscribed.

    python -m redis_forwarder.bench.forwarders VARIANT SINK KIND HOST PORT PATTERN OUT
"""

from __future__ import annotations

import os
import socket
import sys

import hiredis
import redis
from redis.cluster import RedisCluster

from redis_forwarder import eventloop
from redis_forwarder.forwarding.connections import TaskConnections
from redis_forwarder.forwarding.echoes import EchoBook, echo_sides
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.pubsub import PubSubLoop
from redis_forwarder.forwarding.sink_failover import AckedTail
from redis_forwarder.forwarding.sink_watch import SinkWatch
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.resp import RespConnection, encode
from redis_forwarder.settings import Credentials
from redis_forwarder.sink.commands import SinkKind, SinkShape, sink_command
from redis_forwarder.sink.pubsub import ClusterPubSubSink, NodePubSubSink, PubSubSink
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.standby.marks import Marks, mark_key
from redis_forwarder.topology import DeploymentSettings, discover_async, key_slot


def naive(sink_kind: str, cluster: bool, host: str, port: int, pattern: str, out: str) -> None:
    source = redis.Redis(host=host, port=port)
    sink: redis.Redis | RedisCluster = (
        RedisCluster(host=host, port=port) if cluster else redis.Redis(host=host, port=port)
    )
    pubsub = source.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.psubscribe(pattern)
    while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
        pass
    print("ready", flush=True)
    prefix = out.encode()
    for message in pubsub.listen():
        if message["type"] != "pmessage":
            continue
        key = prefix + message["channel"]
        if sink_kind == "channel":
            sink.publish(key, message["data"])
        else:
            sink.xadd(key, {"payload": message["data"], "channel": message["channel"]})


def _slot_owners(host: str, port: int) -> dict[int, tuple[str, int]]:
    owners: dict[int, tuple[str, int]] = {}
    for start, end, master, *_replicas in redis.Redis(host=host, port=port).cluster("SLOTS"):
        address = (master[0].decode() if isinstance(master[0], bytes) else master[0], master[1])
        owners.update({slot: address for slot in range(start, end + 1)})
    return owners


def raw(sink_kind: str, cluster: bool, host: str, port: int, pattern: str, out: str) -> None:
    source = socket.create_connection((host, port))
    source.sendall(encode(b"PSUBSCRIBE", pattern.encode()))
    reader = hiredis.Reader()
    while reader.gets() is False:
        reader.feed(source.recv(65536))
    owners = _slot_owners(host, port) if cluster else {}
    sockets: dict[tuple[str, int], socket.socket] = {}
    replies: dict[tuple[str, int], hiredis.Reader] = {}
    route: dict[bytes, tuple[str, int]] = {}  # output key -> node, cached

    def node_of(key: bytes) -> tuple[str, int]:
        if key not in route:
            route[key] = owners[key_slot(key)] if cluster else (host, port)
            if route[key] not in sockets:
                sockets[route[key]] = socket.create_connection(route[key])
                replies[route[key]] = hiredis.Reader()
        return route[key]

    print("ready", flush=True)
    prefix = out.encode()
    while True:
        reader.feed(source.recv(65536))
        parts: dict[tuple[str, int], list[bytes]] = {}
        while (message := reader.gets()) is not False:
            channel, payload = message[2], message[3]
            key = prefix + channel
            if sink_kind == "channel":
                command = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(key),
                    key,
                    len(payload),
                    payload,
                )
            else:
                command = (
                    b"*7\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$7\r\npayload\r\n"
                    b"$%d\r\n%s\r\n$7\r\nchannel\r\n$%d\r\n%s\r\n"
                    % (len(key), key, len(payload), payload, len(channel), channel)
                )
            parts.setdefault(node_of(key), []).append(command)
        for node, commands in parts.items():
            sink = sockets[node]
            sink.sendall(b"".join(commands))
            # drain whatever replies are there, without waiting: no features
            sink.setblocking(False)
            try:
                while data := sink.recv(1 << 20):
                    replies[node].feed(data)
                    while replies[node].gets() is not False:
                        pass
            except BlockingIOError:
                pass
            sink.setblocking(True)


async def ours(
    sink_kind: str,
    cluster: bool,
    host: str,
    port: int,
    pattern: str,
    out: str,
    marks: bool,
    echoes: bool = False,
) -> None:
    """``marks``: with the watermarks an owner writes when its route has a standby;
    ``echoes``: as one direction of a pub/sub bridge with echo suppression (every
    message checked against the other direction's copies and recorded as sent; none
    comes back here, so each is forgotten after ECHO_TTL, as a heard one would be
    taken: the ledger's steady cost)."""
    source = RespConnection(host, port, timeout=5.0)
    await source.open()
    reader = PubSubReader(source)
    await reader.subscribe((), (pattern.encode(),))
    prefix = out.encode()

    def key_of(channel: bytes, _pattern: bytes) -> bytes:
        return prefix + channel

    shape = SinkShape(SinkKind.CHANNEL if sink_kind == "channel" else SinkKind.STREAM)
    command = sink_command(shape, key_of, "bench")
    metrics = TaskMetrics.alone()
    sink: PubSubSink
    if cluster:
        settings = DeploymentSettings(DeploymentKind.CLUSTER, addresses=(Address(host, port),))
        topology = await discover_async(settings)
        connect = TaskConnections("bench").connector(Credentials())
        sink = ClusterPubSubSink(
            command, key_of, lambda: topology, connect, metrics, 20_000, 5.0, lambda _r: None
        )
    else:
        connection = RespConnection(host, port, timeout=5.0)
        await connection.open()
        writer = PipelineWriter(connection, metrics)
        writer.start()
        watch = None
        if shape.kind is SinkKind.STREAM:  # a key per channel: the costlier way to keep ids
            watch = SinkWatch(metrics, 1, tail=AckedTail(lambda s: s), key_of=key_of)
        sink = NodePubSubSink(writer, command, watch=watch)
    if marks and isinstance(sink, ClusterPubSubSink):
        sink.mark_key = mark_key("bench", "bench")
    watermarks = Marks(mark_key("bench", "bench")) if marks else None
    print("ready", flush=True)
    sides = echo_sides(EchoBook(), ("bench-in", "bench-out"), key_of) if echoes else None
    await PubSubLoop(reader, sink, metrics, marks=watermarks, echoes=sides).run()


def main() -> None:
    variant, sink_kind, kind, host, port, pattern, out = sys.argv[1:8]
    cluster = kind == "cluster"
    if variant == "naive":
        naive(sink_kind, cluster, host, int(port), pattern, out)
    elif variant == "raw":
        raw(sink_kind, cluster, host, int(port), pattern, out)
    elif variant in ("ours", "marks", "ours-asyncio", "echoes"):
        if variant == "ours-asyncio":  # the same on asyncio's own loop, for comparison
            os.environ[eventloop.ENV] = "asyncio"
        marks, echoes = variant == "marks", variant == "echoes"
        eventloop.run(ours(sink_kind, cluster, host, int(port), pattern, out, marks, echoes))
    else:
        raise SystemExit(
            f"unknown variant {variant!r}: naive, raw, ours, ours-asyncio, marks or echoes"
        )


if __name__ == "__main__":
    main()
