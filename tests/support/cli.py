"""Running the real command line in a subprocess, as an operator or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "redis_forwarder", *args]


def cli_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    env.update(overrides)
    return env


def run_cli(*args: str, timeout: float = 120, cwd: Path | None = None, **env: str) -> Result:
    done = subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        cwd=cwd,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def start_run(config: Path, log_file: Path, *options: str) -> subprocess.Popen[bytes]:
    """``redis-forwarder [OPTIONS] --log-level info run --config CONFIG`` as a process
    whose stderr goes to ``log_file``, returned once its first task forwards (killed,
    by its pid, if it does not within 20 s). The caller signals it and waits."""
    from tests.support.waiting import wait_until

    with open(log_file, "wb") as err:
        process = subprocess.Popen(
            cli_command("--log-level", "info", *options, "run", "--config", str(config)),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(
            lambda: b"forwarding from" in log_file.read_bytes(), "the task started", timeout=20
        )
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return process
