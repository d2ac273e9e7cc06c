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


# Series as two nodes and their controller export them: n1 the controller, forwarding
# orders@a; n2 forwarding orders@b until it dies at minute 2 (its scrape fails: up 0,
# its series gone). Nobody takes orders@b over.
FLEET_SERIES = [
    {"series": 'up{job="redis-forwarder", instance="n1"}', "values": "1x10"},
    {"series": 'up{job="redis-forwarder", instance="n2"}', "values": "1 1 0x8"},
    {"series": 'forwarder_fleet_member{job="redis-forwarder", instance="n1"}', "values": "1x10"},
    {"series": 'forwarder_controller{job="redis-forwarder", instance="n1"}', "values": "1x10"},
    {
        "series": 'forwarder_fleet_task_wanted{job="redis-forwarder", instance="n1", '
        'route="orders", shard="a"}',
        "values": "1x10",
    },
    {
        "series": 'forwarder_fleet_task_wanted{job="redis-forwarder", instance="n1", '
        'route="orders", shard="b"}',
        "values": "1x10",
    },
    {
        "series": 'forwarder_task_running{job="redis-forwarder", instance="n1", '
        'route="orders", shard="a"}',
        "values": "1x10",
    },
    {
        "series": 'forwarder_task_running{job="redis-forwarder", instance="n2", '
        'route="orders", shard="b"}',
        "values": "1 1 stale",
    },
]
# A standby whose ring reaches back 3 s, under the 9 s a takeover needs, and drops
# messages (its byte cap); and a gap that stays open.
RING_SERIES = [
    {
        "series": 'forwarder_standby_ring_seconds{job="redis-forwarder", instance="n1", '
        'route="orders", shard="b"}',
        "values": "3x10",
    },
    {
        "series": 'forwarder_standby_takeover_needs_seconds{job="redis-forwarder", instance="n1"}',
        "values": "9x10",
    },
    {
        "series": 'forwarder_standby_evicted_messages_total{job="redis-forwarder", '
        'instance="n1", route="orders", shard="b"}',
        "values": "0+600x10",
    },
    {
        "series": 'forwarder_gap_open_seconds{job="redis-forwarder", instance="n1", '
        'route="orders", shard="a"}',
        "values": "0 0 10+60x8",
    },
]


def _alert(name: str, at: str, labels: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": label} for label in labels],
    }


def test_the_rules_fire_on_a_fleets_series(tmp_path: Path) -> None:
    node = {"job": "redis-forwarder", "instance": "n2"}
    n1 = {"job": "redis-forwarder", "instance": "n1", "route": "orders"}
    cases = [
        # n2 died at minute 2; "for: 30s": nothing yet at 2m, firing by 3m.
        _alert("ForwarderNodeDown", "2m", []),
        _alert("ForwarderNodeDown", "3m", [{**node, "severity": "warning"}]),
        _alert("ForwarderTaskWithoutOwner", "2m", []),
        _alert(
            "ForwarderTaskWithoutOwner",
            "3m",
            [{"route": "orders", "shard": "b", "severity": "critical"}],
        ),
        _alert("ForwarderNoController", "5m", []),  # n1 holds the lock throughout
        _alert(
            "ForwarderStandbyRingTooShort",
            "6m",
            [{**n1, "shard": "b", "severity": "warning"}],
        ),
        _alert("ForwarderGapOpenTooLong", "1m", []),
        _alert(
            "ForwarderGapOpenTooLong",
            "3m",
            [{**n1, "shard": "a", "severity": "critical"}],
        ),
    ]
    no_controller = [
        {"series": 'forwarder_fleet_member{job="redis-forwarder", instance="n1"}', "values": "1x5"},
        {"series": 'forwarder_controller{job="redis-forwarder", instance="n1"}', "values": "0x5"},
    ]
    tests = {
        "rule_files": [str(_without_annotations(tmp_path))],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "1m",
                "input_series": FLEET_SERIES + RING_SERIES,
                "alert_rule_test": cases,
            },
            {
                "interval": "1m",
                "input_series": no_controller,
                "alert_rule_test": [
                    _alert("ForwarderNoController", "15s", []),
                    _alert("ForwarderNoController", "2m", [{"severity": "critical"}]),
                ],
            },
        ],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(tests), encoding="utf-8")
    result = subprocess.run(
        [_promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
