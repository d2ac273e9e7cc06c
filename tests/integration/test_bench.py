"""`redis-forwarder bench` end to end on small loads: every variant forwards everything
at a low rate, the JSON names what was measured (its documented fields), a paced run
really sends one PUBLISH per write at the rate asked, a stream sink's latency comes
from receipt, and a lab of the wrong kind is a clear usage error. (Its numbers are for
docs/performance.md, not for assertions, beyond generous bounds.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redis_forwarder.bench.runner import COLLECTOR, _start
from tests.support.cli import run_cli
from tests.support.deployments import Deployment
from tests.unit.test_bench_publisher import documented_fields

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Shared = Callable[[str], Deployment]


@pytest.mark.parametrize(("spec", "sink"), [("standalone", "channel"), ("cluster", "stream")])
def test_bench_forwards_everything_and_reports_it(
    shared_deployment: Shared, spec: str, sink: str
) -> None:
    lab = shared_deployment(spec).require_lab()
    result = run_cli(
        "bench", "--dir", str(lab.directory), "--sink", sink, "--messages", "1000",
        "--rate", "500", "--seconds", "2", "--json",
        timeout=300,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    rows = result.json()
    assert {(r["variant"], r["scenario"]) for r in rows} == {
        (variant, scenario)
        for variant in ("naive", "raw", "ours")
        for scenario in ("full speed", "500 msg/s")
    }
    where = "cluster" if spec == "cluster" else "standalone"
    for row in rows:
        assert row["setup"] == f"channel -> {sink}, {where}"
        assert set(row) == documented_fields()
        if row["scenario"] == "500 msg/s":  # slow enough for every variant: nothing lost
            assert (row["published"], row["forwarded"], row["lost"]) == (1000, 1000, 0), row
            assert (row["rate"], row["chunk"], row["publisher_writes"]) == (500, 1, 1000)
            assert row["achieved_rate"] == pytest.approx(500, rel=0.2)
        else:
            assert (row["rate"], row["achieved_rate"], row["chunk"]) == (0, 0, 200)
        assert row["latency_ms"]["p50"] > 0 and row["rss_peak_mb"] >= row["rss_start_mb"] > 0
        assert row["cpu_us_per_message"] > 0


def test_bench_refuses_a_sentinel_lab(shared_deployment: Shared) -> None:
    lab = shared_deployment("sentinel").require_lab()
    result = run_cli("bench", "--dir", str(lab.directory), "--messages", "1000")
    assert result.code == 2
    assert "bench needs a standalone or cluster lab" in result.stderr


def test_bench_compares_with_naive_only_where_naive_ran(shared_deployment: Shared) -> None:
    """The table's "vs naive": naive's row is the baseline, not "1.0x"; without naive
    (--variants) no row claims a ratio."""
    lab = shared_deployment("standalone").require_lab()
    common = ("bench", "--dir", str(lab.directory), "--messages", "1000", "--rate", "0")
    with_naive = run_cli(*common, "--variants", "naive,ours", timeout=300)
    assert with_naive.code == 0, with_naive.stderr
    naive_row = next(line for line in with_naive.stdout.splitlines() if "│ naive " in line)
    assert "baseline" in naive_row and "1.0x" not in naive_row
    without = run_cli(*common, "--variants", "ours", timeout=300)
    assert without.code == 0, without.stderr
    ours_row = next(line for line in without.stdout.splitlines() if "│ ours " in line)
    assert "x │" not in ours_row and " - " in ours_row


def test_a_paced_run_sends_one_publish_per_write_and_times_streams_on_receipt(
    shared_deployment: Shared,
) -> None:
    """2,000 msg/s for 1 s, chunk 1: 2,000 writes of one PUBLISH, at the rate asked
    (within 20%); the stream sink's latency taken on receipt, µs resolution (not an
    entry id's ms), so sub-ms and fractional values. Chunk 200 for comparison: 10
    writes."""
    lab = shared_deployment("standalone").require_lab()
    result = run_cli(
        "bench", "--dir", str(lab.directory), "--sink", "stream", "--messages", "1000",
        "--rate", "2000", "--seconds", "1", "--chunk", "1,200", "--variants", "raw",
        "--json", timeout=300,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    rows = {row["scenario"]: row for row in result.json()}
    assert set(rows) == {"full speed", "2000 msg/s", "2000 msg/s, chunk 200"}
    paced, chunked = rows["2000 msg/s"], rows["2000 msg/s, chunk 200"]
    assert (paced["published"], paced["forwarded"], paced["publisher_writes"]) == (2000,) * 3
    assert paced["achieved_rate"] == pytest.approx(2000, rel=0.2)
    assert (chunked["published"], chunked["publisher_writes"], chunked["chunk"]) == (2000, 10, 200)
    latencies = paced["latency_ms"]
    assert 0 < latencies["p50"] < 50, latencies
    assert not all(float(value).is_integer() for value in latencies.values()), latencies
    assert paced["cpu_us_per_message"] > 0 and paced["cpu_seconds"] > 0


def test_the_stream_collector_reads_on_receipt_from_where_the_streams_were(
    shared_deployment: Shared,
) -> None:
    """Entries already there when it starts are not counted; a duplicate sequence
    number neither; each entry is timed when it arrives (µs), across streams read by
    one blocking XREAD."""
    deployment = shared_deployment("standalone")
    server = deployment.redis_nodes[0]
    client = redis.Redis(host=server.host, port=server.port)
    streams = ["collector-test:a", "collector-test:b"]
    client.delete(*streams)

    def entry(seq: int) -> dict[Any, Any]:
        return {"payload": b"%d %d xxxx" % (seq, time.time_ns() // 1000), "channel": b"c"}

    client.xadd(streams[0], entry(99))  # before the collector: not counted
    group = f"{server.host}:{server.port}={','.join(streams)}"
    collector = _start("collector", COLLECTOR, "stream", "3", "2", "20", group)
    try:
        for seq, stream in ((0, 0), (1, 1), (1, 0), (2, 1)):
            client.xadd(streams[stream], entry(seq))
        output, errors = collector.communicate(timeout=30)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait(10)
        client.delete(*streams)
    report = json.loads(output)
    assert report["count"] == 3, errors
    assert len(report["latencies_ms"]) == 3
    assert all(0 < latency < 1000 for latency in report["latencies_ms"]), report
    assert report["last_receive_us"] > report["first_publish_us"] > 0
