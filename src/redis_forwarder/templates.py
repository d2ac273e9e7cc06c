"""Target name templates: ``mirror:{channel}``, ``copy.{route}.{shard}``,
``{origin}.{channel}``. Pure.

A template is compiled once into literal parts and field names, and rendered on bytes:
channel names are bytes and may not be UTF-8, and rendering runs once per message.
``{channel}`` and ``{pattern}`` change per message; ``{route}``, ``{shard}`` and
``{origin}`` (the identity of the deployment the route reads, ``bridges.identities``)
are fixed per task, so binding merges them into the literals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

FIELDS = frozenset({"channel", "pattern", "shard", "route", "origin"})
_FIELD = re.compile(r"\{([^{}]*)\}")


class TemplateError(ValueError):
    """A template that names an unknown field or has an unbalanced brace."""


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[bytes | str, ...]  # bytes: literal; str: a field name

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(p for p in self.parts if isinstance(p, str))

    def bind(self, **fixed: str) -> Callable[[bytes, bytes], bytes]:
        """Fix the per-task fields (shard, route, origin); return ``render(channel, pattern)``.

        Neighbouring literals are merged, and a template with no per-message field
        renders to one constant, so the per-message cost is one join at most.
        """
        merged: list[bytes | str] = []
        for part in self.parts:
            if isinstance(part, str) and part in fixed:
                part = fixed[part].encode()
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] = merged[-1] + part
            else:
                merged.append(part)
        unbound = {p for p in merged if isinstance(p, str)} - {"channel", "pattern"}
        if unbound:
            raise TemplateError(f"{self.text!r}: no value for {sorted(unbound)}")
        if all(isinstance(p, bytes) for p in merged):
            constant = b"".join(p for p in merged if isinstance(p, bytes))
            return lambda _channel, _pattern: constant
        if merged == ["channel"]:
            return lambda channel, _pattern: channel

        def render(channel: bytes, pattern: bytes) -> bytes:
            return b"".join(
                p if isinstance(p, bytes) else (channel if p == "channel" else pattern)
                for p in merged
            )

        return render


def compile_template(text: str) -> Template:
    """Parse ``text``; raise :class:`TemplateError` naming the problem."""
    parts: list[bytes | str] = []
    position = 0
    for match in _FIELD.finditer(text):
        literal = text[position : match.start()]
        if "{" in literal or "}" in literal:
            raise TemplateError(f"{text!r}: unbalanced brace in {literal!r}")
        if literal:
            parts.append(literal.encode())
        name = match.group(1)
        if name not in FIELDS:
            raise TemplateError(
                f"{text!r} names {{{name}}}; the fields are "
                + ", ".join(f"{{{f}}}" for f in sorted(FIELDS))
            )
        parts.append(name)
        position = match.end()
    tail = text[position:]
    if "{" in tail or "}" in tail:
        raise TemplateError(f"{text!r}: unbalanced brace in {tail!r}")
    if tail:
        parts.append(tail.encode())
    if not parts:
        raise TemplateError("a target name may not be empty")
    return Template(text, tuple(parts))
