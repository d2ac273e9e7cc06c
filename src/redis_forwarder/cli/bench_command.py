"""``redis-forwarder bench``: forwarded msg/s and latency of our data path against a naive
redis-py forwarder and a bare raw-socket loop, in the same run (docs/performance.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from redis_forwarder.bench.runner import (
    DEFAULT_VARIANTS,
    VARIANTS,
    Result,
    Scenario,
    Setup,
    run_variant,
)
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab, load_spec, temporary_lab
from redis_forwarder.model import Address, DeploymentKind

DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "topology" / "standalone.toml"


BENCH_KINDS = (DeploymentKind.STANDALONE, DeploymentKind.CLUSTER)


@contextmanager
def bench_server(directory: Path | None, spec_path: Path) -> Iterator[tuple[Address, bool]]:
    """Where to publish and subscribe, and whether it is a cluster: the lab up in
    ``directory`` (standalone or cluster), or a lab of our own from ``spec_path``."""
    if directory is not None:
        state = Lab(directory).state()
        if state.kind not in BENCH_KINDS:
            raise UsageError(
                f"the lab in {directory} is {state.kind}; bench needs a standalone or cluster lab"
            )
        first = next(p.address for p in state.processes if p.kind == "redis")
        yield Address.parse(first), state.kind == DeploymentKind.CLUSTER
        return
    spec = load_spec(spec_path)
    if spec.kind not in BENCH_KINDS:
        raise UsageError(
            f"{spec_path} is a {spec.kind} spec; bench needs a standalone or cluster one"
        )
    with temporary_lab(spec, str(spec_path), "redis-forwarder-bench-"):
        yield spec.shards[0].master, spec.kind is DeploymentKind.CLUSTER


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use the standalone or cluster lab already up in DIR.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SPEC,
    show_default="topology/standalone.toml",
    help="Otherwise bring up this standalone or cluster spec for the run.",
)
@click.option(
    "--sink",
    type=click.Choice(["stream", "channel"]),
    default="stream",
    show_default=True,
    help="Forward into streams (XADD) or channels (PUBLISH).",
)
@click.option(
    "--messages",
    type=click.IntRange(min=1000),
    default=200_000,
    show_default=True,
    help="Messages per full-speed run.",
)
@click.option(
    "--size", type=click.IntRange(min=32), default=100, show_default=True, help="Payload bytes."
)
@click.option(
    "--rate",
    "--rates",
    "rates",
    default="1000,5000,10000,20000",
    show_default=True,
    help="Messages/s of the fixed-rate runs, one run per rate (a comma list: a sweep; 0: none).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=5,
    show_default=True,
    help="Length of each fixed-rate run.",
)
@click.option(
    "--chunk",
    "chunks",
    default="1",
    show_default=True,
    help="Messages per publisher write at a fixed rate: 1, one PUBLISH at a time as a "
    "real publisher sends; N, a burst of N every N/rate s (a comma list runs each).",
)
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help="Which forwarders to measure (also: marks, ours writing a standby's watermarks).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(
    directory: Path | None,
    spec_path: Path,
    sink: str,
    messages: int,
    size: int,
    rates: str,
    seconds: float,
    chunks: str,
    variants: str,
    as_json: bool,
) -> None:
    """Channel to stream or channel, standalone or cluster: ours vs naive vs a bare
    raw loop, in the same run."""
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise UsageError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    scenarios = [Scenario("full speed", messages, size)]
    paced = [r for r in _numbers("--rate", rates) if r]  # 0: no fixed-rate run
    chunk_sizes = [int(c) for c in _numbers("--chunk", chunks, whole=True)]
    if 0 in chunk_sizes:
        raise UsageError("--chunk: 0 is not a number of messages (1 or more)")
    scenarios += [Scenario.paced(r, seconds, size, c) for r in paced for c in chunk_sizes]
    err = Console(stderr=True)
    results: list[Result] = []
    with bench_server(directory, spec_path) as (server, cluster), err.status("bench") as status:
        setup = Setup(server, cluster, sink)
        for scenario in scenarios:
            for variant in chosen:
                results.append(run_variant(variant, setup, scenario, status.update))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print_results(results)


def _numbers(option: str, text: str, *, whole: bool = False) -> list[float]:
    """A comma list of numbers >= 0 (whole ones if ``whole``), each once, in order."""
    numbers: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            number = float(item)
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
        if number < 0 or (whole and not number.is_integer()):
            raise UsageError(f"{option}: {item} is not a {'whole ' if whole else ''}number >= 0")
        if number not in numbers:
            numbers.append(number)
    return numbers


def print_results(results: list[Result]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    title = results[0].setup if results else ""
    table = Table(title=f"{title}, one forwarder process")
    for column in (
        "scenario",
        "forwarder",
        "sent msg/s",
        "published",
        "forwarded",
        "lost",
        "msg/s",
        "vs naive",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU s",
        "CPU µs/msg",
        "RSS MB start/peak/end",
    ):
        table.add_column(column, justify="right" if column != "forwarder" else "left")
    naive = {r.scenario: r.msgs_per_second for r in results if r.variant == "naive"}
    for r in results:
        table.add_row(
            r.scenario,
            r.variant,
            _sent(r),
            str(r.published),
            str(r.forwarded),
            str(r.lost),
            f"{r.msgs_per_second:,.0f}",
            _versus_naive(r, naive.get(r.scenario)),
            f"{r.latency_ms['p50']:.2f}",
            f"{r.latency_ms['p99']:.2f}",
            f"{r.latency_ms['p99.9']:.2f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.cpu_us_per_message:.1f}",
            f"{r.rss_start_mb:.0f}/{r.rss_peak_mb:.0f}/{r.rss_mb:.0f}",
        )
    if any(_sent(r).endswith("!") for r in results):
        table.caption = "sent msg/s !: the publisher fell more than 5% short of the asked rate"
    out.print(table)


SHORT_OF_RATE = 0.95  # a publisher below this share of the asked rate is flagged


def _sent(result: Result) -> str:
    """What the publisher achieved at a fixed rate, flagged ("!") when it fell short of
    the asked rate by more than 5%: the row then measured a lower load than it names."""
    if not result.rate:
        return "-"
    short = result.achieved_rate < SHORT_OF_RATE * result.rate
    return f"{result.achieved_rate:,.0f}" + (" !" if short else "")


def _versus_naive(result: Result, naive: float | None) -> str:
    """The "vs naive" cell: naive's own row is the baseline (not "1.0x"), and a row
    whose scenario naive did not run (--variants) or forwarded nothing has no ratio."""
    if result.variant == "naive":
        return "baseline"
    if not naive:
        return "-"
    return f"{result.msgs_per_second / naive:.1f}x"
