"""The fleet commands: ``status``, ``drain`` / ``undrain``, ``pause`` / ``resume``,
``rebalance``. Each reads the config's ``[coordination]`` and talks to ZooKeeper; the
controller acts on what they write within a cycle (its watches wake it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from redis_forwarder.errors import UsageError

# The config (pydantic), ZooKeeper (kazoo) and rich are imported when a command runs, not
# when it is declared: `status --help` and the other commands' help need none of them.
if TYPE_CHECKING:
    from redis_forwarder.config import CoordinationConfig
    from redis_forwarder.coordination.fleet_client import FleetClient
    from redis_forwarder.coordination.paths import Paths

config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The forwarder config (its [coordination] says where the fleet is).",
)


def _coordination(config_path: Path) -> CoordinationConfig:
    from redis_forwarder.config import load_config

    config = load_config(config_path)
    if config.coordination is None:
        raise UsageError(
            f"{config_path} has no [coordination] section: a node without one runs alone, "
            "and there is no fleet to show or steer"
        )
    return config.coordination


def _fleet(config_path: Path) -> tuple[FleetClient, Paths]:
    from redis_forwarder.coordination.fleet_client import FleetClient
    from redis_forwarder.coordination.paths import Paths

    coordination = _coordination(config_path)
    client = FleetClient(coordination.zookeeper, credentials=coordination.credentials())
    return client, Paths(coordination.root)


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (docs/cli.md).")
def status(config_path: Path, as_json: bool) -> None:
    """Members, controller, assignment, and each task's owner, standby, epoch and
    progress."""
    from redis_forwarder.config import load_config
    from redis_forwarder.coordination.fleet import fleet_status

    client, paths = _fleet(config_path)
    with client:
        document = fleet_status(client, paths, load_config(config_path).cut_off_after)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    _print_status(document)


def _print_status(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped: keep shard ids whole
    out.print(f"controller: {document['controller'] or 'none'}")
    members = Table(title="members")
    for column in ("id", "host", "pid", "version", "drained", "config", "cut off from"):
        members.add_column(column)
    for m in document["members"]:
        config = str(m.get("config", ""))[:8] + (" (drift)" if m.get("config_drift") else "")
        members.add_row(
            str(m.get("id")),
            str(m.get("host")),
            str(m.get("pid")),
            str(m.get("version")),
            "yes" if m.get("drained") else "",
            config,
            ", ".join(m.get("cut_off") or ()),
        )
    out.print(members)
    tasks = Table(title=f"tasks (assignment {document['assignment_serial']})")
    for column in (
        "route", "shard", "assigned", "owner", "standby", "epoch", "forwarded", "msg/s",
        "lag ms", "last message",
    ):  # fmt: skip
        tasks.add_column(column)
    now = time.time()
    for t in document["tasks"]:
        last = t["last_message_at"]
        tasks.add_row(
            t["route"] + (" (paused)" if t["route"] in document["paused"] else ""),
            t["shard"],
            str(t["assigned"] or "-"),
            str(t["owner"] or "-") + ("" if t["running"] else " (not running)"),
            _standby_cell(t),
            str(t["epoch"] or "-"),
            str(t["forwarded"]),
            f"{t.get('rate', 0):.0f}",
            f"{t.get('lag', 0) * 1000:.1f}",
            f"{now - last:.1f}s ago" if last else "-",
        )
    out.print(tasks)
    _print_bridges(out, document["tasks"])
    if document["paused"]:
        out.print(f"paused routes: {', '.join(document['paused'])}")


def _print_bridges(out: Any, tasks: list[dict[str, Any]]) -> None:
    """Each direction of a bridge (a route between deployments) that has acted: what
    it forwarded, and what it did not, and why (issue 20)."""
    from rich.table import Table  # as above: rich loads only for a table

    bridged = [t for t in tasks if t.get("bridged")]
    if not bridged:
        return
    table = Table(title="bridges (each route one direction)")
    for column in (
        "route", "shard", "forwarded", "echoes dropped", "unheard", "origin skipped",
        "hop drops",
    ):  # fmt: skip
        table.add_column(column)
    for t in bridged:
        counts = t["bridged"]
        table.add_row(
            t["route"], t["shard"], str(t["forwarded"]),
            *(str(counts.get(k, 0)) for k in ("echoes", "unheard", "origin_skipped", "hop_drops")),
        )  # fmt: skip
    out.print(table)


def _standby_cell(task: dict[str, Any]) -> str:
    """The standby with its ring's depth (seconds, MB), marked while its node has not
    yet reported standing by (subscribed, its ring filling)."""
    standby = task.get("standby")
    if not standby:
        return "-"
    if not task.get("standby_reported"):
        return f"{standby} (not yet)"
    ring = task.get("standby_ring") or {}
    seconds, size = ring.get("ring_seconds", 0.0), ring.get("ring_bytes", 0) / 1e6
    return f"{standby} ({seconds:.0f}s, {size:.1f} MB)"


def _known_nodes(client: FleetClient, paths: Paths, _config_path: Path) -> list[str]:
    """The members, and the drained nodes (one that left may still be drained)."""
    from redis_forwarder.coordination import paths as znodes

    names = client.children(paths.members) + client.children(paths.drained)
    return sorted({znodes.unquote_name(n) for n in names})


def _known_routes(client: FleetClient, paths: Paths, config_path: Path) -> list[str]:
    """The config's routes, and the paused ones (a removed route may still be paused)."""
    from redis_forwarder.config import load_config
    from redis_forwarder.coordination import paths as znodes

    paused = [znodes.unquote_name(n) for n in client.children(paths.paused)]
    return sorted({r.name for r in load_config(config_path).routes} | set(paused))


