"""The node's HTTP endpoints when the asker has gone: a prober whose timeout passed
while the node was frozen (SIGSTOP) closes its end, and the answer finds no one. No
traceback in the node's log (issue 17's campaign counted two per frozen node)."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading

from redis_forwarder.model import Address
from redis_forwarder.observe import HealthServer, Metrics, Readiness
from tests.support.waiting import wait_until


def test_an_answer_to_a_prober_that_hung_up_is_dropped_quietly() -> None:
    hung_up = threading.Event()
    asked = threading.Event()

    def ready() -> Readiness:
        asked.set()
        hung_up.wait(10)  # the node "frozen" until the prober is gone
        return Readiness(True, {"detail": "x" * 100_000})

    server = HealthServer(Address("127.0.0.1", 0), Metrics(), ready)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        server.start()
        try:
            prober = socket.create_connection((server.address.host, server.address.port))
            prober.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(asked.is_set, "the server asked for readiness")
            # Closed with a reset: the server's write fails at once.
            prober.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            prober.close()
            hung_up.set()
            # The server still answers the next prober.
            with socket.create_connection((server.address.host, server.address.port)) as next_:
                next_.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert next_.recv(100).startswith(b"HTTP/1.0 200")
        finally:
            server.stop()
    assert "Traceback" not in errors.getvalue(), errors.getvalue()
