"""`status` shows each direction of a bridge that has acted (issue 20): what it
forwarded and what it did not, and why; nothing for a fleet without bridges."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from redis_forwarder.cli.fleet_commands import _print_bridges


def task(route: str, bridged: dict[str, int] | None) -> dict[str, Any]:
    return {"route": route, "shard": "alpha", "forwarded": 10, "bridged": bridged}


def test_bridges_are_shown_per_direction_and_only_when_there_are_some() -> None:
    out = Console(record=True, width=160)
    _print_bridges(out, [task("plain", None)])
    assert out.export_text() == ""
    counts = {"echoes": 7, "unheard": 1, "origin_skipped": 0, "hop_drops": 0}
    _print_bridges(out, [task("plain", None), task("east-west", counts)])
    text = out.export_text()
    assert "echoes dropped" in text and "east-west" in text and "plain" not in text
    row = next(line for line in text.splitlines() if "east-west" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["east-west", "alpha", "10", "7", "1", "0", "0"]
