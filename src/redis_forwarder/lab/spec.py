"""Topology specs: a TOML file that describes a whole local deployment.

A spec names the Redis deployment (standalone, sentinel or cluster: its shards, each a
master with replicas), the sentinels, the ZooKeeper nodes, and (in later releases) the
forwarder nodes and routes. The lab starts it; drills and compose read it. The format is
documented in docs/topology-specs.md. Parsing is pure: no sockets, no processes.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from redis_forwarder.errors import SpecError
from redis_forwarder.lab.spec_checks import check_deployments, check_sinks, check_target_masters
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.validation import problems

CLUSTER_SLOTS = 16384
CLUSTER_BUS_PORT_OFFSET = 10000
# ZooKeeper ensemble members talk on two more ports each; the spec gives the client port
# and these offsets derive the others, so an ensemble is written as a list of addresses.
ZK_QUORUM_PORT_OFFSET = 1000
ZK_ELECTION_PORT_OFFSET = 2000

# Directives the lab sets itself; a spec that sets them would break the lab's bookkeeping.
LAB_OWNED_REDIS_SETTINGS = frozenset(
    {
        "port",
        "bind",
        "dir",
        "daemonize",
        "logfile",
        "pidfile",
        "cluster-enabled",
        "cluster-config-file",
        "replicaof",
        "slaveof",
        "cluster-announce-ip",
        "replica-announce-ip",
        "bind-source-addr",
        "include",
        "supervised",
        "tls-port",
        "tls-cert-file",
        "tls-key-file",
        "tls-ca-cert-file",
    }
)


def _parse_address(value: Any) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise ValueError('an address is a string host:port, for example "127.0.0.1:7000"')
    address = Address.parse(value)
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        raise ValueError(
            f"{value!r}: the lab runs on loopback only, so the host must be an IP in "
            "127.0.0.0/8 (for example 127.0.0.1)"
        ) from None
    if not ip.is_loopback or ip.version != 4:
        raise ValueError(f"{value!r}: the lab runs on loopback only; use an address in 127.0.0.0/8")
    return address


LabAddress = Annotated[
    Address, BeforeValidator(_parse_address), PlainSerializer(str, return_type=str)
]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardSpec(_Strict):
    """One shard: a master and its replicas; on a cluster, its slot ranges."""

    name: str = Field(description="sentinel: the monitored master name; otherwise a label")
    master: LabAddress
    replicas: tuple[LabAddress, ...] = ()
    slots: tuple[tuple[int, int], ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not _NAME.match(self.name):
            raise ValueError(
                f"name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                "(it is a Sentinel master name and a directory name)"
            )
        for start, end in self.slots or ():
            if not 0 <= start <= end < CLUSTER_SLOTS:
                raise ValueError(
                    f"slot range [{start}, {end}] must satisfy 0 <= start <= end <= "
                    f"{CLUSTER_SLOTS - 1}"
                )
        return self


class SentinelSpec(_Strict):
    addresses: tuple[LabAddress, ...] = Field(min_length=1)
    quorum: int = Field(default=2, ge=1)
    down_after_ms: int = Field(default=1000, ge=100)
    failover_timeout_ms: int = Field(default=5000, ge=1000)
    parallel_syncs: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.quorum > len(self.addresses):
            raise ValueError(
                f"quorum {self.quorum} is more than the {len(self.addresses)} sentinels; "
                "no failover could ever be agreed"
            )
        return self


class ClusterSpec(_Strict):
    node_timeout_ms: int = Field(default=2000, ge=100)
    require_full_coverage: bool = True


class ZooKeeperSpec(_Strict):
    addresses: tuple[LabAddress, ...] = Field(min_length=1)
    tick_ms: int = Field(default=500, ge=50)

    @model_validator(mode="after")
    def _check(self) -> Self:
        count = len(self.addresses)
        if count > 1 and count % 2 == 0:
            raise ValueError(
                f"{count} nodes: an ensemble of an even size tolerates no more failures "
                f"than one of {count - 1}; use 1, 3 or 5 nodes"
            )
        return self

    def peer_ports(self, client: Address) -> tuple[int, int]:
        """The quorum and election ports of the member whose client address is given."""
        return client.port + ZK_QUORUM_PORT_OFFSET, client.port + ZK_ELECTION_PORT_OFFSET


RedisSettingValue = str | int | bool


class RedisSpec(_Strict):
    version_at_least: str = "7.0"
    settings: dict[str, RedisSettingValue] = Field(default_factory=dict)
    # TLS only: every redis-server and sentinel listens with TLS on its port (plain TCP
    # off), asks clients for a certificate, and replicates (and gossips) over TLS.
    tls: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        owned = sorted(LAB_OWNED_REDIS_SETTINGS & {k.lower() for k in self.settings})
        if owned:
            raise ValueError(
                f"settings {owned} are set by the lab from the shard addresses; remove them"
            )
        return self


class SinkSpec(_Strict):
    """A standalone Redis server beside the deployment, for routes that write elsewhere
    (``to = { target = NAME, ... }``): a sink that can be faulted on its own."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    address: LabAddress


