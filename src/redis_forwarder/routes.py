"""The ``[[route]]`` tables of the forwarder's config: what a route reads (``from``),
where it writes (``to``), and the checks on one route alone (docs/configuration.md).
Apart from ``config`` so that each stays one job under the size limit; ``config``
re-exports these names.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from redis_forwarder.route_loops import loop_check
from redis_forwarder.sink.commands import SinkKind
from redis_forwarder.sink.replication import WaitConfig
from redis_forwarder.templates import TemplateError, compile_template
from redis_forwarder.validation import Located

_EXPANSION = re.compile(r"\{(\d+)\.\.(\d+)\}")
MAX_EXPANDED_CHANNELS = 100_000


def expand_channels(names: list[str]) -> list[str]:
    """``orders:{0..3}`` -> orders:0 .. orders:3 (any number of ranges, nested as a
    product), for channel, sharded channel and stream names. Braces that are not
    ``{N..M}`` (hash tags such as ``{user}``) stay."""
    result: list[str] = []
    for name in names:
        pending = [name]
        while pending:
            current = pending.pop()
            match = _EXPANSION.search(current)
            if match is None:
                result.append(current)
                continue
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise ValueError(f"{name!r}: range {{{low}..{high}}} runs backwards")
            if len(result) + len(pending) + high - low + 1 > MAX_EXPANDED_CHANNELS:
                raise ValueError(f"{name!r} expands to more than {MAX_EXPANDED_CHANNELS} names")
            head, tail = current[: match.start()], current[match.end() :]
            pending.extend(f"{head}{n}{tail}" for n in range(high, low - 1, -1))
    return result


class FromConfig(BaseModel):
    """What a route reads: classic channels and/or patterns, sharded channels, or streams
    through a consumer group."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # The deployment the route reads: "source" (the [source] table) or a [targets.NAME]
    # (issue 20: a fleet bridging deployments both ways reads from more than one).
    deployment: str = Field(default="source", min_length=1)
    channels: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    sharded: list[str] = Field(default_factory=list)
    streams: list[str] = Field(default_factory=list)
    group: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        kinds = [k for k in ("channels", "patterns", "sharded", "streams") if getattr(self, k)]
        if not kinds:
            raise ValueError("name what to read: channels, patterns, sharded or streams")
        if "sharded" in kinds and len(kinds) > 1:
            raise ValueError(
                "sharded channels go in a route of their own (Redis has no sharded patterns)"
            )
        if "streams" in kinds and len(kinds) > 1:
            raise ValueError("streams go in a route of their own")
        if self.streams and not self.group:
            raise ValueError('streams need group = "...": the consumer group to read with')
        if self.group and not self.streams:
            raise ValueError("group is for streams")
        # Streams too: "src:{0..1}" once made a literal key and a group on every master.
        for kind in ("channels", "sharded", "streams"):
            object.__setattr__(self, kind, expand_channels(getattr(self, kind)))
        return self


