"""The lab's state file, ``lab.json`` in the lab directory: what was started, where.

It is written after every process start, not only at the end, so that ``lab down`` can
stop what an interrupted ``lab up`` left behind. Field names are part of the JSON that
``lab status --json`` prints (docs/lab.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis_forwarder.errors import LabError
from redis_forwarder.lab.pids import ProcessIdentity

STATE_FILE = "lab.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    kind: str
    address: str
    pid: int
    start_ticks: int
    log: str
    data_dir: str
    shard: str | None = None
    role: str = ""
    argv: tuple[str, ...] = ()  # how it was started: ``restart`` starts it the same way

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start_ticks)


@dataclass
class LabState:
    spec_name: str
    spec_path: str
    kind: str
    started_at: float
    ready: bool = False
    processes: list[ProcessRecord] = field(default_factory=list)
    version: int = STATE_VERSION
    tls: bool = False  # every server speaks TLS only; certificates in <lab>/tls

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LabState:
        processes = [
            ProcessRecord(**{**p, "argv": tuple(p.get("argv", ()))})
            for p in raw.pop("processes", [])
        ]
        return cls(**raw, processes=processes)


def state_path(lab_dir: Path) -> Path:
    return lab_dir / STATE_FILE


def write_state(lab_dir: Path, state: LabState) -> None:
    """Write atomically: a reader never sees half a file, even if we are killed."""
    path = state_path(lab_dir)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_state(lab_dir: Path) -> LabState | None:
    path = state_path(lab_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(
            f"{path} cannot be read ({exc}); stop its processes by hand and remove it"
        ) from exc
    if raw.get("version") != STATE_VERSION:
        raise LabError(f"{path} was written by another version of redis-forwarder")
    try:
        return LabState.from_json(raw)
    except TypeError as exc:
        raise LabError(f"{path} is not a lab state file: {exc}") from exc
