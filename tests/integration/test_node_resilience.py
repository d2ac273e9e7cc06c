"""A node that no single error ends, and health that churn cannot break (issue 13).

- /readyz was computed in the HTTP server's thread by iterating the node's live task
  dict while the event loop added and removed tasks: "dictionary changed size during
  iteration", and the probe got a dropped connection instead of an answer.
- ``Node.run`` had no per-cycle guard: any unexpected exception in a cycle ended the
  node. Now it is logged with its traceback, counted (forwarder_cycle_errors_total),
  and the next cycle runs.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_forwarder.model import Address
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
ROUTES = 120  # enough tasks that iterating them takes a while


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def config_text(server: Address, metrics: str, routes: int) -> str:
    lines = [
        f'[source]\nkind = "standalone"\naddresses = ["{server}"]\n',
        f'[node]\nmetrics = "{metrics}"\ntopology_interval = 0.5\n',
    ]
    for index in range(routes):
        lines.append(
            f'[[route]]\nname = "r{index}"\nfrom = {{ channels = ["churn.{index}"] }}\n'
            f'to = {{ list = "churn:{index}" }}\n'
        )
    return "\n".join(lines)


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond: a race between the HTTP thread and the loop
    that needs an unlucky switch shows up in seconds instead of hours."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def probe(url: str) -> int:
    """/readyz's status; any other outcome (a dropped connection, bad JSON) raises."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            json.loads(answer.read())
            status: int = answer.status
            return status
    except urllib.error.HTTPError as refused:
        json.loads(refused.read())
        return refused.code


def test_readyz_answers_while_tasks_start_and_stop(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path, fast_thread_switches: None
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    metrics = f"{server.host}:{free_port(server.host)}"
    many, few = tmp_path / "many.toml", tmp_path / "few.toml"
    many.write_text(config_text(server, metrics, ROUTES))
    few.write_text(config_text(server, metrics, 1))
    config: dict[str, Any] = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "node": {"metrics": metrics, "topology_interval": 0.5},
        "route": [{"name": "r0", "from": {"channels": ["churn.0"]}, "to": {"list": "churn:0"}}],
    }
    statuses: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                statuses.append(probe(f"http://{metrics}/readyz"))
            except Exception as exc:  # the point: count what is not an answer
                failures.append(repr(exc))

    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the first task forwarding", timeout=20)
        hammering = threading.Thread(target=hammer, daemon=True)
        hammering.start()
        try:
            for swap in range(6):  # 120 tasks start, then stop, three times over
                path = many if swap % 2 == 0 else few
                runner.reload(path)
                wanted = ROUTES if swap % 2 == 0 else 1
                wait_until(
                    lambda wanted=wanted: len(runner.node.tasks) == wanted,  # type: ignore[misc]
                    f"{wanted} tasks after reload {swap}",
                    timeout=30,
                )
        finally:
            stop.set()
            hammering.join(10)
    assert not failures, f"{len(failures)} of {len(failures) + len(statuses)}: {failures[:3]}"
    assert len(statuses) > 50 and set(statuses) <= {200, 503}


@pytest.mark.slow  # 4-7 s: the fast set stays near two minutes
def test_a_failing_cycle_does_not_end_the_node(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """Two cycles fail with an unexpected error (a bug, injected): the node logs them,
    counts them, and goes on forwarding."""
    server = shared_deployment("standalone").spec.shards[0].master
    config: dict[str, Any] = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "node": {"topology_interval": 0.5},
        "route": [{"name": "guard", "from": {"channels": ["guard"]}, "to": {"list": "guard"}}],
    }
    client = redis.Redis(host=server.host, port=server.port)
    client.delete("guard")
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "forwarding", timeout=20)
        node = runner.node
        cycle = node.coordinator.cycle
        failures = [RuntimeError("injected bug"), KeyError("injected")]

        async def failing(*args: Any, **kwargs: Any) -> Any:
            if failures:
                raise failures.pop()
            return await cycle(*args, **kwargs)

        node.coordinator.cycle = failing  # type: ignore[method-assign]
        sample = node.metrics.registry.get_sample_value
        wait_until(lambda: sample("forwarder_cycle_errors_total") == 2, "two failed cycles counted")
        after = sample("forwarder_cycles_total") or 0
        wait_until(lambda: (sample("forwarder_cycles_total") or 0) >= after + 2, "cycles go on")
        client.publish("guard", "after")
        wait_until(lambda: client.lrange("guard", 0, -1) == [b"after"], "still forwarding")
        assert runner.error is None
