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
    type=click.FloatRange(min=0),
    default=10_000,
    show_default=True,
    help="Messages/s of the fixed-rate latency run (0: skip it).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=5,
    show_default=True,
    help="Length of the fixed-rate run.",
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
    rate: float,
    seconds: float,
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
    if rate:
        scenarios.append(Scenario(f"{rate:.0f} msg/s", int(rate * seconds), size, rate))
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


def print_results(results: list[Result]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    title = results[0].setup if results else ""
    table = Table(title=f"{title}, one forwarder process")
    for column in (
        "scenario",
        "forwarder",
        "published",
        "forwarded",
        "lost",
        "msg/s",
        "vs naive",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU s",
        "RSS MB start/peak/end",
    ):
        table.add_column(column, justify="right" if column != "forwarder" else "left")
    naive = {r.scenario: r.msgs_per_second for r in results if r.variant == "naive"}
    for r in results:
        table.add_row(
            r.scenario,
            r.variant,
            str(r.published),
            str(r.forwarded),
            str(r.lost),
            f"{r.msgs_per_second:,.0f}",
            _versus_naive(r, naive.get(r.scenario)),
            f"{r.latency_ms['p50']:.1f}",
            f"{r.latency_ms['p99']:.1f}",
            f"{r.latency_ms['p99.9']:.1f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.rss_start_mb:.0f}/{r.rss_peak_mb:.0f}/{r.rss_mb:.0f}",
        )
    out.print(table)


def _versus_naive(result: Result, naive: float | None) -> str:
    """The "vs naive" cell: naive's own row is the baseline (not "1.0x"), and a row
    whose scenario naive did not run (--variants) or forwarded nothing has no ratio."""
    if result.variant == "naive":
        return "baseline"
    if not naive:
        return "-"
    return f"{result.msgs_per_second / naive:.1f}x"
