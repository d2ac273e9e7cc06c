"""``redis-forwarder run --config FILE``: one forwarder node, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
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
def run(config_path: Path) -> None:
    """Forward messages as the config's routes say, following failovers, until stopped.

    SIGTERM or Ctrl-C stop it cleanly: tasks close their connections, then it exits 0.
    """
    config = load_config(config_path)
    node = Node(config)
    asyncio.run(_serve(node))


async def _serve(node: Node) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.run(stop)
