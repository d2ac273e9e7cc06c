"""The assignment's layout through a rolling upgrade (issue 18), with real node
processes and a real ZooKeeper: while a member of an older release (one whose member
document names no layout) is in the fleet, the controller writes the whole document
that release reads (layout 1); once it is gone, the assignment in parts (layout 2);
and back should one return. No task changes owner on either switch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from redis_forwarder.coordination import parts
from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths, decode, encode
from tests.support.deployments import Deployment
from tests.support.fleet import fleet
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def register_older_member(client: FleetClient, paths: Paths) -> None:
    """A member as an older release writes it: no ``layout``; another config, so that
    the controller assigns it nothing (no process of it runs here)."""
    document = {"id": "old-1", "host": "elsewhere", "pid": 1, "version": "0.9", "config": "x"}
    client.client.create(paths.member("old-1"), encode(document), ephemeral=True, makepath=True)


def layout(client: FleetClient, paths: Paths) -> int:
    marker = client.get(paths.assignment)
    return parts.layout_of(marker.data if marker else None)


def test_an_older_member_keeps_layout_1_and_the_switches_move_nothing(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    hosts = deployment.zookeeper_hosts
    with fleet(tmp_path, source, hosts) as f, FleetClient(hosts) as reader:
        paths = Paths(f.root)
        with FleetClient(hosts) as older:
            register_older_member(older, paths)
            for node in ("n1", "n2"):
                f.start(node)
            owners, standbys = f.wait_settled({"n1", "n2"})
            document = decode(reader.get(paths.assignment).data)  # type: ignore[union-attr]
            assert layout(reader, paths) == 1 and len(document["tasks"]) == len(f.routes)
            assert reader.children(paths.parts) == []
        # The older member's session closed: its znode went with it.
        wait_until(lambda: layout(reader, paths) == 2, "the assignment in parts", timeout=15)
        assert sorted(reader.children(paths.parts)) == ["n1", "n2"]
        assert f.wait_settled({"n1", "n2"}) == (owners, standbys)
        assert f.status()["assignment_serial"] >= 1
        with FleetClient(hosts) as older:
            register_older_member(older, paths)
            wait_until(lambda: layout(reader, paths) == 1, "the whole document again", timeout=15)
            document = decode(reader.get(paths.assignment).data)  # type: ignore[union-attr]
            assert len(document["tasks"]) == len(f.routes)
            assert f.wait_settled({"n1", "n2"}) == (owners, standbys)
