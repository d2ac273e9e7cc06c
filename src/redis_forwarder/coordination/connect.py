"""How a kazoo client of ours connects to ZooKeeper (with ``zk.py``, the only modules
that import kazoo): ``refusals`` probes the servers before kazoo starts, and
``kazoo_client`` builds every KazooClient (the node's session, the command line's
``FleetClient``) with kazoo's warnings demoted, the fleet's identity, and each
connection attempt bounded (``attempt_timeout``).

Why each attempt is bounded. kazoo waits for the answer to its ConnectRequest for the
session timeout divided by the number of servers (its TCP connect, for the whole
session timeout), and a server that accepted the connection but never answers holds
the attempt that long. ZooKeeper 3.8.0 is such a server for a moment after it starts:
its port is bound before its database exists, and the connection it then closes ("not
running") stays open, the close having failed half-way (a NullPointerException in
``ZooKeeperServer.removeCnxn``, ``zkDb`` still null; ZOOKEEPER-5051). The blip test
(the only server killed -9 and restarted, a 20 s session) was flaky on loaded
machines, and failed every time once the restarted server was paused for 2 s right
after binding its port (what load does by chance): the node's attempt landed in that
window, kazoo waited 20.0 s on it while the server served again 2-3 s after the
restart, and the node's lease ran out first (20 s suspended): the node dropped its
task, the session was not kept. Bounded (4 s there), the attempt times out and kazoo's
next one (within its 1 s backoff) finds the server serving: the session is kept, back
about 5 s after the kill.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from kazoo.client import KazooClient
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.hosts import collect_hosts
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

from redis_forwarder.settings import Credentials

# How long a server may take to accept a TCP connection in ``refusals``' probe.
PROBE_TIMEOUT = 1.0
# A serving ZooKeeper answers a ConnectRequest within milliseconds. An attempt may take
# a fifth of the session timeout (at least a second, never longer than kazoo's own
# wait): several attempts fit in the session timeout, the node's lease, while a server
# slow to answer is still given far more than it needs.
ATTEMPT_FRACTION = 1 / 5
ATTEMPT_FLOOR = 1.0


def attempt_timeout(session_timeout: float) -> float:
    """Seconds one connection attempt may wait for its TCP connect, then for each
    answer that establishes the session (the ConnectResponse, the auth reply)."""
    return max(ATTEMPT_FLOOR, session_timeout * ATTEMPT_FRACTION)


def refusals(hosts: str, timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Each server's refusal (server -> why), when every server of ``hosts`` refused a
    TCP connection or has a name that does not resolve: an answer, so the caller fails
    at once. Empty as soon as one server accepts or does not answer in time (kazoo then
    waits for it as before). Against a refusing server kazoo retried for the whole
    10 s start-up wait, logging a warning per try (15 of them; issue 14)."""
    try:
        servers, _chroot = collect_hosts(hosts)
    except ValueError:
        return {}  # kazoo says what is wrong with the string
    found: dict[str, str] = {}
    for host, port in servers:
        try:
            with socket.create_connection((host, port), timeout):
                return {}
        except ConnectionRefusedError:
            found[f"{host}:{port}"] = "connection refused"
        except socket.gaierror as exc:
            found[f"{host}:{port}"] = f"unknown host ({exc.strerror})"
        except OSError:
            return {}  # no answer yet (a time-out): not a refusal
    return found


class _Demoted(logging.Filter):
    """kazoo's WARNINGs, one per failed connection attempt (15 in a 10 s start-up wait,
    one or more a second through an outage), become INFO: the node's own lines say it
    once ("suspended", "did not answer"), and alerting on WARNING sees those."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def kazoo_logger() -> logging.Logger:
    """The logger every KazooClient of ours is given, its warnings demoted."""
    logger = logging.getLogger("kazoo")
    if not any(isinstance(f, _Demoted) for f in logger.filters):
        logger.addFilter(_Demoted())
    return logger


def auth_options(credentials: Credentials | None) -> dict[str, Any]:
    """KazooClient options for a fleet with a ZooKeeper identity: the session
    authenticates with the digest scheme, and every znode it creates admits that identity
    alone (another client can neither take ownership nor rewrite the assignment)."""
    if credentials is None:
        return {}
    user, password = credentials.username or "", credentials.password or ""
    return {
        "auth_data": [("digest", f"{user}:{password}")],
        "default_acl": [make_digest_acl(user, password, all=True)],
    }


class _BoundedConnect(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler with every TCP connect bounded by ``limit`` (kazoo
    asks for the whole session timeout: a server that drops SYNs would hold it)."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        asked = kwargs.get("timeout")
        kwargs["timeout"] = self.limit if asked is None else min(asked, self.limit)
        return super().create_connection(*args, **kwargs)


def _bound_establishment(client: KazooClient, limit: float) -> None:
    """Bound each wait of kazoo's connection establishment by ``limit``. kazoo has no
    option for it: ``ConnectionHandler._invoke`` is its writer "used during connection
    establishment only" (the ConnectRequest, then the auth packets), given its wait as
    an argument; this wraps it on the client's own connection. Checked here so that a
    kazoo without it fails at once rather than going back to the long wait unseen."""
    connection: Any = getattr(client, "_connection", None)
    invoke = getattr(connection, "_invoke", None)
    if not callable(invoke):
        raise RuntimeError("this kazoo has no ConnectionHandler._invoke to bound")

    def bounded(timeout: float, request: Any, xid: int | None = None) -> Any:
        return invoke(min(timeout, limit), request, xid)

    connection._invoke = bounded


def kazoo_client(
    hosts: str,
    session_timeout: float,
    credentials: Credentials | None = None,
    connection_retry: KazooRetry | None = None,
) -> KazooClient:
    """A KazooClient asking for ``session_timeout``, each connection attempt bounded by
    ``attempt_timeout(session_timeout)``."""
    limit = attempt_timeout(session_timeout)
    client = KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        handler=_BoundedConnect(limit),
        connection_retry=connection_retry,
        logger=kazoo_logger(),
        **auth_options(credentials),
    )
    _bound_establishment(client, limit)
    return client
