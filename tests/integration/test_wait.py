"""``to.wait``: a stream entry is acknowledged at the source only once the sink's
replicas have it (issue 14: a Sentinel failover erased what the demoted master had
acknowledged, and the node had counted it as forwarded)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
import redis

from tests.support.commands import xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
REPLICAS = ("alpha-replica-1", "alpha-replica-2")


@pytest.mark.slow
def test_entries_stay_pending_until_a_replica_has_them(
    fresh_deployment: Callable[[str], Deployment],
) -> None:
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    config = {
        "source": {
            "kind": "sentinel",
            "addresses": [str(a) for a in deployment.sentinels],
            "masters": [s.name for s in deployment.spec.shards],
        },
        "route": [
            {
                "name": "events",
                "from": {"streams": ["events"], "group": "fwd"},
                "to": {"stream": "copy:{channel}", "wait": {"replicas": 1, "timeout": 0.1}},
            }
        ],
        "node": {"topology_interval": 0.5},
    }
    master = deployment.spec.shards[0].master
    client = redis.Redis(host=master.host, port=master.port)
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "both tasks forwarding", timeout=15)
        task = runner.node.tasks[("events", "alpha")]
        first = [client.xadd("events", {"n": str(n)}) for n in range(10)]
        wait_until(lambda: client.xlen("copy:events") == 10, "replicated entries copied")
        wait_until(lambda: client.xpending("events", "fwd")["pending"] == 0, "and acknowledged")
        assert task.metrics.unreplicated == 0
        try:
            for name in REPLICAS:
                lab.send_signal(name, signal.SIGSTOP)
            later = [client.xadd("events", {"n": str(n)}) for n in range(10, 30)]
            wait_until(lambda: client.xlen("copy:events") == 30, "written to the sink master")
            wait_until(lambda: task.metrics.unreplicated >= 20, "counted as unreplicated")
            # Written, but on no replica: not acknowledged at the source, not forwarded.
            assert client.xpending("events", "fwd")["pending"] == 20
            assert task.metrics.forwarded == 10
        finally:
            for name in REPLICAS:
                lab.send_signal(name, signal.SIGCONT)
        wait_until(
            lambda: client.xpending("events", "fwd")["pending"] == 0,
            "acknowledged once the replicas have them",
            timeout=20,
        )
        copied = [entry_id for entry_id, _fields in xrange(client, "copy:events")]
        assert copied == first + later  # each once, with its source id
        assert task.metrics.replays == 20  # claimed again: the rewrite was a no-op
