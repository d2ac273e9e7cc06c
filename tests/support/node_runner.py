"""Running a forwarder Node in a thread of its own, and a publisher that follows the
source's master, so that tests can make faults while traffic flows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from redis_forwarder.config import ForwarderConfig
from redis_forwarder.forwarding.supervisor import Task
from redis_forwarder.model import Address
from redis_forwarder.node import Node
from tests.support.waiting import wait_until


class NodeRunner:
    def __init__(self, config: dict[str, Any]) -> None:
        self.node = Node(ForwarderConfig.model_validate(config))
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await self.node.run(self._stop)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> NodeRunner:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the node did not stop within 30 s"

    def reload(self, path: Path) -> None:
        """As SIGHUP does: the node re-reads its config from ``path`` at its next cycle."""
        self._loop.call_soon_threadsafe(self.node.request_reload, path)

    def all_running(self) -> bool:
        assert self.error is None, f"the node failed: {self.error!r}"
        tasks = list(self.node.tasks.values())
        return bool(tasks) and all(t.running for t in tasks)


class Publisher:
    """Publishes ``seq`` on ``channel`` every ``interval`` s to whatever ``locate()``
    names as the master now (asked again every ``relocate`` s: a demoted master still
    accepts PUBLISH, for its own subscribers only); records what was sent and when."""

    relocate = 0.1

    def __init__(
        self,
        locate: Callable[[], Address],
        channel: str,
        interval: float = 0.002,
        prefix: str = "",
    ) -> None:
        self.locate = locate
        self.channel = channel
        self.interval = interval
        self.prefix = prefix  # before each seq: publishers on one channel tell theirs apart
        self.sent: list[tuple[int, float]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        client: redis.Redis | None = None
        located_at = 0.0
        while not self._halt.is_set():
            try:
                if client is None or time.monotonic() - located_at > self.relocate:
                    address = self.locate()
                    located_at = time.monotonic()
                    if (
                        client is None
                        or client.connection_pool.connection_kwargs["port"] != address.port
                    ):
                        client = redis.Redis(
                            host=address.host, port=address.port, socket_timeout=0.5
                        )
                client.publish(self.channel, f"{self.prefix}{seq}")
                self.sent.append((seq, time.time()))
                seq += 1
            except (redis.RedisError, OSError):
                client = None  # a failover: find the master again
            self._halt.wait(self.interval)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(10)


def wait_resumed(task: Task, publisher: Publisher) -> float:
    """Wait until the task's last gap closed and a second of traffic followed; return
    when it resumed."""
    wait_until(
        lambda: bool(task.gaps) and task.gaps[-1].end is not None and task.running,
        "the task resumed",
        timeout=30,
    )
    resumed = task.gaps[-1].end
    assert resumed is not None
    wait_until(lambda: publisher.sent[-1][1] > resumed + 1.0, "traffic after resume")
    return resumed
