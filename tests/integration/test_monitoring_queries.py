"""The shipped Grafana dashboard and alert rules ask only for what the nodes export: on
a real fleet of two nodes (one the controller) with pub/sub and stream routes, every
metric their queries name must be in the /metrics of one of the nodes, and every label
they use must be a label of that metric (or ``job``/``instance``, which Prometheus adds
to every series). A metric renamed in the code, or a typo in a query, fails here
instead of leaving an empty panel or an alert that can never fire.

Some series appear only after an event (a labelled counter once incremented): a family
the nodes declare (``# HELP``/``# TYPE``) without samples counts as exported, with the
label names its metric object declares in the code."""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from redis_forwarder.model import Address
from redis_forwarder.observe import Metrics
from tests.support.deployments import Deployment
from tests.support.fleet import Fleet, fleet
from tests.support.promql import Query, parse, template_query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MONITORING = files("redis_forwarder") / "monitoring"
TARGET_LABELS = frozenset({"job", "instance"})  # Prometheus adds them to every series
# the sample names a family of each type exports (prometheus_client's text format)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
Exports = Mapping[str, frozenset[str]]  # sample name -> its label names


@dataclass(frozen=True)
class Source:
    """One query and where it is: a panel's target, a templating variable, an alert."""

    where: str
    text: str
    templating: bool = False

    def query(self) -> Query:
        return template_query(self.text) if self.templating else parse(self.text)


def sample_labels(texts: Iterable[str], declared: Exports) -> dict[str, frozenset[str]]:
    """Sample name -> label names, over every exposition in ``texts``; a family without
    samples exports the names of its type, with the labels ``declared`` gives them."""
    found: dict[str, set[str]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, set()).update(sample.labels)
            if family.samples:
                continue
            for suffix in SUFFIXES.get(family.type, ("",)):
                name = family.name + suffix
                labels = set(declared.get(name, ()))
                labels |= {"le"} if suffix == "_bucket" else set()
                labels |= {"quantile"} if family.type == "summary" and not suffix else set()
                found.setdefault(name, set()).update(labels)
    return {name: frozenset(labels) for name, labels in found.items()}


def declared_labels() -> Exports:
    """What a node's registry exports once every labelled metric has a child: the
    label names the code declares for each sample name."""
    metrics = Metrics()
    for collector in list(metrics.registry._collector_to_names):
        names = getattr(collector, "_labelnames", ())
        if names:
            collector.labels(*["x"] * len(names))  # type: ignore[attr-defined]
    metrics.hot.of("x", "x")  # the per-batch counts: a collector of their own
    return sample_labels([generate_latest(metrics.registry).decode()], {})


def dashboard_sources(dashboard: Mapping[str, Any]) -> Iterator[Source]:
    """Every query of the dashboard: its panels' targets (in rows, collapsed rows'
    panels too), its templating queries, and its annotations' expressions."""

    def panels(items: Iterable[Mapping[str, Any]], row: str) -> Iterator[Source]:
        for panel in items:
            title = panel.get("title", f"#{panel.get('id')}")
            if panel.get("type") == "row":
                yield from panels(panel.get("panels", []), title)
                row = title
                continue
            for target in panel.get("targets", []):
                where = f"panel {row} / {title!r} ({target.get('refId', '?')})"
                yield Source(where, target["expr"])

    yield from panels(dashboard.get("panels", []), "(top)")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield Source(f"variable ${variable['name']}", text, templating=True)
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield Source(f"annotation {annotation.get('name')!r}", annotation["expr"])


def alert_sources(rules: Mapping[str, Any]) -> Iterator[Source]:
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or f"record {rule.get('record')}"
            yield Source(f"alert {name!r} (group {group.get('name')!r})", rule["expr"])


def recorded(rules: Mapping[str, Any], exported: Exports) -> dict[str, frozenset[str]]:
    """Recording rules' names as metrics, with their grouping labels (a ``by`` list) or
    else the labels of what they read: other rules and panels may select them."""
    made: dict[str, frozenset[str]] = {}
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            if "record" in rule:
                query = parse(rule["expr"])
                read = {label for m in query.metrics for label in exported.get(m, ())}
                made[rule["record"]] = query.grouping or frozenset(read)
    return made


