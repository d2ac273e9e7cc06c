"""The fleet bench's table: each measure, its target where it has one, and the verdict.
``rows`` is pure; ``print_fleet`` prints them with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from redis_forwarder.bench.fleet_model import (
    CYCLE_LIMIT,
    ZNODE_LIMIT,
    FleetResult,
    Spread,
)

Row = tuple[str, str, str, str]  # measure, value, target, verdict


def _s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "not measured"


def _spread(value: Spread | None) -> str:
    if value is None:
        return "not measured"
    return f"median {value.median:.3f} s, p99 {value.p99:.3f} s, max {value.max:.3f} s"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def _verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def rows(r: FleetResult) -> list[Row]:
    met = {name: _verdict(ok) for name, ok in r.targets().items()}
    shape = r.shape
    ideal = f"ideal about {r.ideal_moves()}"
    joined = f"{r.join_moves} tasks" if r.join_moves is not None else "not measured"
    left = f"{r.leave_moves} tasks" if r.leave_moves is not None else "not measured"
    requests = "-" if r.requests_per_s is None else f"{r.requests_per_s:,.0f} /s"
    fleet = (
        f"{shape.nodes} nodes, {shape.tasks:,} tasks ({shape.routes} routes x "
        f"{shape.shards} shards, {shape.standby_routes} routes with standbys)"
    )
    largest = f"{_bytes(r.largest_znode_bytes)} {r.largest_znode_path} ({r.largest_znode_when})"
    pings = f"{requests} (pings included: at most {r.expected_pings_per_s:,.0f} /s)"
    traffic = f"{_bytes(r.bytes_per_s)}/s / {_bytes(r.response_bytes_per_s)}/s"
    victim = f"{_s(r.takeover_s)} ({r.victim_tasks} tasks of {r.victim or '-'}, SIGKILL)"
    process = (
        f"{_cores(r.bench_cpu_cores)}, {r.bench_threads} threads in the main one; "
        f"ZooKeeper {_cores(r.zookeeper_cpu_cores)}"
    )
    refused = "not known (not the bench's own ZooKeeper)"
    if r.refused_requests is not None:
        refused = f"{r.refused_requests}" + (
            f", the largest {_bytes(r.refused_largest_bytes)}" if r.refused_requests else ""
        )
    controller = _spread(r.controller_cycle)
    if r.controller_cycles_disconnected:
        controller += f" ({r.controller_cycles_disconnected} more lost the connection)"
    per_s = "-" if r.member_cycles_per_s is None else f"{r.member_cycles_per_s:.2f}"
    cycles = f"{per_s} cycles/s each, {r.member_cycles_disconnected} lost the connection"
    run = f"{r.duration_s:.0f} s, session timeout {r.session_timeout:g} s, ZooKeeper {r.zookeeper}"
    return [
        ("fleet", fleet, "", ""),
        (f"settle ({r.start} start -> every task owned)", _s(r.settle_s), "", ""),
        ("owners quiet (start -> last owner change)", _s(r.owners_quiet_s), "", ""),
        ("controller cycle, steady", controller, f"max < {CYCLE_LIMIT:.0f} s",
         met["controller_cycle_under_1s"]),
        ("controller cycle, settling", _spread(r.controller_cycle_settling), "", ""),
        ("member cycle, steady", f"{_spread(r.member_cycle)}; {cycles}", "", ""),
        ("tasks per member, steady", f"{r.load_min} to {r.load_max}", "", ""),
        ("requests ZooKeeper refused (over 1 MiB)", refused, "", ""),
        ("largest znode", largest, f"<= {ZNODE_LIMIT // 1024} KiB",
         met["largest_znode_under_256KiB"]),
        ("znodes under the root", f"{r.znodes:,}" if r.znodes is not None else "-", "", ""),
        ("ZooKeeper requests, steady", pings, "", ""),
        ("ZooKeeper bytes in / out, steady", traffic, "", ""),
        ("ZooKeeper watches / connections", f"{r.watches} / {r.connections}", "", ""),
        ("dead node's tasks owned elsewhere", victim, f"<= {r.takeover_limit:g} s",
         met["takeover_within_session_timeout_plus_2s"]),
        ("dead controller's tasks owned elsewhere", _s(r.controller_takeover_s), "", ""),
        ("topology change (a shard added)", f"{_s(r.topology_change_s)} ({shape.routes} tasks)",
         "", ""),
        ("join: tasks moved", f"{joined} ({ideal}), quiet after {_s(r.join_s)}", "", ""),
        ("leave: tasks moved", f"{left} ({ideal}), quiet after {_s(r.leave_s)}", "", ""),
        ("bench (all its processes)", process, "", ""),
        ("run", run, "", ""),
    ]  # fmt: skip


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} CPU cores"


def print_fleet(result: FleetResult) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title="fleet bench: simulated members on real ZooKeeper, no Redis")
    for column in ("measure", "value", "target", "verdict"):
        table.add_column(column)
    for row in rows(result):
        table.add_row(*row)
    if result.notes:
        table.caption = "notes: " + "; ".join(result.notes)
    out.print(table)
    verdict = "every target met" if all(result.targets().values()) else "targets missed"
    verdicts = ", ".join(f"{name} {_verdict(met)}" for name, met in result.targets().items())
    out.print(f"{verdict}: {verdicts}")
