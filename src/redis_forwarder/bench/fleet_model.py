"""The fleet bench's pure part (issue 18): the simulated work (routes x shards), the
statistics, the targets and their verdicts, and the result as JSON. No I/O.

The targets, for 500 nodes and 20,000 tasks: no znode over 256 KiB; the controller's
cycle under a second; a dead node's tasks all owned elsewhere within the session
timeout and 2 s.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.model import TaskKey

ZNODE_LIMIT = 256 * 1024  # bytes: no znode above this
CYCLE_LIMIT = 1.0  # seconds: the controller's cycle, at its longest in steady state
TAKEOVER_SLACK = 2.0  # seconds past the session timeout for a dead node's tasks


def shard_id(index: int) -> str:
    """A name like a Redis 7 cluster shard id (40 hex digits), the same every run."""
    return hashlib.sha1(f"fleet-bench-shard-{index}".encode()).hexdigest()


@dataclass(frozen=True)
class FleetShape:
    """What the simulated fleet forwards: ``routes`` routes over ``tasks / routes``
    shards; the first ``standby_routes`` routes (default: half) are pub/sub-like and
    want a standby."""

    nodes: int
    tasks: int
    routes: int = 20
    standby_routes: int = -1  # -1: half the routes

    def __post_init__(self) -> None:
        if self.standby_routes == -1:
            object.__setattr__(self, "standby_routes", self.routes // 2)
        if self.nodes < 3:
            raise ValueError("--fleet: at least 3 nodes (a controller, a victim and one more)")
        if self.routes < 1 or self.tasks < self.routes or self.tasks % self.routes:
            raise ValueError(
                f"--tasks {self.tasks} must be a multiple of --routes {self.routes} "
                "(each route runs on every shard)"
            )
        if not 0 <= self.standby_routes <= self.routes:
            raise ValueError(f"--standby-routes must be between 0 and --routes ({self.routes})")

    @property
    def shards(self) -> int:
        return self.tasks // self.routes

    def route_names(self) -> list[str]:
        return [f"route-{index:02d}" for index in range(self.routes)]

    def shard_ids(self) -> list[str]:
        return [shard_id(index) for index in range(self.shards)]

    def new_shard(self) -> str:
        """The shard the topology change adds."""
        return shard_id(self.shards)

    def node_ids(self) -> list[str]:
        """The fleet's members; one more (``joiner``) joins later."""
        return [f"node-{index:04d}" for index in range(self.nodes)]

    @property
    def joiner(self) -> str:
        return f"node-{self.nodes:04d}"


@dataclass
class FleetWork:
    """The tasks every member wants, and those that want a standby: shared by the
    members of one process (``add_shard`` replaces the sets, never mutates them)."""

    routes: list[str]
    standby_routes: set[str]
    wanted: frozenset[TaskKey] = frozenset()
    wants_standby: frozenset[TaskKey] = frozenset()

    @classmethod
    def of(cls, shape: FleetShape, shards: Iterable[str] | None = None) -> FleetWork:
        routes = shape.route_names()
        work = cls(routes, set(routes[: shape.standby_routes]))
        work.set_shards(shape.shard_ids() if shards is None else shards)
        return work

    def set_shards(self, shards: Iterable[str]) -> None:
        names = list(shards)
        self.wanted = frozenset((route, shard) for route in self.routes for shard in names)
        self.wants_standby = frozenset(t for t in self.wanted if t[0] in self.standby_routes)

    def add_shard(self, shard: str) -> None:
        self.set_shards([*{s for _r, s in self.wanted}, shard])

    def tasks_of_shard(self, shard: str) -> list[TaskKey]:
        return [(route, shard) for route in self.routes]


def task_name(task: TaskKey) -> str:
    return f"{task[0]}@{task[1]}"


def task_of(name: str) -> TaskKey:
    route, _, shard = name.partition("@")
    return route, shard


@dataclass(frozen=True)
class Spread:
    """Durations (or sizes) summarised."""

    count: int
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        ordered = sorted(values)
        if not ordered:
            return None
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        return cls(len(ordered), statistics.median(ordered), p99, ordered[-1])

    def to_json(self) -> dict[str, float]:
        return {
            "median": round(self.median, 4),
            "p99": round(self.p99, 4),
            "max": round(self.max, 4),
            "count": self.count,
        }


