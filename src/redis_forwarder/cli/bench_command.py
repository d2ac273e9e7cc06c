"""``redis-forwarder bench``: forwarded msg/s and latency of our data path against a naive
redis-py forwarder and a bare raw-socket loop, in the same run (docs/performance.md)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from redis_forwarder.bench.runner import VARIANTS, Result, Scenario, run_variant
from redis_forwarder.errors import UsageError
from redis_forwarder.lab import Lab, load_spec
from redis_forwarder.model import Address, DeploymentKind

DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "topology" / "standalone.toml"


@contextmanager
def standalone_server(directory: Path | None, spec_path: Path) -> Iterator[Address]:
    """A standalone server: the one of the lab in ``directory``, or a lab of our own."""
    if directory is not None:
        lab = Lab(directory)
        state = lab.state()
        if state.kind != DeploymentKind.STANDALONE:
            raise UsageError(f"the lab in {directory} is {state.kind}; bench needs standalone")
        yield Address.parse(next(p.address for p in state.processes if p.kind == "redis"))
        return
    spec = load_spec(spec_path)
    if spec.kind is not DeploymentKind.STANDALONE:
        raise UsageError(f"{spec_path} is a {spec.kind} spec; bench needs a standalone one")
    with tempfile.TemporaryDirectory(prefix="redis-forwarder-bench-") as temporary:
        lab = Lab(Path(temporary) / "lab")
        lab.up(spec, spec_path=str(spec_path))
        try:
            yield spec.shards[0].master
        finally:
            lab.down()


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use the standalone lab already up in DIR.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SPEC,
    show_default="topology/standalone.toml",
    help="Otherwise bring up this standalone spec for the run.",
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
    "--variants", default=",".join(VARIANTS), show_default=True, help="Which forwarders to measure."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(
    directory: Path | None,
    spec_path: Path,
    messages: int,
    size: int,
    rate: float,
    seconds: float,
    variants: str,
    as_json: bool,
) -> None:
    """Channel to stream on a standalone Redis: ours vs naive vs a bare raw loop."""
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise UsageError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    scenarios = [Scenario("full speed", messages, size)]
    if rate:
        scenarios.append(Scenario(f"{rate:.0f} msg/s", int(rate * seconds), size, rate))
    err = Console(stderr=True)
    results: list[Result] = []
    with standalone_server(directory, spec_path) as server, err.status("bench") as status:
        for scenario in scenarios:
            for variant in chosen:
                results.append(run_variant(variant, server, scenario, status.update))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print_results(results)


def print_results(results: list[Result]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title="channel -> stream, standalone, one forwarder process")
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
        "RSS MB",
    ):
        table.add_column(column, justify="right" if column != "forwarder" else "left")
    naive = {r.scenario: r.msgs_per_second for r in results if r.variant == "naive"}
    for r in results:
        ratio = f"{r.msgs_per_second / naive[r.scenario]:.1f}x" if naive.get(r.scenario) else ""
        table.add_row(
            r.scenario,
            r.variant,
            str(r.published),
            str(r.forwarded),
            str(r.lost),
            f"{r.msgs_per_second:,.0f}",
            ratio,
            f"{r.latency_ms['p50']:.1f}",
            f"{r.latency_ms['p99']:.1f}",
            f"{r.latency_ms['p99.9']:.1f}",
            f"{r.cpu_seconds:.2f}",
            f"{r.rss_mb:.0f}",
        )
    out.print(table)
