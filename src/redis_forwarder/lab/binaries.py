"""Finding the Debian binaries the lab starts, with errors that name the package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from redis_forwarder.errors import LabError, MissingBinaryError

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# The jar's manifest pulls in its dependencies; slf4j-simple gives it a logger, so its
# log file says something when an ensemble fails to form.
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Binaries:
    redis_server: str = ""
    redis_sentinel: str = ""
    java: str = ""
    zookeeper_classpath: str = ""
    prometheus: str = ""


def _which(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise MissingBinaryError(binary, package)
    return found


def redis_version(redis_server: str) -> tuple[int, int, int]:
    try:
        out = subprocess.run(
            [redis_server, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"{redis_server} --version failed: {exc}") from exc
    match = _VERSION.search(out)
    if match is None:
        raise LabError(f"cannot read the version of {redis_server} from {out.strip()!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def find_binaries(
    *, sentinel: bool, zookeeper: bool, redis_at_least: str = "7.0", prometheus: bool = False
) -> Binaries:
    """Locate what a spec needs; raise :class:`MissingBinaryError` for the first missing one.

    ``REDIS_FORWARDER_ZOOKEEPER_JAR`` overrides the ZooKeeper jar's location.
    """
    redis_server = _which("redis-server", "redis-server")
    wanted = tuple(int(part) for part in redis_at_least.split("."))
    have = redis_version(redis_server)
    if have < wanted:
        raise LabError(
            f"{redis_server} is Redis {'.'.join(map(str, have))}; the lab needs {redis_at_least} "
            "or newer (CLUSTER SHARDS, sharded pub/sub)"
        )
    redis_sentinel = _which("redis-sentinel", "redis-sentinel") if sentinel else ""
    java = classpath = ""
    if zookeeper:
        java = _which("java", "default-jre-headless")
        jar = Path(os.environ.get("REDIS_FORWARDER_ZOOKEEPER_JAR", ZOOKEEPER_JAR))
        if not jar.is_file():
            raise MissingBinaryError(str(jar), "zookeeper")
        parts = [str(jar)] + ([str(SLF4J_SIMPLE_JAR)] if SLF4J_SIMPLE_JAR.is_file() else [])
        classpath = ":".join(parts)
    # Debian's package; `scripts/install` installs it for the tests and the lab's
    # monitoring (docs/operations.md).
    prometheus_binary = _which("prometheus", "prometheus") if prometheus else ""
    return Binaries(redis_server, redis_sentinel, java, classpath, prometheus_binary)