def moves(before: Mapping[TaskKey, str], after: Mapping[TaskKey, str]) -> int:
    """Tasks owned before and after, by another node after."""
    return sum(1 for task, node in after.items() if before.get(task) not in (None, node))


def loads(owners: Mapping[TaskKey, str]) -> dict[str, int]:
    count: dict[str, int] = {}
    for node in owners.values():
        count[node] = count.get(node, 0) + 1
    return count


def parse_mntr(text: str) -> dict[str, float]:
    """ZooKeeper's ``mntr`` answer (``key<TAB>value`` lines): the numeric values."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        try:
            values[key.strip()] = float(value.strip())
        except ValueError:
            continue
    return values


def summed(answers: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Counters of several servers (an ensemble), added up."""
    total: dict[str, float] = {}
    for answer in answers:
        for key, value in answer.items():
            total[key] = total.get(key, 0.0) + value
    return total


REQUESTS = "zk_packets_received"
# Counters of bytes, where the server exports them (ZooKeeper 3.8 does; older ones not).
BYTES_IN = "zk_bytes_received_count"
BYTES_OUT = "zk_response_bytes"
WATCHES = "zk_watch_count"
CONNECTIONS = "zk_num_alive_connections"


LEN_ERROR = re.compile(r"Len error\. A message from \S+ with advertised length of (\d+)")


def refused_lengths(log: str) -> list[int]:
    """The requests a ZooKeeper server's log says it refused as too large ("Len error":
    over ``jute.maxbuffer``, 1 MiB by default; it closes the connection on each)."""
    return [int(length) for length in LEN_ERROR.findall(log)]


def rate(
    before: Mapping[str, float], after: Mapping[str, float], key: str, seconds: float
) -> float | None:
    if key not in before or key not in after or seconds <= 0:
        return None
    return (after[key] - before[key]) / seconds


def expected_pings(members: int, session_timeout: float) -> float:
    """At most how many pings a second the members send: kazoo pings a session idle for
    a third of the session timeout (a member that calls every second never is)."""
    return members / (session_timeout / 3)


