"""The checks of a spec's deployments as its forwarder nodes see them: the ``[[sink]]``
servers and ``[forwarders]`` ``source_masters`` / ``target_masters`` (one set of
sentinels watching several deployments, issue 20's bridges), and the routes' targets
and deployments read. Apart from ``spec`` to keep each module one job. Pure."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from redis_forwarder.model import DeploymentKind

if TYPE_CHECKING:
    from redis_forwarder.lab.spec import ForwardersSpec, TopologySpec

TARGET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")  # a [[sink]]'s or target's name


def check_target_masters(forwarders: ForwardersSpec) -> None:
    """Each deployment its own masters: a Sentinel table sharing a master with another
    is the same deployment (``bridges.identities``), and a bridge between them a loop."""
    owner: dict[str, str] = {}
    named = [("source_masters", forwarders.source_masters or ())]
    for name, masters in forwarders.target_masters.items():
        if not TARGET_NAME.match(name) or name == "source":
            raise ValueError(
                f"target_masters: {name!r} must be 1-32 letters, digits, '_' or '-', starting "
                'with a letter, and not "source" (it becomes [targets.NAME] in the config)'
            )
        if not masters:
            raise ValueError(f"target_masters.{name}: name at least one master")
        named.append((f"target_masters.{name}", masters))
    for key, masters in named:
        for master in masters:
            if master in owner:
                raise ValueError(
                    f"master {master!r} is named by {owner[master]} and {key}: two tables "
                    "watching one master are one deployment; give each deployment masters "
                    "of its own"
                )
            owner[master] = key


def check_sinks(spec: TopologySpec) -> None:
    names = [s.name for s in spec.sinks]
    if len(set(names)) != len(names) or "source" in names:
        raise ValueError(f'sink names must be unique and not "source": {names}')
    forwarders = spec.forwarders
    deployments = list(forwarders.target_masters) if forwarders else []
    shared = sorted(set(names) & set(deployments))
    if shared:
        raise ValueError(f"{shared}: both a [[sink]] and a target_masters name; rename one")
    known = f"the spec's [[sink]] tables name {names or 'none'}" + (
        f" and [forwarders] target_masters {deployments}" if deployments else ""
    )
    for route in forwarders.routes if forwarders else ():
        name = route.get("name", "?") if isinstance(route, dict) else "?"
        to = route.get("to") if isinstance(route, dict) else None
        read = route.get("from") if isinstance(route, dict) else None
        for what, table, key in (("writes to target", to, "target"), ("reads", read, "deployment")):
            target = table.get(key, "source") if isinstance(table, dict) else "source"
            if target != "source" and target not in names + deployments:
                raise ValueError(
                    f'route {name!r} {what} {target!r}; {known} (or use the deployment: "source")'
                )


def check_deployments(spec: TopologySpec) -> None:
    """``source_masters`` and ``target_masters`` name masters of a Sentinel spec."""
    forwarders = spec.forwarders
    if forwarders is None or (forwarders.source_masters is None and not forwarders.target_masters):
        return
    if spec.kind is not DeploymentKind.SENTINEL:
        raise ValueError(
            "[forwarders] source_masters and target_masters name masters that the spec's "
            f'sentinels watch: for kind = "sentinel", not {str(spec.kind)!r}'
        )
    shards = [s.name for s in spec.shards]
    named = {"source_masters": forwarders.source_masters or ()}
    named.update({f"target_masters.{k}": v for k, v in forwarders.target_masters.items()})
    for key, masters in named.items():
        unknown = [m for m in masters if m not in shards]
        if unknown:
            raise ValueError(
                f"[forwarders] {key} names {unknown}, not masters of this spec (its "
                f"[[shard]] names: {shards})"
            )
    if forwarders.source_masters is None:
        raise ValueError(
            "[forwarders] target_masters: give source_masters too, the masters [source] "
            "watches (by default it watches every shard, the targets' masters too: one "
            "deployment)"
        )