def problems(sources: Iterable[Source], exported: Exports) -> list[str]:
    """What each query names that the nodes do not export, where it is."""
    found = []
    everything = TARGET_LABELS.union(*exported.values())
    for source in sources:
        try:
            query = source.query()
        except ValueError as exc:
            found.append(f"{source.where}: does not parse: {exc}")
            continue
        missing = False
        for selector in query.selectors:
            if selector.metric is None:
                found.append(f"{source.where}: a selector without a metric name")
                missing = True
            elif selector.metric not in exported:
                found.append(f"{source.where}: metric {selector.metric} is not exported")
                missing = True
            else:
                for label in sorted(selector.labels - exported[selector.metric] - TARGET_LABELS):
                    found.append(f"{source.where}: {selector.metric} has no label {label!r}")
        if missing:
            continue  # its grouping labels could be that metric's: told once it exists
        metrics = sorted(query.metrics)
        known = (
            TARGET_LABELS.union(query.made, *(exported[m] for m in metrics))
            if query.selectors
            else everything
        )
        for label in sorted(query.grouping - known):
            found.append(
                f"{source.where}: label {label!r} (by/without/on/ignoring/group_*) is on none "
                f"of {', '.join(metrics) or 'the metrics'}"
            )
    return list(dict.fromkeys(found))  # a metric selected twice in a query: told once


def free_address() -> Address:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return Address("127.0.0.1", probe.getsockname()[1])


def scrape(address: Address) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
        return text


def answers(address: Address) -> bool:
    try:
        scrape(address)
    except OSError:
        return False
    return True


def start_with_metrics(f: Fleet, node_id: str) -> Address:
    """Start ``node_id`` serving /metrics on an address of its own, named by the config
    it reads at start ([node] is no part of the fleet's config fingerprint); return once
    it serves, so that the config can name the next node's."""
    address = free_address()
    config = copy.deepcopy(f.config)
    config["node"] = {**config.get("node", {}), "metrics": str(address)}
    f.rewrite(config)
    f.start(node_id)
    wait_until(lambda: answers(address), f"{node_id} serving /metrics on {address}")
    return address


def test_every_query_of_the_dashboard_and_alerts_names_what_the_nodes_export(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text(encoding="utf-8"))
    alerts_file = MONITORING / "alerts.yml"
    rules: Mapping[str, Any] = (
        yaml.safe_load(alerts_file.read_text(encoding="utf-8")) if alerts_file.is_file() else {}
    )
    sources = [*dashboard_sources(dashboard), *alert_sources(rules)]
    assert len(sources) > 50, [s.where for s in sources]  # the walk found the panels
    deployment = shared_deployment("standalone")
    server = deployment.spec.shards[0].master
    source = redis.Redis(host=server.host, port=server.port)
    declared = declared_labels()
    with fleet(tmp_path, server, deployment.zookeeper_hosts, routes=("orders", "audit")) as f:
        tag = f.root.strip("/")
        config = copy.deepcopy(f.config)
        stream = {"streams": [f"{tag}:in"], "group": "fwd"}
        config["route"].append({"name": "entries", "from": stream, "to": {"stream": f"{tag}:out"}})
        f.rewrite(config)
        nodes = {node: start_with_metrics(f, node) for node in ("n1", "n2")}
        f.wait_all_running(set(nodes), timeout=20)

        def forwarded() -> bool:  # until each route wrote: latencies, batches observed
            for name in ("orders", "audit"):
                source.publish(name, b"message")
            source.xadd(f"{tag}:in", {"payload": b"entry"})
            return all(source.xlen(f"{tag}:{name}") for name in ("orders", "audit", "out"))

        wait_until(forwarded, "a message forwarded on every route", timeout=10)
        found: list[str] = []
        texts: list[str] = []

        def clean() -> bool:  # polled: standbys report, the controller plans, lag is measured
            texts[:] = [scrape(address) for address in nodes.values()]
            exported = {
                **sample_labels(texts, declared),
                "up": TARGET_LABELS,
            }
            exported.update(recorded(rules, exported))
            found[:] = problems(sources, exported)
            return not found

        with contextlib.suppress(AssertionError):  # told below, with every problem
            wait_until(clean, "the queries' metrics exported", timeout=8)
        controllers = ["forwarder_controller 1.0" in text.splitlines() for text in texts]
        assert sorted(controllers) == [False, True], "one node of two is the controller"
        assert not found, "queries naming what the nodes do not export:\n" + "\n".join(found)

        # strict: a typo in a metric or a label name is told, where it is
        exported = {**sample_labels(texts, declared), "up": TARGET_LABELS}
        typos = [
            Source("panel typo", "rate(forwarder_recieved_messages_total[5m])"),
            Source("panel label", 'forwarder_task_running{rout=~"$route"}'),
            Source("panel by", "sum by (rout) (forwarder_task_running)"),
            Source("alert other's label", 'forwarder_controller{route="orders"}'),
            Source("variable", "label_values(forwarder_owned_tasks, route)", templating=True),
        ]
        assert problems(typos, exported) == [
            "panel typo: metric forwarder_recieved_messages_total is not exported",
            "panel label: forwarder_task_running has no label 'rout'",
            "panel by: label 'rout' (by/without/on/ignoring/group_*) is on none of "
            "forwarder_task_running",
            "alert other's label: forwarder_controller has no label 'route'",
            "variable: forwarder_owned_tasks has no label 'route'",
        ]
