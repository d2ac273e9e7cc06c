"""The command line: ``redis-forwarder``. Its shape is fixed; docs/cli.md is its contract.

Every error the user can cause reaches this module as a :class:`ForwarderError` and
leaves as one line on stderr with the error's exit code, never as a traceback.
"""

from __future__ import annotations

import sys

import click

from redis_forwarder import __version__
from redis_forwarder.cli.bench_command import bench
from redis_forwarder.cli.drill_command import drill
from redis_forwarder.cli.fleet_commands import drain, pause, rebalance, resume, status, undrain
from redis_forwarder.cli.lab_commands import lab
from redis_forwarder.cli.run_command import run
from redis_forwarder.cli.topology_command import topology
from redis_forwarder.errors import ForwarderError
from redis_forwarder.observe import configure_logging

EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


cli.add_command(lab)
cli.add_command(run)
cli.add_command(topology)
for fleet_command in (status, drain, undrain, pause, resume, rebalance):
    cli.add_command(fleet_command)
cli.add_command(drill)
cli.add_command(bench)


def main() -> None:
    try:
        # Not standalone: our errors are ours to print; click hands back exit codes.
        code = cli.main(standalone_mode=False)
    except ForwarderError as exc:
        click.echo(f"redis-forwarder: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("redis-forwarder: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("redis-forwarder: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
