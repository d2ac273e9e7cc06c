"""The lab signals only the processes it started: pid *and* start time must match.
These start real (harmless) processes; no sockets."""

from __future__ import annotations

import signal
import subprocess
import sys

from redis_forwarder.lab.pids import ProcessIdentity, identify, is_running, send, stop
from tests.support.waiting import wait_until

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def spawn(code: str = "import time; time.sleep(60)") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_identity_follows_the_process_until_it_exits() -> None:
    child = spawn()
    identity = identify(child.pid)
    assert identity is not None and is_running(identity)
    child.kill()
    wait_until(lambda: not is_running(identity), "killed process seen as gone")
    child.wait()
    assert identify(child.pid) is None


def test_a_reused_pid_is_never_signalled() -> None:
    child = spawn()
    try:
        real = identify(child.pid)
        assert real is not None
        stranger = ProcessIdentity(child.pid, real.start_ticks + 1)  # same pid, other process
        assert not is_running(stranger)
        assert not send(stranger, signal.SIGKILL)
        assert stop([stranger], grace=0.1) == []
        assert child.poll() is None, "a process that is not ours was stopped"
    finally:
        child.kill()
        child.wait()


def test_stop_escalates_to_sigkill_after_the_grace_period() -> None:
    child = spawn(IGNORES_SIGTERM)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        identity = identify(child.pid)
        assert identity is not None
        assert stop([identity], grace=0.2) == []
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()
