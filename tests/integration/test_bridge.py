"""A node that bridges two deployments both ways (issue 20's first step): [source] a
standalone server, [targets.east] a Sentinel deployment of two masters; one route reads
the source and writes east, the other reads each of east's masters (a task per master)
and writes the source, pub/sub and streams alike, under names that differ each way
(the same names both ways are refused until loop prevention lands: test_bridge_config).
Everything arrives once on the other side and nothing comes back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.support.commands import pubsub_of, xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
COUNT = 200


def test_a_node_bridges_two_deployments_both_ways(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    west = shared_deployment("standalone").spec.shards[0].master
    east = shared_deployment("sentinel")
    tag = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "source": {"kind": "standalone", "addresses": [str(west)]},
        "targets": {
            "east": {
                "kind": "sentinel",
                "addresses": [str(a) for a in east.sentinels],
                "masters": [s.name for s in east.spec.shards],
            }
        },
        "route": [
            {
                "name": "west-east",
                "from": {"channels": [f"{tag}.w"]},
                "to": {"target": "east", "channel": f"{tag}.from-west"},
            },
            {
                "name": "east-west",
                "from": {"deployment": "east", "channels": [f"{tag}.e"]},
                "to": {"stream": f"{tag}:from-east:{{shard}}"},
            },
            {
                "name": "east-west-streams",
                "from": {"deployment": "east", "streams": [f"{tag}:events"], "group": "g"},
                "to": {"stream": f"{tag}:events-from-east:{{shard}}"},
            },
        ],
        "node": {"topology_interval": 0.5},
    }
    west_client = redis.Redis(host=west.host, port=west.port)
    masters = {s.name: s.master for s in east.spec.shards}
    east_clients = {n: redis.Redis(host=a.host, port=a.port) for n, a in masters.items()}
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "every task forwarding", timeout=30)
        assert set(runner.node.tasks) == {
            ("west-east", str(west)),
            *(("east-west", name) for name in masters),
            *(("east-west-streams", name) for name in masters),
        }
        # west -> east: listened to on east's first master, where the sink publishes
        listener = pubsub_of(next(iter(east_clients.values())))
        listener.subscribe(f"{tag}.from-west")
        wait_until(lambda: listener.get_message(timeout=0.1) is not None, "subscribed")
        for i in range(COUNT):
            west_client.publish(f"{tag}.w", f"w{i}")
            for name, client in east_clients.items():
                client.publish(f"{tag}.e", f"{name}-{i}")
                client.xadd(f"{tag}:events", {"n": i})
        heard: list[bytes] = []

        def all_heard() -> bool:
            while (message := listener.get_message(timeout=0.05)) is not None:
                heard.append(message["data"])
            return len(heard) >= COUNT

        wait_until(all_heard, f"{COUNT} west messages heard on east", timeout=20)
        for name in masters:
            wait_until(
                lambda n=name: (
                    west_client.xlen(f"{tag}:from-east:{n}") == COUNT  # type: ignore[misc]
                    and west_client.xlen(f"{tag}:events-from-east:{n}") == COUNT
                ),
                f"east {name}'s messages and entries in the west",
                timeout=20,
            )
        assert heard == [f"w{i}".encode() for i in range(COUNT)]
        for name in masters:
            payloads = [
                fields[b"payload"] for _id, fields in xrange(west_client, f"{tag}:from-east:{name}")
            ]
            assert payloads == [f"{name}-{i}".encode() for i in range(COUNT)]
        # nothing went back: the west's channel and east's inputs hold only what we sent
        all_heard()
        assert len(heard) == COUNT
        assert all(c.xlen(f"{tag}:events") == COUNT for c in east_clients.values())
        listener.close()
