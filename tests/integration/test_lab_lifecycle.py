"""``redis-forwarder lab`` end to end through the real command line, and its bad cases:
each gives a clear error, a documented exit code, and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from redis_forwarder.lab.pids import ProcessIdentity, is_running
from tests.support.cli import cli_command, cli_env, run_cli
from tests.support.deployments import Deployment, ProcessProvider, processes_mentioning
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class SpecFile(Protocol):
    def __call__(self, name: str, extra: str = "") -> Path: ...


@pytest.fixture
def spec_file(provider: ProcessProvider, tmp_path: Path) -> SpecFile:
    """Write a shipped spec, moved to a subnet of its own, to a file for the CLI."""

    def make(name: str, extra: str = "") -> Path:
        _subnet, text = provider.spec_text(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(text + extra, encoding="utf-8")
        return path

    return make


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "lab"
    yield directory
    # Whatever a test did, stop what it started, and fail if anything survives.
    run_cli("lab", "down", "--dir", str(directory))
    assert processes_mentioning(str(directory)) == []


@pytest.mark.slow  # 4-7 s: the fast set stays near two minutes
def test_up_status_twice_down(spec_file: SpecFile, lab_dir: Path) -> None:
    spec = spec_file("sentinel")
    up = run_cli("lab", "up", str(spec), "--dir", str(lab_dir), "--json")
    assert up.code == 0, up.stderr
    state = up.json()
    assert state["ready"] is True and state["healthy"] is True
    assert len(state["processes"]) == 10
    assert state["endpoints"]["masters"] == ["alpha", "beta"]
    assert len(state["endpoints"]["sentinels"]) == 3
    assert (lab_dir / "lab.json").is_file()

    status = run_cli("lab", "status", "--dir", str(lab_dir), "--json")
    assert status.code == 0
    roles = {p["name"]: p["role"] for p in status.json()["processes"]}
    assert roles["alpha-master"] == "master"
    assert roles["alpha-replica-1"].startswith("replica of ")
    assert roles["sentinel-1"] == "sentinel"
    assert roles["zookeeper-1"] == "standalone"

    human = run_cli("lab", "status", "--dir", str(lab_dir))
    assert human.code == 0 and "alpha-master" in human.stdout and "sentinels:" in human.stdout

    again = run_cli("lab", "up", str(spec), "--dir", str(lab_dir))
    assert again.code == 3
    assert "already up" in again.stderr and "lab down" in again.stderr
    assert "Traceback" not in again.stderr

    identities = [ProcessIdentity(p["pid"], _start_ticks(p["pid"])) for p in state["processes"]]
    down = run_cli("lab", "down", "--dir", str(lab_dir))
    assert down.code == 0 and "stopped 10 processes" in down.stderr
    assert not any(is_running(i) for i in identities)
    assert not lab_dir.exists()

    gone = run_cli("lab", "status", "--dir", str(lab_dir))
    assert gone.code == 3 and "no lab is up" in gone.stderr
    assert run_cli("lab", "down", "--dir", str(lab_dir)).code == 0  # idempotent


def _start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def test_status_reports_a_dead_process(spec_file: SpecFile, lab_dir: Path) -> None:
    assert run_cli("lab", "up", str(spec_file("standalone")), "--dir", str(lab_dir)).code == 0
    state = json.loads((lab_dir / "lab.json").read_text())
    victim = next(p for p in state["processes"] if p["kind"] == "redis")
    os.kill(victim["pid"], signal.SIGKILL)
    identity = ProcessIdentity(victim["pid"], victim["start_ticks"])
    wait_until(lambda: not is_running(identity), "redis-server gone after SIGKILL")
    status = run_cli("lab", "status", "--dir", str(lab_dir), "--json")
    assert status.code == 1
    running = {p["name"]: p["running"] for p in status.json()["processes"]}
    assert running == {"zookeeper-1": True, "main-master": False}
    down = run_cli("lab", "down", "--dir", str(lab_dir))
    assert down.code == 0 and "already gone: main-master" in down.stderr


def test_port_in_use_names_the_address_and_starts_nothing(
    spec_file: SpecFile, lab_dir: Path
) -> None:
    spec = spec_file("sentinel")
    text = spec.read_text()
    host_port = text.split('replicas = ["', 1)[1].split('"', 1)[0]  # alpha's first replica
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        result = run_cli("lab", "up", str(spec), "--dir", str(lab_dir))
    assert result.code == 3
    assert f"{host_port} (shard alpha replica 1) is already in use" in result.stderr
    assert str(spec) in result.stderr
    assert not lab_dir.exists()  # not even its .lock: a refused up leaves no trace
    assert processes_mentioning(str(lab_dir)) == []


def test_missing_binary_names_the_package(
    spec_file: SpecFile, lab_dir: Path, tmp_path: Path
) -> None:
    empty_path = tmp_path / "empty-bin"
    empty_path.mkdir()
    result = run_cli(
        "lab", "up", str(spec_file("standalone")), "--dir", str(lab_dir), PATH=str(empty_path)
    )
    assert result.code == 3
    assert "redis-server was not found" in result.stderr
    assert "apt-get install redis-server" in result.stderr
    assert processes_mentioning(str(lab_dir)) == []


@pytest.mark.slow
def test_process_dying_at_start_shows_its_log_and_stops_the_rest(
    spec_file: SpecFile, lab_dir: Path
) -> None:
    spec = spec_file("standalone", extra='maxmemory-policy = "not-a-policy"\n')
    result = run_cli("lab", "up", str(spec), "--dir", str(lab_dir))
    assert result.code == 4, result.stderr
    assert "main-master exited with status 1 during start" in result.stderr
    assert "not-a-policy" in result.stderr  # the tail of redis' own log
    # ZooKeeper had started first; it must be gone too, and the logs kept to read.
    assert processes_mentioning(str(lab_dir)) == []
    assert not (lab_dir / "lab.json").exists()
    assert (lab_dir / "logs" / "main-master.log").is_file()


def test_interrupted_up_stops_what_it_started(spec_file: SpecFile, lab_dir: Path) -> None:
    spec = spec_file("sentinel")
    child = subprocess.Popen(
        cli_command("lab", "up", str(spec), "--dir", str(lab_dir)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state_file = lab_dir / "lab.json"

    def started_some() -> bool:
        assert child.poll() is None, "lab up finished before it could be interrupted"
        return state_file.exists() and len(json.loads(state_file.read_text())["processes"]) >= 3

    wait_until(started_some, "lab up started three processes", timeout=30)
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted" in err
    assert processes_mentioning(str(lab_dir)) == []
    assert not state_file.exists()


def test_lab_demo_forwards_everything(shared_deployment: Callable[[str], Deployment]) -> None:
    deployment = shared_deployment("sentinel")
    directory = str(deployment.lab.directory)  # type: ignore[union-attr]
    result = run_cli("lab", "demo", "--dir", directory, "--seconds", "2", "--rate", "500")
    assert result.code == 0, result.stderr
    assert "lost 0" in result.stdout


@pytest.mark.slow
def test_ready_means_every_task_owned_and_running(spec_file: SpecFile, lab_dir: Path) -> None:
    """`lab up` of a spec with forwarder nodes says ready only once the fleet's
    assignment is in force: read at once after, every task runs on its assigned node
    and every node has its share (ha-cluster: 4 tasks on 3 nodes)."""
    up = run_cli("lab", "up", str(spec_file("ha-cluster")), "--dir", str(lab_dir), "--json")
    assert up.code == 0, up.stderr
    config = up.json()["endpoints"]["forwarder_config"]
    status = run_cli("status", "--config", config, "--json")
    assert status.code == 0, status.stderr
    tasks = status.json()["tasks"]
    assert len(tasks) == 4
    for task in tasks:
        assert task["assigned"] is not None and task["owner"] == task["assigned"], task
        assert task["running"], task
    assert {t["owner"] for t in tasks} == {"fwd-1", "fwd-2", "fwd-3"}
    roles = run_cli("lab", "status", "--dir", str(lab_dir)).stdout
    assert ", 1 task " in roles and "1 tasks" not in roles  # 2 + 1 + 1