class ForwarderNodeSpec(_Strict):
    """One forwarder node the lab runs: a ``redis-forwarder run`` process."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    metrics: LabAddress  # its /metrics, /healthz and /readyz; the lab waits on /readyz


class ForwardersSpec(_Strict):
    """Forwarder nodes sharing the spec's routes through its ZooKeeper."""

    nodes: tuple[ForwarderNodeSpec, ...] = Field(min_length=1)
    root: str = Field(default="/redis-forwarder/lab", pattern=r"^(/[A-Za-z0-9_.-]+)+$")
    session_timeout: float = Field(default=4.0, ge=2, le=120)
    routes: tuple[dict[str, Any], ...] = Field(alias="route", min_length=1)
    # Sentinel specs: one set of sentinels watching several deployments (issue 20's
    # bridges). The masters the nodes' [source] watches (default: every [[shard]]), and
    # per target name the masters of a [targets.NAME] naming the same sentinels: a
    # deployment of its own, failing over on its own (masters disjoint from the others).
    source_masters: tuple[str, ...] | None = Field(default=None, min_length=1)
    target_masters: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # What bridges call the [source] deployment ([source] name: the origin stamped on
    # stream entries, {origin} in names); unset: "source".
    source_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> Self:
        from redis_forwarder.routes import RouteConfig  # the forwarder's own rules

        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"forwarder node ids must be unique: {ids}")
        check_target_masters(self)
        for route in self.routes:
            try:
                RouteConfig.model_validate(route)
            except ValidationError as exc:
                name = route.get("name", "?") if isinstance(route, dict) else "?"
                raise ValueError(
                    f"route {name!r}: {'; '.join(problems(exc, 'docs/configuration.md'))}"
                ) from None
        return self


class MonitoringSpec(_Strict):
    """A Prometheus the lab runs beside its forwarder nodes (``[monitoring]``, or
    ``lab up --prometheus ADDR``): it scrapes every node and evaluates the shipped alert
    rules (``redis_forwarder/monitoring/alerts.yml``)."""

    prometheus: LabAddress  # its web UI and HTTP API
    # Seconds between scrapes and between rule evaluations: short in a lab, so that a
    # drill's alerts fire and resolve while one watches.
    scrape_interval: float = Field(default=1.0, ge=0.5, le=60)


