"""One task's loop. Pub/sub (:class:`PubSubForwarding`): read what is available,
encode it, write it as one pipelined batch, repeat. The writer's bound on commands in
flight is the bounded buffer: when the sink is slower than the source, reading waits
(policy ``block``) and the backlog builds up in Redis' output buffer for this
subscriber, which Redis caps (``client-output-buffer-limit pubsub``); the loop then
loses its connection and says so.

Heartbeat: when nothing arrives for ``heartbeat`` seconds the loop sends PING on the
subscription; if the next ``heartbeat`` seconds bring neither a message nor the PONG,
the connection is declared lost (a half-open TCP connection must not hang a task).

Streams (:class:`StreamForwarding`): at least once, acknowledged after the sink's reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis_forwarder.gate import Gate
from redis_forwarder.resp import ConnectionLost, RawMessage, ReplyError, encode
from redis_forwarder.retry import Backoff
from redis_forwarder.sink.batch import BatchSink
from redis_forwarder.sink.commands import ALREADY_WRITTEN, EntryCommand
from redis_forwarder.sink.entries import EntrySink
from redis_forwarder.source.pubsub import PubSubReader
from redis_forwarder.source.streams import Entry, StreamReader

log = logging.getLogger(__name__)
DEFAULT_HEARTBEAT = 1.0
# Refusals that may pass (the sink is busy, full or in failover): retried for as long
# as they last, with backoff.
TRANSIENT = ("OOM", "LOADING", "BUSY", "TRYAGAIN", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN")
# A write that waits this long for the sink means the loop fell behind the source, and
# Redis started to buffer for this subscriber.
STALL = 0.05
STALL_MEMORY = 10.0  # how long a stall explains a closed subscription
OUTPUT_BUFFER_HINT = (
    "closed by the server {ago:.1f}s after the sink held the loop up for {stall:.2f}s: "
    "most likely Redis' client-output-buffer-limit for pub/sub was exceeded, and what it "
    "had buffered for this subscriber is lost; make the sink faster, raise max_in_flight, "
    'set overflow = "drop-oldest", or raise the limit on the source'
)


@dataclass
class Oversize:
    """A route's size limit for pub/sub payloads: larger messages leave the batch and
    go to the dead-letter sink (when there is one) or are dropped; either way counted
    through ``on_oversize(count, dead_lettered)``."""

    limit: int
    on_oversize: Callable[[int, bool], None]
    dead_letter: BatchSink | None = None

    async def set_aside(self, batch: list[RawMessage]) -> list[RawMessage]:
        limit = self.limit
        if all(len(message[1]) <= limit for message in batch):
            return batch  # the common case: one pass, no copy
        large = [m for m in batch if len(m[1]) > limit]
        if self.dead_letter is not None:
            await self.dead_letter.write(large)
        self.on_oversize(len(large), self.dead_letter is not None)
        return [m for m in batch if len(m[1]) <= limit]


@dataclass
class TaskStats:
    received: int = 0
    batches: int = 0
    largest_batch: int = 0
    last_message_at: float = 0.0
    heartbeats: int = 0
    started_at: float = field(default_factory=time.monotonic)


class PubSubForwarding:
    """Forward one subscription into one sink until a connection fails."""

    def __init__(
        self,
        reader: PubSubReader,
        sink: BatchSink,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_batch: Callable[[int, int], None] | None = None,
        oversize: Oversize | None = None,
        on_refused: Callable[[int, str], None] | None = None,
    ) -> None:
        """``on_refused(count, last refusal)``: the sink refused writes (those messages
        are lost, pub/sub being at most once): said at once, not when the task ends."""
        self.oversize = oversize
        self.on_refused = on_refused
        self.refused_reported = 0
        self._refusal_backoff = Backoff(initial=0.05, cap=2.0)
        self.on_batch = on_batch  # (messages, commands in flight) after each batch
        self.reader = reader
        self.sink = sink
        self.heartbeat = heartbeat
        self.stats = TaskStats()
        self.beat_at = time.monotonic()  # the loop's last turn: a wedged loop stops beating
        self.last_stall = 0.0  # the last write that waited on the sink: how long, and when
        self.last_stall_end = float("-inf")

    def _explained(self, lost: ConnectionLost) -> ConnectionLost:
        """Redis closes a subscriber whose output buffer passes its limit, and says so
        only in its own log: name the likely cause when the sink held the loop up."""
        ago = time.monotonic() - self.last_stall_end
        if lost.reason != "closed by the server" or ago > STALL_MEMORY:
            return lost
        return ConnectionLost(
            lost.address, OUTPUT_BUFFER_HINT.format(ago=ago, stall=self.last_stall)
        )

    async def _after_refusals(self) -> None:
        """Report new refusals; while the sink refuses for a passing reason (OOM,
        LOADING, BUSY, ...) wait before reading on, longer each time (to 2 s): what is
        published meanwhile waits in Redis' output buffer for this subscriber instead of
        being refused too."""
        refused = self.sink.refused
        if refused == self.refused_reported:
            self._refusal_backoff.reset()
            return
        new, self.refused_reported = refused - self.refused_reported, refused
        reason = self.sink.last_refusal
        if self.on_refused is not None:
            self.on_refused(new, reason)
        if reason.startswith(TRANSIENT):
            await asyncio.sleep(self._refusal_backoff.next_delay())

    async def run(self) -> None:
        """Run until the source or the sink connection is lost (ConnectionLost)."""
        sink, stats = self.sink, self.stats
        awaiting_pong = False
        pongs = self.reader.pongs
        while True:
            self.beat_at = time.monotonic()
            try:
                batch = await self.reader.messages(self.heartbeat)
            except ConnectionLost as exc:
                raise self._explained(exc) from None
            if self.reader.unsubscribed:
                # Redis took a sharded channel away: its slot moved to another shard.
                raise ConnectionLost(
                    self.reader.connection.name, "a sharded channel's slot moved away"
                )
            if batch:
                awaiting_pong = False
                started = time.monotonic()
                if self.oversize is not None:
                    received = len(batch)
                    batch = await self.oversize.set_aside(batch)
                    stats.received += received - len(batch)
                if batch:  # all of it may have been set aside
                    await sink.write(batch)
                waited = time.monotonic() - started
                if waited >= STALL:
                    self.last_stall, self.last_stall_end = waited, time.monotonic()
                stats.received += len(batch)
                stats.batches += 1
                stats.largest_batch = max(stats.largest_batch, len(batch))
                stats.last_message_at = time.time()
                sink.check()
                await self._after_refusals()
                if self.on_batch is not None:
                    self.on_batch(len(batch), sink.in_flight())
            elif self.reader.pongs != pongs:
                pongs, awaiting_pong = self.reader.pongs, False
            elif awaiting_pong:
                raise ConnectionLost(
                    self.reader.connection.name,
                    f"no answer to the heartbeat PING within {self.heartbeat:.1f}s",
                )
            else:
                await self.reader.ping()
                stats.heartbeats += 1
                awaiting_pong = True


@dataclass
class StreamDeadLetter:
    """Where stream entries that cannot be forwarded go: the route's dead-letter stream,
    written through the task's sink (``sink`` shares its connections)."""

    sink: EntrySink
    command: EntryCommand
    key_of: Callable[[bytes], bytes]

    async def write(self, entries: list[Entry]) -> list[tuple[bytes, bytes]]:
        """(stream, id) of the entries the dead-letter stream took."""
        command, key_of = self.command, self.key_of
        replies = await self.sink.write([(key_of(e[0]), command(*e)) for e in entries])
        return [
            (e[0], e[1])
            for e, r in zip(entries, replies, strict=True)
            if not isinstance(r, ReplyError)
        ]


