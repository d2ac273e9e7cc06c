"""`redis-forwarder bench` end to end on small loads: every variant forwards everything
at a low rate, the JSON names what was measured, and a lab of the wrong kind is a clear
usage error. (Its numbers are for docs/performance.md, not for assertions.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.cli import run_cli
from tests.support.deployments import Deployment

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
        if row["scenario"] == "500 msg/s":  # slow enough for every variant: nothing lost
            assert (row["published"], row["forwarded"], row["lost"]) == (1000, 1000, 0), row
        assert row["latency_ms"]["p50"] >= 0 and row["rss_peak_mb"] >= row["rss_start_mb"] > 0


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
