"""Deployments for tests, behind a provider so that a container provider can stand in.

The process provider starts the shipped topology specs through the same lab code that
operators use, moved to a loopback subnet of their own (127.A.B.x instead of 127.0.0.x)
so that tests never collide with a lab an operator left running, nor with each other.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from redis_forwarder.lab import Lab, TopologySpec, parse_spec
from redis_forwarder.model import Address, DeploymentKind
from tests.support.commands import command

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "topology"
SHIPPED_SPECS = (
    "standalone",
    "sentinel",
    "cluster",
    "zk-ensemble",
    "ha",
    "ha-cluster",
    "tls",
    "monitoring",
    "bridge",
)


def test_network() -> int:
    """The second octet of this run's subnets: per process, so parallel runs differ.

    Under pytest-xdist (``scripts/test`` runs two workers) each worker is a process of
    its own with its own session fixtures and labs: the workers of one run take
    neighbouring octets from their common parent's pid, so two of them never draw the
    same one by chance (pid modulo 200 would, one run in 200)."""
    configured = os.environ.get("REDIS_FORWARDER_TEST_NET")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if worker is None:
        return int(configured) if configured else 10 + os.getpid() % 200
    index = int(worker.removeprefix("gw"))
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    if configured:
        return int(configured) + index
    return 10 + os.getppid() % max(1, 200 // count) * count + index


def relocated_spec_text(name: str, subnet: str) -> str:
    """A shipped spec's text with every 127.0.0.x address moved to ``subnet``.x."""
    text = (SPECS / f"{name}.toml").read_text(encoding="utf-8")
    return text.replace('"127.0.0.', f'"{subnet}.')


@dataclass
class Deployment:
    """A running deployment as tests see it: addresses, and the lab behind it (if any)."""

    spec: TopologySpec
    lab: Lab | None
    name: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> DeploymentKind:
        return self.spec.kind

    @property
    def zookeeper_hosts(self) -> str:
        assert self.spec.zookeeper is not None, f"{self.spec.name} has no ZooKeeper"
        return ",".join(str(a) for a in self.spec.zookeeper.addresses)

    @property
    def sentinels(self) -> list[Address]:
        return list(self.spec.sentinel.addresses) if self.spec.sentinel else []

    @property
    def redis_nodes(self) -> list[Address]:
        return self.spec.redis_addresses()

    def require_lab(self) -> Lab:
        """The lab behind this deployment; a test that drives processes by pid (faults,
        restarts, lab commands) is skipped on containers, saying so."""
        if self.lab is None:
            import pytest

            pytest.skip("drives the lab's processes by pid: the process provider only")
        return self.lab

    def log_files(self) -> list[Path]:
        if self.lab is None:
            return []
        return sorted((self.lab.directory / "logs").glob("*.log"))


class DeploymentProvider(Protocol):
    """Brings a shipped spec up and down. ``name`` shows in test ids and skip reasons."""

    name: str

    def up(self, spec_name: str) -> Deployment: ...

    def down(self, deployment: Deployment) -> None: ...


class ProcessProvider:
    """Deployments as local processes, through :class:`redis_forwarder.lab.Lab`."""

    name = "process"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._network = test_network()
        self._counter = itertools.count(1)

    def spec_text(self, spec_name: str) -> tuple[str, str]:
        """A fresh subnet and the spec moved onto it."""
        subnet = f"127.{self._network}.{next(self._counter)}"
        return subnet, relocated_spec_text(spec_name, subnet)

    def up(self, spec_name: str) -> Deployment:
        subnet, text = self.spec_text(spec_name)
        spec = parse_spec(text, source=f"{spec_name}.toml@{subnet}")
        lab = Lab(self.base_dir / f"{spec_name}-{subnet}")
        lab.up(spec, spec_path=str(SPECS / f"{spec_name}.toml"), timeout=60)
        return Deployment(spec=spec, lab=lab, name=spec_name)

    def down(self, deployment: Deployment) -> None:
        if deployment.lab is not None:
            deployment.lab.down(keep_logs=False)


class DockerProvider:
    """Deployments as containers: the spec's compose file (compose/, generated from the
    same spec) through pytest-docker's compose executor. The containers use the host's
    network, so the deployment listens at the spec's own addresses, as the lab would:
    one deployment per spec at a time (no subnet of its own), and the same readiness
    checks as the lab decide when it is up."""

    name = "docker"

    def __init__(self, compose_command: str, project_prefix: str) -> None:
        self.compose_command = compose_command
        self.project_prefix = project_prefix

    def _executor(self, spec_name: str) -> Any:
        from pytest_docker.plugin import DockerComposeExecutor

        return DockerComposeExecutor(
            self.compose_command,
            str(REPO / "compose" / f"{spec_name}.yaml"),
            f"{self.project_prefix}-{spec_name}",
        )

    def up(self, spec_name: str) -> Deployment:
        from redis_forwarder.lab.readiness import redis_answers, wait_for

        spec = parse_spec((SPECS / f"{spec_name}.toml").read_text(), source=spec_name)
        self._executor(spec_name).execute("up --build --detach")
        wait_for([redis_answers(a) for a in spec.redis_addresses()], 120, stage="redis: ")
        return Deployment(spec=spec, lab=None, name=spec_name)

    def down(self, deployment: Deployment) -> None:
        self._executor(deployment.name).execute("down --volumes --remove-orphans")


def docker_engine_problem() -> str:
    """Why no Docker engine can be used here ("" when one answers)."""
    import shutil
    import subprocess

    if shutil.which("docker") is None:
        return "no docker command on this machine"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker engine answers ({reason})"
    return ""


def processes_mentioning(text: str) -> list[str]:
    """Running processes whose command line or working directory mentions ``text`` (a
    lab directory): what a lab would leave behind if it failed to stop something.

    The working directory matters: redis-server rewrites its command line to
    ``redis-server HOST:PORT``, but it runs in its data directory inside the lab."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (text in cmdline or text in cwd) and state not in ("Z", "X"):
            found.append(f"{entry.name}: {cmdline.strip()} (in {cwd})")
    return found


def master_of(target: Deployment, name: str) -> Callable[[], tuple[str, int]]:
    """Where ``target``'s sentinels say master ``name`` is now (asked at each call)."""

    def locate() -> tuple[str, int]:
        for sentinel in target.sentinels:
            client = redis.Redis(host=sentinel.host, port=sentinel.port, socket_timeout=0.5)
            try:
                host, port = command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
                return host.decode(), int(port)
            except (redis.RedisError, OSError):
                continue
        raise OSError("no sentinel answered")

    return locate
