"""Where the fleet bench's members run: this process (``MemberHost``), or processes of
their own (``WorkerProcess``): the controller and the victim always, the rest with
``workers`` > 0 (one Python process is bound to one core by its GIL, and each member
spends CPU on every cycle). Whichever way, their reports land in one ``FleetView``,
and the runner asks for a topology change, a leave or a death by node id.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis_forwarder.bench.fleet_member import FleetView, MemberHost
from redis_forwarder.bench.fleet_model import FleetShape
from redis_forwarder.bench.fleet_worker import WorkerProcess, WorkerSpec
from redis_forwarder.bench.fleet_zookeeper import cpu_seconds
from redis_forwarder.config import CoordinationConfig


class Hosts:
    def __init__(
        self,
        shape: FleetShape,
        config: CoordinationConfig,
        host: MemberHost,
        view: FleetView,
        logs: Path,
        log_level: str,
    ) -> None:
        self.shape = shape
        self.config = config
        self.host = host
        self.view = view
        self.logs = logs
        self.log_level = log_level
        self.workers: list[WorkerProcess] = []
        self.home: dict[str, WorkerProcess] = {}  # node -> its worker (absent: here)

    async def worker(
        self, ids: list[str], name: str, *, start_empty: bool = False, stagger: float = 0.0
    ) -> WorkerProcess:
        """Start ``ids`` in a process of their own (logging into ``logs/name.log``)."""
        shape, config = self.shape, self.config
        spec = WorkerSpec(
            config.zookeeper, config.root, config.session_timeout, shape.nodes, shape.tasks,
            shape.routes, shape.standby_routes, tuple(ids), start_empty, self.log_level,
            stagger,
        )  # fmt: skip
        worker = await WorkerProcess.start(spec, self.view, self.logs / f"{name}.log")
        self.workers.append(worker)
        self.home.update(dict.fromkeys(ids, worker))
        return worker

    async def members(self, ids: list[str], workers: int, stagger: float) -> None:
        """Start ``ids``: here, or shared out over ``workers`` processes."""
        if workers <= 0:
            self.host.add_all(ids, stagger)
            return
        for index in range(workers):
            share = ids[index::workers]
            if share:
                await self.worker(share, f"workers-{index + 1}", stagger=stagger)

    async def send(self, node: str, command: dict[str, object]) -> None:
        await self.home[node].send(command)

    async def add_shard(self, shard: str) -> None:
        """Every member, everywhere, wants the new shard's tasks at once."""
        self.host.add_shard(shard)
        for worker in self.workers:
            await worker.send({"add_shard": shard})

    async def leave(self, node: str, timeout: float) -> None:
        """A graceful stop of one member, returned once it has left."""
        worker = self.home.get(node)
        if worker is None:
            await self.host.leave(node, timeout)
            return
        await worker.send({"leave": node})
        deadline = time.monotonic() + timeout
        while node in self.view.roles or node in self.view.runs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node} did not leave within {timeout:.0f}s")
            await asyncio.sleep(0.1)

    def kill(self, node: str) -> None:
        """SIGKILL the process of ``node`` (alone in it: the controller, the victim)."""
        worker = self.home[node]
        assert worker.ids == (node,), f"{node} shares its process: killing it kills others"
        worker.kill()

    def cpu_seconds(self) -> float:
        """CPU time of this process and of every worker still running."""
        total = time.process_time()
        for worker in self.workers:
            total += cpu_seconds(worker.pid) or 0.0
        return total

    async def stop(self) -> None:
        await self.host.close()
        for worker in self.workers:
            await worker.stop()