@dataclass
class StreamOversize:
    """A route's size limit for stream entries (all fields together): larger entries
    are written to the dead-letter stream and acknowledged once it answered (a refusal
    leaves them pending, retried like any refused entry), or acknowledged and dropped;
    counted through ``on_oversize(count, dead_lettered)``."""

    limit: int
    on_oversize: Callable[[int, bool], None]
    dead_letter: StreamDeadLetter | None = None

    async def set_aside(
        self, entries: list[Entry]
    ) -> tuple[list[Entry], list[tuple[bytes, bytes]]]:
        """(entries to forward, (stream, id) of those dealt with here)."""
        limit = self.limit
        too_large = [sum(len(part) for part in entry[2]) > limit for entry in entries]
        if not any(too_large):
            return entries, []
        large = [e for e, over in zip(entries, too_large, strict=True) if over]
        kept = [e for e, over in zip(entries, too_large, strict=True) if not over]
        if self.dead_letter is None:
            self.on_oversize(len(large), False)
            return kept, [(e[0], e[1]) for e in large]
        written = await self.dead_letter.write(large)
        self.on_oversize(len(written), True)
        return kept, written


# Any refusal but a TRANSIENT one of the same entry GIVE_UP_AFTER times means it can
# never be written as it is (WRONGTYPE, NOPERM, ERR ...).
GIVE_UP_AFTER = 3
RETRY_FIRST, RETRY_CAP = 0.5, 30.0  # seconds before refused entries are tried again
REMEMBERED = 100_000  # refused entries whose attempts are counted (older ones forgotten)


