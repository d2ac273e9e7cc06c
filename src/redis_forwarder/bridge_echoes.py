"""Which routes suppress each other's echoes, and so run together (issue 20). Pure.

Routes with ``to.echo = "suppress"`` between the same two deployments, either way,
share a node's two ledgers for that pair (``forwarding/echoes.py``): they are one
group, placed on one node by the controller (``coordination/together.py``). A
suppressing route that no suppressing route faces would wait for echoes nobody drops
(and could hide a message for ``ECHO_TTL``): refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from redis_forwarder.validation import Located

if TYPE_CHECKING:
    from redis_forwarder.routes import RouteConfig


def echo_groups(routes: list[RouteConfig], identity: Mapping[str, str]) -> dict[str, str]:
    """Route name -> its group's name ("echo:A|B", the two deployments' identities)."""
    ways: dict[tuple[str, str], list[tuple[int, RouteConfig]]] = {}
    for index, route in enumerate(routes):
        if route.to.echo == "suppress":
            way = identity[route.from_.deployment], identity[route.to.target]
            if way[0] == way[1]:
                raise Located(
                    ("route", index, "to", "echo"),
                    f"route {route.name!r} reads and writes one deployment ({way[0]!r}): "
                    'echo = "suppress" is for bridges between two deployments',
                )
            ways.setdefault(way, []).append((index, route))
    groups: dict[str, str] = {}
    for (a, b), there in ways.items():
        if (b, a) not in ways:
            index, route = there[0]
            raise Located(
                ("route", index, "to", "echo"),
                f'route {route.name!r} sets echo = "suppress", but no route reads '
                f"{route.to.target!r} into {route.from_.deployment!r} with it: nothing "
                "would hear its copies back; set it on the route of the other direction "
                'too, or remove it (echo = "forward")',
            )
        name = "echo:" + "|".join(sorted((a, b)))
        groups.update({route.name: name for _index, route in there})
    return groups
