"""Why a subscription the server closed was closed, as the gap's reason says it. Pure:
Redis 7.0 names the cause only in its own log (issue 14: a 50 MB message was lost with
only "Connection reset by peer")."""

from __future__ import annotations

from redis_forwarder.forwarding.pubsub import (
    LARGE_REPLY,
    STALL_MEMORY,
    explained,
    output_buffer_cut,
)
from redis_forwarder.resp import ConnectionLost

LIMIT = "client-output-buffer-limit pubsub"
LONG_AGO = STALL_MEMORY + 1


def test_a_close_or_reset_by_the_server_names_the_limit() -> None:
    closed = explained(ConnectionLost("a:1", "closed by the server", by_server=True), LONG_AGO, 0)
    assert closed.reason.startswith("closed by the server: ") and LIMIT in closed.reason
    assert "never sent at all" in closed.reason and "CLIENT KILL" in closed.reason
    reset = ConnectionLost("a:1", "read: [Errno 104] Connection reset by peer", by_server=True)
    assert LIMIT in explained(reset, LONG_AGO, 0).reason


def test_a_large_message_under_way_makes_the_limit_likely() -> None:
    lost = ConnectionLost("a:1", "closed by the server", by_server=True, unfinished=3 << 20)
    reason = explained(lost, LONG_AGO, 0).reason
    assert reason.startswith("closed by the server 3.0 MB into one message: most likely")
    assert LIMIT in reason
    small = ConnectionLost(
        "a:1", "closed by the server", by_server=True, unfinished=LARGE_REPLY - 1
    )
    assert "most likely" not in explained(small, LONG_AGO, 0).reason


def test_a_recent_sink_stall_is_named_as_before() -> None:
    lost = ConnectionLost("a:1", "closed by the server", by_server=True)
    reason = explained(lost, 2.0, 0.5).reason
    assert reason.startswith("closed by the server 2.0s after the sink held the loop up")


def test_a_loss_of_our_own_or_a_timeout_is_left_as_it_is() -> None:
    timeout = ConnectionLost("a:1", "read: timed out")
    assert explained(timeout, 1.0, 0.5) is timeout


def test_only_the_likely_cuts_are_counted_for_the_alert() -> None:
    """``forwarder_output_buffer_cuts_total`` counts what ``explained`` calls most
    likely the limit: a server close after a sink stall, or during a large message;
    not any close by the server, and never our own loss."""
    closed = ConnectionLost("a:1", "closed by the server", by_server=True)
    large = ConnectionLost("a:1", "closed by the server", by_server=True, unfinished=LARGE_REPLY)
    ours = ConnectionLost("a:1", "no reply within 1s")
    assert output_buffer_cut(closed, 2.0)
    assert output_buffer_cut(large, LONG_AGO)
    assert not output_buffer_cut(closed, LONG_AGO)
    assert not output_buffer_cut(ours, 0.0)
    for lost, ago in ((closed, 2.0), (large, LONG_AGO), (closed, LONG_AGO)):
        assert output_buffer_cut(lost, ago) == ("most likely" in explained(lost, ago, 0.5).reason)
