"""`redis-forwarder lab form-cluster SPEC` (what the compose files' cluster-init runs):
fresh cluster-enabled nodes become the spec's cluster, each replica under the master
the spec pairs it with."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_forwarder.lab.binaries import find_binaries
from redis_forwarder.lab.plan import ProcessKind, plan_processes
from redis_forwarder.lab.probes import redis_call
from redis_forwarder.lab.spec import parse_spec
from tests.support import deployments
from tests.support.cli import run_cli
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration
_subnets = itertools.count(200)


def test_form_cluster_makes_the_spec_cluster_of_fresh_nodes(tmp_path: Path) -> None:
    subnet = f"127.{deployments.test_network()}.{next(_subnets)}"
    text = deployments.relocated_spec_text("cluster", subnet)
    spec = parse_spec(text)
    (tmp_path / "cluster.toml").write_text(text)
    plans = [
        p
        for p in plan_processes(spec, tmp_path, find_binaries(sentinel=False, zookeeper=False))
        if p.kind is ProcessKind.REDIS
    ]
    processes = []
    try:
        for plan in plans:
            directory = tmp_path / "data" / plan.name
            directory.mkdir(parents=True)
            for name, content in plan.files:
                (directory / name).write_text(content)
            processes.append(
                subprocess.Popen(
                    plan.argv, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
                )
            )
        result = run_cli("lab", "form-cluster", str(tmp_path / "cluster.toml"), timeout=120)
        assert result.code == 0, result.stderr
        for shard in spec.shards:
            info = redis_call(shard.master, "CLUSTER", "INFO")
            assert "cluster_state:ok" in info
            (replica,) = shard.replicas
            role = redis_call(replica, "ROLE")
            assert role[0] == "slave" and f"{role[1]}:{role[2]}" == str(shard.master)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def test_form_cluster_of_a_formed_cluster_says_so(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    """Run a second time (a compose cluster-init restarted): nothing to do, exit 0."""
    deployment = shared_deployment("cluster")
    subnet = deployment.spec.shards[0].master.host.rsplit(".", 1)[0]
    spec = tmp_path / "cluster.toml"
    spec.write_text(deployments.relocated_spec_text("cluster", subnet))
    result = run_cli("lab", "form-cluster", str(spec), "--timeout", "20", timeout=60)
    assert result.code == 0, result.stderr
    assert "cluster cluster is already formed; nothing to do" in result.stderr


def test_form_cluster_of_nodes_without_cluster_support_is_a_clear_error(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path
) -> None:
    """A spec naming a running server that is not cluster-enabled: exit 3, one message."""
    server = shared_deployment("standalone").spec.shards[0].master
    spec = tmp_path / "one.toml"
    spec.write_text(
        f'name = "one"\nkind = "cluster"\n\n[[shard]]\nname = "a"\nmaster = "{server}"\n'
    )
    result = run_cli("lab", "form-cluster", str(spec), "--timeout", "10", timeout=60)
    assert result.code == 3, result.stderr
    assert "cluster support disabled" in result.stderr and "Traceback" not in result.stderr