@dataclass
class FleetResult:
    """What one fleet bench run measured; None where it could not (``notes`` says why)."""

    shape: FleetShape
    session_timeout: float
    zookeeper: str
    root: str
    start: str = "cold"  # the controller given the work as members start, or "warm"
    settle_s: float | None = None  # start -> every task owned
    owners_quiet_s: float | None = None  # start -> the last owner change of the settling
    owned_after_settle: int = 0
    controller_cycle: Spread | None = None  # steady state
    controller_cycle_settling: Spread | None = None  # the initial assignment
    member_cycle: Spread | None = None  # every member's cycles, steady state
    member_cycles_per_s: float | None = None
    controller_cycles_disconnected: int = 0  # cycles that lost the connection (not timed)
    member_cycles_disconnected: int = 0
    load_min: int | None = None  # tasks per member, steady
    load_max: int | None = None
    # Requests ZooKeeper refused as over jute.maxbuffer (its log's "Len error"), when
    # the bench runs the server: a znode a member could not write at all.
    refused_requests: int | None = None
    refused_largest_bytes: int = 0
    largest_znode_bytes: int | None = None
    largest_znode_path: str = ""
    largest_znode_when: str = ""
    znodes: int | None = None
    steady_window_s: float = 0.0
    requests_per_s: float | None = None
    bytes_per_s: float | None = None  # received by ZooKeeper
    response_bytes_per_s: float | None = None  # sent by ZooKeeper
    watches: int | None = None
    connections: int | None = None
    bench_threads: int | None = None
    bench_cpu_cores: float | None = None  # this process's CPU seconds per second, steady
    zookeeper_cpu_cores: float | None = None  # the server's, when the bench started it
    takeover_s: float | None = None
    victim: str = ""
    victim_tasks: int = 0
    controller_takeover_s: float | None = None
    topology_change_s: float | None = None
    join_moves: int | None = None
    join_s: float | None = None
    leave_moves: int | None = None
    leave_s: float | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def takeover_limit(self) -> float:
        return self.session_timeout + TAKEOVER_SLACK

    @property
    def expected_pings_per_s(self) -> float:
        return expected_pings(self.shape.nodes, self.session_timeout)

    def ideal_moves(self) -> int:
        """What a join or a leave must move at the least: a node's share. The victim
        died before, so a node joins a fleet of ``nodes - 1`` (then ``nodes`` share the
        work) and one of those ``nodes`` leaves."""
        return round(self.shape.tasks / self.shape.nodes)

    def targets(self) -> dict[str, bool]:
        """Each target: met, as measured (a measurement missing is not met)."""
        cycle = self.controller_cycle
        return {
            "largest_znode_under_256KiB": self.largest_znode_bytes is not None
            and self.largest_znode_bytes <= ZNODE_LIMIT
            and not self.refused_requests,
            "controller_cycle_under_1s": cycle is not None and cycle.max < CYCLE_LIMIT,
            "takeover_within_session_timeout_plus_2s": self.takeover_s is not None
            and self.takeover_s <= self.takeover_limit,
        }

    def to_json(self) -> dict[str, Any]:
        targets = self.targets()

        def spread(value: Spread | None) -> dict[str, float] | None:
            return value.to_json() if value is not None else None

        def seconds(value: float | None) -> float | None:
            return round(value, 3) if value is not None else None

        return {
            "nodes": self.shape.nodes,
            "tasks": self.shape.tasks,
            "routes": self.shape.routes,
            "standby_routes": self.shape.standby_routes,
            "shards": self.shape.shards,
            "session_timeout_s": self.session_timeout,
            "zookeeper": self.zookeeper,
            "root": self.root,
            "start": self.start,
            "settle_s": seconds(self.settle_s),
            "owners_quiet_s": seconds(self.owners_quiet_s),
            "owned_after_settle": self.owned_after_settle,
            "controller_cycle_s": spread(self.controller_cycle),
            "controller_cycle_settling_s": spread(self.controller_cycle_settling),
            "member_cycle_s": spread(self.member_cycle),
            "member_cycles_per_s": _round(self.member_cycles_per_s, 3),
            "controller_cycles_disconnected": self.controller_cycles_disconnected,
            "member_cycles_disconnected": self.member_cycles_disconnected,
            "load": {"min": self.load_min, "max": self.load_max},
            "largest_znode_bytes": self.largest_znode_bytes,
            "zookeeper_refused_requests": self.refused_requests,
            "zookeeper_refused_largest_bytes": self.refused_largest_bytes,
            "largest_znode_path": self.largest_znode_path,
            "largest_znode_when": self.largest_znode_when,
            "znodes": self.znodes,
            "steady_window_s": round(self.steady_window_s, 2),
            "zookeeper_requests_per_s": _round(self.requests_per_s, 1),
            "zookeeper_bytes_per_s": _round(self.bytes_per_s, 0),
            "zookeeper_response_bytes_per_s": _round(self.response_bytes_per_s, 0),
            "zookeeper_watches": self.watches,
            "zookeeper_connections": self.connections,
            "pings_included": True,
            "expected_pings_per_s_at_most": round(self.expected_pings_per_s, 1),
            "bench_cpu_cores": _round(self.bench_cpu_cores, 2),
            "bench_threads": self.bench_threads,
            "zookeeper_cpu_cores": _round(self.zookeeper_cpu_cores, 2),
            "takeover_s": seconds(self.takeover_s),
            "takeover_limit_s": self.takeover_limit,
            "victim": self.victim,
            "victim_tasks": self.victim_tasks,
            "controller_takeover_s": seconds(self.controller_takeover_s),
            "topology_change_s": seconds(self.topology_change_s),
            "new_shard_tasks": self.shape.routes,
            "join_moves": self.join_moves,
            "join_ideal_moves": self.ideal_moves(),
            "join_s": seconds(self.join_s),
            "leave_moves": self.leave_moves,
            "leave_ideal_moves": self.ideal_moves(),
            "leave_s": seconds(self.leave_s),
            "targets": targets,
            "passed": all(targets.values()),
            "duration_s": round(self.duration_s, 1),
            "notes": list(self.notes),
        }


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None
