"""The forwarder nodes of a spec (``[forwarders]``): each a ``redis-forwarder run``
process with a config the lab writes, reading the spec's deployment and sharing the
spec's routes through its ZooKeeper. Pure: configs and plans, no processes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis_forwarder.lab.spec import ForwarderNodeSpec, TopologySpec
from redis_forwarder.lab.tls import LabTls
from redis_forwarder.model import DeploymentKind

CONFIG_FILE = "forwarder.toml"


def to_toml(document: dict[str, Any]) -> str:
    """TOML for a forwarder config: top-level tables, arrays of tables, and values
    (strings, numbers, booleans, lists, inline tables). JSON's string escapes are
    TOML's too."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines: list[str] = []
    for key, section in document.items():
        items = section if isinstance(section, list) else [section]
        for item in items:
            lines.append(f"[[{key}]]" if isinstance(section, list) else f"[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in item.items() if v is not None]
            lines.append("")
    return "\n".join(lines)


def source_section(spec: TopologySpec) -> dict[str, Any]:
    """The ``[source]`` that reads the spec's deployment: on Sentinel, every master, or
    those ``[forwarders] source_masters`` names; called ``source_name`` by bridges."""
    forwarders = spec.forwarders
    named = {"name": forwarders.source_name} if forwarders and forwarders.source_name else {}
    if spec.kind is DeploymentKind.SENTINEL:
        chosen = forwarders.source_masters if forwarders else None
        return {**named, **_sentinel_table(spec, chosen or [s.name for s in spec.shards])}
    return {**named, "kind": str(spec.kind), "addresses": [str(s.master) for s in spec.shards]}


def _sentinel_table(spec: TopologySpec, masters: Sequence[str]) -> dict[str, Any]:
    assert spec.sentinel is not None
    return {
        "kind": "sentinel",
        "addresses": [str(a) for a in spec.sentinel.addresses],
        "masters": list(masters),
    }


def target_sections(spec: TopologySpec) -> dict[str, dict[str, Any]]:
    """Each ``[targets.NAME]``: the ``[[sink]]`` servers, and the deployments of
    ``[forwarders] target_masters`` (the lab's sentinels, other masters)."""
    targets = {s.name: {"kind": "standalone", "addresses": [str(s.address)]} for s in spec.sinks}
    for name, masters in (spec.forwarders.target_masters if spec.forwarders else {}).items():
        targets[name] = _sentinel_table(spec, masters)
    return targets


def node_config(
    spec: TopologySpec, node: ForwarderNodeSpec, tls: LabTls | None = None
) -> dict[str, Any]:
    """``tls``: a TLS lab's certificates, for the source and the sinks."""
    forwarders, zookeeper = spec.forwarders, spec.zookeeper
    assert forwarders is not None and zookeeper is not None
    tls_section = {"tls": tls.forwarder_section()} if tls is not None else {}
    document: dict[str, Any] = {
        "source": {**source_section(spec), **tls_section},
        "node": {"metrics": str(node.metrics), "topology_interval": 0.5},
        "coordination": {
            "zookeeper": ",".join(str(a) for a in zookeeper.addresses),
            "root": forwarders.root,
            "session_timeout": forwarders.session_timeout,
        },
        "route": [dict(route) for route in forwarders.routes],
    }
    for name, table in target_sections(spec).items():
        document[f"targets.{name}"] = {**table, **tls_section}
    return document


def node_argv(config_path: Path, node: ForwarderNodeSpec) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "redis_forwarder", "--log-level", "info",
        "run", "--config", str(config_path), "--node-id", node.id,
    )  # fmt: skip
