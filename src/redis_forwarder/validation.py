"""Turning pydantic's validation errors into lines a user can act on: the key path as
written in the TOML file (``shard[1].master``), then what is wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def describe(error: Any, reference: str) -> str:
    # Model validators report at the model's own path and name the key in the message.
    message = str(error["msg"]).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = f"unknown key; check its spelling against {reference}"
    elif error.get("type") == "missing":
        message = "required key is missing"
    return f"{key_path(tuple(error['loc']))}: {message}"


def problems(exc: ValidationError, reference: str) -> list[str]:
    return [describe(error, reference) for error in exc.errors()]
