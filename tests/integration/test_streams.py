"""Stream routes: at least once, and no duplicates when entry ids are copied. The
forwarder process is killed with SIGKILL mid-stream and another node (another consumer
name) takes over: every entry arrives once, in order, with its source id."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.cli import cli_command, cli_env
from tests.support.commands import xadd, xrange
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
TOTAL = 3000


def config(server: str, node_id: str) -> str:
    return f"""
[source]
kind = "standalone"
addresses = ["{server}"]

[[route]]
name = "events"
from = {{ streams = ["events"], group = "fwd" }}
to = {{ stream = "copy:{{channel}}" }}

[node]
id = "{node_id}"
topology_interval = 0.5
"""


def start(tmp_path: Path, server: str, node_id: str) -> subprocess.Popen[bytes]:
    path = tmp_path / f"{node_id}.toml"
    path.write_text(config(server, node_id))
    return subprocess.Popen(
        cli_command("--log-level", "info", "run", "--config", str(path)),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"{node_id}.log", "wb"),
    )


def test_kill_9_and_takeover_lose_nothing_and_duplicate_nothing(
    fresh_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    server = fresh_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    first = start(tmp_path, str(server), "node-a")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(
            lambda: bool(client.exists("events")) and bool(client.xinfo_groups("events")),
            "the group created",
            timeout=20,
        )
        produced: list[bytes] = []

        def produce() -> None:
            for seq in range(TOTAL):
                produced.append(xadd(client, "events", {"seq": seq, "blob": b"\xff\x00" * 10}))

        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: client.xlen("copy:events") > 300, "forwarding under way")
        first.send_signal(signal.SIGKILL)  # mid-batch, nothing flushed, nothing acked
        first.wait(10)
        assert client.xlen("copy:events") < TOTAL, "killed too late to test anything"
        second = start(tmp_path, str(server), "node-b")
        producer.join(60)
        wait_until(lambda: client.xlen("copy:events") >= TOTAL, "every entry forwarded", timeout=60)
        wait_until(
            lambda: client.xpending("events", "fwd")["pending"] == 0,
            "every entry acknowledged",
            timeout=30,
        )
        consumers = {c["name"] for c in client.xinfo_consumers("events", "fwd")}
        assert consumers == {b"node-a", b"node-b"} or consumers == {"node-a", "node-b"}
        copied = xrange(client, "copy:events")
        assert [entry_id for entry_id, _ in copied] == produced  # same ids, once each, in order
        assert [int(fields[b"seq"]) for _, fields in copied] == list(range(TOTAL))
        assert all(fields[b"blob"] == b"\xff\x00" * 10 for _, fields in copied)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)


def test_an_entry_claimed_after_newer_ones_were_copied_is_late_not_lost(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """A previous owner left an entry pending while the sink already holds a newer one
    (its blocked read was served after the takeover): its copied id is behind the
    sink's last, so XADD refuses it. The sink does not hold it: it must be written with
    a new id, not taken for a duplicate."""
    import uuid

    from tests.support.node_runner import NodeRunner

    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    source, copy = f"late-{tag}", f"copy:late-{tag}"
    client.xgroup_create(source, "g", id="$", mkstream=True)
    older = client.xadd(source, {"n": "older"})
    newer = client.xadd(source, {"n": "newer"})
    client.xreadgroup("g", "old-owner", {source: ">"})  # both pending for the old owner
    client.xadd(copy, {"n": "newer"}, id=newer)  # the new owner copied the newer one
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            {"name": "late", "from": {"streams": [source], "group": "g"},
             "to": {"stream": "copy:{channel}"}}
        ],
        "node": {"id": "new-owner"},
    }  # fmt: skip
    with NodeRunner(config):
        wait_until(lambda: client.xpending(source, "g")["pending"] == 0, "both settled")
    copied = [fields[b"n"] for _id, fields in xrange(client, copy)]
    assert sorted(copied) == [b"newer", b"older"]  # the newer once, the older not lost
    assert older not in [entry_id for entry_id, _ in xrange(client, copy)]  # a new id
    client.delete(source, copy)


def test_a_range_in_stream_names_reads_each_stream(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """``src:{0..1}`` is two streams, as for channels: it once made a literal key."""
    import uuid

    from tests.support.node_runner import NodeRunner

    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            {"name": "ranged", "from": {"streams": [f"rng-{tag}:{{0..1}}"], "group": "g"},
             "to": {"stream": "copy:{channel}"}}
        ],
    }  # fmt: skip
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task reads", timeout=20)
        for n in (0, 1):
            xadd(client, f"rng-{tag}:{n}", {"payload": f"to {n}"})
        wait_until(
            lambda: all(client.xlen(f"copy:rng-{tag}:{n}") == 1 for n in (0, 1)),
            "an entry copied from each stream",
        )
    for n in (0, 1):
        assert xrange(client, f"copy:rng-{tag}:{n}")[0][1][b"payload"] == f"to {n}".encode()
    assert not client.exists(f"rng-{tag}:{{0..1}}")  # no literal key, no group on it
    client.delete(*(f"{name}rng-{tag}:{n}" for name in ("", "copy:") for n in (0, 1)))