class ToConfig(BaseModel):
    """Where a route writes: one of stream, channel or list (a name template)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    target: str = "source"
    stream: str | None = None
    channel: str | None = None
    list_: str | None = Field(default=None, alias="list")
    # stream: XADD MAXLEN ~ n; list: LTRIM to the newest n after each push.
    maxlen: int | None = Field(default=None, gt=0)
    # channel: SPUBLISH instead of PUBLISH, for subscribers that use SSUBSCRIBE.
    sharded: bool = False
    # stream: add the writing node's id and its ownership epoch to every entry.
    node_fields: bool = False
    # stream sinks of stream routes across deployments (issue 20): stamp each entry with
    # where it was first written (origin, origin-id) and the bridges it crossed (hops);
    # skip entries that came from the target; drop those past max_hops (counted).
    origin: bool = False
    max_hops: int = Field(default=8, ge=1, le=64)
    # channel sinks of pub/sub routes across deployments (issue 20): "suppress" drops
    # what this fleet published into the channels this route reads (the other
    # direction's copies, forwarding/echoes.py), so that the same channel names can be
    # bridged both ways; both directions must say so.
    echo: Literal["forward", "suppress"] = "forward"
    # channel and list sinks of stream routes: what an entry becomes: one field's value
    # ("field", the field named by field) or the whole entry as a JSON object ("json").
    entry: Literal["field", "json"] = "field"
    field: str = Field(default="payload", min_length=1)
    wait: WaitConfig | None = None  # WAIT after each batch (per master on a cluster)

    def entry_choices(self) -> set[str]:
        """``entry`` and ``field`` where they differ from their defaults. By value, not
        by what was written: a route dumped and validated again (a reload compares
        routes) names every field, defaults too."""
        return {
            name
            for name, default in (("entry", "field"), ("field", "payload"))
            if getattr(self, name) != default
        }

    @model_validator(mode="after")
    def _check(self) -> Self:
        named = (("stream", self.stream), ("channel", self.channel), ("list", self.list_))
        given = [k for k, v in named if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of stream, channel or list (given: {given or 'none'})"
            )
        if self.maxlen is not None and self.channel is not None:
            raise ValueError("maxlen is for stream and list sinks: a channel keeps nothing")
        if self.sharded and self.channel is None:
            raise ValueError("sharded is for channel sinks (SPUBLISH)")
        if self.node_fields and self.stream is None:
            raise ValueError("node_fields is for stream sinks")
        if self.max_hops != 8 and not self.origin:
            raise ValueError("max_hops is for origin = true (a bridge's hop limit)")
        if self.echo == "suppress" and self.channel is None:
            raise ValueError(
                'echo = "suppress" is for channel sinks (the echoes of a pub/sub bridge)'
            )
        if self.origin and self.stream is None:
            raise ValueError(
                "origin is for stream sinks (pub/sub messages carry no fields to stamp)"
            )
        chosen = self.entry_choices()
        if chosen and self.stream is not None:
            raise ValueError(
                f"{' and '.join(sorted(chosen))}: for channel and list sinks; a stream sink "
                "copies every field of an entry"
            )
        if self.entry == "json" and "field" in chosen:
            raise ValueError('field names what to send with entry = "field", not "json"')
        try:
            compile_template(self.name_template)
        except TemplateError as exc:
            raise ValueError(f"{given[0]}: {exc}") from None
        return self

    @property
    def kind(self) -> SinkKind:
        if self.stream is not None:
            return SinkKind.STREAM
        return SinkKind.CHANNEL if self.channel is not None else SinkKind.LIST

    @property
    def name_template(self) -> str:
        return self.stream or self.channel or self.list_ or ""


_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    name: str
    from_: FromConfig = Field(alias="from")
    to: ToConfig
    max_in_flight: int = Field(default=20_000, ge=1, le=1_000_000)
    heartbeat: float = Field(default=1.0, gt=0, le=60)
    # How long the sink may leave a write unanswered before its connection counts as lost.
    sink_timeout: float = Field(default=5.0, gt=0, le=300)
    overflow: Literal["block", "drop-oldest"] = "block"
    buffer: int = Field(default=100_000, ge=1, le=10_000_000)
    # Messages (pub/sub payloads; stream entries, all fields) larger than this are not
    # forwarded: dropped and counted, or (oversize = "dead-letter") written to the
    # dead_letter stream (a name template on the route's target) and counted. Stream
    # entries the sink refuses for good (3 times, not transiently) go there too; without
    # dead_letter they stay pending. Nothing is acknowledged unwritten and uncounted.
    max_message_bytes: int | None = Field(default=None, ge=1, le=512 * 1024 * 1024)
    oversize: Literal["drop", "dead-letter"] = "drop"
    dead_letter: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        # Said in words: the raw regex was what a user saw (issue 14).
        if not _ROUTE_NAME.match(name):
            raise ValueError(
                f"{name!r}: a route name is 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit (it names metrics, znodes and logs)"
            )
        return name

    @model_validator(mode="after")
    def _oversize(self) -> Self:
        if self.oversize == "dead-letter" and not self.dead_letter:
            raise ValueError('oversize = "dead-letter" needs dead_letter = "stream name template"')
        if self.oversize == "dead-letter" and self.max_message_bytes is None:
            raise ValueError(
                'oversize = "dead-letter" applies to what max_message_bytes refuses: set it'
            )
        if self.to.wait is not None and self.to.wait.timeout >= self.sink_timeout:
            raise ValueError("to.wait.timeout must be below sink_timeout (WAIT holds the sink)")
        if self.dead_letter is not None:
            try:
                compile_template(self.dead_letter)
            except TemplateError as exc:
                raise ValueError(f"dead_letter: {exc}") from None
        return self

    # Set by ForwarderConfig: whether the route writes into the deployment it reads
    # (its target is the one it reads, or shares an address with it); the pub/sub loop
    # then watches for its own output (forwarding/pubsub.py).
    _writes_to_source: bool = PrivateAttr(default=False)
    # Set by ForwarderConfig: the identities of the deployments it reads and writes
    # (bridges.identities): what to.origin stamps and compares.
    _identities: tuple[str, str] | None = PrivateAttr(default=None)

    @property
    def origin_names(self) -> tuple[str, str]:
        """The deployment it reads and the one it writes, as a bridge names them."""
        return self._identities or (self.from_.deployment, self.to.target)

    @property
    def writes_to_source(self) -> bool:
        """Whether the route writes into the deployment it reads."""
        return self.to.target == self.from_.deployment or self._writes_to_source

    @model_validator(mode="after")
    def _entry(self) -> Self:
        chosen = self.to.entry_choices()
        if chosen and not self.from_.streams:
            raise ValueError(
                f"to.{' and to.'.join(sorted(chosen))}: for routes that read streams (a "
                "pub/sub message is sent as it is)"
            )
        return self

    @model_validator(mode="after")
    def _origin(self) -> Self:
        if self.to.origin and not self.from_.streams:
            raise Located(
                ("to", "origin"),
                f"route {self.name!r}: origin stamps stream entries; a pub/sub route has "
                "none to stamp",
            )
        return self

    @model_validator(mode="after")
    def _echo(self) -> Self:
        if self.to.echo == "suppress" and self.from_.streams:
            raise Located(
                ("to", "echo"),
                f"route {self.name!r}: echo suppression is for pub/sub routes; a stream "
                "route stamps its entries instead (to.origin = true)",
            )
        if self.to.echo == "suppress" and self.writes_to_source:
            raise Located(
                ("to", "echo"),
                f"route {self.name!r}: echo suppression is for bridges between two "
                "deployments; this route writes into the one it reads",
            )
        return self

    @model_validator(mode="after")
    def _no_loop(self) -> Self:
        """A route that writes back into what it reads would forward forever."""
        if self.to.target == self.from_.deployment:
            loop_check(self, shards=None)
        return self

    # A hot standby for each of the route's tasks (issue 15): another node subscribes
    # all along and keeps what it receives, so that a takeover loses no message. Unset:
    # on for pub/sub routes (channels, patterns, sharded) when [coordination] is set.
    standby: bool | None = None

    @model_validator(mode="after")
    def _standby(self) -> Self:
        if self.standby is True and self.from_.streams:
            raise Located(
                ("standby",),
                f"route {self.name!r}: standby is for pub/sub routes; streams keep their "
                "entries in Redis until acknowledged and need no standby",
            )
        return self

    @property
    def wants_standby(self) -> bool:
        """Whether the route's tasks get a standby when the node is coordinated (alone,
        no node could stand by): pub/sub routes, unless ``standby = false``."""
        return self.standby is not False and not self.from_.streams
