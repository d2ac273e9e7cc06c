"""``redis-forwarder lab``: start, inspect and stop a local deployment from a spec."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from redis_forwarder.errors import LabError, LabStartError, NotReadyError, UsageError
from redis_forwarder.lab import Lab, ProcessStatus, load_spec
from redis_forwarder.lab.cluster_build import already_formed, build_cluster
from redis_forwarder.lab.compose import compose_document, to_yaml
from redis_forwarder.lab.demo import run_demo
from redis_forwarder.lab.forwarders import CONFIG_FILE
from redis_forwarder.lab.lab import DEFAULT_UP_TIMEOUT, LAB_DIR_ENV
from redis_forwarder.lab.probes import ProbeFailed
from redis_forwarder.lab.readiness import redis_answers, wait_for
from redis_forwarder.lab.state import LabState
from redis_forwarder.model import DeploymentKind
from redis_forwarder.node import Node

EXIT_DEGRADED = 1

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Lab directory. Default: ${LAB_DIR_ENV}, else ./.lab",
)


@click.group()
def lab() -> None:
    """Run a local deployment (Redis, Sentinel, Cluster, ZooKeeper) from a topology spec."""


@lab.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_UP_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the deployment to be ready.",
)
@click.option(
    "--prometheus",
    metavar="HOST:PORT",
    help="Also run a Prometheus there that scrapes the forwarder nodes and evaluates the "
    "shipped alert rules (as a [monitoring] section in SPEC; docs/operations.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def up(
    spec: Path, directory: Path | None, timeout: float, prometheus: str | None, as_json: bool
) -> None:
    """Start every process of SPEC and wait until the deployment is ready."""
    topology = load_spec(spec, prometheus=prometheus)
    target = Lab(directory)
    err = Console(stderr=True)
    with err.status(f"lab up {topology.name} in {target.directory}") as spinner:
        state = target.up(
            topology,
            spec_path=str(spec),
            timeout=timeout,
            progress=lambda message: spinner.update(f"lab up {topology.name}: {message}"),
        )
    statuses = target.status()
    if as_json:
        click.echo(json.dumps(status_json(target, state, statuses), indent=2))
    else:
        err.print(f"[green]ready[/green]: {topology.name} ({topology.kind}) in {target.directory}")
        print_status(target, state, statuses)


@lab.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
def status(directory: Path | None, as_json: bool) -> None:
    """Show each process of the lab: address, pid, running, current role.

    Exit status 0 when every process runs, 1 when some do not, 3 when no lab is up.
    """
    target = Lab(directory)
    state = target.state()
    statuses = target.status()
    if as_json:
        click.echo(json.dumps(status_json(target, state, statuses), indent=2))
    else:
        print_status(target, state, statuses)
    if not all(s.running for s in statuses):
        sys.exit(EXIT_DEGRADED)


@lab.command()
@dir_option
@click.option("--keep-logs", is_flag=True, help="Keep the processes' logs in the lab directory.")
def down(directory: Path | None, keep_logs: bool) -> None:
    """Stop exactly the processes the lab started (by pid) and remove their data."""
    target = Lab(directory)
    report = target.down(keep_logs=keep_logs)
    err = Console(stderr=True)
    if not report.stopped and not report.already_gone:
        err.print(f"no lab is up in {target.directory}; nothing to stop")
        return
    stopped = len(report.stopped)
    err.print(f"stopped {stopped} process{'' if stopped == 1 else 'es'} in {target.directory}")
    if report.already_gone:
        err.print(f"already gone: {', '.join(report.already_gone)}")


def endpoints(state: LabState, statuses: list[ProcessStatus]) -> dict[str, Any]:
    """What a client connects to, in the forms redis-forwarder's config takes."""
    by_kind: dict[str, list[ProcessStatus]] = {}
    for item in statuses:
        by_kind.setdefault(item.record.kind, []).append(item)
    redis = by_kind.get("redis", [])
    result: dict[str, Any] = {}
    if state.kind == "sentinel":
        result["sentinels"] = [s.record.address for s in by_kind.get("sentinel", [])]
        result["masters"] = sorted({s.record.shard for s in redis if s.record.shard})
    elif state.kind == "cluster":
        result["cluster_seeds"] = [s.record.address for s in redis if s.record.role == "master"]
    else:
        result["server"] = next((s.record.address for s in redis if s.record.role == "master"), "")
    zookeeper = [s.record.address for s in by_kind.get("zookeeper", [])]
    if zookeeper:
        result["zookeeper"] = ",".join(zookeeper)
    forwarders = by_kind.get("forwarder", [])
    if forwarders:
        # Any node's config serves `status`, `drain`, `pause` ... for the lab's fleet.
        result["forwarder_config"] = str(Path(forwarders[0].record.data_dir) / CONFIG_FILE)
    return result


def status_json(target: Lab, state: LabState, statuses: list[ProcessStatus]) -> dict[str, Any]:
    return {
        "dir": str(target.directory),
        "spec": state.spec_name,
        "spec_path": state.spec_path,
        "kind": state.kind,
        "ready": state.ready,
        "healthy": all(s.running for s in statuses),
        "endpoints": endpoints(state, statuses),
        "processes": [
            {
                "name": s.record.name,
                "kind": s.record.kind,
                "shard": s.record.shard,
                "address": s.record.address,
                "pid": s.record.pid,
                "running": s.running,
                "role": s.role,
                "log": s.record.log,
            }
            for s in statuses
        ],
    }


