"""One pub/sub message larger than Redis' output-buffer limit for subscribers: Redis
cuts the subscriber off while the message is on its way, and says why only in its own
log. The gap's reason names the limit (issue 14: a 50 MB message was lost with only
"Connection reset by peer"); the sink never held the loop up, so the stall rule that
names it after a slow sink does not apply."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Fresh = Callable[[str], Deployment]


def test_a_message_over_the_output_buffer_limit_names_the_limit(fresh_deployment: Fresh) -> None:
    server = fresh_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    client.config_set("client-output-buffer-limit", "pubsub 1mb 1mb 0")
    config = {
        "source": {"kind": "standalone", "addresses": [str(server)]},
        "route": [{"name": "big", "from": {"channels": ["big"]}, "to": {"list": "copied"}}],
        "node": {"topology_interval": 0.5},
    }
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "the route forwarding", timeout=20)
        (task,) = runner.node.tasks.values()
        client.publish("big", b"x" * (8 << 20))  # 8 MB, over the 1 MB hard limit
        wait_until(lambda: bool(task.gaps), "the closed subscription noticed", timeout=20)
        reason = task.gaps[0].reason
        assert "client-output-buffer-limit pubsub" in reason, reason
        wait_until(lambda: task.running, "subscribed again", timeout=20)
        client.publish("big", b"small")
        wait_until(lambda: client.lrange("copied", 0, -1) == [b"small"], "forwarding after")
