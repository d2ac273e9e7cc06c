"""The command line's group: ``redis-forwarder``. Its shape is fixed; docs/cli.md is its
contract.

Every error the user can cause reaches :func:`run` as a :class:`ForwarderError` and
leaves as one line on stderr with the error's exit code, never as a traceback.
cli/main.py imports this module inside its own ``try``, so that Ctrl-C while it loads
is an interruption too.
"""

from __future__ import annotations

import sys

import click

from redis_forwarder import __version__
from redis_forwarder.cli.lazy import LazyCommand, LazyGroup
from redis_forwarder.cli.main import interrupted
from redis_forwarder.errors import ForwarderError
from redis_forwarder.logs import configure_logging

_FLEET = "redis_forwarder.cli.fleet_commands"

# Each command is imported only when it runs: importing them all made every command,
# `status --help` included, pay about a second for the drill, the bench and the lab.
# A summary is its command's first docstring sentence (tests/unit/test_cli.py checks).
COMMANDS: dict[str, LazyCommand] = {
    "lab": LazyCommand(
        "redis_forwarder.cli.lab_commands:lab",
        "Run a local deployment (Redis, Sentinel, Cluster, ZooKeeper) from a topology spec.",
    ),
    "run": LazyCommand(
        "redis_forwarder.cli.run_command:run",
        "Forward messages as the config's routes say, following failovers, until stopped.",
    ),
    "topology": LazyCommand(
        "redis_forwarder.cli.topology_command:topology",
        "Show the deployment's shards: masters, replicas, slots, and how they were learned.",
    ),
    "status": LazyCommand(
        f"{_FLEET}:status",
        "Members, controller, assignment, and each task's owner, standby, epoch and progress.",
    ),
    "drain": LazyCommand(
        f"{_FLEET}:drain",
        "Move every task off NODE (it stays a member, assigned nothing) until undrain.",
    ),
    "undrain": LazyCommand(f"{_FLEET}:undrain", "Let NODE take tasks again."),
    "pause": LazyCommand(f"{_FLEET}:pause", "Stop forwarding ROUTE on every node."),
    "resume": LazyCommand(f"{_FLEET}:resume", "Forward ROUTE again."),
    "rebalance": LazyCommand(
        f"{_FLEET}:rebalance",
        "Recompute the assignment from scratch (not sticky): spreads each route's shards"
        " round robin again.",
    ),
    "drill": LazyCommand(
        "redis_forwarder.cli.drill_command:drill",
        "Inject a real fault under steady load and report lost, duplicated and reordered"
        " messages and the recovery time.",
    ),
    "bench": LazyCommand(
        "redis_forwarder.cli.bench_command:bench",
        "Channel to stream or channel, standalone or cluster: ours vs naive vs a bare raw"
        " loop, in the same run.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="redis-forwarder")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Logging on stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, for log collectors.",
)
def cli(log_level: str, log_format: str) -> None:
    """A high-availability message forwarder for Redis pub/sub and streams."""
    configure_logging(log_level, log_format)


def run() -> None:
    """Run the command line; exit with its code (docs/cli.md's table)."""
    try:
        # Not standalone: our errors are ours to print; click hands back exit codes.
        code = cli.main(standalone_mode=False)
    except ForwarderError as exc:
        click.echo(f"redis-forwarder: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)
