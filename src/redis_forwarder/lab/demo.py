"""``redis-forwarder lab demo``: the main job on a running lab, for people to watch.

It starts a forwarder node for the lab (a pattern route into one stream per shard and
channel), publishes a sample load to every master, shows live counts, and ends with
what was published, forwarded and lost. The lab stays up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.errors import UsageError
from redis_forwarder.lab.state import LabState
from redis_forwarder.model import DeploymentKind
from redis_forwarder.node import Node

CHANNELS = 4


def demo_config(state: LabState) -> dict[str, Any]:
    """A forwarder config for the lab: every ``demo.*`` message into a stream."""
    redis_nodes = [p for p in state.processes if p.kind == "redis"]
    if state.kind == DeploymentKind.SENTINEL:
        source: dict[str, Any] = {
            "kind": "sentinel",
            "addresses": [p.address for p in state.processes if p.kind == "sentinel"],
            "masters": sorted({p.shard for p in redis_nodes if p.shard}),
        }
    elif state.kind == DeploymentKind.STANDALONE:
        source = {"kind": "standalone", "addresses": [redis_nodes[0].address]}
    else:
        source = {"kind": "cluster", "addresses": [p.address for p in redis_nodes]}
    return {
        "source": source,
        "route": [
            {
                "name": "demo",
                "from": {"patterns": ["demo.*"]},
                "to": {"stream": "demo:{shard}:{channel}"},
            }
        ],
        "node": {"topology_interval": 0.5},
    }


@dataclass
class DemoResult:
    published: int
    forwarded: int
    seconds: float

    @property
    def lost(self) -> int:
        return self.published - self.forwarded


async def run_demo(state: LabState, seconds: float, rate: float, show: Any) -> DemoResult:
    """Run the node and the load for ``seconds``; ``show(rows)`` gets live counts."""
    config = ForwarderConfig.model_validate(demo_config(state))
    node = Node(config)
    stop = asyncio.Event()
    runner = asyncio.create_task(node.run(stop))
    clients: list[aioredis.Redis] = []
    try:
        deadline = time.monotonic() + 15
        while not (node.tasks and all(t.running for t in node.tasks.values())):
            if runner.done():
                runner.result()
            if time.monotonic() > deadline:
                raise UsageError("the demo's forwarder did not start in 15 s; see the log")
            await asyncio.sleep(0.05)
        # Publish where the masters are now: the lab may have failed over since `up`.
        clients = [
            aioredis.Redis(host=s.master.address.host, port=s.master.address.port)
            for s in node.source_topology().shards
        ]
        for client in clients:  # a clean slate for the counts
            keys = [key async for key in client.scan_iter(match="demo:*")]
            if keys:
                await client.delete(*keys)
        published = 0
        started = time.monotonic()
        next_show = started
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while published < due:
                client = clients[published % len(clients)]
                await client.publish(f"demo.{published % CHANNELS}", f"message {published}")
                published += 1
            if time.monotonic() >= next_show:
                show(node, published, elapsed)
                next_show += 0.5
            await asyncio.sleep(0.01)
        # Let the last messages through before counting.
        await asyncio.sleep(0.5)
        forwarded = 0
        for client in clients:
            async for key in client.scan_iter(match="demo:*"):
                forwarded += await client.xlen(key)
        show(node, published, time.monotonic() - started)
        return DemoResult(published, forwarded, time.monotonic() - started)
    finally:
        stop.set()
        await runner
        for client in clients:
            await client.aclose()
