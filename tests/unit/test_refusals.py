"""When refused stream entries are tried again, and when they are given up."""

from __future__ import annotations

from redis_forwarder.forwarding.refusals import GIVE_UP_AFTER, RETRY_CAP, RETRY_FIRST, Refusals

ENTRY = (b"s", b"1-0", [b"f", b"v"])


def test_new_batches_refused_one_after_another_keep_the_first_retry_soon() -> None:
    refusals = Refusals()
    delays = [refusals.retry_delay(retried=False) for _ in range(10)]
    assert max(delays) <= RETRY_FIRST


def test_each_refused_retry_round_doubles_the_wait_once_up_to_the_cap() -> None:
    refusals = Refusals()
    for round_number in range(10):
        refusals.new_round()
        # several claimed batches in one round: the first one's wait counts
        first, *_others = [refusals.retry_delay(retried=True) for _ in range(3)]
        ceiling = min(RETRY_CAP, RETRY_FIRST * 2**round_number)
        assert ceiling / 2 <= first <= ceiling  # jittered in the upper half


def test_an_entry_is_given_up_after_its_third_refusal_but_not_for_transient_ones() -> None:
    refusals = Refusals()
    for _ in range(GIVE_UP_AFTER - 1):
        assert refusals.note([(ENTRY, "WRONGTYPE Operation against a key")]) == []
    for _ in range(5):
        assert refusals.note([(ENTRY, "OOM command not allowed")]) == []
    assert refusals.note([(ENTRY, "WRONGTYPE Operation against a key")]) == [
        (ENTRY, "WRONGTYPE Operation against a key")
    ]


def test_a_written_entry_starts_counting_again() -> None:
    refusals = Refusals()
    for _ in range(GIVE_UP_AFTER - 1):
        refusals.note([(ENTRY, "NOPERM this user has no permissions")])
    refusals.written({b"s": [b"1-0"]})
    assert refusals.note([(ENTRY, "NOPERM this user has no permissions")]) == []
