"""Sink commands are valid RESP arrays with the right arguments. Pure."""

from __future__ import annotations

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.resp import ReplyParser, encode, encode_many
from redis_forwarder.sink.commands import SinkKind, SinkShape, sink_command
from redis_forwarder.templates import compile_template


def parsed(data: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(data)
    command = reader.gets()
    assert reader.gets() is False, "exactly one command"
    return list(command)


def target(text: str):  # type: ignore[no-untyped-def]
    return compile_template(text).bind(route="r", shard="s")


@given(st.binary(max_size=30), st.binary(max_size=200), st.binary(max_size=10))
def test_stream_command(channel: bytes, payload: bytes, pattern: bytes) -> None:
    command = sink_command(SinkShape(SinkKind.STREAM, maxlen=1000), target("m:{channel}"), "s")
    expected = [
        b"XADD",
        b"m:" + channel,
        b"MAXLEN",
        b"~",
        b"1000",
        b"*",
        b"payload",
        payload,
        b"channel",
        channel,
    ]
    if pattern:
        expected += [b"pattern", pattern]
    assert parsed(command(channel, payload, pattern)) == [*expected, b"shard", b"s"]


def test_stream_without_trim_and_simple_sinks() -> None:
    stream = sink_command(SinkShape(SinkKind.STREAM), target("x"), "s")
    assert parsed(stream(b"c", b"p", b"")) == [
        b"XADD",
        b"x",
        b"*",
        b"payload",
        b"p",
        b"channel",
        b"c",
        b"shard",
        b"s",
    ]
    publish = sink_command(SinkShape(SinkKind.CHANNEL), target("copy.{channel}"), "s")
    assert parsed(publish(b"c", b"p", b"")) == [b"PUBLISH", b"copy.c", b"p"]
    push = sink_command(SinkShape(SinkKind.LIST), target("q"), "s")
    assert parsed(push(b"c", b"p", b"")) == [b"RPUSH", b"q", b"p"]


def test_resp_round_trip() -> None:
    buffer = encode_many([(b"SET", b"k", b"\r\n"), (b"GET", b"k")])
    reader = hiredis.Reader()
    reader.feed(buffer)
    assert reader.gets() == [b"SET", b"k", b"\r\n"] and reader.gets() == [b"GET", b"k"]
    assert encode(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    parser = ReplyParser()
    parser.feed(b"+OK\r\n-WRONGTYPE no\r\n:3\r\n$3\r\nab")
    replies = list(parser.replies())
    assert replies[0] == b"OK" and str(replies[1]).startswith("WRONGTYPE") and replies[2] == 3
    parser.feed(b"c\r\n")
    assert list(parser.replies()) == [b"abc"]


def test_entry_commands() -> None:
    from redis_forwarder.sink.commands import entry_command, entry_payload

    fields = [b"seq", b"1", b"payload", b"\xff"]
    copy = entry_command(SinkShape(SinkKind.STREAM), target("c:{channel}"), copy_ids=True)
    assert parsed(copy(b"ev", b"5-1", fields)) == [b"XADD", b"c:ev", b"5-1", *fields]
    fresh = entry_command(SinkShape(SinkKind.STREAM, maxlen=9), target("c"), copy_ids=False)
    assert parsed(fresh(b"ev", b"5-1", fields)) == [
        b"XADD",
        b"c",
        b"MAXLEN",
        b"~",
        b"9",
        b"*",
        *fields,
    ]
    push = entry_command(SinkShape(SinkKind.LIST), target("q"), copy_ids=False)
    assert parsed(push(b"ev", b"5-1", fields)) == [b"RPUSH", b"q", b"\xff"]
    assert entry_payload([b"a", b"1", b"b", b"2"]) == b"a=1 b=2"
