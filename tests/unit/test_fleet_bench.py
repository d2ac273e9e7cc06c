"""The fleet bench's pure part (issue 18): the simulated work, statistics, mntr, the
targets and their verdicts, the JSON and the table; and the command line's refusals
(no server involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_forwarder.bench.fleet_model import (
    FleetResult,
    FleetShape,
    FleetWork,
    Spread,
    expected_pings,
    loads,
    moves,
    parse_mntr,
    rate,
    refused_lengths,
    shard_id,
    summed,
    task_of,
)
from redis_forwarder.bench.fleet_report import rows
from tests.support.cli import run_cli

# What docs/scale.md and the issue promise a reader of --json.
DOCUMENTED = {
    "nodes", "tasks", "controller_cycle_s", "largest_znode_bytes", "takeover_s",
    "zookeeper_requests_per_s", "zookeeper_bytes_per_s", "settle_s", "topology_change_s",
    "join_moves", "leave_moves", "session_timeout_s", "targets", "passed",
}  # fmt: skip


def test_the_documented_keys_are_in_the_docs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "scale.md").read_text()
    missing = sorted(key for key in DOCUMENTED if f"`{key}`" not in text)
    assert not missing, f"docs/scale.md does not name {missing}"


def test_a_shape_is_routes_times_shards_with_standbys_on_the_first_routes() -> None:
    shape = FleetShape(nodes=5, tasks=100, routes=4, standby_routes=2)
    work = FleetWork.of(shape)
    assert shape.shards == 25 and len(work.wanted) == 100
    assert {route for route, _shard in work.wanted} == {
        "route-00",
        "route-01",
        "route-02",
        "route-03",
    }
    assert {route for route, _shard in work.wants_standby} == {"route-00", "route-01"}
    assert len(work.wants_standby) == 50
    assert all(len(shard) == 40 for _route, shard in work.wanted)  # like cluster shard ids
    assert shape.node_ids()[0] == "node-0000" and shape.joiner == "node-0005"
    assert shape.new_shard() not in {shard for _route, shard in work.wanted}
    assert shard_id(3) == shard_id(3)  # the same names every run


def test_adding_a_shard_adds_a_task_per_route_and_replaces_the_sets() -> None:
    shape = FleetShape(nodes=3, tasks=6, routes=2, standby_routes=1)
    work = FleetWork.of(shape)
    before, standby_before = work.wanted, work.wants_standby
    work.add_shard(shape.new_shard())
    assert work.wanted - before == set(work.tasks_of_shard(shape.new_shard()))
    assert len(work.wants_standby) == len(standby_before) + 1
    assert len(before) == 6  # a member's cycle holding the old set sees it unchanged


def test_a_worker_started_empty_wants_nothing() -> None:
    work = FleetWork.of(FleetShape(nodes=3, tasks=6, routes=2), shards=[])
    assert not work.wanted and not work.wants_standby


@pytest.mark.parametrize(
    ("nodes", "tasks", "routes", "standby", "message"),
    [
        (2, 10, 1, 0, "at least 3 nodes"),
        (3, 10, 4, 0, "multiple of --routes"),
        (3, 2, 4, 0, "multiple of --routes"),
        (3, 8, 4, 5, "--standby-routes"),
    ],
)
def test_shapes_that_cannot_be_built_are_refused(
    nodes: int, tasks: int, routes: int, standby: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FleetShape(nodes, tasks, routes, standby)


def test_spread_and_moves() -> None:
    spread = Spread.of([0.3, 0.1, 0.2, 5.0])
    assert spread is not None
    assert (spread.count, spread.median, spread.max) == (4, 0.25, 5.0)
    assert spread.p99 == 5.0
    assert Spread.of([]) is None
    before = {("r", "a"): "n1", ("r", "b"): "n1", ("r", "c"): "n2"}
    after = {("r", "a"): "n1", ("r", "b"): "n3", ("r", "c"): "n3", ("r", "d"): "n3"}
    assert moves(before, after) == 2  # a new task is no move
    assert loads(after) == {"n1": 1, "n3": 3}
    assert task_of("route-01@abc") == ("route-01", "abc")


def test_mntr_counters_are_parsed_summed_and_rated() -> None:
    text = "zk_version\t3.8.0-1, built on\nzk_packets_received\t100\nzk_watch_count\t7\n"
    one = parse_mntr(text)
    assert one == {"zk_packets_received": 100.0, "zk_watch_count": 7.0}
    two = summed([one, {"zk_packets_received": 50.0}])
    assert two["zk_packets_received"] == 150.0
    later = {"zk_packets_received": 250.0}
    assert rate(two, later, "zk_packets_received", 10) == 10.0
    assert rate(two, later, "zk_bytes_received_count", 10) is None  # not exported
    # kazoo pings an idle session every third of the session timeout
    assert expected_pings(500, 6.0) == 250.0


def test_requests_zookeeper_refused_as_too_large_are_read_from_its_log() -> None:
    log = (
        "2025-11-30 [NIOWorkerThread-4] WARN org.apache.zookeeper.server.NIOServerCnxn - "
        "Unexpected exception\njava.io.IOException: Len error. A message from "
        "/127.0.0.1:41672 with advertised length of 1303167 is either a malformed message "
        "or too large to process (length is greater than jute.maxbuffer=1048575)\n"
    )
    assert refused_lengths(log * 2) == [1303167, 1303167]
    assert refused_lengths("all quiet\n") == []
    refused = measured(largest_znode_bytes=1000, refused_requests=2)
    assert not refused.targets()["largest_znode_under_256KiB"]  # it could not be written


def measured(**values: object) -> FleetResult:
    result = FleetResult(FleetShape(500, 20_000), 6.0, "127.0.0.1:1", "/r")
    for name, value in values.items():
        setattr(result, name, value)
    return result


def test_targets_are_judged_on_what_was_measured() -> None:
    met = measured(
        largest_znode_bytes=200_000,
        controller_cycle=Spread(10, 0.2, 0.5, 0.9),
        takeover_s=7.5,
    )
    assert all(met.targets().values())
    assert met.takeover_limit == 8.0
    missed = measured(
        largest_znode_bytes=1_100_000,
        controller_cycle=Spread(10, 0.2, 0.5, 1.2),  # the max counts
        takeover_s=8.5,
    )
    assert not any(missed.targets().values())
    assert not any(measured().targets().values())  # not measured: not met


def test_the_json_has_the_documented_keys_and_the_table_a_verdict_per_target() -> None:
    result = measured(largest_znode_bytes=300_000, takeover_s=7.0)
    document = result.to_json()
    assert set(document) >= DOCUMENTED
    assert document["controller_cycle_s"] is None and document["passed"] is False
    assert document["targets"] == {
        "largest_znode_under_256KiB": False,
        "controller_cycle_under_1s": False,
        "takeover_within_session_timeout_plus_2s": True,
    }
    assert document["join_ideal_moves"] == 40  # 20,000 tasks over 500 nodes
    verdicts = [row for row in rows(result) if row[3]]
    assert [row[3] for row in verdicts] == ["FAIL", "FAIL", "PASS"]


def test_the_command_line_keeps_the_two_benches_apart() -> None:
    result = run_cli("bench", "--fleet", "10")
    assert result.code == 2 and "--fleet needs --tasks" in result.stderr
    result = run_cli("bench", "--fleet", "10", "--tasks", "100", "--sink", "channel")
    assert result.code == 2 and "--sink" in result.stderr and "data-path" in result.stderr
    result = run_cli("bench", "--tasks", "100", "--zookeeper", "127.0.0.1:1")
    assert result.code == 2 and "--tasks, --zookeeper: only with --fleet" in result.stderr
    result = run_cli("bench", "--fleet", "10", "--tasks", "101")
    assert result.code == 2 and "multiple of --routes" in result.stderr
    result = run_cli("bench", "--fleet", "3", "--tasks", "60", "--zookeeper", "x:1", "--dir", "/")
    assert result.code == 2 and "give one" in result.stderr
    assert "Traceback" not in result.stderr
