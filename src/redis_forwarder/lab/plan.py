"""What the lab will start for a spec: one :class:`ProcessPlan` per process, with its
command line and the config files it needs. Pure: it decides, the lab acts.

Every Redis process is told its own address (``bind``, ``*-announce-ip``,
``bind-source-addr``). On loopback the kernel would otherwise pick 127.0.0.1 as the
source of outgoing connections, and a node bound to 127.0.0.7 would be announced to
its peers (cluster bus, replication, sentinel hello) as 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from redis_forwarder.lab import monitoring
from redis_forwarder.lab.binaries import Binaries
from redis_forwarder.lab.forwarders import CONFIG_FILE, node_argv, node_config, to_toml
from redis_forwarder.lab.spec import RedisSettingValue, TopologySpec
from redis_forwarder.lab.tls import LabTls
from redis_forwarder.lab.tls import files as tls_files
from redis_forwarder.model import Address, DeploymentKind


class ProcessKind(StrEnum):
    REDIS = "redis"
    SENTINEL = "sentinel"
    ZOOKEEPER = "zookeeper"
    FORWARDER = "forwarder"
    PROMETHEUS = "prometheus"


# Stop order: Prometheus first (it would only alert on what the lab stops), then the
# forwarders (they hand their work back and leave cleanly), then sentinels so that
# stopping masters starts no failover; ZooKeeper last.
STOP_ORDER = (
    ProcessKind.PROMETHEUS,
    ProcessKind.FORWARDER,
    ProcessKind.SENTINEL,
    ProcessKind.REDIS,
    ProcessKind.ZOOKEEPER,
)


@dataclass(frozen=True)
class ProcessPlan:
    """One process to start: ``name`` is unique in the lab and names its directory."""

    name: str
    kind: ProcessKind
    address: Address
    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (file name in the data dir, content)
    shard: str | None = None
    role: str = ""  # the role it starts in: master, replica, sentinel, zookeeper


def lab_tls(spec: TopologySpec, lab_dir: Path) -> LabTls | None:
    """Where a TLS lab's certificates are (``tls.make`` creates them), or None."""
    return tls_files(lab_dir) if spec.redis.tls else None


def data_dir(lab_dir: Path, name: str) -> Path:
    return lab_dir / "data" / name


def log_path(lab_dir: Path, name: str) -> Path:
    return lab_dir / "logs" / f"{name}.log"


def plan_processes(spec: TopologySpec, lab_dir: Path, binaries: Binaries) -> list[ProcessPlan]:
    """The processes of the deployment, in start order (ZooKeeper, Redis, sentinels,
    forwarder nodes, Prometheus)."""
    plans: list[ProcessPlan] = []
    if spec.zookeeper is not None:
        plans.extend(_zookeeper_plans(spec, lab_dir, binaries))
    plans.extend(_redis_plans(spec, lab_dir, binaries))
    plans.extend(
        redis_plan(spec, lab_dir, binaries, f"sink-{s.name}", s.address, role="sink")
        for s in spec.sinks
    )
    if spec.sentinel is not None:
        plans.extend(_sentinel_plans(spec, lab_dir, binaries))
    plans.extend(_forwarder_plans(spec, lab_dir))
    if spec.monitoring is not None:
        plans.append(_prometheus_plan(spec, lab_dir, binaries))
    return plans


def _prometheus_plan(spec: TopologySpec, lab_dir: Path, binaries: Binaries) -> ProcessPlan:
    assert spec.monitoring is not None
    directory = data_dir(lab_dir, "prometheus")
    return ProcessPlan(
        name="prometheus",
        kind=ProcessKind.PROMETHEUS,
        address=spec.monitoring.prometheus,
        argv=monitoring.prometheus_argv(binaries.prometheus, spec.monitoring, directory),
        files=(
            (monitoring.CONFIG_FILE, monitoring.prometheus_config(spec)),
            (monitoring.RULES_FILE, monitoring.shipped_rules()),
        ),
        role="prometheus",
    )


def _forwarder_plans(spec: TopologySpec, lab_dir: Path) -> list[ProcessPlan]:
    if spec.forwarders is None:
        return []
    return [
        ProcessPlan(
            name=node.id,
            kind=ProcessKind.FORWARDER,
            address=node.metrics,
            argv=node_argv(data_dir(lab_dir, node.id) / CONFIG_FILE, node),
            files=((CONFIG_FILE, to_toml(node_config(spec, node, lab_tls(spec, lab_dir)))),),
            role="forwarder",
        )
        for node in spec.forwarders.nodes
    ]


def _redis_value(value: RedisSettingValue) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if text == "" or any(c.isspace() for c in text) or '"' in text:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return text


def _server_lines(address: Address, directory: Path, tls: LabTls | None = None) -> list[str]:
    """What every redis-server and redis-sentinel of the lab is told about itself; in a
    TLS lab, its port speaks TLS only."""
    ports = [f"port {address.port}"] if tls is None else ["port 0", f"tls-port {address.port}"]
    return [
        *ports,
        *(tls.server_lines() if tls is not None else []),
        f"bind {address.host}",
        f"dir {directory}",
        "daemonize no",
        'logfile ""',  # stdout, which the lab sends to the process's log file
        "protected-mode no",  # bound to loopback only
        f"bind-source-addr {address.host}",
    ]


