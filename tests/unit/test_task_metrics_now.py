"""What a task's metrics say of "now" must not outlive the task on a node, and what an
alert counts must exist before its first event (the review of issue 19: a stopped
task's refusing sink kept a critical alert firing for a task another node ran; a
backlog summed over every attempt's loops only grew; a counter born at its first event
is never seen to increase)."""

from __future__ import annotations

from redis_forwarder.forwarding.metrics import TaskMetrics


def _value(metrics: TaskMetrics, name: str, **labels: str) -> float | None:
    wanted = {"route": "r", "shard": "s", **labels}
    for family in metrics.registry.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return sample.value
    return None


def test_counters_an_alert_watches_exist_at_zero_from_the_start() -> None:
    metrics = TaskMetrics.alone("r", "s")
    for name, labels in (
        ("forwarder_output_buffer_cuts_total", {}),
        ("forwarder_sink_failover_lost_entries_total", {}),
        ("forwarder_oversize_messages_total", {"action": "dead-lettered"}),
        ("forwarder_refused_for_good_total", {"action": "dead-lettered"}),
        ("forwarder_unfit_entries_total", {"action": "dead-lettered"}),
        ("forwarder_dropped_messages_total", {}),
        ("forwarder_refused_writes_total", {}),
    ):
        assert _value(metrics, name, **labels) == 0.0, name


def test_a_stopped_task_no_longer_says_its_sink_refuses_or_its_group_lags() -> None:
    metrics = TaskMetrics.alone("r", "s")
    metrics.refusal(3, "READONLY", lost=True)
    metrics.stream_backlog(1, 5000, 800)
    assert _value(metrics, "forwarder_sink_refusing") == 1.0
    assert _value(metrics, "forwarder_stream_lag_entries") == 5000.0
    metrics.ended()
    assert _value(metrics, "forwarder_sink_refusing") == 0.0
    assert _value(metrics, "forwarder_stream_lag_entries") == 0.0
    assert _value(metrics, "forwarder_stream_pending_entries") == 0.0
    assert _value(metrics, "forwarder_refused_writes_total") == 3.0  # history stays


def test_a_new_attempt_drops_the_last_attempts_backlogs() -> None:
    metrics = TaskMetrics.alone("r", "s")
    metrics.stream_backlog(1, 5000, 800)  # the first attempt's loop
    metrics.attempt()
    metrics.stream_backlog(2, 10, 0)  # the next attempt's loop
    assert _value(metrics, "forwarder_stream_lag_entries") == 10.0
    assert _value(metrics, "forwarder_stream_pending_entries") == 0.0
    metrics.stream_backlog(3, 5, 2)  # a second loop of the same attempt: summed
    assert _value(metrics, "forwarder_stream_lag_entries") == 15.0
    metrics.stream_backlog(3, None, 1)  # lag unknown: its last value stays
    assert _value(metrics, "forwarder_stream_lag_entries") == 15.0
    assert _value(metrics, "forwarder_stream_pending_entries") == 1.0
