"""Messages over a route's max_message_bytes, through a real node and Redis: pub/sub
payloads and stream entries go to the dead-letter stream (or are dropped), counted,
never silently; the rest is forwarded as usual and stream entries are all acknowledged."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]
LIMIT = 1000


def config(deployment: Deployment, tag: str, oversize: str) -> dict[str, Any]:
    server = deployment.spec.shards[0].master
    limits: dict[str, Any] = {"max_message_bytes": LIMIT, "oversize": oversize}
    if oversize == "dead-letter":
        limits["dead_letter"] = f"{tag}:dead:{{route}}"
    return {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            {
                "name": "pub",
                "from": {"channels": [f"{tag}.pub"]},
                "to": {"stream": f"{tag}:out:{{channel}}"},
                **limits,
            },
            {
                "name": "str",
                "from": {"streams": [f"{tag}.in"], "group": "g"},
                "to": {"stream": f"{tag}:copy:{{channel}}"},
                **limits,
            },
        ],
        "node": {"topology_interval": 0.5},
    }


@pytest.mark.parametrize("oversize", ["dead-letter", "drop"])
def test_oversized_messages_are_set_aside_and_counted(
    shared_deployment: Shared, oversize: str
) -> None:
    deployment = shared_deployment("standalone")
    server = deployment.spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    small, large = b"s" * (LIMIT - 7), b"\xff" * (LIMIT + 1)  # a stream entry counts "payload" too
    with NodeRunner(config(deployment, tag, oversize)) as runner:
        wait_until(runner.all_running, "both tasks forwarding", timeout=20)
        for index in range(20):
            client.publish(f"{tag}.pub", large if index % 4 == 0 else small)
            client.xadd(f"{tag}.in", {"payload": large if index % 4 == 0 else small})
        wait_until(
            lambda: (
                client.xlen(f"{tag}:out:{tag}.pub") == 15
                and client.xlen(f"{tag}:copy:{tag}.in") == 15
                and client.xpending(f"{tag}.in", "g")["pending"] == 0
            ),
            "the small messages forwarded, every entry acknowledged",
        )
        tasks = {key[0]: task for key, task in runner.node.tasks.items()}
        wait_until(lambda: tasks["pub"].oversized == 5 and tasks["str"].oversized == 5, "counted")
        action = {"dead-letter": "dead-lettered", "drop": "dropped"}[oversize]
        metrics = runner.node.metrics.registry.get_sample_value(
            "forwarder_oversize_messages_total",
            {"route": "pub", "shard": str(server), "action": action},
        )
        assert metrics == 5
    for _id, fields in client.xrange(f"{tag}:out:{tag}.pub"):
        assert fields[b"payload"] == small
    dead = {route: client.xrange(f"{tag}:dead:{route}") for route in ("pub", "str")}
    if oversize == "drop":
        assert dead == {"pub": [], "str": []}
    else:
        assert [f[b"payload"] for _i, f in dead["pub"]] == [large] * 5
        assert [f[b"payload"] for _i, f in dead["str"]] == [large] * 5
        assert all(f[b"channel"] == f"{tag}.pub".encode() for _i, f in dead["pub"])
