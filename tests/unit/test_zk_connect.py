"""Each kazoo connection attempt is bounded (coordination.connect), against local sockets
that behave as a ZooKeeper that will not serve this attempt: one that accepts the TCP
connection and never answers the ConnectRequest (ZooKeeper 3.8.0 just after it starts:
the blip test's node waited 20 s on one, its whole session), and one whose accept
queue is full (SYNs dropped, as behind a partition). kazoo alone waits the session
timeout on each; bounded, its next attempt comes within a second or two."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kazoo.retry import KazooRetry

from redis_forwarder.coordination.connect import attempt_timeout, kazoo_client

SESSION = 5.0  # kazoo alone: 5 s per attempt; ours: attempt_timeout(5) = 1 s
QUICK_RETRY = {"max_tries": -1, "delay": 0.05, "max_delay": 0.1}


def test_an_attempt_gets_a_fifth_of_the_session_timeout_and_at_least_a_second() -> None:
    assert attempt_timeout(20) == pytest.approx(4.0)
    assert attempt_timeout(60) == pytest.approx(12.0)
    assert attempt_timeout(SESSION) == attempt_timeout(2) == 1.0


@contextmanager
def attempts_on(hosts: str, caplog: pytest.LogCaptureFixture) -> Iterator[list[float]]:
    """A client of ours connecting to ``hosts``; yields the times of its attempts (kazoo
    logs "Connecting to" for each), stopped and closed after."""
    caplog.set_level(logging.INFO, logger="kazoo")
    client = kazoo_client(hosts, SESSION, connection_retry=KazooRetry(**QUICK_RETRY))
    started: list[float] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Connecting to"):
                started.append(time.monotonic())

    counter = Counter()
    logging.getLogger("kazoo").addHandler(counter)
    try:
        client.start_async()
        yield started
    finally:
        logging.getLogger("kazoo").removeHandler(counter)
        client.stop()
        client.close()


def wait_for_attempts(started: list[float], count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(started) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(started) >= count, f"{len(started)} connection attempts in {within:.0f}s"


def test_an_attempt_that_a_server_never_answers_ends_in_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def accept_and_stay_silent() -> None:
            while True:
                try:
                    held.append(server.accept()[0])
                except OSError:
                    return  # the server socket closed: the test is over

        threading.Thread(target=accept_and_stay_silent, daemon=True).start()
        try:
            with attempts_on(f"127.0.0.1:{port}", caplog) as started:
                wait_for_attempts(started, 2, within=SESSION)
                assert started[1] - started[0] < attempt_timeout(SESSION) + 1.0
        finally:
            for connection in held:
                connection.close()


def test_a_tcp_connect_that_a_server_never_accepts_ends_in_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # one connection fills the queue: further SYNs are dropped
        filler.connect(server.getsockname())
        port = server.getsockname()[1]
        with attempts_on(f"127.0.0.1:{port}", caplog) as started:
            wait_for_attempts(started, 2, within=SESSION)
            assert started[1] - started[0] < attempt_timeout(SESSION) + 1.0
