"""Messages that cannot be forwarded, through a real node and Redis: pub/sub payloads
and stream entries over a route's max_message_bytes go to the dead-letter stream (or
are dropped), counted, never silently; stream entries the sink refuses for good go to
the dead-letter stream after three tries, or stay pending until the sink is fixed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redis_forwarder.model import Address
from tests.support.commands import command, xadd, xrange
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
        wait_until(
            lambda: tasks["pub"].metrics.oversized == 5 and tasks["str"].metrics.oversized == 5,
            "counted",
        )
        action = {"dead-letter": "dead-lettered", "drop": "dropped"}[oversize]
        metrics = runner.node.metrics.registry.get_sample_value(
            "forwarder_oversize_messages_total",
            {"route": "pub", "shard": str(server), "action": action},
        )
        assert metrics == 5
    for _id, fields in xrange(client, f"{tag}:out:{tag}.pub"):
        assert fields[b"payload"] == small
    dead = {route: xrange(client, f"{tag}:dead:{route}") for route in ("pub", "str")}
    if oversize == "drop":
        assert dead == {"pub": [], "str": []}
    else:
        assert [f[b"payload"] for _i, f in dead["pub"]] == [large] * 5
        assert [f[b"payload"] for _i, f in dead["str"]] == [large] * 5
        assert all(f[b"channel"] == f"{tag}.pub".encode() for _i, f in dead["pub"])


@pytest.mark.parametrize(
    "dead_letter",
    [True, pytest.param(False, marks=pytest.mark.slow)],  # retries back off
)
def test_stream_entries_the_sink_refuses_for_good(
    shared_deployment: Shared, dead_letter: bool
) -> None:
    """The sink key is a string: every XADD is refused (WRONGTYPE). After three tries an
    entry goes to the dead-letter stream and is acknowledged; without one it stays
    pending, and is copied once the sink is fixed. The entries arrive one read at a
    time: refused new batches must not lengthen the retry wait (ten of them put it at
    the 30 s cap once)."""
    deployment = shared_deployment("standalone")
    server = deployment.spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    sink = f"{tag}:copy:{tag}.in"
    client.set(sink, "not a stream")
    route: dict[str, Any] = {
        "name": "str",
        "from": {"streams": [f"{tag}.in"], "group": "g"},
        "to": {"stream": f"{tag}:copy:{{channel}}"},
    }
    if dead_letter:
        route["dead_letter"] = f"{tag}:dead:{{channel}}"
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [route],
        "node": {"topology_interval": 0.5},
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task forwarding", timeout=20)
        (task,) = runner.node.tasks.values()

        def delivered() -> bytes:
            last: bytes = client.xinfo_groups(f"{tag}.in")[0]["last-delivered-id"]
            return last

        for index in range(10):
            added = xadd(client, f"{tag}.in", {"payload": f"e{index}"})
            wait_until(
                lambda added=added: delivered() == added,  # type: ignore[misc]
                f"entry {index} read by the node before the next is added",
            )
        wait_until(
            lambda: task.metrics.given_up >= 10, "every entry refused three times", timeout=30
        )
        if dead_letter:
            wait_until(lambda: client.xpending(f"{tag}.in", "g")["pending"] == 0, "all acked")
            dead = xrange(client, f"{tag}:dead:{tag}.in")
            assert [f[b"payload"] for _i, f in dead] == [f"e{i}".encode() for i in range(10)]
        else:
            assert client.xpending(f"{tag}.in", "g")["pending"] == 10  # nothing lost
            client.delete(sink)  # the operator fixes the sink
            wait_until(
                lambda: client.xpending(f"{tag}.in", "g")["pending"] == 0,
                "the pending entries copied once the sink takes them",
                timeout=45,
            )
            assert client.xlen(sink) == 10


def into_sink(source: Address, sink: Address, tag: str, *, pubsub: bool) -> dict[str, Any]:
    """A stream route (and with ``pubsub`` a channel route) from ``source`` into streams
    on ``sink``, a server of its own: ``TAG:s`` and ``TAG:p``."""
    routes: list[dict[str, Any]] = [
        {
            "name": "s",
            "from": {"streams": [f"{tag}.in"], "group": "g"},
            "to": {"target": "sink", "stream": f"{tag}:s"},
        }
    ]
    if pubsub:
        routes.insert(
            0,
            {
                "name": "p",
                "from": {"channels": [f"{tag}.c"]},
                "to": {"target": "sink", "stream": f"{tag}:p"},
            },
        )
    return {
        "source": {"kind": "standalone", "addresses": [str(source)]},
        "targets": {"sink": {"kind": "standalone", "addresses": [str(sink)]}},
        "route": routes,
        "node": {"topology_interval": 0.5},
    }


@pytest.mark.slow
def test_a_sink_out_of_memory_loses_no_stream_entry_and_says_what_pubsub_lost(
    shared_deployment: Shared, fresh_deployment: Callable[[str], Deployment]
) -> None:
    """The sink (a server of its own) refuses writes with OOM for a while: pub/sub
    messages refused then are counted and logged as lost, the loop backs off; stream
    entries stay pending and are all copied once the sink has room again."""
    source = shared_deployment("standalone").spec.shards[0].master
    sink = fresh_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=source.host, port=source.port)
    target = redis.Redis(host=sink.host, port=sink.port)
    tag = uuid.uuid4().hex[:8]
    config = into_sink(source, sink, tag, pubsub=True)
    sent = 0

    def burst(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            client.publish(f"{tag}.c", f"m{sent}")
            client.xadd(f"{tag}.in", {"payload": f"e{sent}"})
            sent += 1

    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "both tasks forwarding", timeout=20)
        tasks = {key[0]: task for key, task in runner.node.tasks.items()}
        burst(20)
        wait_until(lambda: target.xlen(f"{tag}:p") == 20, "forwarded before the fault")
        target.config_set("maxmemory", "1")  # noeviction: every write is refused (OOM)
        burst(20)
        wait_until(lambda: tasks["p"].metrics.refused > 0, "pub/sub refusals counted")
        wait_until(lambda: tasks["s"].metrics.refused > 0, "stream refusals seen")
        target.config_set("maxmemory", "0")
        wait_until(lambda: target.xlen(f"{tag}:s") == 40, "every stream entry copied", timeout=40)
        after = sent
        burst(20)
        wait_until(
            lambda: (
                {f[b"payload"] for _i, f in xrange(target, f"{tag}:p")}
                >= {f"m{i}".encode() for i in range(after, sent)}
            ),
            "pub/sub forwarded again once the sink has room",
        )
        wait_until(lambda: target.xlen(f"{tag}:s") == sent, "the last entries copied too")
        wait_until(lambda: client.xpending(f"{tag}.in", "g")["pending"] == 0, "all acked")
        assert tasks["s"].metrics.given_up == 0  # OOM passes: never given up
        refused = runner.node.metrics.registry.get_sample_value(
            "forwarder_refused_writes_total", {"route": "p", "shard": str(source)}
        )
        assert refused is not None and refused >= tasks["p"].metrics.refused > 0
    payloads = [f[b"payload"] for _i, f in xrange(target, f"{tag}:s")]
    assert sorted(payloads) == sorted(f"e{i}".encode() for i in range(sent))  # once each


@pytest.mark.slow
def test_a_sink_at_maxclients_loses_no_stream_entry(
    shared_deployment: Shared, fresh_deployment: Callable[[str], Deployment]
) -> None:
    """The sink's connections are cut and it takes no new ones (maxclients reached):
    the task retries with backoff, in a counted gap naming why; once a connection is
    free, every stream entry added meanwhile is copied."""
    source = shared_deployment("standalone").spec.shards[0].master
    sink = fresh_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=source.host, port=source.port)
    target = redis.Redis(host=sink.host, port=sink.port)
    tag = uuid.uuid4().hex[:8]
    config = into_sink(source, sink, tag, pubsub=False)
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task forwarding", timeout=20)
        (task,) = runner.node.tasks.values()
        target.ping()
        connected = int(target.info("clients")["connected_clients"])
        target.config_set("maxclients", str(connected))  # full: nobody else gets in
        command(target, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for index in range(30):  # the next write finds its connection cut
            client.xadd(f"{tag}.in", {"payload": f"e{index}"})
        wait_until(lambda: bool(task.gaps) and not task.running, "the cut seen as a gap")
        assert target.xlen(f"{tag}:s") == 0 and task.gaps[-1].end is None  # retrying
        target.config_set("maxclients", "10000")
        wait_until(lambda: target.xlen(f"{tag}:s") == 30, "every entry copied", timeout=30)
        wait_until(lambda: client.xpending(f"{tag}.in", "g")["pending"] == 0, "all acked")


def test_a_sink_key_the_acl_user_may_not_write_is_dead_lettered(
    shared_deployment: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOPERM: the node's ACL user may read the source stream and write the dead-letter
    stream, not the sink key. Refused for good: dead-lettered after three tries, acked."""
    server = shared_deployment("standalone").spec.shards[0].master
    admin = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    user, secret = f"narrow-{tag}", uuid.uuid4().hex
    command(admin,
        "ACL", "SETUSER", user, "on", f">{secret}", "resetkeys", f"~{tag}.in",
        f"~{tag}:dead:*", "resetchannels", "-@all", "+ping", "+role", "+info", "+xadd",
        "+xrange", "+xreadgroup", "+xack", "+xautoclaim", "+xpending", "+xgroup|create",
    )  # fmt: skip
    config = {
        "source": {
            "kind": "standalone",
            "addresses": [str(server)],
            "username": user,
            "password_env": "RF_TEST_NARROW_PASSWORD",
        },
        "route": [
            {
                "name": "str",
                "from": {"streams": [f"{tag}.in"], "group": "g"},
                "to": {"stream": f"{tag}:copy:{{channel}}"},
                "dead_letter": f"{tag}:dead:{{channel}}",
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    monkeypatch.setenv("RF_TEST_NARROW_PASSWORD", secret)
    try:
        with NodeRunner(config) as runner:
            wait_until(runner.all_running, "the task forwarding", timeout=20)
            for index in range(5):
                admin.xadd(f"{tag}.in", {"payload": f"e{index}"})
            wait_until(
                lambda: (
                    admin.xlen(f"{tag}:dead:{tag}.in") == 5
                    and admin.xpending(f"{tag}.in", "g")["pending"] == 0
                ),
                "refused entries dead-lettered and acknowledged",
                timeout=30,
            )
            assert admin.exists(f"{tag}:copy:{tag}.in") == 0
    finally:
        command(admin, "ACL", "DELUSER", user)