class Refusals:
    """Per refused entry, how often the sink refused it for good-looking reasons; and
    when to try the refused entries again."""

    def __init__(self) -> None:
        self.attempts: dict[tuple[bytes, bytes], int] = {}
        self.backoff = Backoff(initial=RETRY_FIRST, cap=RETRY_CAP)
        self._round_backed_off = False

    def new_round(self) -> None:
        """Every pending entry is about to be claimed again."""
        self._round_backed_off = False

    def retry_delay(self, retried: bool) -> float:
        """Seconds until refused entries are tried again. Only a refused retry round
        lengthens the wait, once per round: newly read entries refused one batch after
        another must not (ten single-entry batches would put the first retry at the
        cap, 30 s, instead of half a second)."""
        if retried and not self._round_backed_off:
            self._round_backed_off = True
            return self.backoff.next_delay()
        return self.backoff.current_delay()

    def note(self, refused: list[tuple[Entry, str]]) -> list[tuple[Entry, str]]:
        """Count these refusals; return the entries refused ``GIVE_UP_AFTER`` times
        (not transiently): those that can never be written as they are."""
        given_up: list[tuple[Entry, str]] = []
        for entry, reason in refused:
            if reason.startswith(TRANSIENT):
                continue
            key = (entry[0], entry[1])
            count = self.attempts.pop(key, 0) + 1
            if count >= GIVE_UP_AFTER:
                given_up.append((entry, reason))
                continue
            if len(self.attempts) >= REMEMBERED:
                self.attempts.pop(next(iter(self.attempts)))
            self.attempts[key] = count
        return given_up

    def written(self, done: dict[bytes, list[bytes]]) -> None:
        if self.attempts:
            for stream, ids in done.items():
                for entry_id in ids:
                    self.attempts.pop((stream, entry_id), None)


RECLAIM_INTERVAL = 30.0  # how often every pending entry is looked at again, refused or not
# Refusals that mean the sink is elsewhere now: reconnect where the topology says.
MOVED_ON = ("READONLY", "MOVED", "ASK", "CLUSTERDOWN", "MASTERDOWN")


