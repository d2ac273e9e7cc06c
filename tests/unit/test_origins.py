"""A bridge's origin stamps (forwarding/origins.py, issue 20): an entry first written
here gets fwd-origin, fwd-origin-id, fwd-via and fwd-hops; one from further away keeps
its origin, names this hop and counts one more; one that began at the target, has just
come from it, or is home again is skipped; one past the hop limit is dropped; a
producer's own fields of the same names without the prefix are data."""

from __future__ import annotations

from redis_forwarder.forwarding.origins import Fate, Origins

WEST_TO_EAST = Origins(b"west", b"east", max_hops=3)


def stamps(origin: bytes, origin_id: bytes, via: bytes, hops: bytes) -> list[bytes]:
    return [b"fwd-origin", origin, b"fwd-origin-id", origin_id, b"fwd-via", via, b"fwd-hops", hops]


def test_a_local_entry_is_stamped_with_where_it_began() -> None:
    fields = [b"n", b"7", b"origin", b"east", b"hops", b"99"]  # the producer's own fields
    fate, written = WEST_TO_EAST.fate((b"s", b"1-1", fields))
    assert fate is Fate.FORWARD
    assert written == (b"s", b"1-1", [*fields, *stamps(b"west", b"1-1", b"west", b"1")])


def test_an_entry_from_further_away_keeps_its_origin_and_counts_a_hop() -> None:
    fields = [b"n", b"7", *stamps(b"north", b"9-9", b"north", b"1")]
    fate, written = WEST_TO_EAST.fate((b"s", b"2-1", fields))
    assert fate is Fate.FORWARD
    assert written[2] == [b"n", b"7", *stamps(b"north", b"9-9", b"west", b"2")]
    assert fields[-1] == b"1"  # the entry read is not changed in place


def test_what_began_at_came_from_or_returns_home_goes_no_further() -> None:
    began_there = [*stamps(b"east", b"5-1", b"east", b"1")]
    came_from_there = [*stamps(b"north", b"5-1", b"east", b"2")]  # a chain: north-east-west
    home_again = [*stamps(b"west", b"5-1", b"north", b"2")]
    for fields in (began_there, came_from_there, home_again):
        assert WEST_TO_EAST.fate((b"s", b"3-1", fields))[0] is Fate.CAME_FROM_THERE


def test_past_the_hop_limit_or_with_a_hop_count_not_ours_an_entry_is_dropped() -> None:
    fields = stamps(b"north", b"9-9", b"north", b"3")
    assert WEST_TO_EAST.fate((b"s", b"4-1", fields))[0] is Fate.TOO_MANY_HOPS
    huge = stamps(b"north", b"9-9", b"north", b"9" * 5000)  # int() would refuse it
    assert WEST_TO_EAST.fate((b"s", b"4-2", huge))[0] is Fate.TOO_MANY_HOPS
    forward, back, over = WEST_TO_EAST.sort(
        [
            (b"s", b"5-1", [b"n", b"1"]),
            (b"s", b"6-1", stamps(b"east", b"1-1", b"east", b"1")),
            (b"s", b"7-1", fields),
        ]
    )
    assert [e[1] for e in forward] == [b"5-1"]
    assert [e[1] for e in back] == [b"6-1"] and [e[1] for e in over] == [b"7-1"]
