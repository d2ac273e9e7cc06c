"""Whether a route can write into what it reads on its own deployment (it would
forward its own output forever: issue 14). The config check (``loop_check``): what the
route reads that its sink kind reaches, and what each template field can hold, matched
by :mod:`redis_forwarder.globs`. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis_forwarder.globs import (
    MAX_TEMPLATE_CHOICES,
    Fields,
    Glob,
    Overlap,
    literal,
    parse_glob,
    written_into,
)
from redis_forwarder.sink.commands import SinkKind
from redis_forwarder.templates import compile_template
from redis_forwarder.validation import Located

if TYPE_CHECKING:
    from redis_forwarder.routes import RouteConfig


def _read_by_sink(route: RouteConfig, reader: RouteConfig | None = None) -> list[tuple[str, str]]:
    """What ``reader`` (the route itself by default) reads that the route's sink could
    write into, as (kind, name): a stream sink feeds stream reads, PUBLISH feeds
    SUBSCRIBE and PSUBSCRIBE, SPUBLISH feeds SSUBSCRIBE; nothing reads a list."""
    read = (reader or route).from_
    if route.to.kind is SinkKind.STREAM:
        return [("stream", s) for s in read.streams]
    if route.to.kind is SinkKind.CHANNEL and route.to.sharded:
        return [("sharded channel", c) for c in read.sharded]
    if route.to.kind is SinkKind.CHANNEL:
        return [("channel", c) for c in read.channels] + [("pattern", p) for p in read.patterns]
    return []


def feeds(
    writer: RouteConfig, reader: RouteConfig, shards: list[str] | None
) -> tuple[Overlap, tuple[str, str]]:
    """Whether ``writer`` writes into what ``reader`` reads, if the two meet on one
    deployment (the caller knows): YES with the (kind, name) it writes into, NO, or
    UNKNOWN when it cannot be proven either way (too many names, an unknown {shard}).
    ``shards``: the shard names of the deployment ``writer`` reads, when known."""
    read = _read_by_sink(writer, reader)
    if not read:
        return Overlap.NO, ("", "")
    template = compile_template(writer.to.name_template)
    verdict, index = written_into(
        [_glob(k, n) for k, n in read], template, template_fields(writer, shards)
    )
    return verdict, read[index] if verdict is Overlap.YES else read[0]


def _glob(kind: str, name: str) -> Glob:
    return parse_glob(name.encode()) if kind == "pattern" else literal(name.encode())


def template_fields(route: RouteConfig, shards: list[str] | None) -> Fields:
    """What each template field may hold for ``route``; ``shards``: the source's shard
    names, None when they are not known before the run (cluster, standalone)."""
    read = route.from_
    names = (*read.channels, *read.sharded, *read.streams)
    channels: list[Glob] | None = None  # more than the matcher enumerates: "anything"
    if len(names) + len(read.patterns) <= MAX_TEMPLATE_CHOICES:
        channels = [literal(c.encode()) for c in names]
        channels += [parse_glob(p.encode()) for p in read.patterns]
    # A message from a channel subscription (or a stream entry) renders {pattern} empty.
    patterns = [literal(p.encode()) for p in read.patterns]
    if read.channels or not read.patterns:
        patterns.append(literal(b""))
    return {
        "channel": channels,
        "pattern": patterns,
        "route": [literal(route.name.encode())],
        "shard": None if shards is None else [literal(s.encode()) for s in shards],
        # Exact, unlike an unknown {shard}: the identity of the deployment read is fixed
        # per route (bridges.identities), so {origin}.{channel} is compared by its prefix.
        "origin": [literal(route.origin_names[0].encode())],
    }


def written_names(route: RouteConfig) -> str:
    """The names the route writes, as a Redis glob for an error message: its template
    with {route} and {origin} filled in, and a ``*`` for each field that varies."""
    known = {"route": route.name, "origin": route.origin_names[0]}
    pieces: list[str] = []
    for part in compile_template(route.to.name_template).parts:
        if isinstance(part, bytes):
            pieces.append(_escape(part.decode(errors="replace")))
        elif part in known:
            pieces.append(_escape(known[part]))
        elif not pieces or pieces[-1] != "*":  # "**" says no more than "*"
            pieces.append("*")
    return "".join(pieces)


def _escape(name: str) -> str:
    return "".join(f"\\{c}" if c in "*?[\\" else c for c in name)


def loop_check(route: RouteConfig, shards: list[str] | None) -> None:
    """Raise (at ``to``) when a name the route writes on its own deployment is one it
    reads: proven from the template's literal parts against the globs read. What cannot
    be proven here (an unknown {shard}, too many names) is left to the run-time guard."""
    read = _read_by_sink(route)
    if not read:
        return
    template = compile_template(route.to.name_template)
    fields = template_fields(route, shards)
    verdict, index = written_into([_glob(k, n) for k, n in read], template, fields)
    if verdict is Overlap.YES:
        kind, name = read[index]
        raise Located(
            ("to", str(route.to.kind)),
            f"route {route.name!r} reads {kind} {name!r} and writes "
            f"{route.to.kind} = {template.text!r} on the same deployment (target "
            f"{route.to.target!r}): it can write into what it reads, and would forward its "
            "own output forever; write under a name the route does not read (another "
            "prefix), or to another deployment",
        )
