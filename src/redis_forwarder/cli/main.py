"""The entry point of ``redis-forwarder`` (pyproject's script, ``python -m``).

Ctrl-C in the first moments of a command lands while Python imports click, the logging
setup and the command's module; the ``try`` here covers those imports, so even then the
user sees "interrupted" and exit 130, not a KeyboardInterrupt traceback. This module
imports nothing else at its top for that reason.
"""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_INTERRUPTED = 130


def interrupted() -> NoReturn:
    """Ctrl-C: one line on stderr and exit 130 (docs/cli.md's table)."""
    sys.stderr.write("redis-forwarder: interrupted\n")
    sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    try:
        from redis_forwarder.cli.app import run

        run()
    except KeyboardInterrupt:
        interrupted()
