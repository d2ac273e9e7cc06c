"""TLS for tests: a throwaway CA with server and client certificates (openssl), and a
TLS-only redis-server started on a loopback address, stopped by its pid."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis_forwarder.model import Address
from tests.support.waiting import wait_until

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path, server_ip: str, name: str = "test") -> TlsFiles:
    """A CA, a server certificate naming ``server_ip``, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-new", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", f"/CN={name}-ca", cwd=directory)  # fmt: skip
    for who, extension in (("server", f"subjectAltName=IP:{server_ip}"), ("client", "")):
        _openssl("req", "-new", *EC, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={name}-{who}", cwd=directory)  # fmt: skip
        (directory / f"{who}.ext").write_text(extension + "\n" if extension else "\n")
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.crt", "-days", "2",
                 "-extfile", f"{who}.ext", cwd=directory)  # fmt: skip
    return TlsFiles(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


@contextmanager
def tls_redis(directory: Path, address: Address, files: TlsFiles) -> Iterator[Address]:
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
