"""``redis-forwarder topology``: the deployment's shards now, or every change (--watch)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import click

from redis_forwarder.errors import UsageError
from redis_forwarder.model import Address, DeploymentKind, Topology
from redis_forwarder.settings import (
    DEFAULT_SOCKET_TIMEOUT,
    Credentials,
    read_password,
)
from redis_forwarder.topology import DeploymentSettings, TopologyWatcher, discover
from redis_forwarder.topology.watcher import DEFAULT_INTERVAL


def topology_json(topology: Topology) -> dict[str, Any]:
    """The stable JSON shape (docs/topology.md)."""
    shards = []
    for shard in topology.shards:
        entry: dict[str, Any] = {
            "id": shard.id,
            "master": str(shard.master),
            "replicas": [str(r) for r in shard.replicas],
        }
        if topology.kind is DeploymentKind.CLUSTER:
            entry["slots"] = [list(r) for r in shard.slots]
        entry["learned"] = shard.learned
        shards.append(entry)
    return {"kind": str(topology.kind), "shards": shards}


def _addresses(values: tuple[str, ...], option: str) -> tuple[Address, ...]:
    try:
        return tuple(Address.parse(v) for text in values for v in text.split(",") if v)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def build_settings(
    config: Path | None,
    spec: Path | None,
    sentinels: tuple[str, ...],
    masters: tuple[str, ...],
    cluster: tuple[str, ...],
    standalone: str | None,
    credentials: tuple[str | None, str | None, str | None, str | None],
    socket_timeout: float,
) -> DeploymentSettings:
    given = [
        name
        for name, value in (
            ("--config", config),
            ("--spec", spec),
            ("--sentinel", sentinels),
            ("--cluster", cluster),
            ("--standalone", standalone),
        )
        if value
    ]
    if len(given) != 1:
        raise UsageError(
            "name the deployment once: --config FILE, --spec SPEC, --sentinel ADDR --master "
            f"NAME, --cluster ADDR or --standalone ADDR (given: {', '.join(given) or 'none'})"
        )
    if masters and not sentinels:
        raise UsageError("--master goes with --sentinel")
    # The config (pydantic), the lab's specs and rich are imported only by the branch
    # that needs them: `topology --standalone ADDR --json` pays for none of them.
    if config is not None:
        from redis_forwarder.config import load_config

        return load_config(config).source.settings()
    username, password_env, sentinel_username, sentinel_password_env = credentials
    redis_auth = Credentials(
        username, read_password(env=password_env, file=None, what="--password-env")
    )
    sentinel_auth = Credentials(
        sentinel_username,
        read_password(env=sentinel_password_env, file=None, what="--sentinel-password-env"),
    )
    common: dict[str, Any] = {
        "redis": redis_auth,
        "sentinel": sentinel_auth,
        "socket_timeout": socket_timeout,
    }
    if spec is not None:
        from redis_forwarder.lab.spec import load_spec, settings_from_spec

        return settings_from_spec(load_spec(spec), **common)
    if sentinels:
        if not masters:
            raise UsageError("--sentinel needs --master NAME for each master to follow")
        return DeploymentSettings(
            DeploymentKind.SENTINEL, _addresses(sentinels, "--sentinel"), masters, **common
        )
    if cluster:
        return DeploymentSettings(
            DeploymentKind.CLUSTER, _addresses(cluster, "--cluster"), **common
        )
    assert standalone is not None
    return DeploymentSettings(
        DeploymentKind.STANDALONE, _addresses((standalone,), "--standalone"), **common
    )


@click.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Forwarder config: its [source].",
)
@click.option(
    "--spec",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A topology spec (a lab deployment).",
)
@click.option(
    "--sentinel",
    "sentinels",
    multiple=True,
    metavar="ADDR",
    help="A sentinel; repeat or comma-separate.",
)
@click.option(
    "--master", "masters", multiple=True, metavar="NAME", help="A monitored master name; repeat."
)
@click.option(
    "--cluster",
    multiple=True,
    metavar="ADDR",
    help="A cluster seed node; repeat or comma-separate.",
)
@click.option("--standalone", metavar="ADDR", help="A standalone server.")
@click.option("--username", help="ACL user for Redis nodes.")
@click.option(
    "--password-env", metavar="VAR", help="Environment variable holding the Redis password."
)
@click.option("--sentinel-username", help="ACL user for sentinels.")
@click.option(
    "--sentinel-password-env",
    metavar="VAR",
    help="Environment variable holding the sentinel password.",
)
@click.option(
    "--timeout",
    "socket_timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=DEFAULT_SOCKET_TIMEOUT,
    show_default=True,
    help="Seconds per server answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option("--watch", is_flag=True, help="Keep running; print one JSON line per change.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=DEFAULT_INTERVAL,
    show_default=True,
    help="--watch: seconds between periodic refreshes.",
)
def topology(
    config: Path | None,
    spec: Path | None,
    sentinels: tuple[str, ...],
    masters: tuple[str, ...],
    cluster: tuple[str, ...],
    standalone: str | None,
    username: str | None,
    password_env: str | None,
    sentinel_username: str | None,
    sentinel_password_env: str | None,
    socket_timeout: float,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """Show the deployment's shards: masters, replicas, slots, and how they were learned.

    Exit status 0; 2 for bad arguments or config; 5 when the deployment cannot be reached
    or is not what was named (wrong password, a seed of another kind).
    """
    settings = build_settings(
        config,
        spec,
        sentinels,
        masters,
        cluster,
        standalone,
        (username, password_env, sentinel_username, sentinel_password_env),
        socket_timeout,
    )
    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # the normal way to end a watch
            asyncio.run(_watch(settings, interval))
        return
    found = discover(settings)
    if as_json:
        click.echo(json.dumps(topology_json(found), indent=2))
    else:
        print_topology(found)


async def _watch(settings: DeploymentSettings, interval: float) -> None:
    async with TopologyWatcher(settings, interval) as watcher:
        snapshot = {
            "event": "snapshot",
            **topology_json(watcher.current),
            "at": round(time.time(), 3),
        }
        click.echo(json.dumps(snapshot))
        async for update in watcher.updates():
            for change in update.changes:
                click.echo(json.dumps(change.to_json()))


def print_topology(found: Topology) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title=f"{found.kind} deployment: {len(found.shards)} shards")
    columns = ["shard", "master", "replicas"]
    if found.kind is DeploymentKind.CLUSTER:
        columns.append("slots")
    for column in [*columns, "learned"]:
        table.add_column(column)
    for shard in found.shards:
        row = [shard.id, str(shard.master), ", ".join(str(r) for r in shard.replicas)]
        if found.kind is DeploymentKind.CLUSTER:
            row.append(" ".join(f"{a}-{b}" for a, b in shard.slots))
        table.add_row(*row, shard.learned)
    out.print(table)
