"""The lab's Prometheus (``[monitoring]``): its config, its process plan, and what the
lab asks it (ready; the alerts it holds). It scrapes every forwarder node of the spec as
the job ``redis-forwarder`` and evaluates the shipped rules, copied into its directory
(``redis_forwarder/monitoring/alerts.yml``: the rules operators deploy are the ones the
lab and the tests run, never a lab's variant).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from redis_forwarder.lab.readiness import Check
from redis_forwarder.lab.spec import MonitoringSpec, TopologySpec
from redis_forwarder.model import Address

JOB = "redis-forwarder"
RULES_FILE = "alerts.yml"
CONFIG_FILE = "prometheus.yml"
FLAGS = ("--storage.tsdb.retention.time=1d", "--log.level=warn")
PROBE_TIMEOUT = 2.0


def shipped_rules() -> str:
    """The alert rules as shipped in the package."""
    return (resources.files("redis_forwarder") / "monitoring" / RULES_FILE).read_text("utf-8")


def prometheus_config(spec: TopologySpec) -> str:
    """prometheus.yml: one job for the forwarder nodes, the rules beside it. (JSON is
    YAML: no YAML writer needed.)"""
    monitoring, forwarders = spec.monitoring, spec.forwarders
    assert monitoring is not None and forwarders is not None
    interval = _duration(monitoring.scrape_interval)
    document = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "scrape_timeout": _duration(min(monitoring.scrape_interval, 10.0)),
            "external_labels": {"lab": spec.name},
        },
        # Relative to this file: the same config serves the lab and `lab compose`.
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {
                        "targets": [str(node.metrics) for node in forwarders.nodes],
                        "labels": {"lab": spec.name},
                    }
                ],
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def prometheus_argv(binary: str, monitoring: MonitoringSpec, directory: Path) -> tuple[str, ...]:
    return (
        binary,
        f"--config.file={directory / CONFIG_FILE}",
        f"--storage.tsdb.path={directory / 'tsdb'}",
        *FLAGS,
        f"--web.listen-address={monitoring.prometheus}",
    )


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def api(address: Address, path: str, timeout: float = PROBE_TIMEOUT) -> Any:
    """GET ``path`` of Prometheus' HTTP API; its ``data``. Raises OSError or ValueError."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as answer:
        body = json.loads(answer.read())
    if body.get("status") != "success":
        raise ValueError(f"{path}: {body.get('error', body)}")
    return body["data"]


def alerts(address: Address) -> list[dict[str, Any]]:
    """The alerts Prometheus holds now (pending or firing), with their labels."""
    found: list[dict[str, Any]] = api(address, "/api/v1/alerts")["alerts"]
    return found


def prometheus_ready(address: Address, targets: int) -> Check:
    """Ready: it answers, has loaded the rules, and has scraped every node once."""

    def probe() -> str | None:
        try:
            groups = api(address, "/api/v1/rules")["groups"]
            active = api(address, "/api/v1/targets?state=active")["activeTargets"]
        except (OSError, ValueError, KeyError) as exc:
            return f"no answer ({exc})"
        if not groups:
            return "no alert rules loaded"
        scraped = sum(1 for t in active if t.get("health") == "up")
        if scraped < targets:
            return f"{scraped} of {targets} forwarder nodes scraped"
        return None

    return Check(f"prometheus on {address}", probe)


def targets_summary(address: Address) -> str:
    """For ``lab status``: how many targets are up, how many alerts fire."""
    try:
        active = api(address, "/api/v1/targets?state=active")["activeTargets"]
        firing = [a for a in alerts(address) if a.get("state") == "firing"]
    except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        return f"unreachable ({exc})"
    up = sum(1 for t in active if t.get("health") == "up")
    return f"prometheus, {up}/{len(active)} targets up, {len(firing)} alerts firing"
