"""Sink commands are valid RESP arrays with the right arguments. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.resp import ReplyError, encode, encode_many
from redis_forwarder.sink.commands import (
    EntryUnfit,
    Owner,
    SinkKind,
    SinkShape,
    entry_command,
    entry_json,
    sink_command,
)
from redis_forwarder.templates import compile_template


def parsed(data: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(data)
    command = reader.gets()
    assert reader.gets() is False, "exactly one command"
    return list(command)


def target(text: str) -> Callable[[bytes, bytes], bytes]:
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
    # Error replies come back as values, in their place (the data path relies on it).
    parser = hiredis.Reader()
    parser.feed(b"+OK\r\n-WRONGTYPE no\r\n:3\r\n$3\r\nab")
    replies = [parser.gets(), parser.gets(), parser.gets(), parser.gets()]
    assert replies[0] == b"OK" and isinstance(replies[1], ReplyError) and replies[2] == 3
    assert str(replies[1]).startswith("WRONGTYPE") and replies[3] is False
    parser.feed(b"c\r\n")
    assert parser.gets() == b"abc"


def test_entry_commands() -> None:
    from redis_forwarder.sink.commands import entry_command

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
    with pytest.raises(EntryUnfit, match='no field "payload"'):
        push(b"ev", b"5-1", [b"a", b"1", b"b", b"2"])  # not "a=1 b=2" (issue 14)


def test_a_named_field_or_the_whole_entry_as_json() -> None:
    body = entry_command(
        SinkShape(SinkKind.CHANNEL, entry_field=b"body"), target("c"), copy_ids=False
    )
    assert parsed(body(b"ev", b"1-1", [b"payload", b"p", b"body", b"\xff"])) == [
        b"PUBLISH",
        b"c",
        b"\xff",  # one field is sent as bytes: any value goes
    ]
    with pytest.raises(EntryUnfit, match='no field "body"'):
        body(b"ev", b"1-1", [b"payload", b"p"])
    whole = entry_command(SinkShape(SinkKind.LIST, entry_field=None), target("q"), copy_ids=False)
    verb, key, pushed = parsed(whole(b"ev", b"1-1", [b"z", b"1", b"a", "é".encode()]))
    assert (verb, key) == (b"RPUSH", b"q")
    assert pushed == '{"z":"1","a":"é"}'.encode()  # in order, UTF-8 as it is
    assert json.loads(pushed) == {"z": "1", "a": "é"}
    assert entry_json([]) == b"{}"


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ([b"bin", b"\xff\xfe"], "not UTF-8"),
        ([b"\xff", b"v"], "not UTF-8"),
        ([b"a", b"1", b"a", b"2"], "appears twice"),
    ],
)
def test_json_refuses_what_it_cannot_hold_unaltered(fields: list[bytes], why: str) -> None:
    with pytest.raises(EntryUnfit, match=why):
        entry_json(fields)


def parsed_all(data: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(data)
    commands = []
    while (command := reader.gets()) is not False:
        commands.append(list(command))
    return commands


def test_sharded_channel_list_trim_and_owner_fields() -> None:
    spublish = sink_command(SinkShape(SinkKind.CHANNEL, sharded=True), target("c.{channel}"), "s")
    assert parsed(spublish(b"x", b"p", b"")) == [b"SPUBLISH", b"c.x", b"p"]
    trimmed = SinkShape(SinkKind.LIST, maxlen=50)
    assert trimmed.replies_per_message == 2
    push = sink_command(trimmed, target("q:{channel}"), "s")
    assert parsed_all(push(b"x", b"p", b"")) == [
        [b"RPUSH", b"q:x", b"p"],
        [b"LTRIM", b"q:x", b"-50", b"-1"],
    ]
    entry_push = entry_command(trimmed, target("q:{channel}"), copy_ids=False)
    assert parsed_all(entry_push(b"st", b"1-1", [b"payload", b"v"])) == [
        [b"RPUSH", b"q:st", b"v"],
        [b"LTRIM", b"q:st", b"-50", b"-1"],
    ]
    owned = SinkShape(SinkKind.STREAM, owner=Owner("node-a", 42))
    xadd = parsed(sink_command(owned, target("m"), "s")(b"c", b"p", b"pat"))
    assert xadd[-6:] == [b"shard", b"s", b"node", b"node-a", b"epoch", b"42"]
    copied = entry_command(owned, target("m:{channel}"), copy_ids=True)
    assert parsed(copied(b"st", b"5-1", [b"k", b"v"])) == [
        b"XADD", b"m:st", b"5-1", b"k", b"v", b"node", b"node-a", b"epoch", b"42",
    ]  # fmt: skip
