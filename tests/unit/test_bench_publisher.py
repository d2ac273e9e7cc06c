"""The bench's publisher and its JSON, without servers: at a fixed rate one message per
write, paced against its due time (sleeping only when ahead, never when behind); the
achieved rate; the ``--rate``/``--chunk`` lists; and the ``--json`` row's fields, all
documented and none of the old ones gone (issue 16: the fixed-rate figures measured
the bench's own bursts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redis_forwarder.bench.publisher import FULL_SPEED_CHUNK, achieved_rate, paced_writes
from redis_forwarder.bench.runner import Result, Scenario
from redis_forwarder.cli.bench_command import _numbers
from redis_forwarder.errors import UsageError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
# The row's fields before issue 16: they keep their names and meaning.
OLD_FIELDS = {
    "variant", "scenario", "setup", "published", "forwarded", "lost", "seconds",
    "msgs_per_second", "latency_ms", "cpu_seconds", "rss_mb", "rss_start_mb", "rss_peak_mb",
}  # fmt: skip
NEW_FIELDS = {"rate", "achieved_rate", "chunk", "publisher_writes", "cpu_us_per_message"}


class FakeClock:
    """A clock that moves only when slept on (by the sleep, plus an overshoot) or
    pushed by the test (the time a write takes)."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 100.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.overshoot


def test_a_paced_run_writes_one_message_at_a_time_at_its_due_time() -> None:
    clock = FakeClock()
    sent: list[tuple[float, list[int]]] = []
    for seqs in paced_writes(5, 1000.0, 1, clock=clock, sleep=clock.sleep):
        sent.append((clock.now, list(seqs)))
    assert [seqs for _, seqs in sent] == [[0], [1], [2], [3], [4]]
    assert [round(at - 100.0, 6) for at, _ in sent] == [0.0, 0.001, 0.002, 0.003, 0.004]
    assert clock.sleeps == pytest.approx([0.001] * 4)  # by the amount ahead, no more


def test_behind_schedule_the_overdue_go_at_once_still_one_per_write() -> None:
    """time.sleep overshoots: after a sleep of 50 µs that took 150, the two messages
    due meanwhile go out without sleeping, one write each."""
    clock = FakeClock(overshoot=0.0001)
    writes, sleeps_before = [], []
    for seqs in paced_writes(8, 20_000.0, 1, clock=clock, sleep=clock.sleep):
        writes.append(list(seqs))
        sleeps_before.append(len(clock.sleeps))
    assert writes == [[seq] for seq in range(8)]
    assert all(seconds > 0 for seconds in clock.sleeps)
    assert len(clock.sleeps) < 7  # some writes were overdue: sent without a sleep
    assert clock.sleeps == pytest.approx([0.00005, 0.00005, 0.00005], abs=1e-9)
    assert sleeps_before == [0, 1, 1, 1, 2, 2, 2, 3]


def test_chunks_keep_the_old_bursts_and_full_speed_never_waits() -> None:
    clock = FakeClock()
    chunked = [list(s) for s in paced_writes(450, 10_000.0, 200, clock, clock.sleep)]
    assert [len(s) for s in chunked] == [200, 200, 50]
    assert clock.sleeps == pytest.approx([0.02, 0.02])  # a burst every 200 / rate
    clock = FakeClock()
    full = [len(s) for s in paced_writes(450, 0.0, FULL_SPEED_CHUNK, clock, clock.sleep)]
    assert full == [200, 200, 50] and clock.sleeps == []


def test_the_achieved_rate_is_the_asked_one_on_schedule_and_less_when_behind() -> None:
    assert achieved_rate(2000, 1, 1999 / 2000) == pytest.approx(2000)
    assert achieved_rate(1000, 200, 800 / 500) == pytest.approx(500)  # last burst: seq 800
    assert achieved_rate(20_000, 1, 19_999 / 12_000) == pytest.approx(12_000)
    assert achieved_rate(1, 1, 0.0) == 0.0


def test_rates_and_chunks_are_comma_lists() -> None:
    assert _numbers("--rate", "1000,5000, 10000,20000") == [1000, 5000, 10_000, 20_000]
    assert _numbers("--rate", "10000") == [10_000]  # the old single rate
    assert _numbers("--rate", "0") == [0]
    assert _numbers("--chunk", "1,200,1", whole=True) == [1, 200]
    for text, whole in (("fast", False), ("-5", False), ("1.5", True)):
        with pytest.raises(UsageError):
            _numbers("--x", text, whole=whole)


def test_scenario_names_say_the_rate_and_any_chunk() -> None:
    assert Scenario.paced(10_000, 5).name == "10000 msg/s"
    chunked = Scenario.paced(10_000, 5, chunk=200)
    assert chunked.name == "10000 msg/s, chunk 200"
    assert (chunked.messages, chunked.chunk, chunked.rate) == (50_000, 200, 10_000)


def documented_fields() -> set[str]:
    """The field column of docs/performance.md's JSON table."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### JSON (`--json`)", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.0-9]+)` \|", section, flags=re.MULTILINE))


def test_the_json_row_keeps_its_fields_and_documents_every_one() -> None:
    row = Result(
        variant="ours", scenario="10000 msg/s", setup="channel -> stream, standalone",
        published=10, forwarded=10, lost=0, seconds=1.0, msgs_per_second=10.0,
        latency_ms={"p50": 0.3, "p99": 1.0, "p99.9": 1.2, "max": 1.5}, cpu_seconds=0.01,
        rss_mb=40.0, rss_start_mb=39.0, rss_peak_mb=41.0, rate=10.0, achieved_rate=10.0,
        chunk=1, publisher_writes=10, cpu_us_per_message=1000.0,
    ).to_json()  # fmt: skip
    assert set(row) == OLD_FIELDS | NEW_FIELDS
    assert set(row["latency_ms"]) == {"p50", "p99", "p99.9", "max"}
    assert documented_fields() == set(row)
