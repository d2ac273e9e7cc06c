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