def _redis_plans(spec: TopologySpec, lab_dir: Path, binaries: Binaries) -> list[ProcessPlan]:
    plans = []
    for shard in spec.shards:
        plans.append(
            redis_plan(
                spec, lab_dir, binaries, f"{shard.name}-master", shard.master, shard=shard.name
            )
        )
        for index, replica in enumerate(shard.replicas, start=1):
            plans.append(
                redis_plan(
                    spec,
                    lab_dir,
                    binaries,
                    f"{shard.name}-replica-{index}",
                    replica,
                    shard=shard.name,
                    replica_of=shard.master,
                )
            )
    return plans


def redis_plan(
    spec: TopologySpec,
    lab_dir: Path,
    binaries: Binaries,
    name: str,
    address: Address,
    *,
    shard: str | None = None,
    replica_of: Address | None = None,
    role: str | None = None,
) -> ProcessPlan:
    """One redis-server of the deployment (also used to add a node to a running lab);
    ``role = "sink"``: a standalone server beside it (``[[sink]]``)."""
    directory = data_dir(lab_dir, name)
    tls = lab_tls(spec, lab_dir)
    lines = [
        *_server_lines(address, directory, tls),
        f"replica-announce-ip {address.host}",
        # The default waits 5 s for more replicas before a diskless sync.
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
    ]
    if spec.kind is DeploymentKind.CLUSTER and role != "sink":
        cluster = spec.cluster_settings
        lines += [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {cluster.node_timeout_ms}",
            f"cluster-announce-ip {address.host}",
            "cluster-require-full-coverage " + _redis_value(cluster.require_full_coverage),
            *(["tls-cluster yes"] if tls is not None else []),
        ]
    elif replica_of is not None:
        lines.append(f"replicaof {replica_of.host} {replica_of.port}")
    lines += [f"{key} {_redis_value(value)}" for key, value in spec.redis.settings.items()]
    return ProcessPlan(
        name=name,
        kind=ProcessKind.REDIS,
        address=address,
        argv=(binaries.redis_server, str(directory / "redis.conf")),
        files=(("redis.conf", "\n".join(lines) + "\n"),),
        shard=shard,
        role=role or ("master" if replica_of is None else "replica"),
    )


def _sentinel_plans(spec: TopologySpec, lab_dir: Path, binaries: Binaries) -> list[ProcessPlan]:
    sentinel = spec.sentinel
    assert sentinel is not None
    plans = []
    for index, address in enumerate(sentinel.addresses, start=1):
        name = f"sentinel-{index}"
        directory = data_dir(lab_dir, name)
        tls = lab_tls(spec, lab_dir)
        lines = [*_server_lines(address, directory, tls), f"sentinel announce-ip {address.host}"]
        for shard in spec.shards:
            master = shard.master
            lines += [
                f"sentinel monitor {shard.name} {master.host} {master.port} {sentinel.quorum}",
                f"sentinel down-after-milliseconds {shard.name} {sentinel.down_after_ms}",
                f"sentinel failover-timeout {shard.name} {sentinel.failover_timeout_ms}",
                f"sentinel parallel-syncs {shard.name} {sentinel.parallel_syncs}",
            ]
        # Sentinel rewrites its config file, so it lives in the data dir, writable.
        config = directory / "sentinel.conf"
        plans.append(
            ProcessPlan(
                name=name,
                kind=ProcessKind.SENTINEL,
                address=address,
                argv=(binaries.redis_sentinel, str(config)),
                files=(("sentinel.conf", "\n".join(lines) + "\n"),),
                role="sentinel",
            )
        )
    return plans


def _zookeeper_plans(spec: TopologySpec, lab_dir: Path, binaries: Binaries) -> list[ProcessPlan]:
    zookeeper = spec.zookeeper
    assert zookeeper is not None
    ensemble = len(zookeeper.addresses) > 1
    servers = []
    for server_id, address in enumerate(zookeeper.addresses, start=1):
        quorum, election = zookeeper.peer_ports(address)
        servers.append(f"server.{server_id}={address.host}:{quorum}:{election}")
    plans = []
    for server_id, address in enumerate(zookeeper.addresses, start=1):
        name = f"zookeeper-{server_id}"
        directory = data_dir(lab_dir, name)
        lines = [
            f"tickTime={zookeeper.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={directory}",
            f"clientPort={address.port}",
            f"clientPortAddress={address.host}",
            # The admin server would listen on 0.0.0.0:8080 for every node.
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr,stat",
            # Tests open many sessions from one address; the default caps it at 60.
            "maxClientCnxns=0",
            f"minSessionTimeout={2 * zookeeper.tick_ms}",
            "maxSessionTimeout=60000",
        ]
        if ensemble:
            lines += servers
        argv = (
            binaries.java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-Djava.net.preferIPv4Stack=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            binaries.zookeeper_classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(directory / "zoo.cfg"),
        )
        plans.append(
            ProcessPlan(
                name=name,
                kind=ProcessKind.ZOOKEEPER,
                address=address,
                argv=argv,
                files=(("zoo.cfg", "\n".join(lines) + "\n"), ("myid", f"{server_id}\n")),
                role="zookeeper",
            )
        )
    return plans
