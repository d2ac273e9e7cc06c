"""``redis-forwarder bench``: forwarded msg/s and latency of our data path against a naive
redis-py forwarder and a bare raw-socket loop, in the same run (docs/performance.md);
with ``--fleet NODES --tasks TASKS``, the coordination instead: simulated members on a
real ZooKeeper, no Redis (issue 18, ``bench/fleet_runner.py``, docs/scale.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from redis_forwarder import eventloop
from redis_forwarder.bench.fleet_model import FleetShape
from redis_forwarder.bench.fleet_report import print_fleet
from redis_forwarder.bench.fleet_runner import FleetOptions, run_fleet
from redis_forwarder.bench.fleet_zookeeper import zookeeper_for
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
    help="Use the standalone or cluster lab already up in DIR (with --fleet: its ZooKeeper).",
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
    help="Which forwarders to measure (also: marks, ours writing a standby's watermarks; "
    "echoes, ours as one direction of a pub/sub bridge with echo suppression).",
)
@click.option(
    "--fleet",
    type=click.IntRange(min=3),
    help="Bench the coordination instead: NODES simulated members (one ZooKeeper "
    "session each, no Redis) on the lab's ZooKeeper (--dir), --zookeeper, or one of "
    "the bench's own.",
)
@click.option("--tasks", type=click.IntRange(min=1), help="With --fleet: the tasks to share.")
@click.option(
    "--routes",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="With --fleet: routes; TASKS/ROUTES shards each.",
)
@click.option(
    "--standby-routes",
    type=click.IntRange(min=0),
    help="With --fleet: how many routes want a standby (pub/sub)  [default: half]",
)
@click.option("--zookeeper", help="With --fleet: a running ZooKeeper (HOST:PORT[,...]).")
@click.option(
    "--session-timeout",
    type=click.FloatRange(min=2, max=120),
    default=6.0,
    show_default=True,
    help="With --fleet: the members' ZooKeeper session timeout.",
)
@click.option(
    "--steady-seconds",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="With --fleet: the steady-state window (request rates, cycle times).",
)
@click.option(
    "--phase-timeout",
    type=click.FloatRange(min=5),
    default=120.0,
    show_default=True,
    help="With --fleet: how long each phase may take before the bench notes it and goes on.",
)
@click.option(
    "--quiet-seconds",
    type=click.FloatRange(min=1),
    default=4.0,
    show_default=True,
    help="With --fleet: no owner change for this long counts as settled (after a join...).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --fleet: run the members in this many processes (0: the bench's own).",
)
@click.option(
    "--warm-start",
    is_flag=True,
    help="With --fleet: give the controller the work once every member has registered "
    "(default: at once, as members start: the first ones up own everything first).",
)
@click.option(
    "--logs",
    "logs",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --fleet: keep the logs of the members run in processes of their own here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def bench(
    ctx: click.Context,
    directory: Path | None,
    spec_path: Path,
    sink: str,
    messages: int,
    size: int,
    rates: str,
    seconds: float,
    chunks: str,
    variants: str,
    fleet: int | None,
    tasks: int | None,
    routes: int,
    standby_routes: int | None,
    zookeeper: str | None,
    session_timeout: float,
    steady_seconds: float,
    phase_timeout: float,
    quiet_seconds: float,
    workers: int,
    warm_start: bool,
    logs: Path | None,
    as_json: bool,
) -> None:
    """Channel to stream or channel, standalone or cluster: ours vs naive vs a bare
    raw loop, in the same run."""
    given = _given(ctx)
    if fleet is not None:
        if tasks is None:
            raise UsageError("--fleet needs --tasks: how many tasks the fleet shares")
        if data_path := sorted(given & set(DATA_PATH_OPTIONS)):
            raise UsageError(
                f"--fleet benches the coordination, without Redis: "
                f"{', '.join(DATA_PATH_OPTIONS[o] for o in data_path)} "
                "belong(s) to the data-path bench; drop them"
            )
        options = FleetOptions(
            _shape(fleet, tasks, routes, standby_routes),
            session_timeout,
            steady_seconds,
            phase_timeout,
            quiet=quiet_seconds,
            workers=workers,
            warm=warm_start,
            log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        )
        _bench_fleet(options, directory, zookeeper, logs, as_json)
        return
    if fleet_only := sorted(given & set(FLEET_OPTIONS)):
        raise UsageError(
            f"{', '.join(FLEET_OPTIONS[o] for o in fleet_only)}: only with --fleet NODES"
        )
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


DATA_PATH_OPTIONS = {
    "spec_path": "--spec",
    "sink": "--sink",
    "messages": "--messages",
    "size": "--size",
    "rates": "--rate",
    "seconds": "--seconds",
    "chunks": "--chunk",
    "variants": "--variants",
}
FLEET_OPTIONS = {
    "tasks": "--tasks",
    "routes": "--routes",
    "standby_routes": "--standby-routes",
    "zookeeper": "--zookeeper",
    "session_timeout": "--session-timeout",
    "steady_seconds": "--steady-seconds",
    "phase_timeout": "--phase-timeout",
    "quiet_seconds": "--quiet-seconds",
    "logs": "--logs",
    "workers": "--workers",
    "warm_start": "--warm-start",
}


def _given(ctx: click.Context) -> set[str]:
    """The options given on the command line (or the environment), not defaulted."""
    return {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name)
        not in (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
    }


def _shape(nodes: int, tasks: int, routes: int, standby_routes: int | None) -> FleetShape:
    try:
        return FleetShape(nodes, tasks, routes, -1 if standby_routes is None else standby_routes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _bench_fleet(
    options: FleetOptions,
    directory: Path | None,
    zookeeper: str | None,
    logs: Path | None,
    as_json: bool,
) -> None:
    err = Console(stderr=True)
    with (
        err.status("fleet bench") as status,
        zookeeper_for(zookeeper, directory, status.update, logs) as target,
    ):
        result = eventloop.run(run_fleet(options, target, status.update, logs))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_fleet(result)


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
