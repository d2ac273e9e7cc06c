"""What a list or channel sink gets from a stream entry, through a real node and Redis:
the field the route names (``payload`` by default), or the whole entry as a JSON
object (``entry = "json"``). An entry that cannot be sent so (it lacks the field; for
JSON, a name or value that is not UTF-8) is counted and dead-lettered, or left pending
without a dead-letter stream: never pushed as something else (issue 14)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.support.commands import xadd, xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def route(tag: str, name: str, to: dict[str, Any], dead: bool) -> dict[str, Any]:
    extra = {"dead_letter": f"{tag}:dead:{{route}}"} if dead else {}
    return {"name": name, "from": {"streams": [f"{tag}.{name}"], "group": "g"}, "to": to, **extra}


def test_list_sinks_get_the_chosen_field_or_the_whole_entry(shared_deployment: Shared) -> None:
    deployment = shared_deployment("standalone")
    server = deployment.spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            route(tag, "field", {"list": f"{tag}:field", "field": "body"}, dead=True),
            route(tag, "json", {"list": f"{tag}:json", "entry": "json"}, dead=True),
            route(tag, "plain", {"list": f"{tag}:plain"}, dead=False),
        ],
        "node": {"topology_interval": 0.5},
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the tasks forwarding", timeout=20)
        xadd(client, f"{tag}.field", {"body": "b1", "other": "x"})
        xadd(client, f"{tag}.field", {"other": "no body"})
        xadd(client, f"{tag}.json", {"payload": "p", "n": "é"})
        xadd(client, f"{tag}.json", {"bin": b"\xff\xfe"})
        xadd(client, f"{tag}.plain", {"payload": "p1"})
        unsent = xadd(client, f"{tag}.plain", {"text": "t"})

        def pending(name: str) -> int:
            count: int = client.xpending(f"{tag}.{name}", "g")["pending"]
            return count

        wait_until(
            lambda: (
                client.llen(f"{tag}:field") == 1
                and client.llen(f"{tag}:json") == 1
                and client.llen(f"{tag}:plain") == 1
                and pending("field") == 0
                and pending("json") == 0
            ),
            "the sendable entries pushed, the others dead-lettered and acknowledged",
        )
        tasks = {key[0]: task for key, task in runner.node.tasks.items()}
        wait_until(lambda: tasks["plain"].metrics.unfit >= 1, "the unsendable entry counted")
        sample = runner.node.metrics.registry.get_sample_value

        def unfit(name: str, action: str) -> float | None:
            labels = {"route": name, "shard": str(server), "action": action}
            return sample("forwarder_unfit_entries_total", labels)

        assert unfit("field", "dead-lettered") == 1
        assert unfit("json", "dead-lettered") == 1
        assert (unfit("plain", "left-pending") or 0) >= 1
        assert pending("plain") == 1
        (pending_entry,) = client.xpending_range(f"{tag}.plain", "g", "-", "+", 10)
        assert pending_entry["message_id"] == unsent
    assert client.lrange(f"{tag}:field", 0, -1) == [b"b1"]
    (pushed,) = client.lrange(f"{tag}:json", 0, -1)
    assert json.loads(pushed) == {"payload": "p", "n": "é"}
    assert client.lrange(f"{tag}:plain", 0, -1) == [b"p1"]  # never "text=t"
    dead = {
        name: [f for _i, f in xrange(client, f"{tag}:dead:{name}")] for name in ("field", "json")
    }
    assert dead == {"field": [{b"other": b"no body"}], "json": [{b"bin": b"\xff\xfe"}]}
