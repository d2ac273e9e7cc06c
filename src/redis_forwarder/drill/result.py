"""What one drill found: the scenario, its events, each route's report and what broke
(the runner's output, the report's input)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.drill.checker import RouteReport


@dataclass
class DrillResult:
    scenario: str
    description: str
    fault_at: float
    events: list[tuple[float, str]]
    routes: dict[str, RouteReport]
    replication_loss: int
    broken: list[str]
    timeline: dict[str, dict[int, int]] = field(default_factory=dict)
    started_at: float = 0.0
    timeline_route: str = ""  # the checker route the timeline shows
    notes: list[str] = field(default_factory=list)  # what the table cannot show

    @property
    def passed(self) -> bool:
        return not self.broken

    def to_json(self) -> dict[str, Any]:
        notes = {"notes": self.notes} if self.notes else {}
        return {
            "scenario": self.scenario,
            "description": self.description,
            "passed": self.passed,
            "broken": self.broken,
            "fault_at": self.fault_at,
            "events": [
                {"at": at, "offset": round(at - self.fault_at, 3), "what": what}
                for at, what in self.events
            ],
            "replication_loss": self.replication_loss,
            "routes": {name: report.to_json() for name, report in self.routes.items()},
            **notes,
        }
