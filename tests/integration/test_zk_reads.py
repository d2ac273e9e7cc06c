"""Watched reads against a real ZooKeeper, with a real race: a znode made by another
client at the moment a node reads it as absent. Its creation must either be read or
fire the watch; before, a znode made between the read (no node) and the ``exists`` that
sets the watch was neither, and the node waited for a change that never came (a node
restarted in a chaos campaign read its assignment part so, and owned nothing)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from redis_forwarder.coordination.zk import ZooKeeperSession
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]

ROUNDS = 400  # the window is a fraction of a millisecond: enough rounds to meet it


def create_soon(client: KazooClient, path: str, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        client.create(path, b"x", makepath=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def setter(event: threading.Event) -> Callable[[object], None]:
    def fired(_event: object) -> None:
        event.set()

    return fired


async def read_while_made(hosts: str, root: str) -> tuple[list[str], int]:
    """Paths neither read nor watched, and how many rounds read the znode as absent."""
    session = ZooKeeperSession(hosts, 6.0, on_change=lambda: None)
    await session.start()
    maker = KazooClient(hosts=hosts)
    maker.start(timeout=10)
    missed: list[str] = []
    absent = 0
    rng = random.Random(7)
    try:
        for index in range(ROUNDS):
            path = f"{root}/n{index}"
            fired = threading.Event()
            thread = create_soon(maker, path, rng.uniform(0.0, 0.002))
            found = await session.get(path, watch=setter(fired))
            await asyncio.to_thread(thread.join, 5)
            if found is None:
                absent += 1
                if not await asyncio.to_thread(fired.wait, 2.0):
                    missed.append(path)
                    if len(missed) == 3:
                        break  # each miss waited 2 s: three say enough
    finally:
        maker.delete(root, recursive=True)
        maker.stop()
        maker.close()
        await session.close()
    return missed, absent


def test_a_znode_made_while_read_as_absent_is_read_or_watched(shared_deployment: Shared) -> None:
    hosts = shared_deployment("standalone").zookeeper_hosts
    root = f"/test-zk-reads-{uuid.uuid4().hex[:8]}"
    missed, absent = asyncio.run(read_while_made(hosts, root))
    assert missed == [], f"{len(missed)} of {absent} reads of an absent znode missed its creation"
    assert absent > 0  # the race was run: reads found the znode absent, then it came
