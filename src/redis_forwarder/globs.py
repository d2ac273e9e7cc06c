"""Can a Redis glob match some name a template can produce? Pure.

A route that reads ``orders.*`` and writes ``orders.mirror.{channel}`` on the same
deployment feeds itself forever (issue 14: one PUBLISH became 1,390 messages in 1.5 s).
Both sides are regular languages over bytes: a glob (``*``, ``?``, ``[...]``, ``\\``
as Redis' ``stringmatchlen`` reads them) and a template (literal parts and fields, each
field a set of globs or unknown). Whether they share a name is reachability in the
product of the two automata: exact, and at most len(a) x len(b) states.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from enum import StrEnum

from redis_forwarder.templates import Template

STAR = None  # a token that matches any run of bytes, the empty one too
Token = frozenset[int] | None  # the bytes one position may hold, or STAR
Glob = tuple[Token, ...]
_ANY_BYTE = frozenset(range(256))
# How many concrete templates (one choice per field) are tried before a field with many
# values is widened to "anything", and how many glob pairs are compared at most: past
# these the answer is "unknown" and the run-time guard decides.
MAX_TEMPLATE_CHOICES = 64
MAX_COMPARISONS = 200_000


class Overlap(StrEnum):
    YES = "yes"  # proven: some name is both read and written
    NO = "no"  # proven: none is
    UNKNOWN = "unknown"  # an unknown field, or too much work: left to the run time


_BYTES = tuple(frozenset((byte,)) for byte in range(256))


def literal(text: bytes) -> Glob:
    # Shared one-byte sets: a config may name 100,000 channels (a set per byte took 8 s).
    return tuple(map(_BYTES.__getitem__, text))


def parse_glob(pattern: bytes) -> Glob:
    """Tokens of a Redis glob, read as Redis reads it (an unclosed ``[`` runs to the end
    of the pattern; ``[]`` matches nothing; a range may be written backwards)."""
    tokens: list[Token] = []
    position = 0
    while position < len(pattern):
        byte = pattern[position]
        if byte == ord("*"):
            if not tokens or tokens[-1] is not STAR:  # "**" is "*"
                tokens.append(STAR)
        elif byte == ord("?"):
            tokens.append(_ANY_BYTE)
        elif byte == ord("[") and position + 1 < len(pattern):
            members, position = _bracket(pattern, position + 1)
            tokens.append(members)
        elif byte == ord("\\") and position + 1 < len(pattern):
            position += 1
            tokens.append(frozenset((pattern[position],)))
        else:
            tokens.append(frozenset((byte,)))
        position += 1
    return tuple(tokens)


def _bracket(pattern: bytes, position: int) -> tuple[frozenset[int], int]:
    """The set a ``[...]`` holds, and the position of its ``]`` (or the last byte)."""
    negate = pattern[position] == ord("^")
    if negate:
        position += 1
    members: set[int] = set()
    while position < len(pattern) and pattern[position] != ord("]"):
        byte = pattern[position]
        if byte == ord("\\") and position + 1 < len(pattern):
            position += 1
            members.add(pattern[position])
        elif position + 2 < len(pattern) and pattern[position + 1] == ord("-"):
            low, high = sorted((byte, pattern[position + 2]))
            members.update(range(low, high + 1))
            position += 2
        else:
            members.add(byte)
        position += 1
    chosen = _ANY_BYTE - members if negate else frozenset(members)
    return chosen, min(position, len(pattern) - 1)


_END: frozenset[int] = frozenset({-1})  # past the last token (never intersects a byte)


def overlaps(a: Glob, b: Glob) -> bool:
    """Whether some byte string matches both ``a`` and ``b``."""
    seen: set[tuple[int, int]] = set()
    pending = [(0, 0)]
    while pending:
        state = pending.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == len(a) and j == len(b):
            return True
        x = a[i] if i < len(a) else _END
        y = b[j] if j < len(b) else _END
        if x is STAR:
            pending.append((i + 1, j))  # the star matches nothing more
            if y is not _END:
                pending.append((i, j + 1) if y is STAR or y else (i, j))
        if y is STAR:
            pending.append((i, j + 1))
            if x is not _END and x is not STAR and x:
                pending.append((i + 1, j))
        if x is not STAR and y is not STAR and x is not _END and y is not _END and x & y:
            pending.append((i + 1, j + 1))
    return False


Fields = Mapping[str, Sequence[Glob] | None]  # a field's possible values; None: unknown


def template_globs(template: Template, fields: Fields) -> tuple[list[Glob], bool]:
    """The template's names as globs, one per choice of field values, and whether that
    is exact (False: an unknown field, or one with too many values, became ``*``)."""
    exact = True
    choices: list[Sequence[Glob]] = []
    for part in template.parts:
        if isinstance(part, bytes):
            choices.append([literal(part)])
            continue
        values = fields.get(part)
        if values is None or len(values) > MAX_TEMPLATE_CHOICES:
            values, exact = [(STAR,)], False
        choices.append(values)
    count = 1
    for values in choices:
        count *= len(values)
    if count > MAX_TEMPLATE_CHOICES:
        choices = [c if len(c) == 1 else [(STAR,)] for c in choices]
        exact = False
    globs = [tuple(itertools.chain.from_iterable(pick)) for pick in itertools.product(*choices)]
    return globs, exact


def written_into(read: Sequence[Glob], template: Template, fields: Fields) -> tuple[Overlap, int]:
    """Whether a name the template writes is among ``read`` (the channels, patterns or
    streams a route reads, as globs), and the index of the first read glob proven to
    match one (-1 when none is)."""
    written, exact = template_globs(template, fields)
    if len(read) * len(written) > MAX_COMPARISONS:
        return Overlap.UNKNOWN, -1
    for index, glob in enumerate(read):
        if any(overlaps(glob, name) for name in written):
            return (Overlap.YES, index) if exact else (Overlap.UNKNOWN, -1)
    return Overlap.NO, -1