class StreamForwarding:
    """Forward stream entries through a consumer group until a connection is lost.

    Per batch: claim or read, write every entry in one pipeline, read each reply, XACK
    only the entries the sink took (or already had: a copied id at or below the sink's
    last one). Refused entries stay pending and are claimed again later; nothing is
    acknowledged that was not written.
    """

    def __init__(
        self,
        reader: StreamReader,
        sink: EntrySink,
        command: EntryCommand,
        key_of: Callable[[bytes], bytes],
        batch: int,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_batch: Callable[[int, int], None] | None = None,
        gate: Gate | None = None,
        on_answered: Callable[[int, float], None] | None = None,
        late_command: EntryCommand | None = None,
        oversize: StreamOversize | None = None,
        dead_letter: StreamDeadLetter | None = None,
        on_given_up: Callable[[int, bool], None] | None = None,
    ) -> None:
        """``late_command``: how to write an entry whose copied id is behind the sink's
        last one and that the sink lacks (a new id). ``dead_letter``: where entries the
        sink refuses for good go (else they stay pending); ``on_given_up(count,
        dead_lettered)`` counts them."""
        self.oversize = oversize
        self.dead_letter = dead_letter
        self.on_given_up = on_given_up
        self.refusals = Refusals()
        self.late_command = late_command
        self.late = 0
        self.reader = reader
        self.sink = sink
        self.gate = gate
        self.on_answered = on_answered  # (entries, seconds since the oldest was added)
        self.last_message_at = 0.0
        self.command = command
        self.key_of = key_of  # source stream -> sink key
        self.batch = batch
        self.heartbeat = heartbeat
        self.on_batch = on_batch
        self.beat_at = time.monotonic()
        self.acked = 0
        self.duplicates = 0
        self.refused = 0
        self.last_refusal = ""

    async def _give_up(
        self, given_up: list[tuple[Entry, str]], done: dict[bytes, list[bytes]]
    ) -> None:
        """Entries the sink refused ``GIVE_UP_AFTER`` times: into the dead-letter stream
        (acknowledged once it took them), or left pending, said loudly."""
        if not given_up:
            return
        entries = [entry for entry, _reason in given_up]
        reason = given_up[-1][1]
        if self.dead_letter is not None:
            written = await self.dead_letter.write(entries)
            for stream, entry_id in written:
                done.setdefault(stream, []).append(entry_id)
            if self.on_given_up is not None:
                self.on_given_up(len(written), True)
            log.warning(
                "%s: %d entries refused %d times (%s) went to the dead-letter stream",
                self.sink.name, len(written), GIVE_UP_AFTER, reason,
            )  # fmt: skip
            return
        if self.on_given_up is not None:
            self.on_given_up(len(entries), False)
        log.error(
            "%s: %d entries refused %d times (%s) stay pending, retried every %.0fs at most; "
            "fix the sink, or set dead_letter on the route to set them aside",
            self.sink.name, len(entries), GIVE_UP_AFTER, reason, RETRY_CAP,
        )  # fmt: skip

    async def _settle_behind(self, behind: list[Entry]) -> list[tuple[bytes, bytes]]:
        """Entries whose copied id is not above the sink's last one: written already (a
        replay), or claimed late, after newer entries were copied (a previous owner's
        pending entries). Only the sink can tell: an entry it holds is a duplicate; one
        it lacks is written with a new id, so it is late but not lost."""
        if not behind:
            return []
        key_of = self.key_of
        found = await self.sink.write(
            [(key_of(stream), encode(b"XRANGE", key_of(stream), entry_id, entry_id))
             for stream, entry_id, _fields in behind]
        )  # fmt: skip
        pairs = list(zip(behind, found, strict=True))
        settled = [(entry[0], entry[1]) for entry, hit in pairs if hit]
        self.duplicates += len(settled)
        late = [entry for entry, hit in pairs if not hit]
        if late and self.late_command is not None:
            command = self.late_command
            replies = await self.sink.write([(key_of(e[0]), command(*e)) for e in late])
            for entry, reply in zip(late, replies, strict=True):
                if isinstance(reply, ReplyError):
                    self.refused += 1
                    self.last_refusal = str(reply)
                else:
                    self.late += 1
                    settled.append((entry[0], entry[1]))
        return settled

    def _reclaim(self) -> None:
        self.reader.reclaim()
        self.refusals.new_round()

    async def run(self) -> None:
        await self.reader.ensure_groups()
        reclaim_at = time.monotonic() + RECLAIM_INTERVAL
        check_others_at = time.monotonic()
        block_ms = max(1, int(self.heartbeat * 1000))
        while True:
            self.beat_at = time.monotonic()
            claimed = self.reader.claiming
            if claimed:
                entries = await self.reader.claim(self.batch)
            else:
                entries = await self.reader.read(self.batch, block_ms)
                now = time.monotonic()
                if now >= reclaim_at:
                    self._reclaim()
                    reclaim_at = now + RECLAIM_INTERVAL
                elif now >= check_others_at:
                    # A frozen previous owner's blocked read may still be served entries
                    # after we took over: claim them at once, not at the next reclaim.
                    check_others_at = now + self.heartbeat
                    if await self.reader.others_pending():
                        self._reclaim()
            if not entries:
                continue
            self.last_message_at = time.time()
            if self.gate is not None and not self.gate.may_write():
                await self.gate.wait()  # read, not written: pending until acknowledged
            done: dict[bytes, list[bytes]] = {}
            if self.oversize is not None:
                entries, aside = await self.oversize.set_aside(entries)
                for stream, entry_id in aside:
                    done.setdefault(stream, []).append(entry_id)
                if not entries:
                    await self.reader.ack(done)
                    self.acked += len(aside)
                    continue
            command, key_of = self.command, self.key_of
            replies = await self.sink.write(
                [(key_of(entry[0]), command(*entry)) for entry in entries]
            )
            behind: list[Entry] = []  # refused as "not above the sink's last id"
            refused: list[tuple[Entry, str]] = []
            for entry, reply in zip(entries, replies, strict=True):
                if isinstance(reply, ReplyError):
                    message = str(reply)
                    if ALREADY_WRITTEN in message:
                        behind.append(entry)
                        continue
                    self.refused += 1
                    self.last_refusal = message
                    refused.append((entry, message))
                    continue
                done.setdefault(entry[0], []).append(entry[1])
            for stream, entry_id in await self._settle_behind(behind):
                done.setdefault(stream, []).append(entry_id)
            if refused and not self.last_refusal.startswith(MOVED_ON):
                await self._give_up(self.refusals.note(refused), done)
                # Refused entries stay pending: try them again soon, then less often.
                delay = self.refusals.retry_delay(retried=claimed)
                reclaim_at = min(reclaim_at, time.monotonic() + delay)
            elif not refused:
                self.refusals.backoff.reset()
            await self.reader.ack(done)
            self.refusals.written(done)
            self.acked += sum(len(ids) for ids in done.values())
            if self.on_answered is not None:
                oldest_ms = int(entries[0][1].split(b"-", 1)[0])
                self.on_answered(len(entries), max(0.0, time.time() - oldest_ms / 1000))
            if self.last_refusal.startswith(MOVED_ON):
                # Refused entries stay pending; the reconnect claims them again.
                raise ConnectionLost(
                    self.sink.name, f"the sink moved ({self.last_refusal.split(' ')[0]})"
                )
            if self.on_batch is not None:
                self.on_batch(len(entries), 0)
