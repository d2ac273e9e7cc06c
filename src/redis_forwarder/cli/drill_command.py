"""``redis-forwarder drill SCENARIO|all``: a real fault under steady load on a lab, and
what it cost (docs/drills.md). Exit 1 when a scenario breaks its guarantee."""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
from rich.console import Console

from redis_forwarder.drill.bridge_loop import BRIDGE_LOOP, run_bridge_loop
from redis_forwarder.drill.partition import partition_unavailable
from redis_forwarder.drill.report import print_results, write_report
from redis_forwarder.drill.result import DrillResult
from redis_forwarder.drill.runner import STEADY, run_drill
from redis_forwarder.drill.scenarios import SCENARIOS
from redis_forwarder.errors import UsageError
from redis_forwarder.extras import require
from redis_forwarder.lab import Lab, load_spec, temporary_lab
from redis_forwarder.model import DeploymentKind

EXIT_BROKEN = 1
CHAOS = "chaos"
CHAOS_SECONDS = 120.0


@contextmanager
def drill_lab(directory: Path | None, spec_path: Path | None) -> Iterator[Lab]:
    if (directory is None) == (spec_path is None):
        raise UsageError("give exactly one of --dir DIR (a lab that is up) or --spec SPEC")
    if directory is not None:
        lab = Lab(directory)
        lab.state()  # a clear error when no lab is up there
        yield lab
        return
    assert spec_path is not None
    spec = load_spec(spec_path)
    err = Console(stderr=True)
    with ExitStack() as stack:
        with err.status(f"lab up {spec_path}") as status:  # the spinner only while it starts
            lab = stack.enter_context(
                temporary_lab(spec, str(spec_path), "redis-forwarder-drill-", status.update)
            )
        yield lab


@click.command()
@click.argument("scenario", type=click.Choice([*SCENARIOS, BRIDGE_LOOP, "all", CHAOS]))
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Drill the lab already up in DIR (its state is restored after each fault).",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bring up a fresh lab from SPEC (e.g. topology/ha.toml), drill it, take it down.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=10, max=20_000),
    default=400,
    show_default=True,
    help="Messages per second sent in all (pub/sub and stream).",
)
@click.option(
    "--steady",
    type=click.FloatRange(min=0.5, max=600),
    default=STEADY,
    show_default=True,
    help="Seconds of steady load before the fault and again after recovery.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=5, max=24 * 3600),
    help=f"chaos: seconds in which faults start (default {CHAOS_SECONDS:g}).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="chaos: the schedule's seed (default: a random one, printed); the same seed "
    "gives the same schedule.",
)
@click.option(
    "--faults",
    "fault_kinds",
    help="chaos: the fault kinds, comma-separated (default: every kind that fits the lab; "
    "see docs/drills.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write drills.json and a timeline PNG per scenario into this directory.",
)
def drill(
    scenario: str,
    directory: Path | None,
    spec_path: Path | None,
    rate: float,
    steady: float,
    seconds: float | None,
    seed: int | None,
    fault_kinds: str | None,
    as_json: bool,
    report_dir: Path | None,
) -> None:
    """Inject a real fault under steady load and report lost, duplicated and reordered
    messages and the recovery time. Scenarios: kill-node, stop-node, pause-node,
    kill-controller, kill-master, half-open, zk-leader-loss, zk-outage, slow-sink,
    partition-zookeeper, partition-redis (root: network namespaces);
    sentinel-failover on a Sentinel lab; cluster-failover, migrate-slots, add-shard on
    a cluster lab; or all of those that fit the lab, in turn. ``bridge-loop``: a
    two-way bridge (topology/bridge.toml) through a node kill and a failover, checked
    for loops. ``chaos``: a seeded random
    campaign of overlapping faults aimed at role holders, judged as a whole."""
    if scenario == CHAOS:
        chaos(
            directory, spec_path, rate, seconds or CHAOS_SECONDS, seed, fault_kinds,
            as_json, report_dir,
        )  # fmt: skip
        return
    given = [name for name, value in (("--seconds", seconds), ("--seed", seed),
             ("--faults", fault_kinds)) if value is not None]  # fmt: skip
    if given:
        raise UsageError(f"{', '.join(given)}: only for `drill chaos`")
    if report_dir is not None:  # before the drills, not after minutes of them
        require("matplotlib", "drill --report (its timeline pictures)")
    results: list[DrillResult] = []
    err = Console(stderr=True)
    with drill_lab(directory, spec_path) as lab, err.status("drill") as status:
        kind = DeploymentKind(lab.state().kind)
        chosen = [scenario]
        if scenario == "all":
            chosen = [name for name, s in SCENARIOS.items() if kind in s.kinds]
            if partition_unavailable():
                skipped = [name for name in chosen if SCENARIOS[name].needs_root]
                chosen = [name for name in chosen if name not in skipped]
                err.print(f"skipping {', '.join(skipped)}: {partition_unavailable()}")
        for name in chosen:
            if name == BRIDGE_LOOP:
                results.append(run_bridge_loop(lab, rate, status.update, steady))
                continue
            results.append(run_drill(lab, SCENARIOS[name], rate, status.update, steady))
    if report_dir is not None:
        for path in write_report(results, report_dir):
            err.print(f"wrote {path}")
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print_results(results)
    if not all(r.passed for r in results):
        sys.exit(EXIT_BROKEN)


def keep_logs(lab: Lab, directory: Path) -> list[Path]:
    """Copies of the forwarder nodes' logs: what a broken campaign is read with."""
    directory.mkdir(parents=True, exist_ok=True)
    kept = []
    for record in lab.state().processes:
        if record.kind == "forwarder" and Path(record.log).exists():
            kept.append(Path(shutil.copy(record.log, directory / Path(record.log).name)))
    return kept


def chaos(
    directory: Path | None,
    spec_path: Path | None,
    rate: float,
    seconds: float,
    seed: int | None,
    fault_kinds: str | None,
    as_json: bool,
    report_dir: Path | None,
) -> None:
    """``drill chaos``: one campaign (``drill/campaign.py``), its report, exit 1 when
    it broke a guarantee."""
    from redis_forwarder.drill.campaign import run_campaign
    from redis_forwarder.drill.chaos_report import print_campaign, write_campaign

    if report_dir is not None:
        require("matplotlib", "drill --report (its timeline pictures)")
    kinds = None
    if fault_kinds is not None:
        kinds = [k.strip() for k in fault_kinds.split(",") if k.strip()]
    err = Console(stderr=True)
    if seed is None:
        seed = random.SystemRandom().randrange(1_000_000)
        err.print(f"chaos: seed {seed}")
    with drill_lab(directory, spec_path) as lab, err.status("chaos") as status:
        result = run_campaign(
            lab, seed=seed, seconds=seconds, kinds=kinds, rate=rate,
            progress=status.update, root=not partition_unavailable(),
        )  # fmt: skip
        if report_dir is not None:  # while the lab (a --spec one) and its logs still exist
            for path in keep_logs(lab, report_dir / "logs"):
                err.print(f"kept {path}")
    where = ["--dir", str(directory)] if directory is not None else ["--spec", str(spec_path)]
    result.where = where
    if report_dir is not None:
        for path in write_campaign(result, report_dir):
            err.print(f"wrote {path}")
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_campaign(result)
    if not result.passed:
        sys.exit(EXIT_BROKEN)
