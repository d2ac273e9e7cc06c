"""A click group whose commands are imported only when one of them is run.

``redis-forwarder --help`` took about a second when ``main.py`` imported every command
module up front: ``status`` paid for the drill, the bench and the lab it never uses.
Here each command is a ``module:attr`` path and a summary; ``--help`` prints the
summaries without importing anything, and running a command imports its module alone.
tests/unit/test_cli.py checks each summary against its command's own docstring.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``"package.module:attribute"``) and the line ``--help``
    shows for it (the first sentence of its docstring)."""

    import_path: str
    summary: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.import_path.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.import_path} is not a click command")
        return command


class LazyGroup(click.Group):
    """click's documented lazy-loading group, with ``--help`` served from summaries."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is None:
            return super().get_command(ctx, cmd_name)
        command = lazy.load()
        self.add_command(command, cmd_name)  # imported once per process
        del self.lazy_commands[cmd_name]
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like ``click.Group.format_commands``, but a command not imported yet is
        shown with its summary rather than imported for its docstring."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            lazy = self.lazy_commands.get(name)
            if lazy is not None:
                # a stand-in command shortens the summary exactly as click would
                stand_in = click.Command(name, help=lazy.summary)
                rows.append((name, stand_in.get_short_help_str(limit)))
                continue
            command = self.commands.get(name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
