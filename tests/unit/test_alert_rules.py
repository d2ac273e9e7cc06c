"""The shipped alert rules (``redis_forwarder/monitoring/alerts.yml``): valid for
Prometheus' own checker, right on series shaped like a fleet's (``promtool test rules``:
Prometheus' engine on synthetic series, not a reimplementation), and each with a runbook
entry in docs/operations.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_forwarder.lab.monitoring import shipped_rules
from tests.support.deployments import REPO

RULES = REPO / "src" / "redis_forwarder" / "monitoring" / "alerts.yml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: scripts/install installs Debian's prometheus")
        pytest.skip("promtool is not installed (Debian's prometheus; scripts/install)")
    return found


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_shipped_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout
    assert shipped_rules() == RULES.read_text(encoding="utf-8")  # what the lab loads


def test_every_alert_has_a_runbook_entry() -> None:
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", operations, flags=re.MULTILINE)
    }
    for rule in _rules():
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/operations.md has no {rule['alert']}"


JOB = "redis-forwarder-prod"
N1 = {"job": JOB, "instance": "n1"}


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of node n1 of the fleet JOB (other labels as given)."""
    every = {**N1, **labels}
    inside = ", ".join(f'{key}="{value}"' for key, value in every.items())
    return {"series": f"{name}{{{inside}}}", "values": values}


# Two nodes and their controller: n1 the controller, forwarding orders@a; n2 forwarding
# orders@b until it dies at minute 2 (its scrape fails: up 0, its series gone). Nobody
# takes orders@b over. Another fleet (its own job) runs an orders@b of its own all
# along: it must not hide this fleet's.
FLEET_SERIES = [
    _series("up", "1x10"),
    _series("up", "1 1 0x8", instance="n2"),
    _series("forwarder_fleet_member", "1x10"),
    _series("forwarder_controller", "1x10"),
    _series("forwarder_fleet_task_wanted", "1x10", route="orders", shard="a"),
    _series("forwarder_fleet_task_wanted", "1x10", route="orders", shard="b"),
    _series("forwarder_task_running", "1x10", route="orders", shard="a"),
    _series("forwarder_task_running", "1 1 stale", instance="n2", route="orders", shard="b"),
    _series("forwarder_task_running", "1x10", job="redis-forwarder-eu", route="orders", shard="b"),
]
# A standby whose ring reaches back 3 s, under the 9 s a takeover needs, and drops
# messages (its byte cap); and a gap that stays open.
RING_SERIES = [
    _series("forwarder_standby_ring_seconds", "3x10", route="orders", shard="b"),
    _series("forwarder_standby_takeover_needs_seconds", "9x10"),
    _series("forwarder_standby_evicted_messages_total", "0+600x10", route="orders", shard="b"),
    _series("forwarder_gap_open_seconds", "0 0 10+60x8", route="orders", shard="a"),
]
# What the counters and the other gauges of one task say when something happens at
# minute 2 (each counter exists at 0 from the task's start, as TaskMetrics makes it).
TASK = {"route": "orders", "shard": "a"}
EVENT_SERIES = [
    _series("forwarder_output_buffer_cuts_total", "0 0 1x12", **TASK),
    _series("forwarder_oversize_messages_total", "0 0 2x12", action="dead-lettered", **TASK),
    _series("forwarder_oversize_messages_total", "0x14", action="dropped", **TASK),
    _series("forwarder_dropped_messages_total", "0x14", **TASK),
    _series("forwarder_sink_failover_lost_entries_total", "0x14", **TASK),
    _series("forwarder_standby_unaccounted_seconds_total", "0 0 2.5x12", **TASK),
    _series("forwarder_refused_writes_total", "0 0 3x12", **TASK),
    _series("forwarder_sink_refusing", "0 0 1x12", **TASK),
    _series("forwarder_cut_off", "0 0 1x12"),
    _series("forwarder_zookeeper_session", "1 1 0.5x12"),
    _series("forwarder_cycle_errors_total", "0 0 1x12"),
    # lag growing by 500 a minute from minute 2; another task's lag high but flat
    _series("forwarder_stream_lag_entries", "0 0 1000+500x12", **TASK),
    _series("forwarder_stream_lag_entries", "5000x14", route="events", shard="a"),
]


