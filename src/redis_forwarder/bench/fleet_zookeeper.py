"""Where the fleet bench's ZooKeeper comes from, and what the bench asks its servers.

- ``--zookeeper HOST:PORT[,HOST:PORT...]``: a ZooKeeper already running;
- ``--dir LAB``: the ZooKeeper of a lab that is up;
- else a ZooKeeper of the bench's own, for the run: the lab's own plan for a
  ZooKeeper node (``lab.plan``: ``maxClientCnxns=0``, ``mntr`` whitelisted, a 500 ms
  tick) on a free port, in a temporary directory, stopped afterwards by the pid (and
  start time) the bench started. Not a whole lab: a lab always starts Redis, which the
  fleet bench does not need. Its heap is 1 GiB rather than the lab's 256 MiB: 500
  sessions reading a large assignment every second would measure the collector.

``mntr`` (the four-letter word) gives the request counters; an ensemble's are summed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from redis_forwarder.bench.fleet_model import parse_mntr, summed
from redis_forwarder.errors import LabError, UsageError
from redis_forwarder.lab import Lab, pids, probes
from redis_forwarder.lab.binaries import find_binaries
from redis_forwarder.lab.plan import ProcessKind, data_dir, plan_processes
from redis_forwarder.lab.readiness import wait_for, zookeeper_serving
from redis_forwarder.lab.spawner import log_tail, spawn
from redis_forwarder.lab.spec import validate_spec
from redis_forwarder.model import Address

HEAP = "-Xmx1g"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ZooKeeperTarget:
    hosts: str  # as kazoo takes it
    servers: tuple[Address, ...]
    description: str
    server: pids.ProcessIdentity | None = None  # the one the bench started, if it did
    log: Path | None = None  # its log

    def mntr(self) -> dict[str, float] | None:
        """Every server's numeric ``mntr`` values, summed; None when a server does not
        answer it (not whitelisted, or down)."""
        answers = []
        for address in self.servers:
            try:
                answer = parse_mntr(probes.zookeeper_command(address, "mntr", timeout=5))
            except probes.ProbeFailed:
                return None
            if "zk_packets_received" not in answer:
                return None
            answers.append(answer)
        return summed(answers)

    def server_cpu_seconds(self) -> float | None:
        """The CPU time of the server the bench started (None for another's)."""
        if self.server is None or not pids.is_running(self.server):
            return None
        return cpu_seconds(self.server.pid)


def cpu_seconds(pid: int) -> float | None:
    """A live process's user + system CPU time (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def zookeeper_for(
    zookeeper: str | None,
    directory: Path | None,
    report: Callable[[str], None],
    logs: Path | None = None,
) -> Iterator[ZooKeeperTarget]:
    """The ZooKeeper to bench on; a server of the bench's own logs into ``logs`` (kept)
    if given."""
    if zookeeper is not None and directory is not None:
        raise UsageError("--zookeeper and --dir both name a ZooKeeper: give one")
    if zookeeper is not None:
        servers = tuple(Address.parse(s.strip()) for s in zookeeper.split("/")[0].split(","))
        yield ZooKeeperTarget(zookeeper, servers, zookeeper)
        return
    if directory is not None:
        state = Lab(directory).state()
        servers = tuple(
            Address.parse(p.address) for p in state.processes if p.kind == ProcessKind.ZOOKEEPER
        )
        if not servers:
            raise UsageError(f"the lab in {directory} has no ZooKeeper")
        hosts = ",".join(str(s) for s in servers)
        yield ZooKeeperTarget(hosts, servers, f"the lab's ({hosts})")
        return
    with _temporary_zookeeper(report, logs) as target:
        yield target


def free_port() -> int:
    """A port free on loopback now (never ZooKeeper's usual 2181)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != 2181:
            return port


@contextlib.contextmanager
def _temporary_zookeeper(
    report: Callable[[str], None], logs: Path | None
) -> Iterator[ZooKeeperTarget]:
    binaries = find_binaries(sentinel=False, zookeeper=True)
    address = Address("127.0.0.1", free_port())
    with tempfile.TemporaryDirectory(prefix="redis-forwarder-fleet-") as temporary:
        lab_dir = Path(temporary)
        spec = validate_spec(
            {
                "name": "fleet-bench",
                "kind": "standalone",
                # planned, never started: the lab's plan needs a shard
                "shard": [{"name": "unused", "master": f"127.0.0.1:{free_port()}"}],
                "zookeeper": {"addresses": [str(address)]},
            }
        )
        (plan,) = [
            p for p in plan_processes(spec, lab_dir, binaries) if p.kind is ProcessKind.ZOOKEEPER
        ]
        directory = data_dir(lab_dir, plan.name)
        directory.mkdir(parents=True)
        for name, content in plan.files:
            (directory / name).write_text(content, encoding="utf-8")
        argv = tuple(HEAP if part.startswith("-Xmx") else part for part in plan.argv)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        log = (logs or lab_dir) / "zookeeper.log"
        report(f"starting a ZooKeeper on {address}")
        with open(log, "wb") as log_file:
            child = spawn(argv, directory, log_file)
        identity = pids.identify(child.pid) or pids.ProcessIdentity(child.pid, -1)
        try:

            def alive() -> None:
                if child.poll() is not None:
                    raise LabError(f"the bench's ZooKeeper exited:\n{log_tail(log)}")

            wait_for([zookeeper_serving(address, False)], START_TIMEOUT, watchdog=alive)
            yield ZooKeeperTarget(
                str(address), (address,), f"a ZooKeeper of its own ({address})", identity, log
            )
        finally:
            pids.stop([identity])
            child.wait(10)
