"""What a pub/sub batch's replies are read for (``SinkWatch``) and how the remembered
ids are looked for after a sink failover (``AckedTail``): pure, no server (the lookup
answers from a set of ids, as XRANGE id id would)."""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis

from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.sink_failover import REMEMBERED, AckedTail, Keyed
from redis_forwarder.forwarding.sink_watch import SAMPLED, SinkWatch
from redis_forwarder.resp import ReplyError
from redis_forwarder.sink.replication import WaitConfig


def lookup_in(held: set[tuple[bytes, bytes]]) -> Any:
    async def lookup(commands: list[Keyed]) -> list[object]:
        found: list[object] = []
        for key, command in commands:
            reader = hiredis.Reader()
            reader.feed(command)  # a command is a RESP array of bulk strings
            entry_id = reader.gets()[-1]
            found.append([[entry_id, []]] if (key, entry_id) in held else [])
        return found

    return lookup


def ids(n: int, start: int = 0) -> list[bytes]:
    return [b"1-%d" % i for i in range(start, start + n)]


def test_one_key_keeps_the_last_replies_and_counts_what_the_new_master_lacks() -> None:
    tail = AckedTail(lambda s: s)
    watch = SinkWatch(TaskMetrics.alone(), 1, tail=tail, constant_key=b"copy")
    batch = [(b"ch", b"p", b"")] * 1500
    replies: list[object] = list(ids(1500))
    replies[-1] = ReplyError("OOM")  # refused: not looked for
    assert watch.tag(batch) is None
    watch.answered(None, replies)
    assert len(tail.ids[b"copy"]) == REMEMBERED
    assert asyncio.run(tail.missing_on(lookup_in(set()), "a:1")) == (0, 0, "")  # first sink
    watch.answered(None, list(ids(1500)))
    held = {(b"copy", i) for i in ids(1000)}  # the new master has the first 1000
    missing, asked, old = asyncio.run(tail.missing_on(lookup_in(held), "b:2"))
    assert (missing, asked, old) == (500, 1000, "a:1")
    assert tail.ids == {} and tail.sink == "b:2"


def test_a_key_per_channel_samples_each_batch_and_keeps_keys_in_line() -> None:
    tail = AckedTail(lambda s: s)
    watch = SinkWatch(TaskMetrics.alone(), 1, tail=tail, key_of=lambda c, _p: b"copy:" + c)
    batch = [(b"a" if i % 2 else b"b", b"p", b"") for i in range(300)]
    tag = watch.tag(batch)
    assert isinstance(tag, list) and len(tag) == SAMPLED
    replies = ids(300)
    watch.answered(tag, list(replies))
    assert list(tail.ids[b"copy:a"]) == [r for i, r in enumerate(replies) if i % 2][-50:]
    assert list(tail.ids[b"copy:b"]) == [r for i, r in enumerate(replies) if not i % 2][-50:]


def test_wait_answers_are_read_and_unconfirmed_batches_counted_once_per_episode() -> None:
    metrics = TaskMetrics.alone()
    watch = SinkWatch(metrics, 2, wait=WaitConfig(replicas=2, timeout=0.1))
    assert watch.suffix.startswith(b"*3\r\n$4\r\nWAIT") and watch.extra_replies == 1
    watch.answered(None, [1, b"OK", 1, b"OK", 2])  # two messages (RPUSH, LTRIM), WAIT 2
    assert metrics.unconfirmed_count == 0 and not metrics.unconfirmed_episode
    watch.answered(None, [1, b"OK", 1, b"OK", 1])  # WAIT answered 1 of 2
    watch.unanswered(3)  # the connection closed before its replies came
    assert metrics.unconfirmed_count == 5 and metrics.unconfirmed_episode
    watch.answered(None, [1, b"OK", 2])
    assert not metrics.unconfirmed_episode and metrics.unconfirmed_count == 5


def test_without_wait_an_unanswered_batch_is_not_counted() -> None:
    metrics = TaskMetrics.alone()
    SinkWatch(metrics, 1, tail=AckedTail(lambda s: s), constant_key=b"k").unanswered(10)
    assert metrics.unconfirmed_count == 0
