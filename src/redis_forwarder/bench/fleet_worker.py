"""Simulated members in a process of their own (issue 18), and the bench's handle on it.

The fleet bench runs the controller and the victim this way: a victim must die for
real (SIGKILL, so that ZooKeeper expires its session after the session timeout, not a
graceful leave), and the controller, in a process of its own, is timed on an event
loop of its own as a real node's would be (the bench's CPU is still shared).

The protocol, one JSON object a line:

- the parent starts ``python -m redis_forwarder.bench.fleet_worker SPEC`` (SPEC a JSON
  object: ZooKeeper, root, session timeout, the fleet's shape, the members' ids);
- the worker writes ``{"cycle": [node, role, at, seconds, connected]}`` after each
  cycle,
  ``{"run": [node, [task, ...]]}`` when a member's tasks change and ``{"gone": node}``
  when a member has left;
- the parent writes ``{"work": true}`` (want the shape's tasks, for a worker started
  wanting none), ``{"add_shard": shard}`` (a topology change), ``{"leave": node}`` or
  ``{"stop": true}`` (close the sessions and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from redis_forwarder import eventloop
from redis_forwarder.bench.fleet_member import (
    CycleSample,
    FleetView,
    MemberHost,
    SimulatedMember,
)
from redis_forwarder.bench.fleet_model import FleetShape, FleetWork, task_name, task_of
from redis_forwarder.config import CoordinationConfig

log = logging.getLogger(__name__)
LINE_LIMIT = 64 << 20  # a member's task list on one line


@dataclass(frozen=True)
class WorkerSpec:
    zookeeper: str
    root: str
    session_timeout: float
    nodes: int
    tasks: int
    routes: int
    standby_routes: int
    ids: tuple[str, ...]
    # Want nothing until told ``{"work": true}``: the controller, elected before the
    # fleet starts, would otherwise own every task alone first.
    start_empty: bool = False
    log_level: str = "warning"
    stagger: float = 0.0  # the members' starts spread over this many seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        raw = json.loads(text)
        raw["ids"] = tuple(raw["ids"])
        return cls(**raw)

    def shape(self) -> FleetShape:
        return FleetShape(self.nodes, self.tasks, self.routes, self.standby_routes)

    def config(self) -> CoordinationConfig:
        return CoordinationConfig(
            zookeeper=self.zookeeper, root=self.root, session_timeout=self.session_timeout
        )


# ---------------------------------------------------------------- the worker's side
async def serve(spec: WorkerSpec, out: IO[str]) -> None:
    shape = spec.shape()
    work = FleetWork.of(shape, [] if spec.start_empty else None)
    view = FleetView()
    reported: dict[str, frozenset[Any]] = {}

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    def on_cycle(member: SimulatedMember) -> None:
        sample = view.cycles[-1]
        view.cycles.clear()  # the parent keeps them
        emit({"cycle": [sample.node, sample.role, sample.at, sample.seconds, sample.connected]})
        tasks = frozenset(member.running)
        if reported.get(member.node_id) != tasks:
            reported[member.node_id] = tasks
            emit({"run": [member.node_id, sorted(task_name(t) for t in tasks)]})

    host = MemberHost(spec.config(), work, view, on_cycle)
    host.add_all(list(spec.ids), spec.stagger)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    commands = asyncio.create_task(_commands(reader, host, shape, stop, emit))
    await stop.wait()
    commands.cancel()
    await host.close()


async def _commands(
    reader: asyncio.StreamReader,
    host: MemberHost,
    shape: FleetShape,
    stop: asyncio.Event,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    while line := await reader.readline():
        command = json.loads(line)
        if command.get("work"):
            host.set_shards(shape.shard_ids())
        elif "add_shard" in command:
            host.add_shard(str(command["add_shard"]))
        elif "leave" in command:
            node = str(command["leave"])
            await host.leave(node, timeout=60)
            emit({"gone": node})
        elif command.get("stop"):
            break
    stop.set()  # a closed stdin too: the parent is gone


def main() -> None:
    spec = WorkerSpec.from_json(sys.argv[1])
    logging.basicConfig(
        level=spec.log_level.upper(),
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    eventloop.run(serve(spec, sys.stdout))


# ---------------------------------------------------------------- the parent's side
class WorkerProcess:
    """A worker the bench started: its reports go into ``view``; it is killed by the
    pid this object started, never by name."""

    def __init__(self, process: asyncio.subprocess.Process, view: FleetView, ids: tuple[str, ...]):
        self.process = process
        self.view = view
        self.ids = ids
        self.killed_at: float | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, spec: WorkerSpec, view: FleetView, log_file: Path) -> WorkerProcess:
        with open(log_file, "ab") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "redis_forwarder.bench.fleet_worker",
                spec.to_json(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=LINE_LIMIT,
            )
        return cls(process, view, spec.ids)

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            message = json.loads(line)
            if "cycle" in message:
                node, role, at, seconds, connected = message["cycle"]
                sample = CycleSample(node, role, float(at), float(seconds), bool(connected))
                self.view.cycled(sample)
            elif "run" in message:
                node, names = message["run"]
                self.view.ran(node, frozenset(task_of(n) for n in names))
            elif "gone" in message:
                self.view.gone(str(message["gone"]))
        for node in self.ids:  # the process ended: its members run nothing
            self.view.gone(node)

    async def send(self, command: dict[str, Any]) -> None:
        stdin = self.process.stdin
        if stdin is None or self.process.returncode is not None:
            return
        stdin.write((json.dumps(command) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await stdin.drain()

    def kill(self) -> None:
        """SIGKILL, by the pid this handle started: a death, not a leave."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30.0) -> None:
        """Ask it to close its sessions and exit; kill it if it does not in time."""
        await self.send({"stop": True})
        try:
            async with asyncio.timeout(timeout):
                await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    @property
    def pid(self) -> int:
        return self.process.pid


if __name__ == "__main__":
    main()
