"""Starting a lab's processes and watching them while the lab waits: each one detached
in a session of its own, recorded in ``lab.json`` as soon as it runs, its ``Popen``
kept for its exit status; Ctrl-C deferred while a child is being forked.

``Lab`` (lab.py) decides what to start and when; this module is how a process starts
and how a death during the waits is noticed at once, with its log's tail.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from redis_forwarder.errors import LabError, ProcessDiedError
from redis_forwarder.lab import pids
from redis_forwarder.lab.plan import ProcessPlan, data_dir, log_path
from redis_forwarder.lab.state import LabState, ProcessRecord, write_state

LOG_TAIL_LINES = 20


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) or "    (the log is empty)"


class Spawner:
    """The processes one ``Lab`` object started in this Python process.

    ``children`` keeps their ``Popen``: a child's exit status makes a better error, and
    only its parent can reap it (a zombie would otherwise look alive to ``kill 0``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._interrupted = False

    def start(self, plan: ProcessPlan, state: LabState) -> None:
        """Write the plan's files, spawn it, record it in ``state`` and ``lab.json``."""
        self.raise_if_interrupted()
        directory = data_dir(self.directory, plan.name)
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, content in plan.files:
            (directory / file_name).write_text(content, encoding="utf-8")
        log = log_path(self.directory, plan.name)
        with open(log, "wb") as log_file:
            # Kept at once: if Ctrl-C lands before the record below is written, the
            # lab's abort still knows this child and stops it.
            child = self.children[plan.name] = spawn(plan.argv, directory, log_file)
        identity = pids.identify(child.pid)
        record = ProcessRecord(
            name=plan.name,
            kind=plan.kind,
            address=str(plan.address),
            pid=child.pid,
            # A process gone before we could read its start time gets an identity that
            # matches nothing, so the watchdog reports it and nothing else is ever signalled.
            start_ticks=identity.start_ticks if identity else -1,
            log=str(log),
            data_dir=str(directory),
            shard=plan.shard,
            role=plan.role,
            argv=tuple(plan.argv),
        )
        state.processes.append(record)
        write_state(self.directory, state)

    def respawn(self, record: ProcessRecord, argv: tuple[str, ...]) -> subprocess.Popen[bytes]:
        """Start a recorded process again with ``argv``, on its data, appending to its log."""
        with open(record.log, "ab") as log_file:
            child = self.children[record.name] = spawn(argv, Path(record.data_dir), log_file)
        return child

    def watchdog(self, state: LabState) -> Callable[[], None]:
        """A check for every readiness poll: a deferred Ctrl-C, or a recorded process
        that exited (ProcessDiedError with its log's tail, not a timeout later)."""

        def check() -> None:
            self.raise_if_interrupted()
            for record in state.processes:
                child = self.children.get(record.name)
                status = child.poll() if child is not None else None
                if status is not None or not pids.is_running(record.identity):
                    raise ProcessDiedError(
                        record.name, status, record.log, log_tail(Path(record.log))
                    )

        return check

    @contextlib.contextmanager
    def deferred_interrupts(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM only set a flag while processes are being spawned; it is
        acted on between two starts and in every wait. A KeyboardInterrupt raised inside
        subprocess.Popen would leak the child it had just forked, unrecorded."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(_signum: int, _frame: object) -> None:
            self._interrupted = True

        previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def raise_if_interrupted(self) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def kill_unrecorded(self, recorded: set[str]) -> None:
        """Kill the children spawned but not yet in ``lab.json`` (an interrupted start)."""
        for name, child in self.children.items():
            if name not in recorded and child.poll() is None:
                child.kill()
                child.wait(5)

    def reap(self, name: str) -> None:
        """Forget a child that was stopped, reaping it."""
        child = self.children.pop(name, None)
        if child is not None:
            child.wait(5)

    def forget_exited(self) -> None:
        for name, child in list(self.children.items()):
            if child.poll() is not None:
                del self.children[name]


def spawn(argv: tuple[str, ...], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    try:
        # A session of its own: a Ctrl-C in the terminal that ran `lab up` does not reach
        # the lab, and the lab outlives that command.
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise LabError(f"cannot start {argv[0]}: {exc}") from exc
