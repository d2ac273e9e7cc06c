"""A topology spec as a Docker Compose file (``redis-forwarder lab compose SPEC``): the
same processes the lab starts, each a container, with the same config files (from the
lab's own plan, placed under /data in each container) and the same addresses: every
service uses the host's network, so the deployment listens where the spec says, as a
lab would. Pure: a document, and its YAML text.

- Redis nodes and sentinels: ``redis:7.0``; ZooKeeper: ``zookeeper:3.8``;
- forwarder nodes: the project's image (``Dockerfile``), built from the repository;
- a cluster: a one-shot ``cluster-init`` service (the project's image) that forms the
  cluster exactly as the spec pairs masters and replicas (``lab form-cluster``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from redis_forwarder.errors import UsageError
from redis_forwarder.lab import monitoring
from redis_forwarder.lab.binaries import Binaries
from redis_forwarder.lab.plan import ProcessKind, ProcessPlan, data_dir, plan_processes
from redis_forwarder.lab.spec import TopologySpec
from redis_forwarder.model import DeploymentKind

ROOT = Path("/data")  # the lab directory inside every container
REDIS_IMAGE = "redis:7.0"
ZOOKEEPER_IMAGE = "zookeeper:3.8"
FORWARDER_IMAGE = "redis-forwarder:local"
PROMETHEUS_IMAGE = "prom/prometheus:v2.42.0"  # the Debian package's version
CONTAINER_BINARIES = Binaries("redis-server", "redis-sentinel", "java", "", "prometheus")
SPEC_CONFIG = "spec.toml"


def compose_document(spec: TopologySpec, spec_text: str) -> dict[str, Any]:
    """The compose document for ``spec`` (``spec_text``: its TOML, for cluster-init)."""
    if spec.redis.tls:
        raise UsageError(
            f"spec {spec.name}: compose files for TLS specs are not generated yet (the "
            "certificates are made by `lab up`); use the lab, or mount your own"
        )
    plans = plan_processes(spec, ROOT, CONTAINER_BINARIES)
    services: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    servers = [p.name for p in plans if p.kind in (ProcessKind.REDIS, ProcessKind.ZOOKEEPER)]
    sentinels = [p.name for p in plans if p.kind is ProcessKind.SENTINEL]
    cluster = spec.kind is DeploymentKind.CLUSTER
    for plan in plans:
        mounts = []
        for file_name, content in plan.files:
            config = f"{plan.name}.{file_name}"
            configs[config] = {"content": content}
            mounts.append({"source": config, "target": f"/conf/{file_name}"})
        service: dict[str, Any] = {
            "image": _image(plan),
            "network_mode": "host",
            "configs": mounts,
            "command": _command(plan),
        }
        if plan.kind is ProcessKind.FORWARDER:
            service["build"] = {"context": "..", "dockerfile": "Dockerfile"}
            after = {name: {"condition": "service_started"} for name in servers + sentinels}
            if cluster:
                after["cluster-init"] = {"condition": "service_completed_successfully"}
            service["depends_on"] = after
            service["restart"] = "on-failure"
            service["environment"] = {"FORWARDER_HEALTH": str(plan.address)}  # HEALTHCHECK
        elif plan.kind is ProcessKind.SENTINEL:
            service["depends_on"] = {name: {"condition": "service_started"} for name in servers}
        services[plan.name] = service
    if cluster:
        configs[SPEC_CONFIG] = {"content": spec_text}
        services["cluster-init"] = {
            "image": FORWARDER_IMAGE,
            "build": {"context": "..", "dockerfile": "Dockerfile"},
            "network_mode": "host",
            "configs": [{"source": SPEC_CONFIG, "target": f"/conf/{SPEC_CONFIG}"}],
            "command": ["lab", "form-cluster", f"/conf/{SPEC_CONFIG}"],
            "depends_on": {name: {"condition": "service_started"} for name in servers},
            "restart": "no",
        }
    return {"name": f"redis-forwarder-{spec.name}", "services": services, "configs": configs}


def _image(plan: ProcessPlan) -> str:
    if plan.kind is ProcessKind.ZOOKEEPER:
        return ZOOKEEPER_IMAGE
    if plan.kind is ProcessKind.FORWARDER:
        return FORWARDER_IMAGE
    if plan.kind is ProcessKind.PROMETHEUS:
        return PROMETHEUS_IMAGE
    return REDIS_IMAGE


def _command(plan: ProcessPlan) -> list[str]:
    directory = data_dir(ROOT, plan.name)
    if plan.kind is ProcessKind.REDIS:
        return ["sh", "-c", f"mkdir -p {directory} && exec redis-server /conf/redis.conf"]
    if plan.kind is ProcessKind.SENTINEL:
        # Sentinel rewrites its config file: a copy in its data directory.
        return [
            "sh", "-c",
            f"mkdir -p {directory} && cp /conf/sentinel.conf {directory}/ && "
            f"exec redis-sentinel {directory}/sentinel.conf",
        ]  # fmt: skip
    if plan.kind is ProcessKind.ZOOKEEPER:
        return [
            "sh", "-c",
            f"mkdir -p {directory} && cp /conf/myid {directory}/myid && "
            "exec zkServer.sh start-foreground /conf/zoo.cfg",
        ]  # fmt: skip
    if plan.kind is ProcessKind.PROMETHEUS:
        return [
            f"--config.file=/conf/{monitoring.CONFIG_FILE}", "--storage.tsdb.path=/prometheus",
            *monitoring.FLAGS, f"--web.listen-address={plan.address}",
        ]  # fmt: skip
    node_id = plan.argv[plan.argv.index("--node-id") + 1]
    return ["--log-level", "info", "run", "--config", "/conf/forwarder.toml", "--node-id", node_id]


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def to_yaml(document: Any, header: str = "") -> str:
    """Block-style YAML for dicts, lists and scalars. Strings are written double-quoted
    with JSON's escapes, which YAML reads the same way (multi-line config files too)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return json.dumps(value)
        return json.dumps(str(value), ensure_ascii=False)

    def key(name: str) -> str:
        return name if _PLAIN_KEY.match(name) else json.dumps(name)

    def emit(value: Any, indent: int) -> None:
        pad = "  " * indent
        if isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, dict | list) and item:
                    lines.append(f"{pad}{key(name)}:")
                    emit(item, indent + 1)
                else:
                    empty = "{}" if isinstance(item, dict) else "[]"
                    text = empty if isinstance(item, dict | list) else scalar(item)
                    lines.append(f"{pad}{key(name)}: {text}")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and item:
                    start = len(lines)
                    emit(item, indent + 1)  # then its first line takes the dash
                    lines[start] = f"{pad}- {lines[start].lstrip()}"
                else:
                    lines.append(f"{pad}- {scalar(item)}")

    emit(document, 0)
    return "\n".join(lines) + "\n"