def _refuse_unknown(target: str, noun: str, known: list[str], config_path: Path) -> None:
    """A typo must not become a flag nobody reads ("drained", exit 0, nothing moves)."""
    if target in known:
        return
    where = "members of the fleet" if noun == "node" else f"routes of {config_path}"
    raise UsageError(f"no {noun} named {target!r}; the {where}: {', '.join(known) or 'none'}")


def _flag_command(
    name: str,
    folder: Callable[[Paths], str],
    on: bool,
    noun: str,
    doc: str,
) -> click.Command:
    known = _known_nodes if noun == "node" else _known_routes

    @click.command(name, help=doc)
    @config_option
    @click.argument("target")
    def command(config_path: Path, target: str) -> None:
        from redis_forwarder.coordination.fleet import set_flag

        client, paths = _fleet(config_path)
        with client:
            _refuse_unknown(target, noun, known(client, paths, config_path), config_path)
            changed = set_flag(client, folder(paths), target, on, {"at": time.time()})
        state = "already " if not changed else ""
        verb = {"drain": "drained", "undrain": "undrained", "pause": "paused"}.get(name, "resumed")
        click.echo(f"{noun} {target}: {state}{verb}")

    return command


drain = _flag_command(
    "drain",
    lambda p: p.drained,
    True,
    "node",
    "Move every task off NODE (it stays a member, assigned nothing) until undrain.",
)
undrain = _flag_command("undrain", lambda p: p.drained, False, "node", "Let NODE take tasks again.")
pause = _flag_command(
    "pause", lambda p: p.paused, True, "route", "Stop forwarding ROUTE on every node."
)
resume = _flag_command("resume", lambda p: p.paused, False, "route", "Forward ROUTE again.")


@click.command()
@config_option
def rebalance(config_path: Path) -> None:
    """Recompute the assignment from scratch (not sticky): spreads each route's shards
    round robin again. Tasks that move have a short gap."""
    from redis_forwarder.coordination import paths as znodes

    client, paths = _fleet(config_path)
    with client:
        client.put(paths.rebalance, znodes.encode({"at": time.time()}))
    click.echo("rebalance requested: the controller recomputes within a cycle")
