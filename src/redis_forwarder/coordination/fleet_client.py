"""A short synchronous ZooKeeper session for the command line (status, drain, pause,
...): apart from ``zk`` (the node's asynchronous session), so that each stays one job.
With ``zk`` and ``connect``, the only modules that import kazoo."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kazoo.exceptions import KazooException, NoAuthError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from redis_forwarder.coordination.connect import kazoo_client, refusals
from redis_forwarder.coordination.zk import Znode, ZooKeeperError
from redis_forwarder.errors import ZooKeeperRefusedError, ZooKeeperUnreachableError
from redis_forwarder.settings import Credentials


class FleetClient:
    """A short synchronous session for the command line (status, drain, pause, ...)."""

    def __init__(
        self, hosts: str, timeout: float = 10.0, credentials: Credentials | None = None
    ) -> None:
        self.hosts = hosts
        self.authenticated = credentials is not None
        refused = refusals(hosts)
        if refused:
            raise ZooKeeperUnreachableError(hosts, timeout, "refused", refused)
        self.client = kazoo_client(hosts, timeout, credentials)
        try:
            self.client.start(timeout)
        except (KazooTimeoutError, KazooException, OSError) as exc:
            self.client.close()
            raise ZooKeeperUnreachableError(hosts, timeout, type(exc).__name__) from exc

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the session (a long-lived one, as the fleet page's, is closed by its owner)."""
        self.client.stop()
        self.client.close()

    @contextlib.contextmanager
    def _translated(self, what: str, path: str) -> Iterator[None]:
        """The one place this client's kazoo errors become ours, keeping the cause (as
        httpx maps its transport's errors): NoAuth names what to set; any other kazoo
        failure, a timeout included, says what was being done where. NoNodeError is left
        to each caller, inside the block, where it means "absent" (it is a
        KazooException, so one not caught there is an error like the rest). Six copies
        of this ladder had drifted: ``exists`` translated NoAuth only, so a connection
        lost during ``drain`` or ``pause`` (``set_flag``) ended in a kazoo traceback."""
        try:
            yield
        except NoAuthError as exc:
            raise ZooKeeperRefusedError(path, self.authenticated) from exc
        except (KazooException, KazooTimeoutError) as exc:
            raise ZooKeeperError(f"{what} {path}: {type(exc).__name__}") from exc

    def get(self, path: str) -> Znode | None:
        with self._translated("reading", path):
            try:
                data, stat = self.client.get(path)
            except NoNodeError:
                return None
        return Znode.of(data, stat)

    def get_many(self, paths: list[str]) -> list[Znode | None]:
        """Many reads in flight at once (kazoo's async API): one round trip for the
        fleet's hundreds of progress reports and thousands of owner znodes, not one
        each. Absent ones are None."""
        pending = [(path, self.client.get_async(path)) for path in paths]
        found: list[Znode | None] = []
        for path, result in pending:
            with self._translated("reading", path):
                try:
                    data, stat = result.get()
                except NoNodeError:
                    found.append(None)
                    continue
            found.append(Znode.of(data, stat))
        return found

    def children(self, path: str) -> list[str]:
        with self._translated("listing", path):
            try:
                return list(self.client.get_children(path))
            except NoNodeError:
                return []

    def exists(self, path: str) -> bool:
        with self._translated("checking", path):
            return self.client.exists(path) is not None

    def put(self, path: str, data: bytes) -> None:
        """Create or overwrite a persistent znode."""
        with self._translated("writing", path):
            self.client.ensure_path(path)
            self.client.set(path, data)

    def remove(self, path: str) -> bool:
        """Delete ``path``; False if it was not there."""
        with self._translated("deleting", path):
            try:
                self.client.delete(path)
            except NoNodeError:
                return False
        return True

    def lock_holder(self, path: str) -> str | None:
        with self._translated("reading", path):
            contenders = self.client.Lock(path).contenders()
        return contenders[0] if contenders else None
