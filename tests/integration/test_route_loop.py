"""A route that feeds itself, past the config check, is stopped by the pub/sub loop's
guard on a real Redis (issue 14: one PUBLISH became 1,390 messages in 1.5 s)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.forwarding.states import TaskState
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration]


def test_a_loop_seen_only_at_run_time_is_stopped(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
    prefix = f"lp{uuid.uuid4().hex[:8]}"
    # {shard} is not known before the run on a standalone source, so the config check
    # cannot prove that lpX.<shard>.<channel> matches lpX.*: it does, whatever the shard.
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [
            {
                "name": "feeds-itself",
                "from": {"patterns": [f"{prefix}.*"]},
                "to": {"channel": f"{prefix}.{{shard}}.{{channel}}"},
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    ForwarderConfig.model_validate(config)  # it loads: only the run can tell
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the task forwards", timeout=20)
        (task,) = runner.node.tasks.values()
        client.publish(f"{prefix}.start", b"once")

        def stopped() -> bool:
            return task.in_gap and "feeds its own output" in task.gaps[-1].reason

        wait_until(stopped, "the loop guard stopped the route", timeout=20)
        # The node tries again (backing off), and each attempt is refused unconnected.
        wait_until(lambda: task.state is TaskState.BACKING_OFF, "the task backs off", timeout=20)
        # Nobody subscribes to the pattern any more (PUBLISH counts its receivers).
        assert client.publish(f"{prefix}.probe", b"unread") == 0
        # The first message and its first copy: read back, the copy tripped the guard.
        assert task.metrics.forwarded <= 2, task.metrics.forwarded
        assert task.metrics.received <= 3, task.metrics.received
        assert f"{prefix}.start" in task.gaps[-1].reason
        assert "feeds-itself" in task.gaps[-1].reason
        assert runner.node.tasks[task.spec.key] is task  # the same task: not restarted
