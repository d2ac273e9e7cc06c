"""A route that feeds itself, past the config check, is stopped on a real Redis (issue
14: one PUBLISH became 1,390 messages in 1.5 s): by the task, before it connects, when
its shard decides it; by the pub/sub loop's guard when only the messages can tell."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.forwarding.states import TaskState
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.globs import MAX_TEMPLATE_CHOICES
from redis_forwarder.model import Address
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration]


def looping_config(server: Address, read: list[str], template: str) -> dict[str, Any]:
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            {"name": "feeds-itself", "from": {"patterns": read}, "to": {"channel": template}}
        ],
        "node": {"topology_interval": 0.5},
    }
    ForwarderConfig.model_validate(config)  # it loads: only the run can tell
    return config


def wait_stopped(runner: NodeRunner, why: str) -> Task:
    def stopped() -> bool:
        tasks = list(runner.node.tasks.values())
        return len(tasks) == 1 and tasks[0].in_gap and why in tasks[0].gaps[-1].reason

    wait_until(stopped, f"the route stopped: {why}", timeout=20)
    (task,) = runner.node.tasks.values()
    # The node tries again, backing off, and each attempt is refused unconnected.
    wait_until(lambda: task.state is TaskState.BACKING_OFF, "the task backs off", timeout=20)
    return task


def test_a_loop_its_shard_decides_never_starts(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
    prefix = f"lp{uuid.uuid4().hex[:8]}"
    # {shard} is not known at load on a standalone source; the task knows it.
    config = looping_config(server, [f"{prefix}.*"], f"{prefix}.{{shard}}.{{channel}}")
    with NodeRunner(config) as runner:
        task = wait_stopped(runner, "own output forever")
        assert client.publish(f"{prefix}.start", b"unread") == 0  # nobody subscribed
        assert task.metrics.received == 0 and task.metrics.forwarded == 0
        reason = task.gaps[-1].reason
        assert f"reads pattern '{prefix}.*'" in reason and "{shard}" in reason


def test_a_loop_only_the_messages_show_is_stopped_by_the_guard(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
    prefix = f"lp{uuid.uuid4().hex[:8]}"
    # More patterns than the check enumerates: {channel} becomes "anything", which
    # proves nothing, at load or at the task's start. Each message writes prefix.0.<its
    # channel>, which prefix.0.* reads again.
    patterns = [f"{prefix}.{i}.*" for i in range(MAX_TEMPLATE_CHOICES + 1)]
    config = looping_config(server, patterns, f"{prefix}.0.{{channel}}")
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task forwards", timeout=20)
        assert client.publish(f"{prefix}.0.start", b"once") == 1
        task = wait_stopped(runner, "feeds its own output")
        assert client.publish(f"{prefix}.0.probe", b"unread") == 0  # nobody subscribed
        # The first message, written; its copy, read back, tripped the guard unwritten.
        assert task.metrics.forwarded == 1, task.metrics.forwarded
        assert task.metrics.received == 2, task.metrics.received
        reason = task.gaps[-1].reason
        assert f"{prefix}.0.{prefix}.0.start" in reason and "feeds-itself" in reason
        assert runner.node.tasks[task.spec.key] is task  # the same task: not restarted
