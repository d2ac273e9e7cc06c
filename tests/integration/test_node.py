"""A forwarder node through real faults on a Sentinel deployment: a failover, a master
killed with SIGKILL, a master frozen with SIGSTOP (the heartbeat must notice). It keeps
forwarding; each interruption is a counted gap; after it, nothing published is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.model import Address
from tests.support.cli import start_run
from tests.support.commands import command, xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner, Publisher, wait_resumed
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration]
Fresh = Callable[[str], Deployment]
RECONNECT_CAP = 2.0  # seconds: the cap of a task's reconnect backoff (task.py)


def config_for(deployment: Deployment, metrics: bool = False) -> dict[str, object]:
    config: dict[str, object] = {
        "source": {
            "kind": "sentinel",
            "addresses": [str(a) for a in deployment.sentinels],
            "masters": [s.name for s in deployment.spec.shards],
        },
        "route": [
            {
                "name": "orders",
                "from": {"patterns": ["orders.*"]},
                "to": {"stream": "mirror:{shard}:{channel}"},
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    if metrics:
        host = deployment.sentinels[0].host
        with socket.socket() as probe:  # a free port for the metrics endpoint
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        config["node"] = {"topology_interval": 0.5, "metrics": f"{host}:{port}"}
    return config


def master_locator(deployment: Deployment, name: str) -> Callable[[], Address]:
    def locate() -> Address:
        for sentinel in deployment.sentinels:
            try:
                client = redis.Redis(host=sentinel.host, port=sentinel.port, socket_timeout=0.5)
                host, port = command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
                return Address(host.decode(), int(port))
            except (redis.RedisError, OSError):
                continue
        raise OSError("no sentinel answered")

    return locate


def forwarded(locate: Callable[[], Address], key: str) -> set[int]:
    address = locate()
    client = redis.Redis(host=address.host, port=address.port, socket_timeout=2)
    return {int(fields[b"payload"]) for _, fields in xrange(client, key)}


def gap_bound(deployment: Deployment, config: dict[str, object]) -> float:
    """The longest gap a master fault may cost the task, from the lab's Sentinel settings
    and the node's config: the sentinels' failover (down-after, then at most their
    failover timeout to elect and promote), a frozen master noticed by the heartbeat (a
    PING after one silent heartbeat, the connection ended after another), one reconnect
    backoff step (task.py caps it at RECONNECT_CAP) and a topology interval to see the
    new master. About 10 s on this lab; measured gaps are 1-4 s (docs/drills.md:
    sentinel-failover, kill-master, half-open), so a tenfold regression fails."""
    sentinel = deployment.spec.sentinel
    assert sentinel is not None
    settings = ForwarderConfig.model_validate(config)
    heartbeat = max(route.heartbeat for route in settings.routes)
    return (
        (sentinel.down_after_ms + sentinel.failover_timeout_ms) / 1000
        + 2 * heartbeat
        + RECONNECT_CAP
        + settings.node.topology_interval
    )


def run_fault(
    deployment: Deployment,
    fault: Callable[[], None],
    recover: Callable[[], None],
    slow: bool = False,
) -> None:
    alpha = master_locator(deployment, "alpha")
    key = "mirror:alpha:orders.a"
    config = config_for(deployment)
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "both tasks forwarding", timeout=15)
        with Publisher(alpha, "orders.a") as publisher:
            wait_until(lambda: len(publisher.sent) > 200, "traffic flowing")
            fault()
            task = runner.node.tasks[("orders", "alpha")]
            wait_until(lambda: bool(task.gaps), "a gap opened", timeout=30)
            recover()
            resumed = wait_resumed(task, publisher)
        after = {seq for seq, at in publisher.sent if at > resumed + 0.2}
        wait_until(
            lambda: after <= forwarded(alpha, key),
            "everything sent after resume forwarded",
            timeout=15,
        )
        gap = task.gaps[-1]
        assert gap.end is not None
        print(f"GAP {gap.reason}: {gap.end - gap.start:.3f}s")
        bound = gap_bound(deployment, config)
        assert gap.end - gap.start < bound, f"gap {gap.end - gap.start:.2f}s, bound {bound:.1f}s"
        assert runner.node.tasks[("orders", "beta")].gaps == []  # the other shard went on


@pytest.mark.slow
def test_sentinel_failover_while_forwarding(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("sentinel")
    sentinel = deployment.sentinels[0]
    run_fault(
        deployment,
        lambda: command(
            redis.Redis(host=sentinel.host, port=sentinel.port), "SENTINEL", "FAILOVER", "alpha"
        ),
        lambda: None,
    )


@pytest.mark.slow
def test_source_master_killed_while_forwarding(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    run_fault(
        deployment,
        lambda: lab.send_signal("alpha-master", signal.SIGKILL),
        lambda: None,
    )


@pytest.mark.slow
def test_source_master_frozen_is_noticed_by_the_heartbeat(fresh_deployment: Fresh) -> None:
    """SIGSTOP: the TCP connection stays open and silent. The heartbeat ends it; the
    sentinels fail over; the node re-homes; then the old master is let go."""
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    try:
        run_fault(deployment, lambda: lab.send_signal("alpha-master", signal.SIGSTOP), lambda: None)
    finally:
        lab.send_signal("alpha-master", signal.SIGCONT)


@pytest.mark.slow
def test_a_node_started_while_its_master_is_dead_waits_for_the_failover(
    fresh_deployment: Fresh,
) -> None:
    """Issue 17's campaign found it: a node (re)started while the sentinels still name
    a dead master exited with "a failover may be under way" and stayed down. It waits
    (START_PATIENCE) and forwards once the sentinels have promoted the replica."""
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    lab.send_signal("alpha-master", signal.SIGKILL)
    alpha = master_locator(deployment, "alpha")
    with NodeRunner(config_for(deployment)) as runner:
        bound = gap_bound(deployment, config_for(deployment)) + 10
        wait_until(runner.all_running, "both tasks forwarding after the failover", timeout=bound)
        assert runner.node.tasks[("orders", "alpha")].running
        with Publisher(alpha, "orders.a") as publisher:
            wait_until(lambda: len(publisher.sent) > 50, "traffic flowing")
        sent = {seq for seq, _at in publisher.sent}
        wait_until(
            lambda: sent <= forwarded(alpha, "mirror:alpha:orders.a"),
            "what was published after the failover forwarded",
            timeout=15,
        )


def readyz(base: str) -> tuple[int, object]:
    """/readyz's status and JSON body (a 503 is an answer here, not an error)."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_metrics_and_health_endpoints(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("sentinel")
    with NodeRunner(config_for(deployment, metrics=True)) as runner:
        wait_until(runner.all_running, "both tasks forwarding", timeout=15)
        health = runner.node.health
        assert health is not None
        base = f"http://{health.address}"
        master = deployment.spec.shards[0].master
        redis.Redis(host=master.host, port=master.port).publish("orders.m", "hello")
        alpha = runner.node.tasks[("orders", "alpha")]
        wait_until(lambda: alpha.metrics.received == 1, "one received")
        # /readyz answers from a snapshot the node's loop publishes every 0.2 s.
        wait_until(lambda: readyz(base)[0] == 200, "/readyz says ready", timeout=5)
        assert readyz(base) == (
            200,
            {
                "ready": True,
                "tasks": {"orders@alpha": True, "orders@beta": True},
                "role": "alone",
                "zookeeper": "none",
            },
        )
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert json.loads(answer.read()) == {"status": "ok"}
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'forwarder_received_messages_total{route="orders",shard="alpha"} 1.0' in text
        assert 'forwarder_task_running{route="orders",shard="beta"} 1.0' in text
        # The one message was answered by the sink: counted, its latency observed.
        wait_until(lambda: alpha.metrics.forwarded == 1, "answered")
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'forwarder_forwarded_messages_total{route="orders",shard="alpha"} 1.0' in text
        assert 'forwarder_latency_seconds_count{route="orders",shard="alpha"} 1.0' in text
        assert 'forwarder_batch_size_count{route="orders",shard="alpha"} 1.0' in text
        # Read when scraped: back to 0 once the sink answered (it stayed at the last
        # batch's count when it was set per batch).
        assert 'forwarder_in_flight{route="orders",shard="alpha"} 0.0' in text
        assert "forwarder_zookeeper_session 1.0" in text


