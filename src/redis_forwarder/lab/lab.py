"""A local deployment in one directory: ``up`` starts it from a spec, ``status`` reports on
it, ``down`` stops exactly the processes it started.

Layout of a lab directory::

    lab.json        the state file: spec, processes (pid + start time), addresses
    .lock           held (flock) while up or down works on the directory
    data/NAME/      each process's config and data (removed by down)
    logs/NAME.log   each process's stdout and stderr (removed by down unless kept)

Contract: ``up`` returns only when the deployment is ready (every Redis node answers,
replicas are linked, cluster_state:ok everywhere, sentinels agree on each master and
its replicas, ZooKeeper serves). If it cannot get there, it stops everything it started
and raises; nothing is left running. Processes are detached from the caller's session,
so a lab outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from redis_forwarder.errors import (
    LabAlreadyUpError,
    LabBusyError,
    LabError,
    LabNotFoundError,
    UsageError,
)
from redis_forwarder.lab import monitoring, pids, probes
from redis_forwarder.lab import tls as lab_tls
from redis_forwarder.lab.binaries import find_binaries
from redis_forwarder.lab.cluster_build import build_cluster
from redis_forwarder.lab.plan import (
    STOP_ORDER,
    ProcessKind,
    ProcessPlan,
    plan_processes,
    redis_plan,
)
from redis_forwarder.lab.ports import check_free
from redis_forwarder.lab.readiness import (
    Check,
    Progress,
    fleet_settled,
    forwarder_ready,
    redis_answers,
    replica_linked,
    sentinel_agrees,
    wait_for,
    zookeeper_serving,
)
from redis_forwarder.lab.spawner import Spawner
from redis_forwarder.lab.spec import TopologySpec, listening_addresses
from redis_forwarder.lab.state import (
    LabState,
    ProcessRecord,
    read_state,
    state_path,
    write_state,
)
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.retry import Deadline

DEFAULT_LAB_DIR = ".lab"
LAB_DIR_ENV = "REDIS_FORWARDER_LAB_DIR"
DEFAULT_UP_TIMEOUT = 90.0


def default_lab_dir() -> Path:
    """``$REDIS_FORWARDER_LAB_DIR``, else ``.lab`` in the current directory."""
    return Path(os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


@contextlib.contextmanager
def temporary_lab(
    spec: TopologySpec, spec_path: str, prefix: str, progress: Progress | None = None
) -> Iterator[Lab]:
    """A lab of ``spec`` in a temporary directory, up for the ``with`` block, then
    down (bench and drill runs that bring their own deployment)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        lab = Lab(Path(temporary) / "lab")
        lab.up(spec, spec_path=spec_path, progress=progress)
        try:
            yield lab
        finally:
            lab.down()


@dataclass(frozen=True)
class ProcessStatus:
    record: ProcessRecord
    running: bool
    role: str  # what the process says it is now, or why it could not say


@dataclass(frozen=True)
class DownReport:
    stopped: list[str]
    already_gone: list[str]
    still_running: list[str]


