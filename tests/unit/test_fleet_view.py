"""The fleet page's endpoints (fleet_view.py) without a fleet: a ZooKeeper that refuses
(a real closed port) answers 503 naming what failed; a node alone answers a document
that says so, with its own tasks; the page itself is one self-contained file that puts
no string into the page as markup."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.fleet_view import FleetView, annotated, page
from redis_forwarder.model import Address
from redis_forwarder.observe import HealthServer, Metrics, Readiness
from tests.support.fleet import fleet_config


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(zookeeper: str | None) -> ForwarderConfig:
    raw = fleet_config(Address("127.0.0.1", closed_port()), zookeeper or "x:1", "/fleet")
    if zookeeper is None:
        del raw["coordination"]
    return ForwarderConfig.model_validate(raw)


def readiness(tasks: dict[str, bool]) -> Readiness:
    return Readiness(all(tasks.values()), {"tasks": tasks, "role": "alone"})


@contextmanager
def serving(view: FleetView) -> Iterator[str]:
    server = HealthServer(Address("127.0.0.1", 0), Metrics(), view.readiness, view)
    server.start()
    try:
        yield f"http://{server.address}"
    finally:
        server.stop()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as failed:
        return failed.code, failed.headers["Content-Type"], failed.read()


def test_a_zookeeper_that_refuses_answers_503_naming_it() -> None:
    zookeeper = f"127.0.0.1:{closed_port()}"
    view = FleetView(config(zookeeper), "n1", lambda: readiness({}))
    with serving(view) as base:
        status, kind, body = get(f"{base}/fleet.json")
        again = get(f"{base}/fleet.json")[2]
    assert (status, kind) == (503, "application/json")
    document = json.loads(body)
    assert document["error"].startswith("cannot read the fleet from ZooKeeper: ")
    assert f"{zookeeper}: connection refused" in document["error"]
    assert document["fleet"] == {"root": "/fleet", "zookeeper": zookeeper}
    # Kept for a second: many open pages do not each try ZooKeeper again.
    assert again == body


def test_a_stopped_view_opens_no_session() -> None:
    view = FleetView(config(f"127.0.0.1:{closed_port()}"), "n1", lambda: readiness({}))
    view.close()
    answer = view.answer()
    assert answer.status == 503
    assert json.loads(answer.body)["error"] == "the node is stopping"


def test_a_node_alone_answers_its_own_tasks() -> None:
    tasks = {"orders@127.0.0.1:7000": True, "audit@127.0.0.1:7000": False}
    view = FleetView(config(None), "edge-1", lambda: readiness(tasks))
    with serving(view) as base:
        status, _kind, body = get(f"{base}/fleet.json")
    assert status == 200
    document = json.loads(body)
    assert document["alone"] is True
    assert "runs alone (no [coordination] in its config)" in document["message"]
    assert document["fleet"] is None and document["members"] == []
    shown = {(t["route"], t["shard"], t["owner"], t["running"]) for t in document["tasks"]}
    assert shown == {
        ("orders", "127.0.0.1:7000", "edge-1", True),
        ("audit", "127.0.0.1:7000", "edge-1", False),
    }
    assert document["summary"]["not_running"] == 1


def test_the_page_is_self_contained_and_escapes_every_string() -> None:
    view = FleetView(config(None), "edge-1", lambda: readiness({}))
    with serving(view) as base:
        status, kind, body = get(f"{base}/")
        assert get(f"{base}/?reload=1")[2] == body
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert body == page()
    text = body.decode()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), "an external asset"
    assert not re.search(r"<link|<script\s+src|<img|@import|url\(", text, re.IGNORECASE)
    for markup in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert markup not in text, f"{markup}: strings go into the page as text only"


def member(**fields: Any) -> dict[str, Any]:
    return {"id": "n1", "reported_at": 999.0, "cut_off": [], "drained": False, **fields}


def task(**fields: Any) -> dict[str, Any]:
    base = {"route": "orders", "shard": "a", "owner": "n1", "running": True}
    return {**base, "state": "forwarding", "standby": "n2", "standby_reported": True, **fields}


def test_health_and_problems_come_from_the_document() -> None:
    document = annotated(
        {
            "now": 1000.0,
            "controller": "n1",
            "paused": ["clicks"],
            "members": [
                member(),
                member(id="n2", reported_at=990.0),
                member(id="n3", cut_off=["source"]),
                member(id="n4", drained=True),
            ],
            "tasks": [
                task(),
                task(route="audit", owner=None, running=False),
                task(route="events", running=False, state="backing-off"),
                task(route="metrics", standby_reported=False),
                task(route="clicks", owner=None, running=False),
            ],
        }
    )
    health = {m["id"]: (m["health"], m["controller"]) for m in document["members"]}
    assert health == {
        "n1": ("reporting", True),
        "n2": ("silent", False),
        "n3": ("cut off", False),
        "n4": ("drained", False),
    }
    flagged = {t["route"]: (t["severity"], t["problems"]) for t in document["tasks"]}
    assert flagged == {
        "orders": ("ok", []),
        "audit": ("bad", ["no owner"]),
        "events": ("bad", ["not running"]),
        "metrics": ("warn", ["standby not ready"]),
        "clicks": ("paused", []),
    }
    assert document["summary"] == {
        "members": 4,
        "tasks": 5,
        "not_running": 3,
        "unowned": 2,
        "standbys": 5,
        "standbys_ready": 4,
    }


def test_a_node_with_the_page_off_answers_404_there_and_serves_its_metrics() -> None:
    """``[node] fleet_page = false``: the node passes no view; / and /fleet.json are
    unknown paths, the rest of the endpoint is as before."""
    off = ForwarderConfig.model_validate(
        {**fleet_config(Address("127.0.0.1", 1), "x:1", "/f"), "node": {"fleet_page": False}}
    )
    assert off.node.fleet_page is False
    server = HealthServer(Address("127.0.0.1", 0), Metrics(), lambda: readiness({}), None)
    server.start()
    try:
        base = f"http://{server.address}"
        assert get(f"{base}/")[0] == 404
        assert get(f"{base}/fleet.json")[0] == 404
        assert get(f"{base}/metrics")[0] == 200
    finally:
        server.stop()
