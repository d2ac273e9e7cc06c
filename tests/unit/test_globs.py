"""The glob x template matcher behind the route-loop check: exact where it answers."""

from __future__ import annotations

import fnmatch
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.globs import (
    MAX_TEMPLATE_CHOICES,
    Overlap,
    literal,
    overlaps,
    parse_glob,
    written_into,
)
from redis_forwarder.templates import compile_template


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (b"orders.*", b"orders.mirror.*", True),
        (b"orders.*", b"archive.*", False),
        (b"*", b"", True),
        (b"?", b"", False),
        (b"a*b", b"*c", False),
        (b"a*b", b"*b", True),
        (b"*a*", b"*b*", True),  # "ab"
        (b"a?c", b"a[xy]c", True),
        (b"a[^x]c", b"axc", False),
        (b"a[^x]c", b"a[xy]c", True),  # "ayc"
        (b"[a-c]", b"[x-z]", False),
        (b"[c-a]", b"b", True),  # Redis accepts a backwards range
        (b"[]", b"*", False),  # an empty class matches nothing
        (b"a\\*", b"a*", True),  # the escaped star is a literal star
        (b"a\\*", b"ab", False),
        (b"[\\]]", b"]", True),
        (b"x**y", b"xy", True),
        (b"a*", b"b*", False),
        (b"*a", b"*b", False),
        (b"??", b"???", False),
        (b"*?*?*", b"ab", True),
    ],
)
def test_overlaps(a: bytes, b: bytes, expected: bool) -> None:
    assert overlaps(parse_glob(a), parse_glob(b)) is expected
    assert overlaps(parse_glob(b), parse_glob(a)) is expected


@pytest.mark.parametrize(
    ("glob", "name"),
    [(b"orders.*", b"orders.1"), (b"h?llo", b"hallo"), (b"h[ae]llo", b"hzllo"),
     (b"h[a-b]llo", b"hbllo"), (b"*.x", b"a.b.x"), (b"[^a]", b"a")],
)  # fmt: skip
def test_a_literal_name_matches_as_fnmatch_says(glob: bytes, name: bytes) -> None:
    # fnmatch spells negation "!", Redis "^": the same classes otherwise.
    expected = fnmatch.fnmatchcase(name.decode(), glob.decode().replace("[^", "[!"))
    assert overlaps(parse_glob(glob), literal(name)) is expected


def read(*globs: bytes) -> list[tuple[frozenset[int] | None, ...]]:
    return [parse_glob(g) for g in globs]


def test_the_reported_loop_is_proven() -> None:
    template = compile_template("orders.mirror.{channel}")
    verdict = written_into(read(b"orders.*"), template, {"channel": read(b"orders.*")})
    assert verdict == (Overlap.YES, 0)


def test_a_prefix_that_no_pattern_reads_is_safe() -> None:
    template = compile_template("archive.{channel}")
    verdict = written_into(read(b"orders.*"), template, {"channel": read(b"orders.*")})
    assert verdict == (Overlap.NO, -1)


def test_exact_channels_are_decided_by_their_values() -> None:
    # x.{channel} on channels a and x.b writes x.a and x.x.b: neither is read.
    template = compile_template("x.{channel}")
    channels = [literal(b"a"), literal(b"x.b")]
    assert written_into(channels, template, {"channel": channels})[0] is Overlap.NO
    channels.append(literal(b"x.a"))  # now x.a is read and written
    assert written_into(channels, template, {"channel": channels}) == (Overlap.YES, 2)


def test_an_unknown_field_proves_nothing_but_can_prove_safety() -> None:
    template = compile_template("loop:{shard}:{channel}")
    fields = {"channel": read(b"loop*"), "shard": None}
    assert written_into(read(b"loop*"), template, fields)[0] is Overlap.UNKNOWN
    assert written_into(read(b"other*"), template, fields)[0] is Overlap.NO


def test_a_field_with_many_values_is_widened_not_enumerated() -> None:
    channels = [literal(b"c:%d" % n) for n in range(MAX_TEMPLATE_CHOICES + 1)]
    copy = compile_template("copy.{channel}")
    assert written_into(channels, copy, {"channel": channels})[0] is Overlap.NO
    same = compile_template("c:{channel}")  # c:c:0 is not read, but c:* proves nothing
    assert written_into(channels, same, {"channel": channels})[0] is Overlap.UNKNOWN


def test_fixed_fields_and_patterns_as_values() -> None:
    template = compile_template("{route}.{pattern}")
    fields = {"route": [literal(b"r")], "pattern": [literal(b"o*")]}
    assert written_into(read(b"r.o?"), template, fields)[0] is Overlap.YES  # "r.o*"
    assert written_into(read(b"r.x"), template, fields)[0] is Overlap.NO


_PIECES = st.sampled_from(["a", "b", "*", "?", "[ab]", "[^a]", "[b-c]"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=6), st.text(alphabet="abc", max_size=6))
def test_matching_a_name_agrees_with_fnmatch(pieces: list[str], name: str) -> None:
    glob = "".join(pieces)
    expected = fnmatch.fnmatchcase(name, glob.replace("[^", "[!"))
    assert overlaps(parse_glob(glob.encode()), literal(name.encode())) is expected


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=3), st.lists(_PIECES, max_size=3))
def test_overlap_agrees_with_a_search_of_short_names(a: list[str], b: list[str]) -> None:
    # A shortest common name needs no byte that both sides' stars take: at most one
    # byte per non-star piece, 6 here; a, b and c stand for every byte the pieces tell
    # apart.
    first, second = "".join(a), "".join(b)
    names = ("".join(p) for n in range(7) for p in itertools.product("abc", repeat=n))
    found = any(
        fnmatch.fnmatchcase(name, first.replace("[^", "[!"))
        and fnmatch.fnmatchcase(name, second.replace("[^", "[!"))
        for name in names
    )
    assert overlaps(parse_glob(first.encode()), parse_glob(second.encode())) is found
