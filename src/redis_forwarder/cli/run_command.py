"""``redis-forwarder run --config FILE``: one forwarder node, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import click

from redis_forwarder.config import load_config
from redis_forwarder.node import Node


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
    help="This node's name in ZooKeeper and in stream groups "
    "(default: [node] id, else host-pid with coordination, the host alone without).",
)
def run(config_path: Path, node_id: str | None) -> None:
    """Forward messages as the config's routes say, following failovers, until stopped.

    SIGTERM or Ctrl-C stop it cleanly: tasks flush what they read and close, ownership
    is released and membership left (successors start at once), then it exits 0.
    SIGHUP re-reads the config's routes (docs/configuration.md, "Reloading").
    """
    config = load_config(config_path)
    node = Node(config, node_id=node_id)
    asyncio.run(_serve(node, config_path))


# Tests only: with this set to 1, SIGUSR1 freezes the event loop for
# REDIS_FORWARDER_STALL_SECONDS (default 10), as a wedged node would be.
FAULT_INJECTION = "REDIS_FORWARDER_FAULT_INJECTION"


def _stall() -> None:
    seconds = float(os.environ.get("REDIS_FORWARDER_STALL_SECONDS", "10"))
    logging.getLogger(__name__).warning("fault injection: stalling the loop for %.1fs", seconds)
    time.sleep(seconds)


async def _serve(node: Node, config_path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.request_reload, config_path)
    if os.environ.get(FAULT_INJECTION) == "1":
        loop.add_signal_handler(signal.SIGUSR1, _stall)
    await node.run(stop)
