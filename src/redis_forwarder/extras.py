"""The optional extras: which package comes with which extra, and a clear error when a
command needs one that is missing.

The forwarder's own dependencies are what a node needs; matplotlib (drill timelines)
came with every node's image until it moved to the ``lab`` extra. A command that needs
it checks first, so the user reads which extra to install, not an ImportError traceback
at the end of a ten-minute drill.
"""

from __future__ import annotations

import importlib.util

from redis_forwarder.errors import MissingExtraError

LAB = "lab"

# module -> the extra (pyproject.toml's [project.optional-dependencies]) that installs it
PROVIDED_BY: dict[str, str] = {"matplotlib": LAB}


def require(module: str, needed_for: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra if ``module`` cannot be
    imported. Looks for the module without importing it (matplotlib takes ~0.3 s)."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, PROVIDED_BY[module], needed_for)
