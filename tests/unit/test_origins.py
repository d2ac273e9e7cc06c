"""A bridge's origin stamps (forwarding/origins.py, issue 20): an entry first written
here gets origin, origin-id and hops; one from further away keeps its origin and counts
one more hop; one that came from the deployment the route writes is skipped; one past
the hop limit is dropped."""

from __future__ import annotations

from redis_forwarder.forwarding.origins import Fate, Origins

WEST_TO_EAST = Origins(b"west", b"east", max_hops=3)


def test_a_local_entry_is_stamped_with_where_it_began() -> None:
    fate, written = WEST_TO_EAST.fate((b"s", b"1-1", [b"n", b"7"]))
    assert fate is Fate.FORWARD
    assert written == (
        b"s",
        b"1-1",
        [b"n", b"7", b"origin", b"west", b"origin-id", b"1-1", b"hops", b"1"],
    )


def test_an_entry_from_further_away_keeps_its_origin_and_counts_a_hop() -> None:
    fields = [b"n", b"7", b"origin", b"north", b"origin-id", b"9-9", b"hops", b"1"]
    fate, written = WEST_TO_EAST.fate((b"s", b"2-1", fields))
    assert fate is Fate.FORWARD
    assert written[2] == [b"n", b"7", b"origin", b"north", b"origin-id", b"9-9", b"hops", b"2"]
    assert fields[-1] == b"1"  # the entry read is not changed in place


def test_an_entry_that_came_from_the_target_goes_no_further() -> None:
    fields = [b"n", b"7", b"origin", b"east", b"origin-id", b"5-1", b"hops", b"1"]
    assert WEST_TO_EAST.fate((b"s", b"3-1", fields))[0] is Fate.CAME_FROM_THERE


def test_past_the_hop_limit_an_entry_is_dropped() -> None:
    fields = [b"origin", b"north", b"origin-id", b"9-9", b"hops", b"3"]
    assert WEST_TO_EAST.fate((b"s", b"4-1", fields))[0] is Fate.TOO_MANY_HOPS
    forward, back, over = WEST_TO_EAST.sort(
        [(b"s", b"5-1", [b"n", b"1"]), (b"s", b"6-1", [b"origin", b"east"]), (b"s", b"7-1", fields)]
    )
    assert [e[1] for e in forward] == [b"5-1"]
    assert [e[1] for e in back] == [b"6-1"] and [e[1] for e in over] == [b"7-1"]