class Lab:
    """One lab directory. Methods are synchronous and bounded by their timeouts."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_lab_dir()
        self.directory = self.directory.absolute()
        self._spawner = Spawner(self.directory)  # what this process started, and how

    # ---------------------------------------------------------------- reading

    def state(self) -> LabState:
        self._refuse_a_file()
        state = read_state(self.directory)
        if state is None:
            raise LabNotFoundError(
                f"no lab is up in {self.directory} (no {state_path(self.directory).name}); "
                "start one with `redis-forwarder lab up SPEC --dir DIR`"
            )
        if state.tls:  # probes of this lab speak TLS
            made = lab_tls.files(self.directory)
            addresses = [Address.parse(p.address) for p in state.processes]
            probes.use_tls(addresses, made.ca, made.client_cert, made.client_key)
        return state

    def status(self, *, probe: bool = True) -> list[ProcessStatus]:
        """Each recorded process: running by pid and start time, and what it says it is."""
        result = []
        for record in self.state().processes:
            running = pids.is_running(record.identity)
            if not running:
                role = "not running"
            elif probe:
                role = _current_role(record)
            else:
                role = record.role
            result.append(ProcessStatus(record, running, role))
        return result

    # ---------------------------------------------------------------- up

    def up(
        self,
        spec: TopologySpec,
        *,
        spec_path: str,
        timeout: float = DEFAULT_UP_TIMEOUT,
        progress: Progress | None = None,
    ) -> LabState:
        """Start the deployment and wait until it is ready; see the module's contract."""
        report = progress or (lambda _message: None)
        self._make_directory()
        try:
            return self._up_locked(spec, spec_path, timeout, report)
        except LabBusyError:
            raise  # the lock is the other command's
        except BaseException:
            if not state_path(self.directory).exists():  # refused or undone: no trace
                self._remove_lock()
            raise

    def _up_locked(
        self, spec: TopologySpec, spec_path: str, timeout: float, report: Progress
    ) -> LabState:
        with self._locked():
            self._refuse_if_up()
            binaries = find_binaries(
                sentinel=spec.kind is DeploymentKind.SENTINEL,
                zookeeper=spec.zookeeper is not None,
                redis_at_least=spec.redis.version_at_least,
                prometheus=spec.monitoring is not None,
            )
            check_free(listening_addresses(spec), spec_path)
            if spec.redis.tls:
                report("making the lab's TLS certificates")
                addresses = [a for a, _ in listening_addresses(spec)]
                made = lab_tls.make(self.directory, addresses)
                probes.use_tls(addresses, made.ca, made.client_cert, made.client_key)
            plans = plan_processes(spec, self.directory, binaries)
            state = LabState(
                spec_name=spec.name,
                spec_path=spec_path,
                kind=spec.kind,
                started_at=time.time(),
                tls=spec.redis.tls,
            )
            try:
                with self._spawner.deferred_interrupts():
                    self._start_all(spec, plans, state, Deadline(timeout), report)
            except BaseException:
                report("stopping what was started")
                self._abort(state)
                raise
            state.ready = True
            write_state(self.directory, state)
            return state

    def _start_all(
        self,
        spec: TopologySpec,
        plans: list[ProcessPlan],
        state: LabState,
        deadline: Deadline,
        report: Progress,
    ) -> None:
        watchdog = self._spawner.watchdog(state)
        (self.directory / "logs").mkdir(exist_ok=True)
        by_kind = {kind: [p for p in plans if p.kind is kind] for kind in ProcessKind}

        # ZooKeeper and Redis start together; sentinels only once replicas are linked,
        # so that their first INFO of each master already lists its replicas.
        for plan in by_kind[ProcessKind.ZOOKEEPER] + by_kind[ProcessKind.REDIS]:
            report(f"starting {plan.name} on {plan.address}")
            self._spawner.start(plan, state)
        wait_for(
            [redis_answers(p.address) for p in by_kind[ProcessKind.REDIS]],
            deadline.remaining,
            progress=report,
            watchdog=watchdog,
            stage="redis: ",
        )
        if spec.kind is DeploymentKind.CLUSTER:
            build_cluster(spec, deadline.remaining, progress=report, watchdog=watchdog)
        else:
            wait_for(
                [replica_linked(r, s.master) for s in spec.shards for r in s.replicas],
                deadline.remaining,
                progress=report,
                watchdog=watchdog,
                stage="replication: ",
            )
        for plan in by_kind[ProcessKind.SENTINEL]:
            report(f"starting {plan.name} on {plan.address}")
            self._spawner.start(plan, state)
        wait_for(
            _sentinel_checks(spec) + _zookeeper_checks(spec),
            deadline.remaining,
            progress=report,
            watchdog=watchdog,
            stage="agreement: ",
        )
        for plan in by_kind[ProcessKind.FORWARDER]:
            report(f"starting forwarder {plan.name} (metrics on {plan.address})")
            self._spawner.start(plan, state)
        wait_for(
            [forwarder_ready(p.address, p.name) for p in by_kind[ProcessKind.FORWARDER]]
            + _fleet_checks(spec),
            deadline.remaining,
            progress=report,
            watchdog=watchdog,
            stage="forwarders: ",
        )
        nodes, prometheus = len(by_kind[ProcessKind.FORWARDER]), by_kind[ProcessKind.PROMETHEUS]
        for plan in prometheus:
            report(f"starting prometheus on http://{plan.address} (alerts: /alerts)")
            self._spawner.start(plan, state)
        checks = [monitoring.prometheus_ready(p.address, nodes) for p in prometheus]
        wait_for(checks, deadline.remaining, progress=report, watchdog=watchdog, stage="alerts: ")

    def _refuse_a_file(self) -> None:
        """A lab directory that is a file (a mistyped --dir or $REDIS_FORWARDER_LAB_DIR)
        holds no lab, and it is the user's file: name it and leave it alone."""
        if self.directory.exists() and not self.directory.is_dir():
            raise LabError(
                f"the lab directory {self.directory} is a file, not a directory; "
                f"pick another with --dir DIR (or ${LAB_DIR_ENV})"
            )

    def _make_directory(self) -> None:
        self._refuse_a_file()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, /proc, no permission ...
            raise LabError(
                f"cannot make the lab directory {self.directory}: {exc.strerror}; "
                f"pick another with --dir DIR (or ${LAB_DIR_ENV})"
            ) from exc

    def _abort(self, state: LabState) -> None:
        """Undo a failed ``up``: stop everything, remove data; keep logs to read."""
        self._spawner.kill_unrecorded({r.name for r in state.processes})
        self._stop_records(state.processes)
        shutil.rmtree(self.directory / "data", ignore_errors=True)
        state_path(self.directory).unlink(missing_ok=True)

    def _refuse_if_up(self) -> None:
        state = read_state(self.directory)
        if state is None:
            return
        running = [p for p in state.processes if pids.is_running(p.identity)]
        if running:
            raise LabAlreadyUpError(
                f"a lab from {state.spec_path} is already up in {self.directory} "
                f"({len(running)} of {len(state.processes)} processes running); use it, stop "
                f"it with `redis-forwarder lab down --dir {self.directory}`, or pick another --dir"
            )
        raise LabAlreadyUpError(
            f"{self.directory} holds the state of an earlier lab from {state.spec_path} whose "
            f"processes are all gone (a restart?); clear it with "
            f"`redis-forwarder lab down --dir {self.directory}`"
        )

    # ---------------------------------------------------------------- changing a lab

    def send_signal(self, name: str, sig: signal.Signals) -> None:
        """Send ``sig`` to one of the lab's processes (drills and tests: kill -9, STOP)."""
        record = self.record(name)
        if not pids.send(record.identity, sig):
            raise LabError(f"{name} (pid {record.pid}) is not running")

    def restart(
        self, name: str, *, hard: bool = False, wrap: tuple[str, ...] = ()
    ) -> ProcessRecord:
        """Stop one of the lab's processes (SIGTERM, or SIGKILL when ``hard``) and start
        it again the same way, on the same data: a restart drill. ``wrap`` prefixes the
        command this time only (``ip netns exec NS``: it execs, so the pid is the
        process's own). Returns its new record (readiness is the caller's to wait for)."""
        with self._locked():
            state = self.state()
            record = next((r for r in state.processes if r.name == name), None)
            if record is None:
                raise _unknown_process(self.directory, name, state.processes)
            if not record.argv:
                raise LabError(f"{name} was started by an older version: restart the lab")
            if hard:
                pids.send(record.identity, signal.SIGKILL)
            left = pids.stop([record.identity])
            if left:
                raise LabError(f"{name} (pid {record.pid}) did not stop; it was not restarted")
            child = self._spawner.respawn(record, (*wrap, *record.argv))
            identity = pids.identify(child.pid)
            restarted = replace(
                record, pid=child.pid, start_ticks=identity.start_ticks if identity else -1
            )
            state.processes[state.processes.index(record)] = restarted
            write_state(self.directory, state)
            return restarted

    def record(self, name: str) -> ProcessRecord:
        processes = self.state().processes
        for record in processes:
            if record.name == name:
                return record
        raise _unknown_process(self.directory, name, processes)

    def add_redis_node(
        self, spec: TopologySpec, name: str, address: Address, timeout: float = 30
    ) -> ProcessRecord:
        """Start one more redis-server of the spec's kind (a cluster node joins no
        cluster until it is met). Recorded in the state, so ``down`` stops it."""
        with self._locked():
            state = self.state()
            binaries = find_binaries(sentinel=False, zookeeper=False)
            check_free([(address, f"new node {name}")], "the new node's address")
            plan = redis_plan(spec, self.directory, binaries, name, address)
            self._spawner.start(plan, state)
            wait_for([redis_answers(address)], timeout, watchdog=self._spawner.watchdog(state))
            return state.processes[-1]

    def remove(self, name: str) -> None:
        """Stop one process added with :meth:`add_redis_node` and forget it (a drill
        that added a shard takes it away again). Its data directory stays."""
        with self._locked():
            state = self.state()
            record = next((r for r in state.processes if r.name == name), None)
            if record is None:
                raise LabError(f"the lab in {self.directory} has no process named {name!r}")
            if pids.stop([record.identity]):
                raise LabError(f"{name} (pid {record.pid}) did not stop")
            self._spawner.reap(name)  # it was stopped above
            state.processes.remove(record)
            write_state(self.directory, state)

    # ---------------------------------------------------------------- down

    def down(self, *, keep_logs: bool = False) -> DownReport:
        """Stop every recorded process by pid (sentinels first), remove data and state."""
        self._refuse_a_file()
        if not self.directory.exists():
            return DownReport([], [], [])
        with self._locked():
            state = read_state(self.directory)
            records = state.processes if state else []
            gone = [r.name for r in records if not pids.is_running(r.identity)]
            still = self._stop_records(records)
            if still:
                # Keep the state file: it is the only record of what still runs.
                raise LabError(
                    f"could not stop {', '.join(still)} even with SIGKILL; the state is kept "
                    f"in {state_path(self.directory)}"
                )
            shutil.rmtree(self.directory / "data", ignore_errors=True)
            shutil.rmtree(self.directory / lab_tls.TLS_DIR, ignore_errors=True)  # made by up
            if not keep_logs:
                shutil.rmtree(self.directory / "logs", ignore_errors=True)
            state_path(self.directory).unlink(missing_ok=True)
        self._remove_lock()
        stopped = [r.name for r in records if r.name not in gone]
        return DownReport(stopped=stopped, already_gone=gone, still_running=[])

    def _stop_records(self, records: list[ProcessRecord]) -> list[str]:
        """Stop in STOP_ORDER, a kind at a time. Return the names still running."""
        left: list[str] = []
        for kind in STOP_ORDER:
            group = [r for r in records if r.kind == kind]
            alive = pids.stop([r.identity for r in group])
            left += [r.name for r in group if r.identity in alive]
        self._spawner.forget_exited()
        return left

    # ---------------------------------------------------------------- helpers

    def _remove_lock(self) -> None:
        """Once no lab is left: the lock file, and the directory if that leaves it
        empty (never remove what we did not make)."""
        with contextlib.suppress(OSError):
            (self.directory / ".lock").unlink()
            self.directory.rmdir()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.directory / ".lock"
        with open(lock_path, "a+", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LabBusyError(
                    f"another redis-forwarder lab command is working on {self.directory}; "
                    "wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _unknown_process(directory: Path, name: str, processes: list[ProcessRecord]) -> UsageError:
    """A process name the lab does not have is bad input (exit 2): list the names."""
    names = ", ".join(r.name for r in processes)
    return UsageError(
        f"the lab in {directory} has no process named {name!r}; its processes: {names}"
    )


def _sentinel_checks(spec: TopologySpec) -> list[Check]:
    if spec.sentinel is None:
        return []
    others = len(spec.sentinel.addresses) - 1
    return [
        sentinel_agrees(sentinel, shard.name, shard.master, shard.replicas, others)
        for sentinel in spec.sentinel.addresses
        for shard in spec.shards
    ]


def _fleet_checks(spec: TopologySpec) -> list[Check]:
    """Ready means every task owned and running, not only every node answering."""
    if spec.forwarders is None or spec.zookeeper is None:
        return []
    zookeeper = ",".join(str(a) for a in spec.zookeeper.addresses)
    nodes = {node.id for node in spec.forwarders.nodes}
    routes = len(spec.forwarders.routes)
    return [fleet_settled(zookeeper, spec.forwarders.root, nodes, routes)]


def _zookeeper_checks(spec: TopologySpec) -> list[Check]:
    if spec.zookeeper is None:
        return []
    ensemble = len(spec.zookeeper.addresses) > 1
    return [zookeeper_serving(address, ensemble) for address in spec.zookeeper.addresses]


def _current_role(record: ProcessRecord) -> str:
    address = Address.parse(record.address)
    try:
        if record.kind == ProcessKind.ZOOKEEPER:
            return probes.zookeeper_mode(address)
        if record.kind == ProcessKind.PROMETHEUS:
            return monitoring.targets_summary(address)
        if record.kind == ProcessKind.FORWARDER:
            body = probes.forwarder_ready(address)
            owned = len(body.get("tasks", {}))
            return f"{body.get('role', '?')}, {owned} task{'' if owned == 1 else 's'}"
        return probes.redis_role(address)
    except probes.ProbeFailed as exc:
        return f"unreachable ({exc})"
