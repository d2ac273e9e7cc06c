"""What a chaos campaign found (the campaign's output, the report's input): each fault
as planned and as it went, each route's numbers, liveness, and the command that runs
the same schedule again."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.drill.chaos_check import CampaignRoute
from redis_forwarder.drill.nemesis import Planned


@dataclass
class FaultRecord:
    planned: Planned
    at: float | None = None  # when it struck (None: skipped)
    healed_at: float | None = None
    victim: str = ""
    shard: str = ""
    skipped: str = ""  # why it did not strike
    error: str = ""  # why its heal failed

    def to_json(self, origin: float) -> dict[str, Any]:
        def offset(at: float | None) -> float | None:
            return None if at is None else round(at - origin, 3)

        return {
            "planned_at": self.planned.at,
            "time": offset(self.at),
            "healed": offset(self.healed_at),
            "kind": self.planned.kind,
            "aim": self.planned.aim,
            "target": self.victim,
            "shard": self.shard,
            "hold": self.planned.hold,
            "skipped": self.skipped or None,
            "heal_error": self.error or None,
        }


@dataclass
class CampaignResult:
    seed: int
    seconds: float
    kinds: list[str]
    rate: float
    kind: str  # the deployment's kind
    started_at: float
    faults: list[FaultRecord]
    routes: dict[str, CampaignRoute]
    replication_loss: int
    settled_after_s: float | None
    exits: list[dict[str, Any]]
    alarms: dict[str, list[str]]
    broken: list[str]
    events: list[tuple[float, str]] = field(default_factory=list)
    timeline: dict[str, dict[int, int]] = field(default_factory=dict)
    timeline_route: str = ""
    where: list[str] = field(default_factory=list)  # --spec SPEC or --dir DIR, for replay
    unacknowledged: dict[str, int] = field(default_factory=dict)  # stream lane -> entries

    @property
    def passed(self) -> bool:
        return not self.broken

    @property
    def struck(self) -> list[FaultRecord]:
        return [f for f in self.faults if f.at is not None]

    @property
    def replay(self) -> str:
        """The command that runs this campaign's schedule again."""
        words = ["redis-forwarder", "drill", "chaos", *self.where]
        words += ["--seconds", f"{self.seconds:g}", "--seed", str(self.seed)]
        words += ["--faults", ",".join(self.kinds), "--rate", f"{self.rate:g}"]
        return shlex.join(words)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": "chaos",
            "passed": self.passed,
            "broken": self.broken,
            "seed": self.seed,
            "seconds": self.seconds,
            "rate": self.rate,
            "kind": self.kind,
            "kinds": self.kinds,
            "replay": self.replay,
            "started_at": self.started_at,
            "faults": [f.to_json(self.started_at) for f in self.faults],
            "struck": len(self.struck),
            "skipped": len(self.faults) - len(self.struck),
            "routes": {name: route.to_json() for name, route in self.routes.items()},
            "replication_loss": self.replication_loss,
            "settled_after_s": self.settled_after_s,
            "exits": self.exits,
            "unacknowledged": self.unacknowledged,
            "log_alarms": self.alarms,
            "events": [
                {"offset": round(at - self.started_at, 3), "what": what} for at, what in self.events
            ],
        }