class TopologySpec(_Strict):
    """A validated topology spec. Build one with :func:`parse_spec` or :func:`load_spec`."""

    name: str
    kind: DeploymentKind
    description: str = ""
    shards: tuple[ShardSpec, ...] = Field(alias="shard", min_length=1)
    sentinel: SentinelSpec | None = None
    cluster: ClusterSpec | None = None
    zookeeper: ZooKeeperSpec | None = None
    redis: RedisSpec = Field(default_factory=RedisSpec)
    forwarders: ForwardersSpec | None = None
    sinks: tuple[SinkSpec, ...] = Field(default=(), alias="sink")
    monitoring: MonitoringSpec | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        names = [s.name for s in self.shards]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"shard names must be unique; repeated: {duplicated}")
        if self.kind is DeploymentKind.STANDALONE and len(self.shards) != 1:
            raise ValueError("a standalone deployment has exactly one [[shard]]")
        if self.forwarders is not None and self.zookeeper is None:
            raise ValueError("[forwarders] share their work through ZooKeeper: add [zookeeper]")
        check_sinks(self)
        check_deployments(self)
        if self.monitoring is not None and self.forwarders is None:
            raise ValueError(
                "[monitoring] scrapes the spec's forwarder nodes: add [forwarders], or "
                "remove [monitoring]"
            )
        if self.kind is DeploymentKind.SENTINEL and self.sentinel is None:
            raise ValueError('kind = "sentinel" needs a [sentinel] table with addresses')
        if self.kind is not DeploymentKind.SENTINEL and self.sentinel is not None:
            raise ValueError(f'[sentinel] is only for kind = "sentinel", not {self.kind!r}')
        if self.kind is not DeploymentKind.CLUSTER:
            if self.cluster is not None:
                raise ValueError(f'[cluster] is only for kind = "cluster", not {self.kind!r}')
            if any(s.slots is not None for s in self.shards):
                raise ValueError('shard slots are only for kind = "cluster"')
        else:
            _check_slot_coverage(self.shards, self.cluster or ClusterSpec())
        _check_unique_ports(self)
        return self

    @property
    def cluster_settings(self) -> ClusterSpec:
        return self.cluster or ClusterSpec()

    def slot_ranges(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Each cluster shard's slot ranges: as written, or the 16384 slots split evenly."""
        if any(s.slots is not None for s in self.shards):
            return {s.name: s.slots or () for s in self.shards}
        count = len(self.shards)
        ranges: dict[str, tuple[tuple[int, int], ...]] = {}
        for index, shard in enumerate(self.shards):
            start = index * CLUSTER_SLOTS // count
            end = (index + 1) * CLUSTER_SLOTS // count - 1
            ranges[shard.name] = ((start, end),)
        return ranges

    def redis_addresses(self) -> list[Address]:
        return [a for s in self.shards for a in (s.master, *s.replicas)]


def _check_slot_coverage(shards: tuple[ShardSpec, ...], cluster: ClusterSpec) -> None:
    given = [s for s in shards if s.slots is not None]
    if not given:
        return
    if len(given) != len(shards):
        missing = [s.name for s in shards if s.slots is None]
        raise ValueError(f"give slots for every cluster shard or for none; missing on {missing}")
    owner: dict[int, str] = {}
    for shard in shards:
        for start, end in shard.slots or ():
            for slot in range(start, end + 1):
                if slot in owner:
                    raise ValueError(
                        f"slot {slot} is given to both {owner[slot]!r} and {shard.name!r}"
                    )
                owner[slot] = shard.name
    if cluster.require_full_coverage and len(owner) != CLUSTER_SLOTS:
        first_missing = next(slot for slot in range(CLUSTER_SLOTS) if slot not in owner)
        raise ValueError(
            f"{CLUSTER_SLOTS - len(owner)} slots have no shard (the first is {first_missing}); "
            "cover 0-16383 or set [cluster] require_full_coverage = false"
        )


def _check_unique_ports(spec: TopologySpec) -> None:
    """Every listening endpoint, derived ones included, must be distinct and in range."""
    seen: dict[Address, str] = {}
    for address, owner in listening_addresses(spec):
        if not 0 < address.port < 65536:
            raise ValueError(f"the {owner} would listen on port {address.port}, outside 1..65535")
        if address in seen:
            raise ValueError(f"{address} is used twice: by the {seen[address]} and the {owner}")
        seen[address] = owner


def listening_addresses(spec: TopologySpec) -> list[tuple[Address, str]]:
    """Every endpoint the deployment will listen on, with a label for error messages."""
    result: list[tuple[Address, str]] = []
    for shard in spec.shards:
        for index, address in enumerate((shard.master, *shard.replicas)):
            owner = f"shard {shard.name} " + ("master" if index == 0 else f"replica {index}")
            result.append((address, owner))
            if spec.kind is DeploymentKind.CLUSTER:
                bus = address.with_port(address.port + CLUSTER_BUS_PORT_OFFSET)
                result.append((bus, f"cluster bus of {owner}"))
    for index, address in enumerate(spec.sentinel.addresses if spec.sentinel else ()):
        result.append((address, f"sentinel {index + 1}"))
    zookeeper = spec.zookeeper
    for index, address in enumerate(zookeeper.addresses if zookeeper else ()):
        result.append((address, f"zookeeper {index + 1}"))
        if zookeeper and len(zookeeper.addresses) > 1:
            quorum, election = zookeeper.peer_ports(address)
            result.append((address.with_port(quorum), f"quorum port of zookeeper {index + 1}"))
            result.append((address.with_port(election), f"election port of zookeeper {index + 1}"))
    for node in spec.forwarders.nodes if spec.forwarders else ():
        result.append((node.metrics, f"metrics of forwarder {node.id}"))
    for sink in spec.sinks:
        result.append((sink.address, f"sink {sink.name}"))
    if spec.monitoring is not None:
        result.append((spec.monitoring.prometheus, "prometheus"))
    return result


def parse_spec(text: str, source: str = "<spec>") -> TopologySpec:
    """Parse and validate a spec's TOML text. Raise :class:`SpecError` naming every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, [f"not valid TOML: {exc}"]) from exc
    return validate_spec(raw, source, text)


def validate_spec(raw: Any, source: str = "<spec>", text: str | None = None) -> TopologySpec:
    """Validate a spec already read from TOML. Raise :class:`SpecError` on any problem."""
    if not isinstance(raw, dict):
        raise SpecError(source, ["a spec is a TOML table of keys"])
    try:
        return TopologySpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(source, problems(exc, "docs/topology-specs.md", text)) from exc


def load_spec(path: Path | str, prometheus: str | None = None) -> TopologySpec:
    """Read a spec file. A name without a path is looked up in the project's topology/.
    ``prometheus``: add (or replace) its ``[monitoring]``, a Prometheus on that address
    (``lab up --prometheus``), validated with the rest."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), ["no such file; the shipped specs are in topology/"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"cannot be read: {exc}"]) from exc
    if prometheus is None:
        return parse_spec(text, source=str(path))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [f"not valid TOML: {exc}"]) from exc
    monitoring = raw.get("monitoring", {})
    if not isinstance(monitoring, dict):
        raise SpecError(str(path), ["monitoring: a table ([monitoring]) is expected"])
    raw["monitoring"] = {**monitoring, "prometheus": prometheus}
    return validate_spec(raw, str(path), text)


def settings_from_spec(spec: TopologySpec, **overrides: object) -> DeploymentSettings:
    """Settings that reach a lab deployment described by ``spec``."""
    if spec.kind is DeploymentKind.SENTINEL:
        assert spec.sentinel is not None
        addresses = tuple(spec.sentinel.addresses)
        masters = tuple(s.name for s in spec.shards)
    elif spec.kind is DeploymentKind.CLUSTER:
        addresses, masters = tuple(s.master for s in spec.shards), ()
    else:
        addresses, masters = (spec.shards[0].master,), ()
    return replace(DeploymentSettings(spec.kind, addresses, masters), **overrides)  # type: ignore[arg-type]
