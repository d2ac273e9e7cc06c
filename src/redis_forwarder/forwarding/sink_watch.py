"""What a pub/sub batch's replies say, read once the batch is answered: whether enough
sink replicas confirmed it (``to.wait``), and which ids a stream sink gave it (kept in
an :class:`AckedTail`, looked for on the next master after the sink's failover).

Issue 14: a pub/sub route into a stream, SENTINEL FAILOVER of the sink at 10k msg/s:
12,000 messages taken by the demoted master after the promotion were erased when it
resynced, and the node had reported only its own 0.038 s gap. Pub/sub keeps nothing to
retry, so ``wait`` cannot save a batch the replicas did not confirm; it counts it (at
risk), and with every replica asked, a failover can only lose what was counted.

Per batch, never per message beyond keeping the replies: a constant sink key (the
common case) costs one ``deque.extend``; a key per channel renders the keys of the
batch's last :data:`SAMPLED` messages only (all of them, below that size: at 10k msg/s
a read brings tens). Rendering every message's key cost the bench 20% more CPU at full
speed (batches of thousands); a sample still finds a failover's loss, which spans the
last second of batches, and the count stays a lower bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.sink_failover import AckedTail
from redis_forwarder.resp import RawMessage
from redis_forwarder.sink.replication import WaitConfig

Render = Callable[[bytes, bytes], bytes]  # (channel, pattern) -> sink key
SAMPLED = 100  # messages per batch whose id is kept, with a key per channel


class SinkWatch:
    """A :class:`~redis_forwarder.sink.writer.BatchWatch` for a node sink: WAIT after
    each batch (``wait``), and the stream ids it returned (``tail``)."""

    def __init__(
        self,
        metrics: TaskMetrics,
        replies_each: int,
        wait: WaitConfig | None = None,
        tail: AckedTail | None = None,
        key_of: Render | None = None,
        constant_key: bytes | None = None,
    ) -> None:
        """``tail`` needs ``constant_key`` (every message to one sink key) or
        ``key_of`` (a key per message, rendered for the remembered ones only)."""
        self.metrics = metrics
        self.replies_each = replies_each
        self.wait = wait
        self.suffix = wait.command() if wait is not None else b""
        self.extra_replies = 1 if wait is not None else 0
        self.tail = tail
        self.key_of = key_of
        self.constant_key = constant_key

    def tag(self, batch: Sequence[RawMessage]) -> object:
        key_of = self.key_of
        if self.tail is None or self.constant_key is not None or key_of is None:
            return None
        return [key_of(channel, pattern) for channel, _p, pattern in batch[-SAMPLED:]]

    def answered(self, tag: object, replies: list[Any]) -> None:
        if self.wait is not None:
            acked = replies.pop()  # WAIT's answer: the batch's last reply
            self._confirmed(acked, len(replies) // self.replies_each)
        tail = self.tail
        if tail is None:
            return
        if self.constant_key is not None:
            tail.add(self.constant_key, replies)
        elif isinstance(tag, list):
            tail.add_each(tag, replies)

    def unanswered(self, messages: int) -> None:
        """A batch whose replies never came (the sink's connection was closed or lost):
        with ``wait``, unconfirmed too (it may have been written, and erased)."""
        if self.wait is not None:
            self.metrics.unconfirmed(messages, "no answer: the connection closed first")
        else:
            self.metrics.unanswered(messages)

    def _confirmed(self, acked: object, messages: int) -> None:
        wait = self.wait
        if wait is not None and isinstance(acked, int) and acked >= wait.replicas:
            self.metrics.confirmed()
        else:
            self.metrics.unconfirmed(messages, acked)
