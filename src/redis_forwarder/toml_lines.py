"""Where in a TOML file a key was written: the line of a validation error's key path
(``route[1].to.stream`` -> the line of ``to = {...}`` in the second ``[[route]]``).
Pure; good enough for the files people write (tables, arrays of tables, dotted keys,
inline tables), and it answers None rather than a wrong line when unsure."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\".]+?)\s*=")

Path = tuple[str | int, ...]


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip('"') for p in dotted.split(".")]


def key_lines(text: str) -> dict[Path, int]:
    """Every table header and key assignment's path, with its 1-based line number."""
    lines: dict[Path, int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: Path = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_multiline = not in_multiline
            if not in_multiline:
                continue
        if in_multiline:
            continue
        header = _HEADER.match(line)
        if header:
            names = tuple(_parts(header.group(2)))
            if header.group(1) == "[[":
                index = counts.get(names, 0)
                counts[names] = index + 1
                table = (*names, index)
            else:
                table = names
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key and not line.lstrip().startswith("#"):
            path = (*table, *_parts(key.group(1)))
            lines.setdefault(path, number)
    return lines


def line_of(text: str, loc: Path) -> int | None:
    """The line where ``loc`` (or its nearest written ancestor) is set."""
    lines = key_lines(text)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