def _alert(name: str, at: str, labels: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": label} for label in labels],
    }


def _promtool_test(tmp_path: Path, groups: list[dict[str, Any]]) -> None:
    tests = {
        "rule_files": [str(_without_annotations(tmp_path))],
        "evaluation_interval": "15s",
        "tests": [{"interval": "1m", **group} for group in groups],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(tests), encoding="utf-8")
    result = subprocess.run(
        [_promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_dead_node_and_its_tasks_fire_in_their_own_fleet_only(tmp_path: Path) -> None:
    orders_b = {"job": JOB, "route": "orders", "shard": "b", "severity": "critical"}
    cases = [
        # n2 died at minute 2; "for: 30s": nothing yet at 2m, firing by 3m.
        _alert("ForwarderNodeDown", "2m", []),
        _alert("ForwarderNodeDown", "3m", [{**N1, "instance": "n2", "severity": "warning"}]),
        _alert("ForwarderTaskWithoutOwner", "2m", []),
        # the other fleet's orders@b running does not hide this fleet's
        _alert("ForwarderTaskWithoutOwner", "3m", [orders_b]),
        _alert("ForwarderNoController", "5m", []),  # n1 holds the lock throughout
        _alert(
            "ForwarderStandbyRingTooShort",
            "6m",
            [{**N1, "route": "orders", "shard": "b", "severity": "warning"}],
        ),
        _alert("ForwarderGapOpenTooLong", "1m", []),
        _alert(
            "ForwarderGapOpenTooLong",
            "3m",
            [{**N1, "route": "orders", "shard": "a", "severity": "critical"}],
        ),
    ]
    no_controller = [
        _series("forwarder_fleet_member", "1x5"),
        _series("forwarder_controller", "0x5"),
        _series("forwarder_controller", "1x5", job="redis-forwarder-eu"),  # another fleet's
    ]
    _promtool_test(
        tmp_path,
        [
            {"input_series": FLEET_SERIES + RING_SERIES, "alert_rule_test": cases},
            {
                "input_series": no_controller,
                "alert_rule_test": [
                    _alert("ForwarderNoController", "15s", []),
                    _alert("ForwarderNoController", "2m", [{"job": JOB, "severity": "critical"}]),
                ],
            },
        ],
    )


def test_each_event_fires_its_alert_the_first_time(tmp_path: Path) -> None:
    task = {"job": JOB, **TASK}
    node_task = {**N1, **TASK}
    cases = [
        _alert("ForwarderOutputBufferCut", "1m", []),
        _alert("ForwarderOutputBufferCut", "3m", [{**node_task, "severity": "warning"}]),
        _alert("ForwarderDeadLettered", "3m", [{**task, "severity": "warning"}]),
        _alert("ForwarderMessagesLost", "1m", []),
        _alert("ForwarderMessagesLost", "3m", [{**task, "severity": "critical"}]),
        _alert("ForwarderRefusalsRising", "3m", [{**task, "severity": "warning"}]),
        _alert("ForwarderSinkRefusing", "2m30s", []),  # "for: 1m"
        _alert("ForwarderSinkRefusing", "4m", [{**node_task, "severity": "critical"}]),
        _alert("ForwarderCutOffFromRedis", "3m", [{**N1, "severity": "warning"}]),
        _alert("ForwarderZooKeeperSessionNotConnected", "3m", [{**N1, "severity": "warning"}]),
        _alert("ForwarderCycleErrors", "3m", [{**N1, "severity": "warning"}]),
        # lag over 1000 and growing from minute 2; "for: 10m"; the flat one never
        _alert("ForwarderStreamLagGrowing", "8m", []),
        _alert("ForwarderStreamLagGrowing", "13m", [{**node_task, "severity": "warning"}]),
    ]
    _promtool_test(tmp_path, [{"input_series": EVENT_SERIES, "alert_rule_test": cases}])


def _without_annotations(directory: Path) -> Path:
    """The shipped rules, their annotations left out: promtool compares annotations
    whenever an alert fires, and the expressions, durations and labels are under test
    here (the runbook test reads the annotations)."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = directory / "alerts.yml"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
