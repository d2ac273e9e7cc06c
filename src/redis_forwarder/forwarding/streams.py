"""The stream loop: at least once, acknowledged after the sink's reply.

Per batch: claim or read, write every entry in one pipeline, read each reply, XACK
only the entries the sink took (or already had: a copied id at or below the sink's
last one). Refused entries stay pending and are claimed again later; nothing is
acknowledged that was not written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis_forwarder.forwarding.aside import StreamDeadLetter, StreamOversize, StreamUnfit
from redis_forwarder.forwarding.metrics import TaskMetrics
from redis_forwarder.forwarding.origins import Origins
from redis_forwarder.forwarding.refusals import GIVE_UP_AFTER, MOVED_ON, RETRY_CAP, Refusals
from redis_forwarder.forwarding.sink_failover import AckedTail
from redis_forwarder.gate import Gate
from redis_forwarder.resp import ConnectionLost, ReplyError, encode
from redis_forwarder.sink.commands import ALREADY_WRITTEN, EntryCommand, EntryUnfit
from redis_forwarder.sink.replication import UNREPLICATED
from redis_forwarder.sink.streams import StreamSink
from redis_forwarder.source.streams import Entry, StreamReader

log = logging.getLogger(__name__)
# Seconds between two measures of the group's backlog (XINFO GROUPS per stream): the
# lag alert looks at minutes.
BACKLOG_INTERVAL = 5.0
RECLAIM_INTERVAL = 30.0  # how often every pending entry is looked at again, refused or not
Done = dict[bytes, list[bytes]]  # stream -> ids to acknowledge


@dataclass(frozen=True)
class EntryCommands:
    """How entries are written: ``write`` (ids copied where the route allows), ``late``
    for an entry whose copied id is behind the sink's last one and that the sink lacks
    (a new id), and ``key_of``: source stream -> sink key."""

    write: EntryCommand
    late: EntryCommand
    key_of: Callable[[bytes], bytes]


class StreamLoop:
    """Forward stream entries through a consumer group until a connection is lost, or
    until ``stop_reading`` (then the batch in hand is written and acknowledged, and
    ``run`` returns without reading or claiming again)."""

    def __init__(
        self,
        reader: StreamReader,
        sink: StreamSink,
        commands: EntryCommands,
        metrics: TaskMetrics,
        batch: int,
        heartbeat: float,
        gate: Gate | None = None,
        oversize: StreamOversize | None = None,
        dead_letter: StreamDeadLetter | None = None,
        tail: AckedTail | None = None,
        origins: Origins | None = None,
    ) -> None:
        """``dead_letter``: where entries the sink refuses for good, or that its command
        cannot encode, go (else they stay pending)."""
        self.reader = reader
        self.sink = sink
        self.commands = commands
        self.metrics = metrics
        self.batch = batch
        self.heartbeat = heartbeat
        self.gate = gate
        self.oversize = oversize
        self.dead_letter = dead_letter
        self.tail = tail  # copied ids: what the sink took, looked for after its failover
        self.origins = origins  # a bridge's stamps and skips (to.origin, issue 20)
        self.unfit = StreamUnfit(metrics, dead_letter)
        self.refusals = Refusals()
        self.stopping = False
        self._reading = False
        self.beat_at = time.monotonic()
        self.last_refusal = ""
        self.measure_backlog = True  # until Redis refuses XINFO (an ACL without it)

    def stop_reading(self) -> None:
        """Read and claim nothing more. A read waiting now (a blocked XREADGROUP) is
        reset; what Redis had just delivered to it stays pending, for the next owner to
        claim. A batch being written is finished and acknowledged."""
        self.stopping = True
        if self._reading:
            self.reader.connection.abort()

    async def run(self) -> None:
        await self.reader.ensure_groups()
        reclaim_at = time.monotonic() + RECLAIM_INTERVAL
        check_others_at = backlog_at = time.monotonic()
        block_ms = max(1, int(self.heartbeat * 1000))
        while not self.stopping:
            self.beat_at = time.monotonic()
            if self.gate is not None and not self.gate.may_write():
                # Nothing read that cannot be written: a task of a session the node gave
                # up (a frozen node waking) read entries into its group's pending list
                # in the moment before the node stopped it (a chaos campaign, issue 17).
                await self.gate.wait()
                continue
            claimed = self.reader.claiming
            self._reading = True
            try:
                if claimed:
                    entries = await self.reader.claim(self.batch)
                else:
                    entries = await self.reader.read(self.batch, block_ms)
            except ConnectionLost:
                if self.stopping:
                    return
                raise
            finally:
                self._reading = False
            if not claimed:
                now = time.monotonic()
                if now >= reclaim_at:
                    self._reclaim()
                    reclaim_at = now + RECLAIM_INTERVAL
                elif now >= check_others_at and not self.stopping:
                    # A frozen previous owner's blocked read may still be served entries
                    # after we took over: claim them at once, not at the next reclaim.
                    check_others_at = now + self.heartbeat
                    if await self.reader.others_pending():
                        self._reclaim()
                    if now >= backlog_at:
                        # How far behind the group is, for the consumer-lag alert (one
                        # on latency sees nothing while the task forwards nothing).
                        backlog_at = now + BACKLOG_INTERVAL
                        await self._measure_backlog()
            if entries:
                retry_in = await self._forward(entries, claimed)
                if retry_in is not None:
                    reclaim_at = min(reclaim_at, time.monotonic() + retry_in)

    async def _measure_backlog(self) -> None:
        """A measure, never a reason to stop forwarding: Redis' refusal or an answer of
        an unexpected shape is logged, not raised; only a refusal for permissions
        stops the measuring (it will not change), and says what to allow."""
        if not self.measure_backlog:
            return
        try:
            backlog = await self.reader.backlog()
        except (ValueError, TypeError, IndexError) as exc:
            self.measure_backlog = False
            log.warning("%s: cannot read XINFO GROUPS' answer (%r); the consumer "
                        "group's lag is not measured", self.metrics.name, exc)  # fmt: skip
            return
        if isinstance(backlog, ReplyError):
            if str(backlog).startswith("NOPERM"):
                self.measure_backlog = False
                log.warning(
                    "%s: cannot measure the consumer group's lag (XINFO GROUPS: %s); "
                    "forwarder_stream_lag_entries stays unset: allow +xinfo|groups to "
                    "the forwarder's ACL user (docs/security.md)", self.metrics.name, backlog,
                )  # fmt: skip
            else:
                log.debug("%s: XINFO GROUPS: %s", self.metrics.name, backlog)
            return
        self.metrics.stream_backlog(id(self), *backlog)

    async def _forward(self, entries: list[Entry], claimed: bool) -> float | None:
        """Write, settle and acknowledge one batch; return in how many seconds refused
        entries should be tried again (None: none refused)."""
        received = len(entries)
        if self.gate is not None and not self.gate.may_write():
            await self.gate.wait()  # read, not written: pending until acknowledged
        done: Done = {}
        if self.origins is not None:  # first: the size checked is the size written
            entries = self._stamp(entries, done)
        if self.oversize is not None:
            entries, aside = await self.oversize.set_aside(entries)
            _add(done, aside)
        writes, entries = await self._encode(entries, done)
        self.metrics.batch(received, len(entries))
        if not entries:  # all of it set aside
            await self._ack(done)
            return None
        replies = await self.sink.write(writes)
        behind, refused, unreplicated = self._sort_replies(entries, replies, done)
        if self.tail is not None:
            self.tail.note(entries, replies)
        settled, unreplicated_behind = await self._settle_behind(behind)
        _add(done, settled)
        unreplicated += unreplicated_behind
        retry_in = None
        if refused and not self.last_refusal.startswith(MOVED_ON):
            await self._give_up(self.refusals.note(refused), done)
            # Refused entries stay pending: try them again soon, then less often.
            retry_in = self.refusals.retry_delay(retried=claimed)
        elif unreplicated:
            # Not on enough replicas: pending, claimed again (a no-op with copied ids).
            retry_in = self.refusals.retry_delay(retried=claimed)
            self.metrics.unreplicated_entries(unreplicated, self._replicas_acked())
        elif not refused:
            self.refusals.backoff.reset()
        await self._ack(done)
        oldest_ms = int(entries[0][1].split(b"-", 1)[0])
        lag = max(0.0, time.time() - oldest_ms / 1000)
        self.metrics.answered(len(entries) - unreplicated, lag)
        if self.last_refusal.startswith(MOVED_ON):
            # Refused entries stay pending; the reconnect claims them again.
            raise ConnectionLost(
                self.sink.name, f"the sink moved ({self.last_refusal.split(' ')[0]})"
            )
        return retry_in

    def _stamp(self, entries: list[Entry], done: Done) -> list[Entry]:
        """A bridge's entries, stamped with their origin; those that came from the
        target, or crossed too many bridges, acknowledged unwritten and counted."""
        assert self.origins is not None
        forward, back, over = self.origins.sort(entries)
        if back:
            _add(done, [(stream, entry_id) for stream, entry_id, _fields in back])
            self.metrics.origin_skipped(len(back))
        if over:
            _add(done, [(stream, entry_id) for stream, entry_id, _fields in over])
            self.metrics.hop_limit(len(over), self.origins.max_hops)
        return forward

    async def _encode(
        self, entries: list[Entry], done: Done
    ) -> tuple[list[tuple[bytes, bytes]], list[Entry]]:
        """(sink key, command) per entry, and the entries they are for: an entry the
        command cannot encode (a list or channel sink, ``EntryUnfit``) leaves the batch
        through ``self.unfit``."""
        key_of, command = self.commands.key_of, self.commands.write
        try:
            return [(key_of(entry[0]), command(*entry)) for entry in entries], entries
        except EntryUnfit:
            pass  # rare: go through the batch again, one entry at a time
        writes: list[tuple[bytes, bytes]] = []
        kept: list[Entry] = []
        unfit: list[tuple[Entry, str]] = []
        for entry in entries:
            try:
                writes.append((key_of(entry[0]), command(*entry)))
                kept.append(entry)
            except EntryUnfit as exc:
                unfit.append((entry, str(exc)))
        _add(done, await self.unfit.set_aside(unfit))
        return writes, kept

    def _sort_replies(
        self, entries: list[Entry], replies: list[object], done: Done
    ) -> tuple[list[Entry], list[tuple[Entry, str]], int]:
        """Entries the sink took go to ``done``; return those refused as "not above the
        sink's last id" (to settle), those refused for another reason, and how many the
        sink took but too few replicas acknowledged (``wait``: they stay pending)."""
        behind: list[Entry] = []
        refused: list[tuple[Entry, str]] = []
        unreplicated = 0
        taken, refused_after = False, 0  # in reply order: refusals after the last taken
        for entry, reply in zip(entries, replies, strict=True):
            if reply is UNREPLICATED:
                unreplicated += 1
                taken, refused_after = True, 0
            elif not isinstance(reply, ReplyError):
                done.setdefault(entry[0], []).append(entry[1])
                taken, refused_after = True, 0
            elif ALREADY_WRITTEN in str(reply):
                behind.append(entry)
            else:
                refused.append((entry, str(reply)))
                refused_after += 1
        if refused:
            self.last_refusal = refused[-1][1]
            self.metrics.refusal(len(refused), self.last_refusal, lost=False)
        if taken:
            self.metrics.took(refused_after)
        return behind, refused, unreplicated

    def _replicas_acked(self) -> object:
        return getattr(self.sink, "replicas_acked", None)

    async def _ack(self, done: Done) -> None:
        await self.reader.ack(done)
        self.refusals.written(done)

    async def _give_up(self, given_up: list[tuple[Entry, str]], done: Done) -> None:
        """Entries the sink refused ``GIVE_UP_AFTER`` times: into the dead-letter stream
        (acknowledged once it took them), or left pending, said loudly."""
        if not given_up:
            return
        entries = [entry for entry, _reason in given_up]
        reason = given_up[-1][1]
        if self.dead_letter is not None:
            written = await self.dead_letter.write(entries)
            _add(done, written)
            self.metrics.give_up(len(written), True)
            log.warning(
                "%s: %d entries refused %d times (%s) went to the dead-letter stream",
                self.sink.name, len(written), GIVE_UP_AFTER, reason,
            )  # fmt: skip
            return
        self.metrics.give_up(len(entries), False)
        log.error(
            "%s: %d entries refused %d times (%s) stay pending, retried every %.0fs at most; "
            "fix the sink, or set dead_letter on the route to set them aside",
            self.sink.name, len(entries), GIVE_UP_AFTER, reason, RETRY_CAP,
        )  # fmt: skip

    async def _settle_behind(self, behind: list[Entry]) -> tuple[list[tuple[bytes, bytes]], int]:
        """Entries whose copied id is not above the sink's last one: written already (a
        replay), or claimed late, after newer entries were copied (a previous owner's
        pending entries). Only the sink can tell: an entry it holds is a duplicate; one
        it lacks is written with a new id, so it is late but not lost. Returns those
        settled, and how many are not on enough replicas yet (``wait``: left pending)."""
        if not behind:
            return [], 0
        key_of = self.commands.key_of
        found = await self.sink.write(
            [(key_of(stream), encode(b"XRANGE", key_of(stream), entry_id, entry_id))
             for stream, entry_id, _fields in behind]
        )  # fmt: skip
        pairs = list(zip(behind, found, strict=True))
        unreplicated = sum(1 for _entry, hit in pairs if hit is UNREPLICATED)
        settled = [(e[0], e[1]) for e, hit in pairs if hit and hit is not UNREPLICATED]
        replays = len(settled)
        late = [entry for entry, hit in pairs if not hit]
        if late:
            command = self.commands.late
            replies = await self.sink.write([(key_of(e[0]), command(*e)) for e in late])
            for entry, reply in zip(late, replies, strict=True):
                if reply is UNREPLICATED:
                    unreplicated += 1
                elif isinstance(reply, ReplyError):
                    self.last_refusal = str(reply)
                    self.metrics.refusal(1, self.last_refusal, lost=False)
                else:
                    settled.append((entry[0], entry[1]))
        self.metrics.settled(replays, len(settled) - replays)
        return settled, unreplicated

    def _reclaim(self) -> None:
        self.reader.reclaim()
        self.refusals.new_round()


def _add(done: Done, entries: list[tuple[bytes, bytes]]) -> None:
    for stream, entry_id in entries:
        done.setdefault(stream, []).append(entry_id)
