"""Turning pydantic's validation errors into lines a user can act on: the key path as
written in the TOML file (``shard[1].master``), the line it is on when the file's text
is at hand, then what is wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from redis_forwarder.toml_lines import line_of


class Located(ValueError):
    """A model validator's error about a key below the model (``loc``, relative to it):
    reported at that key and its line, not at the model's."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def describe(error: Any, reference: str, text: str | None = None) -> str:
    # Model validators report at the model's own path and name the key in the message.
    message = str(error["msg"]).removeprefix("Value error, ")
    if error.get("type") in _TYPES:  # strict types: say what was written instead
        given = error.get("input")
        message = f"{message}, not {_kind_of(given)} {given!r}"
    if error.get("type") == "extra_forbidden":
        message = f"unknown key; check its spelling against {reference}"
    elif error.get("type") == "missing":
        message = "required key is missing"
    loc = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Located):
        loc = (*loc, *cause.loc)
    line = line_of(text, loc) if text is not None else None
    where = f" (line {line})" if line is not None else ""
    return f"{key_path(loc)}{where}: {message}"


_TYPES = frozenset({"int_type", "float_type", "bool_type", "string_type"})


def _kind_of(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    return names.get(type(value), type(value).__name__)


def problems(exc: ValidationError, reference: str, text: str | None = None) -> list[str]:
    """One line per problem; ``text``: the file's TOML, to name each problem's line. A
    list that is too short only because its items failed is not a problem of its own
    (issue 14: "Tuple should have at least 1 item" after the one shard's real error)."""
    errors = exc.errors()
    failed_below = [tuple(e["loc"]) for e in errors]
    return [
        describe(error, reference, text)
        for error in errors
        if not (error.get("type") == "too_short" and _has_below(tuple(error["loc"]), failed_below))
    ]


def _has_below(loc: tuple[int | str, ...], locs: list[tuple[int | str, ...]]) -> bool:
    return any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
