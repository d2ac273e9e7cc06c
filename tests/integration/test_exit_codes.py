"""Exit codes as docs/cli.md's table gives them, through the real command line: a port
in use is the environment (3), an unknown name is bad input (2), Ctrl-C is 130."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_cli, start_run
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration

Shared = Callable[[str], Deployment]


def _config(tmp_path: Path, server: str, extra: str = "") -> Path:
    config = tmp_path / "forwarder.toml"
    config.write_text(
        f'[source]\nkind = "standalone"\naddresses = ["{server}"]\n'
        '[[route]]\nname = "logs"\nfrom = { channels = ["log.test"] }\n'
        f'to = {{ list = "log-copy" }}\n{extra}'
    )
    return config


def test_run_with_its_metrics_port_in_use_exits_3(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    with socket.socket() as squatter:
        squatter.bind((server.host, 0))
        squatter.listen()
        taken = f"{server.host}:{squatter.getsockname()[1]}"
        config = _config(tmp_path, str(server), f'[node]\nmetrics = "{taken}"\n')
        result = run_cli("run", "--config", str(config), timeout=60)
    assert result.code == 3, result.stderr
    assert f"cannot serve metrics on {taken}" in result.stderr


def test_run_stopped_by_ctrl_c_exits_130_after_a_clean_stop(
    shared_deployment: Shared, tmp_path: Path
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    config = _config(tmp_path, str(server))
    log_file = tmp_path / "run.log"
    process = start_run(config, log_file)
    process.send_signal(signal.SIGINT)
    code = process.wait(20)
    assert code == 130, log_file.read_text()
    assert log_file.read_text().endswith("redis-forwarder: interrupted\n")


def test_lab_kill_of_an_unknown_process_exits_2_listing_them(shared_deployment: Shared) -> None:
    lab = shared_deployment("standalone").require_lab()
    result = run_cli("lab", "kill", "nosuch", "--dir", str(lab.directory))
    assert result.code == 2, result.stderr
    names = ", ".join(r.name for r in lab.state().processes)
    assert f"no process named 'nosuch'; its processes: {names}" in result.stderr
