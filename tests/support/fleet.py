"""Several real forwarder nodes (``redis-forwarder run`` processes) sharing tasks through
a real ZooKeeper, for high-availability tests: start, signal by the pid we started,
read the fleet's status, find who owns what, and read what they wrote."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.coordination.fleet import fleet_status
from redis_forwarder.coordination.fleet_client import FleetClient
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.lab.forwarders import to_toml
from redis_forwarder.model import Address
from tests.support.cli import cli_command, cli_env
from tests.support.commands import xrange
from tests.support.waiting import wait_until

ROUTES = ("orders", "audit", "clicks", "events")


def fleet_config(
    source: Address,
    zookeeper: str,
    root: str,
    routes: tuple[str, ...] = ROUTES,
    session_timeout: float = 4.0,
) -> dict[str, Any]:
    """A standalone source; a pub/sub route per name, each into a stream of its own
    whose entries carry node id and epoch."""
    return {
        "source": {"kind": "standalone", "addresses": [str(source)]},
        "route": [
            {
                "name": name,
                "from": {"channels": [name]},
                "to": {"stream": f"{root.strip('/')}:{name}", "node_fields": True},
            }
            for name in routes
        ],
        "node": {"topology_interval": 0.5},
        "coordination": {
            "zookeeper": zookeeper,
            "root": root,
            "session_timeout": session_timeout,
        },
    }


@dataclass
class FleetNode:
    node_id: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Fleet:
    config: dict[str, Any]
    directory: Path
    nodes: dict[str, FleetNode] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.directory / "forwarder.toml"

    def rewrite(self, config: dict[str, Any]) -> None:
        """A new config for the nodes to read (at their next start, or on SIGHUP)."""
        self.config = config
        self.config_path.write_text(to_toml(config), encoding="utf-8")

    def use_identity(self, password_env: str = "RF_ZK_PASSWORD") -> dict[str, Any]:
        """Rewrite the config so the nodes authenticate to ZooKeeper as ``fleet`` with
        the password in ``password_env`` (which ``env`` must hold); return the config."""
        config = copy.deepcopy(self.config)
        config["coordination"].update(username="fleet", password_env=password_env)
        self.rewrite(config)
        return config

    @property
    def root(self) -> str:
        return str(self.config["coordination"]["root"])

    def start(self, node_id: str, metrics: str | None = None) -> FleetNode:
        """Run ``node_id``. With ``metrics`` (its metrics address) the node reads a config
        of its own, ``config`` as it is now with that address: two nodes cannot listen
        on one (``[node]`` is no part of the fingerprint: no config drift). A later
        ``rewrite`` does not reach that copy."""
        log = self.directory / f"{node_id}.log"
        config_path = self.config_path
        if metrics is not None:
            own = copy.deepcopy(self.config)
            own["node"] = {**own.get("node", {}), "metrics": metrics}
            config_path = self.directory / f"{node_id}.toml"
            config_path.write_text(to_toml(own), encoding="utf-8")
        with open(log, "ab") as out:
            process = subprocess.Popen(
                cli_command(
                    "--log-level", "info", "run", "--config", str(config_path),
                    "--node-id", node_id,
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=cli_env(**self.env),
            )  # fmt: skip
        node = self.nodes[node_id] = FleetNode(node_id, process, log)
        return node

    def status(self) -> dict[str, Any]:
        with FleetClient(str(self.config["coordination"]["zookeeper"])) as client:
            limit = ForwarderConfig.model_validate(self.config).cut_off_after
            return fleet_status(client, Paths(self.root), limit)

    def owners(self, as_assigned: bool = False) -> dict[str, str | None]:
        """route -> the node that owns its task and runs it (None: nobody now; with
        ``as_assigned``, also while the owner is not the node the assignment names)."""
        return {
            t["route"]: (
                t["owner"]
                if t["running"] and (t["owner"] == t["assigned"] or not as_assigned)
                else None
            )
            for t in self.status()["tasks"]
        }

    def wait_all_running(self, nodes: set[str], timeout: float = 30) -> dict[str, str | None]:
        """Until every route runs on one of ``nodes``, on the node the assignment names
        (not on its previous owner, about to hand it over); return the owners."""
        owners: dict[str, str | None] = {}

        def settled() -> bool:
            owners.clear()
            owners.update(self.owners(as_assigned=True))
            return set(owners) == set(self.routes) and all(o in nodes for o in owners.values())

        wait_until(settled, f"every task running on {sorted(nodes)}", timeout=timeout)
        return owners

    def wait_settled(
        self, nodes: set[str], timeout: float = 30
    ) -> tuple[dict[str, str | None], dict[str, str]]:
        """Until every route runs on ``nodes`` as assigned, loads differ by at most one,
        and every task has a standby that reports standing by for it (issue 15: a node
        owning too many hands a pub/sub task over only to a standby that is ready, so a
        join evens out a cycle or two later); return the owners and the standbys."""
        owners: dict[str, str | None] = {}
        standbys: dict[str, str] = {}

        def settled() -> bool:
            tasks = self.status()["tasks"]
            owners.clear()
            owners.update(
                {
                    t["route"]: t["owner"]
                    for t in tasks
                    if t["running"] and t["owner"] == t["assigned"]
                }
            )
            standbys.clear()
            standbys.update({t["route"]: t["standby"] for t in tasks if t["standby_reported"]})
            loads = [sum(1 for o in owners.values() if o == n) for n in nodes]
            return (
                set(owners) == set(standbys) == set(self.routes)
                and set(owners.values()) <= nodes
                and max(loads) - min(loads) <= 1
            )

        wait_until(settled, f"every task running on {sorted(nodes)}, even, stood by", timeout)
        return owners, standbys

    @property
    def routes(self) -> list[str]:
        return [r["name"] for r in self.config["route"]]

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.process.poll() is None:
                node.signal(signal.SIGCONT)  # a stopped process cannot act on SIGKILL's exit
                node.process.kill()
            node.process.wait(10)

    def dump_logs(self) -> str:
        return "\n".join(
            f"----- {n.node_id} (pid {n.pid})\n{n.log_text()[-6000:]}" for n in self.nodes.values()
        )


@contextmanager
def fleet(tmp_path: Path, source: Address, zookeeper: str, **options: Any) -> Iterator[Fleet]:
    """A fleet under a ZooKeeper root of its own; its nodes are killed (by pid) after."""
    env = options.pop("env", {})
    root = f"/test-{uuid.uuid4().hex[:10]}"
    config = fleet_config(source, zookeeper, root, **options)
    running = Fleet(config, tmp_path, env=env)
    running.config_path.write_text(to_toml(config), encoding="utf-8")
    try:
        yield running
    except BaseException:
        print(running.dump_logs())
        raise
    finally:
        running.stop_all()


def entries(client: redis.Redis, stream: str) -> list[tuple[float, dict[bytes, bytes]]]:
    """(entry time in s, fields) of every entry of ``stream``."""
    return [
        (int(entry_id.split(b"-")[0]) / 1000, fields) for entry_id, fields in xrange(client, stream)
    ]
