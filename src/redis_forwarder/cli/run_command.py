"""``redis-forwarder run --config FILE``: one forwarder node, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import click

from redis_forwarder import eventloop
from redis_forwarder.cli.main import interrupted
from redis_forwarder.config import ForwarderConfig, load_config
from redis_forwarder.errors import UsageError
from redis_forwarder.node import Node

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The forwarder config.",
)
@click.option(
    "--node-id",
    help="This node's name in ZooKeeper and in stream groups, a valid znode name with "
    "coordination (default: [node] id, else host-pid with coordination, the host alone "
    "without).",
)
def run(config_path: Path, node_id: str | None) -> None:
    """Forward messages as the config's routes say, following failovers, until stopped.

    SIGTERM or Ctrl-C stop it cleanly: tasks flush what they read and close, ownership
    is released and membership left (successors start at once). Then it exits 0 after
    SIGTERM (a supervisor's stop), 130 after Ctrl-C (interrupted, as every command).
    SIGHUP re-reads the config's routes (docs/configuration.md, "Reloading").
    It exits 2 on a bad config or node id (with [coordination] a node id names a
    znode), 3 when its [node] metrics address is in use; docs/cli.md has the rest.
    """
    config = load_config(config_path)
    check_node_id(config, node_id)
    try:
        loop = eventloop.chosen()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    node = Node(config, node_id=node_id)
    log.info("event loop: %s (%s=asyncio for asyncio's own)", loop, eventloop.ENV)
    if eventloop.run(_serve(node, config_path)) is signal.SIGINT:
        interrupted()


def _znode_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one znode's name (ZooKeeper's path rules), or None."""
    if name in ("", ".", ".."):
        return "it is empty, '.' or '..'"
    if "/" in name:
        return "it holds '/'"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        return "it holds a control character"
    if any(0xD800 <= ord(c) <= 0xF8FF or ord(c) >= 0xFFF0 for c in name):
        return "it holds a character ZooKeeper refuses in a path"
    return None


def check_node_id(config: ForwarderConfig, node_id: str | None) -> None:
    """With ``[coordination]`` the node id names the node's znodes (members/ID, ...):
    refuse one ZooKeeper cannot take before connecting, rather than fail inside kazoo."""
    chosen, source = (node_id, "--node-id") if node_id else (config.node.id, "[node] id")
    if config.coordination is None or chosen is None:
        return  # alone, the id only names the stream consumer; the default is a host name
    problem = _znode_name_problem(chosen)
    if problem is not None:
        raise UsageError(
            f"{source} {chosen!r} cannot name a node in ZooKeeper: {problem}; "
            "choose a name such as fwd-1 (letters, digits, '-', '_', '.')"
        )


# Tests only: with this set to 1, SIGUSR1 freezes the event loop for
# REDIS_FORWARDER_STALL_SECONDS (default 10), as a wedged node would be.
FAULT_INJECTION = "REDIS_FORWARDER_FAULT_INJECTION"


def _stall() -> None:
    seconds = float(os.environ.get("REDIS_FORWARDER_STALL_SECONDS", "10"))
    logging.getLogger(__name__).warning("fault injection: stalling the loop for %.1fs", seconds)
    time.sleep(seconds)


async def _serve(node: Node, config_path: Path) -> signal.Signals | None:
    """Run the node until a stop signal; return that signal (None: the node ended)."""
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def stop_on(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_on, sig)
    loop.add_signal_handler(signal.SIGHUP, node.request_reload, config_path)
    if os.environ.get(FAULT_INJECTION) == "1":
        loop.add_signal_handler(signal.SIGUSR1, _stall)
    await node.run(stop)
    return received[0] if received else None
