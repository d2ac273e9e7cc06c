"""The deployments a config names, one identity each, and the check that two routes
do not bridge the same names both ways into a loop (issue 20). Pure.

Two tables are one deployment when they share an address, except Sentinel tables
that share sentinels to monitor different masters (one set of sentinels often watches
several deployments). A deployment's identity is the first of its names in the config
([source], then the targets in order): the name a bridge stamps as an entry's origin,
so that two names for one deployment cannot disagree about where an entry began.

The check groups routes by (identity read, identity written) and compares only groups
that face each other: one way, or many routes within one deployment, cost nothing
(a pairwise pass over 1,000 routes took 3.4 s at every load, reload and status).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from redis_forwarder.globs import Overlap
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.route_loops import feeds, written_names
from redis_forwarder.templates import compile_template
from redis_forwarder.validation import Located

if TYPE_CHECKING:
    from redis_forwarder.config import SourceConfig
    from redis_forwarder.routes import RouteConfig


def identities(tables: Mapping[str, SourceConfig]) -> dict[str, str]:
    """Each name -> its deployment's identity (``tables`` in config order): the
    table's ``name`` when given (what every fleet bridging it must agree on), else its
    first name in this config."""
    seen: list[tuple[str, SourceConfig, set[Address]]] = []
    found: dict[str, str] = {}
    for name, table in tables.items():
        addresses = {Address.parse(a) for a in table.addresses}
        same = next((i for i, other, known in seen if _same(table, addresses, other, known)), None)
        identity = same if same is not None else table.name or name
        if same is not None and table.name not in (None, same):
            raise Located(
                _where(name),
                f"{_table(name)} names its deployment {table.name!r}, but it shares an "
                f"address with a table before it, whose deployment is called {same!r}: one "
                "deployment has one name; give the same name (or name the first table)",
            )
        if same is None and any(identity == i for i, _t, _a in seen):
            raise Located(
                _where(name),
                f"{_table(name)} is another deployment than the one called {identity!r}, "
                "and cannot be called so too: each deployment needs a name of its own "
                "(set name = ... on the table)",
            )
        found[name] = identity
        seen.append((identity, table, addresses))
    return found


def _where(name: str) -> tuple[str, ...]:
    return ("source", "name") if name == "source" else ("targets", name, "name")


def _table(name: str) -> str:
    return "[source]" if name == "source" else f"[targets.{name}]"


def _same(
    one: SourceConfig, addresses: set[Address], other: SourceConfig, known: set[Address]
) -> bool:
    if not addresses & known:
        return False
    sentinels = DeploymentKind.SENTINEL
    if one.kind is sentinels and other.kind is sentinels:
        return bool(set(one.masters) & set(other.masters))
    return True


def bridge_loop_check(
    routes: list[RouteConfig], identity: Mapping[str, str], shards: Mapping[str, list[str] | None]
) -> None:
    """Refuse two routes that carry the same names between two deployments, one each
    way (each would forward the other's output back, forever), unless both stamp
    origins (streams, ``to.origin``); also when it cannot be proven either way (too
    many names, an unknown {shard}): no run-time guard watches a loop across
    deployments. ``shards``: each name's shard names when known (Sentinel masters)."""
    groups: dict[tuple[str, str], list[tuple[int, RouteConfig]]] = {}
    for index, route in enumerate(routes):
        way = identity[route.from_.deployment], identity[route.to.target]
        if way[0] != way[1]:
            groups.setdefault(way, []).append((index, route))
    for (a, b), there in groups.items():
        if a > b:
            continue  # each facing pair once
        for i, one in there:
            for j, other in groups.get((b, a), ()):
                first, second = (one, other) if i < j else (other, one)  # config order
                _check_prefixes((i, one), (j, other), shards)
                _check_pair(max(i, j), first, second, shards)


def _check_prefixes(
    one: tuple[int, RouteConfig],
    other: tuple[int, RouteConfig],
    shards: Mapping[str, list[str] | None],
) -> None:
    """Refuse a route that reads back what the other direction writes under an
    {origin} prefix. The prefix promises that a name says where its messages began and
    that they never go back there: a route reading ``west.*`` on east and writing into
    west breaks it (and if west reads ``east.west.*`` in turn, each round adds a
    prefix, without end). One way is enough here, where the pair check needs both."""
    if one[1].to.origin and other[1].to.origin:
        return  # streams: each skips entries that began at its target
    for (_, writer), (index, reader) in ((one, other), (other, one)):
        if "origin" not in compile_template(writer.to.name_template).fields:
            continue
        verdict, (kind, name) = feeds(writer, reader, shards[writer.from_.deployment])
        if verdict is not Overlap.NO:
            proven = verdict is Overlap.YES
            raise Located(("route", index, "from"), _echo(writer, reader, kind, name, proven))


def _echo(writer: RouteConfig, reader: RouteConfig, kind: str, name: str, proven: bool) -> str:
    names = written_names(writer)
    matches = "matches" if proven else (
        "may match (it cannot be proven either way: too many names, or an unknown {shard})"
    )  # fmt: skip
    return (
        f"routes {writer.name!r} and {reader.name!r} would carry messages back where they "
        f"began: {writer.name!r} writes {names!r} into {writer.to.target!r} ({{origin}} = "
        f"{writer.origin_names[0]!r}); {reader.name!r} reads {kind} {name!r} there, which "
        f"{matches} those names, and writes them into {reader.to.target!r}, home again "
        "under another name (and a prefix more each round if they are read again). "
        f"Make {reader.name!r} read a pattern that does not match {names!r} (or name its "
        "channels), so that each side forwards only what began there"
    )


def _check_pair(
    index: int, one: RouteConfig, other: RouteConfig, shards: Mapping[str, list[str] | None]
) -> None:
    if one.to.origin and other.to.origin:
        return  # each skips what came from the other side
    if one.to.echo == "suppress" and other.to.echo == "suppress":
        return  # each drops the other's copies (forwarding/echoes.py)
    there, named = feeds(one, other, shards[one.from_.deployment])
    back, _ = feeds(other, one, shards[other.from_.deployment])
    if Overlap.NO in (there, back):
        return
    proven = there is Overlap.YES and back is Overlap.YES
    what = f"bridge {named[0]} {named[1]!r}" if proven else "may bridge the same names"
    raise Located(
        ("route", index, "from"),
        f"routes {one.name!r} and {other.name!r} {what} both ways between "
        f"{one.from_.deployment!r} and {one.to.target!r}"
        + ("" if proven else " (it cannot be proven either way: too many names, or an "
           "unknown {shard})")
        + ": each would forward the other's output back, forever. Streams: set "
        "to.origin = true on both (each skips what came from the other side); pub/sub: "
        'set to.echo = "suppress" on both (each drops the copies the other published), '
        "or carry different names each way (a prefix on one side)",
    )  # fmt: skip
