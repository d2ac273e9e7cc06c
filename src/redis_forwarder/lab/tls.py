"""TLS for a lab whose spec says ``[redis] tls = true``: a CA of the lab's own, one
server certificate naming every address of the spec, and one client certificate (for
the lab's probes and the forwarder nodes: the servers ask for one). Made with the
``openssl`` command in ``<lab>/tls``; ``files`` is pure (where they are)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from redis_forwarder.errors import MissingBinaryError
from redis_forwarder.model import Address

TLS_DIR = "tls"
EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
DAYS = "30"


@dataclass(frozen=True)
class LabTls:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_lines(self) -> list[str]:
        """What every redis-server and sentinel of a TLS lab is told (besides
        ``port 0`` and ``tls-port``)."""
        return [
            f"tls-cert-file {self.server_cert}",
            f"tls-key-file {self.server_key}",
            f"tls-ca-cert-file {self.ca}",
            "tls-auth-clients yes",
            "tls-replication yes",
        ]

    def forwarder_section(self) -> dict[str, str]:
        """A forwarder config's ``tls = {...}`` for the lab's servers."""
        return {
            "ca_file": str(self.ca),
            "cert_file": str(self.client_cert),
            "key_file": str(self.client_key),
        }


def files(lab_dir: Path) -> LabTls:
    directory = lab_dir / TLS_DIR
    return LabTls(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


def make(lab_dir: Path, addresses: list[Address]) -> LabTls:
    """Create the lab's CA and certificates (once: kept while the lab dir lives)."""
    made = files(lab_dir)
    if made.ca.exists() and made.client_key.exists():
        return made
    if shutil.which("openssl") is None:
        raise MissingBinaryError("openssl", "openssl")
    directory = made.ca.parent
    directory.mkdir(parents=True, exist_ok=True)
    ips = sorted({a.host for a in addresses})
    san = "subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-new", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
            "-subj", "/CN=redis-forwarder lab CA")  # fmt: skip
    for who, extension in (("server", san), ("client", "")):
        (directory / f"{who}.ext").write_text(extension + "\n")
        openssl("req", "-new", *EC, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                "-subj", f"/CN=redis-forwarder lab {who}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{who}.crt", "-days", DAYS,
                "-extfile", f"{who}.ext")  # fmt: skip
    return made
