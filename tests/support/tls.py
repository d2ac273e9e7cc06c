"""TLS for tests: a TLS-only redis-server started on a loopback address with a CA and
certificates made as a TLS lab makes its own (``lab.tls.make``), stopped by its pid."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis_forwarder.lab.tls import LabTls
from redis_forwarder.model import Address
from tests.support.waiting import wait_until


@contextmanager
def tls_redis(directory: Path, address: Address, files: LabTls) -> Iterator[Address]:
    """A redis-server that speaks TLS only (``port 0``), asking clients for a
    certificate signed by the CA."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (scripts/install)"
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            server, "--port", "0", "--tls-port", str(address.port), "--bind", address.host,
            "--tls-cert-file", str(files.server_cert), "--tls-key-file", str(files.server_key),
            "--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "yes",
            "--save", "", "--appendonly", "no", "--dir", str(directory),
        ],
        stdout=open(directory / "redis.log", "wb"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: b"Ready to accept connections" in (directory / "redis.log").read_bytes(),
            f"the TLS redis-server on {address}",
        )
        yield address
    finally:
        process.terminate()
        process.wait(10)
