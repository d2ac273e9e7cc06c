"""The forwarders the bench compares, each run as its own process:

- ``naive``: redis-py, one message, one round trip, as a blog post writes it;
- ``raw``: a bare raw-socket loop with hiredis and one buffer per read, no features
  (no reply checks, no heartbeat, no backpressure): the ceiling for a Python loop;
- ``ours``: the forwarder's own data path (PubSubReader, sink command, PipelineWriter,
  PubSubForwarding), with heartbeat and reply checks.

Each subscribes to ``PATTERN`` on HOST:PORT and writes every message to stream
``STREAM`` as ``XADD STREAM * payload P channel C``, then prints "ready" once subscribed.

    python -m redis_forwarder.bench.forwarders VARIANT HOST PORT PATTERN STREAM
"""

from __future__ import annotations

import asyncio
import socket
import sys

import hiredis
import redis

from redis_forwarder.forward import PubSubForwarding
from redis_forwarder.resp import RespConnection, encode
from redis_forwarder.sink.batch import SingleNodeSink
from redis_forwarder.sink.commands import SinkKind, SinkShape, sink_command
from redis_forwarder.sink.writer import PipelineWriter
from redis_forwarder.source.pubsub import PubSubReader


def naive(host: str, port: int, pattern: str, stream: str) -> None:
    source = redis.Redis(host=host, port=port)
    sink = redis.Redis(host=host, port=port)
    pubsub = source.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.psubscribe(pattern)
    while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
        pass
    print("ready", flush=True)
    for message in pubsub.listen():
        if message["type"] == "pmessage":
            sink.xadd(stream, {"payload": message["data"], "channel": message["channel"]})


def raw(host: str, port: int, pattern: str, stream: str) -> None:
    source = socket.create_connection((host, port))
    sink = socket.create_connection((host, port))
    source.sendall(encode(b"PSUBSCRIBE", pattern.encode()))
    reader, replies = hiredis.Reader(), hiredis.Reader()
    while reader.gets() is False:
        reader.feed(source.recv(65536))
    print("ready", flush=True)
    head = b"$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$7\r\npayload\r\n" % (
        len(stream),
        stream.encode(),
    )
    sink.setblocking(True)
    while True:
        reader.feed(source.recv(65536))
        parts = []
        while (message := reader.gets()) is not False:
            channel, payload = message[2], message[3]
            parts.append(
                b"*7\r\n%s$%d\r\n%s\r\n$7\r\nchannel\r\n$%d\r\n%s\r\n"
                % (head, len(payload), payload, len(channel), channel)
            )
        if parts:
            sink.sendall(b"".join(parts))
            # drain whatever replies are there, without waiting: no features
            sink.setblocking(False)
            try:
                while data := sink.recv(1 << 20):
                    replies.feed(data)
                    while replies.gets() is not False:
                        pass
            except BlockingIOError:
                pass
            sink.setblocking(True)


async def ours(host: str, port: int, pattern: str, stream: str) -> None:
    source = RespConnection(host, port, timeout=5.0)
    await source.open()
    reader = PubSubReader(source)
    await reader.subscribe((), (pattern.encode(),))
    sink = RespConnection(host, port, timeout=5.0)
    await sink.open()
    writer = PipelineWriter(sink)
    writer.start()
    stream_name = stream.encode()
    command = sink_command(SinkShape(SinkKind.STREAM), lambda _c, _p: stream_name, "bench")
    print("ready", flush=True)
    await PubSubForwarding(reader, SingleNodeSink(writer, command)).run()


def main() -> None:
    variant, host, port, pattern, stream = sys.argv[1:6]
    if variant == "naive":
        naive(host, int(port), pattern, stream)
    elif variant == "raw":
        raw(host, int(port), pattern, stream)
    elif variant == "ours":
        asyncio.run(ours(host, int(port), pattern, stream))
    else:
        raise SystemExit(f"unknown variant {variant!r}: naive, raw or ours")


if __name__ == "__main__":
    main()