def sentinel_source(deployment: Deployment) -> dict[str, object]:
    return {
        "kind": "sentinel",
        "addresses": [str(a) for a in deployment.sentinels],
        "masters": [s.name for s in deployment.spec.shards],
    }


@pytest.mark.slow
def test_sink_failover_while_forwarding(fresh_deployment: Fresh) -> None:
    """The target deployment fails over: writes follow its new master."""
    source = fresh_deployment("standalone")
    target = fresh_deployment("sentinel")
    server = source.spec.shards[0].master
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "targets": {"archive": sentinel_source(target)},
        "route": [
            {
                "name": "copy",
                "from": {"channels": ["events"]},
                "to": {"target": "archive", "stream": "mirror:{channel}"},
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    alpha = master_locator(target, "alpha")  # an archive target writes to its first master
    with NodeRunner(config) as runner, Publisher(lambda: server, "events") as publisher:
        wait_until(runner.all_running, "the task forwarding", timeout=15)
        wait_until(lambda: len(publisher.sent) > 200, "traffic flowing")
        sentinel = target.sentinels[0]
        command(
            redis.Redis(host=sentinel.host, port=sentinel.port), "SENTINEL", "FAILOVER", "alpha"
        )
        task = next(iter(runner.node.tasks.values()))
        resumed = wait_resumed(task, publisher)
    after = {seq for seq, at in publisher.sent if at > resumed + 0.2}
    wait_until(
        lambda: after <= forwarded(alpha, "mirror:events"), "all sent after resume kept", timeout=15
    )


@pytest.mark.slow
def test_stream_route_through_source_failover(fresh_deployment: Fresh) -> None:
    """A stream route through a Sentinel failover of its source: every entry the new
    master has is forwarded (what replication itself lost is not the forwarder's)."""
    deployment = fresh_deployment("sentinel")
    config = {
        "source": sentinel_source(deployment),
        "route": [
            {
                "name": "ev",
                "from": {"streams": ["events"], "group": "fwd"},
                "to": {"stream": "copy:{channel}"},
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    alpha = master_locator(deployment, "alpha")
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "tasks forwarding", timeout=15)
        written = 0

        def add(count: int) -> None:
            nonlocal written
            address = alpha()
            client = redis.Redis(host=address.host, port=address.port)
            for _ in range(count):
                client.xadd("events", {"seq": written})
                written += 1

        add(500)
        sentinel = deployment.sentinels[0]
        command(
            redis.Redis(host=sentinel.host, port=sentinel.port), "SENTINEL", "FAILOVER", "alpha"
        )
        task = runner.node.tasks[("ev", "alpha")]
        wait_until(
            lambda: bool(task.gaps) and task.gaps[-1].end is not None and task.running,
            "the task re-homed",
            timeout=30,
        )
        add(500)

        def source_and_copy() -> tuple[set[bytes], set[bytes]]:
            address = alpha()
            client = redis.Redis(host=address.host, port=address.port)
            return (
                {i for i, _ in xrange(client, "events")},
                {i for i, _ in xrange(client, "copy:events")},
            )

        wait_until(
            lambda: source_and_copy()[0] <= source_and_copy()[1],
            "every entry of the new master copied",
            timeout=30,
        )
        source_ids, copied_ids = source_and_copy()
        assert len(source_ids) >= 500 and copied_ids == source_ids


def test_run_logs_json_and_stops_cleanly_on_sigterm(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    config = tmp_path / "forwarder.toml"
    config.write_text(
        f'[source]\nkind = "standalone"\naddresses = ["{server}"]\n'
        '[[route]]\nname = "logs"\nfrom = { channels = ["log.test"] }\n'
        'to = { list = "log-copy" }\n'
    )
    log_file = tmp_path / "run.log"
    process = start_run(config, log_file, "--log-format", "json")
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    assert any("logs@" in e["message"] and "forwarding from" in e["message"] for e in lines)


@pytest.mark.slow
def test_read_from_replica_and_survive_its_death(fresh_deployment: Fresh) -> None:
    """read_from = "replica": the subscription sits on a replica (PUBLISH on the master
    reaches it through replication); when that replica is killed, the task moves to the
    next replica; with none left, to the master; back to a replica when one returns."""
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    config = config_for(deployment)
    config["source"] = {**sentinel_source(deployment), "read_from": "replica"}
    alpha = deployment.spec.shards[0]
    with NodeRunner(config) as runner, Publisher(lambda: alpha.master, "orders.r") as publisher:
        wait_until(runner.all_running, "tasks forwarding", timeout=15)
        task = runner.node.tasks[("orders", "alpha")]
        assert task.source_address in alpha.replicas
        wait_until(lambda: len(publisher.sent) > 200, "traffic flowing")
        victim = next(p for p in lab.state().processes if p.address == str(task.source_address))
        lab.send_signal(victim.name, signal.SIGKILL)
        resumed = wait_resumed(task, publisher)
        # The next replica, not the master (the master came first: the dead replica left
        # the topology and a count of failed attempts then skipped the live one).
        assert task.source_address != Address.parse(victim.address)
        assert task.source_address in alpha.replicas, f"reads {task.source_address}"
        # Both replicas gone: the master; one back: a replica again, not the master.
        second = next(p for p in lab.state().processes if p.address == str(task.source_address))
        lab.send_signal(second.name, signal.SIGKILL)
        wait_until(lambda: task.source_address == alpha.master and task.running, "on the master")
        lab.restart(victim.name)
        wait_until(
            lambda: task.source_address == Address.parse(victim.address) and task.running,
            "back on the replica that returned",
            timeout=30,
        )
        resumed = wait_resumed(task, publisher)
    after = {seq for seq, at in publisher.sent if at > resumed + 0.2}
    master = master_locator(deployment, "alpha")
    try:
        wait_until(
            lambda: after <= forwarded(master, "mirror:alpha:orders.r"),
            "everything after resume forwarded",
            timeout=15,
        )
    except AssertionError:
        missing = sorted(after - forwarded(master, "mirror:alpha:orders.r"))
        raise AssertionError(f"missing {len(missing)}: {missing[:10]}; gaps {task.gaps}") from None


def test_metrics_port_in_use_is_a_clear_error(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("standalone")
    server = deployment.spec.shards[0].master
    with socket.socket() as squatter:
        squatter.bind((server.host, 0))
        squatter.listen()
        taken = f"{server.host}:{squatter.getsockname()[1]}"
        config = {
            "source": {"kind": "standalone", "addresses": [str(server)]},
            "route": [{"name": "r", "from": {"channels": ["c"]}, "to": {"list": "l"}}],
            "node": {"metrics": taken},
        }
        runner = NodeRunner(config)
        with runner:
            wait_until(lambda: runner.error is not None, "the node refused to start")
    assert f"cannot serve metrics on {taken}" in str(runner.error)
    assert "[node] metrics" in str(runner.error)


def test_a_subscriber_closed_for_its_output_buffer_is_named(fresh_deployment: Fresh) -> None:
    """The sink holds the loop up (CLIENT PAUSE WRITE) while the source publishes
    faster than it can be forwarded: Redis closes the subscriber past its output buffer
    limit. The gap says why, and the node subscribes again and goes on."""
    source = fresh_deployment("standalone").spec.shards[0].master
    target = fresh_deployment("standalone").spec.shards[0].master
    publisher = redis.Redis(host=source.host, port=source.port)
    publisher.config_set("client-output-buffer-limit", "pubsub 64kb 0 0")
    sink = redis.Redis(host=target.host, port=target.port)
    config = {
        "source": {"kind": "standalone", "addresses": [str(source)]},
        "targets": {"out": {"kind": "standalone", "addresses": [str(target)]}},
        "route": [
            {
                "name": "burst",
                "from": {"channels": ["burst"]},
                "to": {"target": "out", "list": "copied"},
                "max_in_flight": 100,
                "sink_timeout": 30,
            }
        ],
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the route forwarding", timeout=20)
        (task,) = runner.node.tasks.values()
        command(sink, "CLIENT", "PAUSE", 2000, "WRITE")
        pipe = publisher.pipeline(transaction=False)
        for i in range(20_000):
            pipe.publish("burst", b"%05d" % i + b"x" * 995)  # 20 MB: past socket buffers
        pipe.execute()
        wait_until(lambda: bool(task.gaps), "the closed subscription noticed", timeout=20)
        assert "client-output-buffer-limit" in task.gaps[0].reason, task.gaps[0].reason
        wait_until(lambda: task.running, "subscribed again", timeout=20)
        before = sink.llen("copied")
        publisher.publish("burst", b"after")
        wait_until(lambda: sink.llen("copied") > before, "forwarding after the gap")
        assert before < 20_000  # what Redis had buffered was lost, and the gap says so


@pytest.mark.slow
def test_a_wedged_task_is_restarted(
    fresh_deployment: Fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that leaves a task's loop waiting with no deadline (here: the reader made
    to hang once) must not hold the task: the node sees the loop stop turning and
    restarts the task on fresh connections."""
    from redis_forwarder.resp import RawMessage
    from redis_forwarder.source.pubsub import PubSubReader

    source = fresh_deployment("standalone").spec.shards[0].master
    hang = threading.Event()
    real_messages = PubSubReader.messages

    async def messages(self: PubSubReader, timeout: float) -> list[RawMessage]:
        if hang.is_set():
            hang.clear()
            await asyncio.Event().wait()  # forever: the bug
        return await real_messages(self, timeout)

    monkeypatch.setattr(PubSubReader, "messages", messages)
    config = {
        "source": {"kind": "standalone", "addresses": [str(source)]},
        "route": [
            {
                "name": "r",
                "from": {"channels": ["c"]},
                "to": {"list": "copied"},
                "heartbeat": 0.2,
                "sink_timeout": 0.5,
            }
        ],
    }
    client = redis.Redis(host=source.host, port=source.port)
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "forwarding", timeout=15)
        (task,) = runner.node.tasks.values()
        hang.set()
        wait_until(
            lambda: bool(task.gaps), "the wedged loop noticed", timeout=task.wedged_after() + 10
        )
        assert task.gaps[0].reason.startswith("wedged: no progress for")
        wait_until(lambda: task.running, "restarted", timeout=15)
        client.publish("c", "after")
        wait_until(lambda: client.lrange("copied", 0, -1) == [b"after"], "forwarding again")