def print_status(target: Lab, state: LabState, statuses: list[ProcessStatus]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped: keep addresses whole rather than fit 80 columns
    table = Table(title=f"lab {state.spec_name} ({state.kind}) in {target.directory}")
    for column in ("name", "kind", "shard", "address", "pid", "running", "role"):
        table.add_column(column)
    for s in statuses:
        running = "[green]yes[/green]" if s.running else "[red]no[/red]"
        table.add_row(
            s.record.name,
            s.record.kind,
            s.record.shard or "",
            s.record.address,
            str(s.record.pid),
            running,
            s.role,
        )
    out.print(table)
    for key, value in endpoints(state, statuses).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out.print(f"{key}: {shown}")


@lab.command()
@dir_option
@click.option(
    "--seconds",
    type=click.FloatRange(min=1, max=3600),
    default=10,
    show_default=True,
    help="How long to publish.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    help="Messages per second, spread over the masters.",
)
def demo(directory: Path | None, seconds: float, rate: float) -> None:
    """Forward a sample load on the running lab and show live counts.

    A forwarder node reads every demo.* message of each master into a stream
    demo:SHARD:CHANNEL. Exit status 0 when every published message was forwarded.
    """
    state = Lab(directory).state()
    out = Console()

    def table(node: Node, published: int, elapsed: float) -> Table:
        view = Table(title=f"lab demo: {published} published in {elapsed:.1f}s")
        for column in ("task", "forwarding", "received", "gaps"):
            view.add_column(column)
        for task in node.tasks.values():
            view.add_row(
                task.name,
                "yes" if task.running else "no",
                str(task.metrics.received),
                str(len(task.gaps)),
            )
        return view

    with Live(console=out, refresh_per_second=4, transient=not out.is_terminal) as live:
        result = asyncio.run(
            run_demo(state, seconds, rate, lambda node, n, t: live.update(table(node, n, t)))
        )
    out.print(
        f"published {result.published}, forwarded {result.forwarded}, "
        f"lost {result.lost} in {result.seconds:.1f}s"
    )
    if result.lost:
        sys.exit(EXIT_DEGRADED)


def _signal_command(name: str, sig: signal.Signals, done: str, doc: str) -> click.Command:
    @lab.command(name, help=doc)
    @dir_option
    @click.argument("process")
    def command(directory: Path | None, process: str) -> None:
        target = Lab(directory)
        record = target.record(process)
        target.send_signal(process, sig)
        click.echo(f"{process} (pid {record.pid}): {done}")

    return command


kill = _signal_command(
    "kill", signal.SIGKILL, "killed (SIGKILL)", "kill -9 one of the lab's processes (by its pid)."
)
pause = _signal_command(
    "pause",
    signal.SIGSTOP,
    "paused (SIGSTOP)",
    "Freeze one of the lab's processes (SIGSTOP): a hung server or node, until resume.",
)
resume = _signal_command(
    "resume", signal.SIGCONT, "resumed (SIGCONT)", "Let a paused process run again (SIGCONT)."
)


@lab.command()
@dir_option
@click.option("--hard", is_flag=True, help="SIGKILL instead of SIGTERM before starting it again.")
@click.argument("process")
def restart(directory: Path | None, hard: bool, process: str) -> None:
    """Stop one of the lab's processes and start it again the same way, on its data."""
    record = Lab(directory).restart(process, hard=hard)
    click.echo(f"{process}: restarted, pid {record.pid}")


@lab.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the compose file here (default: standard output).",
)
def compose(spec: Path, output: Path | None) -> None:
    """Print SPEC as a Docker Compose file: the lab's processes as containers on the
    host's network, at the spec's addresses (compose/ holds one per shipped spec)."""
    topology = load_spec(spec)
    text = to_yaml(
        compose_document(topology, spec.read_text(encoding="utf-8")),
        header=(
            f"Generated by `redis-forwarder lab compose {spec.as_posix()}`: do not edit.\n"
            "Needs a Docker engine on Linux (network_mode host). docs/deploy.md"
        ),
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@lab.command("form-cluster")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, default=DEFAULT_UP_TIMEOUT, show_default=True)
def form_cluster(spec: Path, timeout: float) -> None:
    """Form SPEC's cluster from fresh, running nodes as the spec pairs them (the compose
    files' cluster-init runs this; the lab does it itself)."""
    topology = load_spec(spec)
    if topology.kind is not DeploymentKind.CLUSTER:
        raise UsageError(
            f"{spec} is a {topology.kind} spec; form-cluster forms a cluster: give a spec "
            'with kind = "cluster" (topology/cluster.toml, for one)'
        )
    err = Console(stderr=True)
    nodes = [redis_answers(a) for a in topology.redis_addresses()]
    try:
        wait_for(nodes, timeout, progress=err.print, stage="redis: ")
        if already_formed(topology):
            err.print(f"cluster {topology.name} is already formed; nothing to do")
            return
        build_cluster(topology, timeout, progress=err.print)
    except ProbeFailed as exc:  # a node refused a CLUSTER command
        raise LabError(
            f"a node of {spec} refused to be formed into the cluster ({exc}); form-cluster "
            "needs fresh nodes started with cluster-enabled yes"
        ) from exc
    except NotReadyError as exc:
        # NotReadyError's hint names a lab directory: form-cluster has none.
        pending = "\n".join(f"  - {p}" for p in exc.pending)
        raise LabStartError(
            f"the cluster did not form within {timeout:.0f}s; still waiting for:\n"
            f"{pending}\nCheck that each node of {spec} runs (cluster-enabled yes) and "
            "answers at its address, or give more time with --timeout."
        ) from exc
    err.print(f"cluster {topology.name} formed")
