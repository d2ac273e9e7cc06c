"""What a route writes for each message, encoded straight into RESP. Pure.

stream: ``XADD target [MAXLEN ~ n] * payload P channel C [pattern X] shard S
[node N epoch E]``
channel: ``PUBLISH target P`` (``SPUBLISH`` when sharded)
list: ``RPUSH target P`` (then ``LTRIM target -n -1`` with a maxlen: two replies)

A stream entry sent to a channel or list: one field's value (``payload`` unless the
route names another), or the whole entry as a JSON object; an entry that cannot be
sent so raises :class:`EntryUnfit` (the loop sets it aside, counted).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from redis_forwarder.resp import encode

SinkCommand = Callable[[bytes, bytes, bytes], bytes]  # (channel, payload, pattern) -> RESP


class SinkKind(StrEnum):
    STREAM = "stream"
    CHANNEL = "channel"
    LIST = "list"


@dataclass(frozen=True)
class Owner:
    """Who writes: stamped into stream entries so that two owners of one task (an
    overlap during a handover) can be told apart in the sink."""

    node: str
    epoch: int


@dataclass(frozen=True)
class SinkShape:
    kind: SinkKind
    maxlen: int | None = None
    sharded: bool = False  # channel sinks: SPUBLISH
    owner: Owner | None = None  # stream sinks: node and epoch fields
    # channel and list sinks of stream routes: the field sent, or None: the whole entry
    # as a JSON object
    entry_field: bytes | None = b"payload"

    @property
    def replies_per_message(self) -> int:
        return 2 if self.kind is SinkKind.LIST and self.maxlen is not None else 1

    def owner_fields(self) -> tuple[bytes, ...]:
        if self.owner is None:
            return ()
        return (b"node", self.owner.node.encode(), b"epoch", b"%d" % self.owner.epoch)

    def verb(self) -> bytes:
        if self.kind is SinkKind.CHANNEL:
            return b"SPUBLISH" if self.sharded else b"PUBLISH"
        return b"RPUSH"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def sink_command(
    shape: SinkShape, target: Callable[[bytes, bytes], bytes], shard: str
) -> SinkCommand:
    """A function that encodes one message's command; the constant parts are encoded once."""
    if shape.kind is SinkKind.STREAM:
        trim = (
            b""
            if shape.maxlen is None
            else (_bulk(b"MAXLEN") + _bulk(b"~") + _bulk(str(shape.maxlen).encode()))
        )
        # XADD key [MAXLEN ~ n] * payload P channel C [pattern X] shard S [node N epoch E]
        owner = shape.owner_fields()
        args = 2 + (3 if shape.maxlen is not None else 0) + 1 + 6 + len(owner)
        head = b"*%d\r\n" % args + _bulk(b"XADD")
        head_with_pattern = b"*%d\r\n" % (args + 2) + _bulk(b"XADD")
        middle = trim + _bulk(b"*") + _bulk(b"payload")
        channel_key = _bulk(b"channel")
        tail = _bulk(b"shard") + _bulk(shard.encode()) + b"".join(map(_bulk, owner))
        pattern_key = _bulk(b"pattern")

        def stream(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
            key = target(channel, pattern)
            extra = pattern_key + _bulk(pattern) if pattern else b""
            # One formatting operation per message: this runs for every message.
            return b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s%s" % (
                head_with_pattern if pattern else head,
                len(key),
                key,
                middle,
                len(payload),
                payload,
                channel_key,
                len(channel),
                channel,
                extra,
                tail,
            )

        return stream
    head = b"*3\r\n" + _bulk(shape.verb())
    if shape.kind is SinkKind.LIST and shape.maxlen is not None:
        keep = _bulk(b"-%d" % shape.maxlen) + _bulk(b"-1")

        def pushed_and_trimmed(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
            key = _bulk(target(channel, pattern))
            return b"%s%s$%d\r\n%s\r\n*4\r\n$5\r\nLTRIM\r\n%s%s" % (
                head,
                key,
                len(payload),
                payload,
                key,
                keep,
            )

        return pushed_and_trimmed

    def simple(channel: bytes, payload: bytes, pattern: bytes) -> bytes:
        key = target(channel, pattern)
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (head, len(key), key, len(payload), payload)

    return simple


EntryCommand = Callable[[bytes, bytes, list[bytes]], bytes]  # (stream, id, fields) -> RESP
# What Redis says when XADD gets an id at or below the stream's last one: with ids
# copied from the source, that entry was already written (a restart replays it).
ALREADY_WRITTEN = "equal or smaller than the target stream top item"


class EntryUnfit(ValueError):
    """A stream entry that a channel or list sink cannot carry as the route asks; the
    message says why and what to change."""


EntryBody = Callable[[list[bytes]], bytes]  # an entry's fields -> what is pushed


def field_value(name: bytes) -> EntryBody:
    """The value of the field ``name`` (the first, if repeated); an entry without it is
    unfit: sending something else in its place would pass for a message."""
    shown = name.decode(errors="backslashreplace")

    def value(fields: list[bytes]) -> bytes:
        for index in range(0, len(fields) - 1, 2):
            if fields[index] == name:
                return fields[index + 1]
        raise EntryUnfit(
            f'no field "{shown}" (the route sends that field: to.field; to.entry = "json" '
            "sends the whole entry)"
        )

    return value


def entry_json(fields: list[bytes]) -> bytes:
    """The whole entry as one JSON object, fields in order, names and values as strings
    (UTF-8). JSON holds text, not bytes: an entry with a name or value that is not UTF-8,
    or with a field name twice (a JSON object would keep one), is unfit rather than
    altered."""
    names, values = fields[0::2], fields[1::2]
    try:
        body = {name.decode(): value.decode() for name, value in zip(names, values, strict=True)}
    except UnicodeDecodeError:
        raise EntryUnfit(
            "a field name or value is not UTF-8 text, which JSON cannot hold as it is "
            '(send one field instead: to.entry = "field")'
        ) from None
    if len(body) != len(names):
        raise EntryUnfit("a field name appears twice, which one JSON object cannot hold")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def entry_body(shape: SinkShape) -> EntryBody:
    return entry_json if shape.entry_field is None else field_value(shape.entry_field)


def entry_command(
    shape: SinkShape, target: Callable[[bytes, bytes], bytes], copy_ids: bool
) -> EntryCommand:
    """Encode one stream entry for the sink. Stream sinks copy the fields; with
    ``copy_ids`` they also keep the entry id, which makes a replayed entry a no-op.
    Channel and list sinks send :func:`entry_body`, or raise :class:`EntryUnfit`."""
    if shape.kind is SinkKind.STREAM:
        trim: tuple[bytes, ...] = (
            () if shape.maxlen is None else (b"MAXLEN", b"~", str(shape.maxlen).encode())
        )

        owner = shape.owner_fields()

        def stream(source: bytes, entry_id: bytes, fields: list[bytes]) -> bytes:
            return encode(
                b"XADD",
                target(source, b""),
                *trim,
                entry_id if copy_ids else b"*",
                *fields,
                *owner,
            )

        return stream
    verb = shape.verb()
    body = entry_body(shape)
    trim_to = b"-%d" % shape.maxlen if shape.kind is SinkKind.LIST and shape.maxlen else None

    def simple(source: bytes, _entry_id: bytes, fields: list[bytes]) -> bytes:
        key = target(source, b"")
        pushed = encode(verb, key, body(fields))
        return pushed if trim_to is None else pushed + encode(b"LTRIM", key, trim_to, b"-1")

    return simple
