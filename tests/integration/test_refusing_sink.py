"""A sink that refuses every write is not forwarding (issue 14): a task whose writes the
sink all refused since it last took one is reported as such by the status line,
/readyz and a metric; and a standalone server that is a replica, given as a deployment
that routes write to, is an error at start (exit 5) naming the master to use."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.integration.test_node import readyz
from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def test_a_sink_refusing_every_write_is_not_ready(
    shared_deployment: Shared, caplog: pytest.LogCaptureFixture
) -> None:
    """The sink key is a string: every RPUSH is refused (WRONGTYPE), the connection
    stays up. Before: "1/1 tasks forwarding, 0 in a gap" and /readyz 200."""
    caplog.set_level(logging.INFO, logger="redis_forwarder.node")
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    client.set(f"{tag}:q", "not a list")
    with socket.socket() as probe:  # a free port for the metrics endpoint
        probe.bind((server.host, 0))
        metrics = f"{server.host}:{probe.getsockname()[1]}"
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [{"name": "r", "from": {"channels": [f"{tag}.in"]}, "to": {"list": f"{tag}:q"}}],
        "node": {"topology_interval": 0.5, "metrics": metrics},
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task connected", timeout=20)
        health = runner.node.health
        assert health is not None
        base = f"http://{health.address}"
        wait_until(lambda: readyz(base)[0] == 200, "ready while nothing was written", timeout=5)
        (task,) = runner.node.tasks.values()
        for index in range(5):
            client.publish(f"{tag}.in", f"m{index}")
        wait_until(lambda: task.metrics.refused == 5, "every write refused")
        wait_until(lambda: readyz(base)[0] == 503, "/readyz says not ready", timeout=5)
        body = readyz(base)[1]
        assert isinstance(body, dict)
        assert body["tasks"] == {f"r@{server}": False}
        assert body["refused_by_sink"] == {f"r@{server}": 5}
        sample = runner.node.metrics.registry.get_sample_value
        labels = {"route": "r", "shard": str(server)}
        assert sample("forwarder_sink_refusing", labels) == 1

        def status_says_refused() -> bool:
            lines = [r.getMessage() for r in caplog.records if r.msg.startswith("status:")]
            return (
                bool(lines)
                and "0/1 tasks forwarding" in lines[-1]
                and ("1 refused by its sink" in lines[-1])
            )

        wait_until(status_says_refused, "the status line says the sink refuses", timeout=5)
        progress = runner.node._progress()[f"r@{server}"]
        assert progress["running"] is False and progress["refused_by_sink"] == 5
        # Fixed: the next write taken makes the task ready again.
        client.delete(f"{tag}:q")
        client.publish(f"{tag}.in", "after")
        wait_until(lambda: client.llen(f"{tag}:q") == 1, "the sink takes writes again")
        wait_until(lambda: readyz(base)[0] == 200, "ready again", timeout=5)
        assert sample("forwarder_sink_refusing", labels) == 0


@pytest.mark.parametrize(
    ("route", "named"),
    [
        ('from = { channels = ["a"] }\nto = { list = "q" }', "to.target = 'source': r"),
        (
            'from = { streams = ["s"], group = "g" }\nto = { target = "m", stream = "c" }',
            "streams, read with XREADGROUP (a write): r",
        ),
    ],
)
def test_a_replica_written_to_is_refused_at_start(
    shared_deployment: Shared, tmp_path: Path, route: str, named: str
) -> None:
    """Before: the node ran, every write got READONLY, and status said all was well."""
    shard = shared_deployment("sentinel").spec.shards[0]
    replica, master = shard.replicas[0], shard.master
    path = tmp_path / "replica.toml"
    path.write_text(
        f'[source]\nkind = "standalone"\naddresses = ["{replica}"]\n'
        f'[targets.m]\nkind = "standalone"\naddresses = ["{master}"]\n'
        f'[[route]]\nname = "r"\n{route}\n'
    )
    result = run_cli("run", "--config", str(path), timeout=30)
    assert result.code == 5, result.stderr
    assert f"{replica} is a replica of {master}" in result.stderr  # ROLE names its master
    assert named in result.stderr
    assert f"give its master, {master}, in [source] addresses" in result.stderr


def test_refusals_answered_in_one_read_are_not_a_write_taken(
    shared_deployment: Shared,
) -> None:
    """Two batches refused, their replies read at once: the sink still took nothing.
    (Counted from answers per batch, the second batch's answer looked like a write
    taken, and the task flapped back to ready: a flaky /readyz test caught it.)"""
    import asyncio

    from redis_forwarder.forwarding.metrics import TaskMetrics
    from redis_forwarder.resp import RespConnection, encode
    from redis_forwarder.sink.writer import PipelineWriter

    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    key = f"{uuid.uuid4().hex[:8]}:q"
    client.set(key, "not a list")

    async def scenario() -> TaskMetrics:
        connection = RespConnection(server.host, server.port, timeout=5.0)
        await connection.open()
        metrics = TaskMetrics.alone()
        writer = PipelineWriter(connection, metrics)
        for batch in range(3):  # sent back to back: the replies come in one read
            await writer.send(encode(b"RPUSH", key.encode(), b"m%d" % batch), 1)
        writer.start()
        await writer.flush()
        await writer.close()
        return metrics

    metrics = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert metrics.refused == 3
    assert metrics.refused_since_taken == 3 and metrics.sink_refusing
