"""What a refusal from the sink means, and when refused stream entries are tried
again. Pure: no I/O, no clock but the backoff's."""

from __future__ import annotations

from redis_forwarder.retry import Backoff
from redis_forwarder.source.streams import Entry

# Refusals that may pass (the sink is busy, full or in failover): retried for as long
# as they last, with backoff.
TRANSIENT = ("OOM", "LOADING", "BUSY", "TRYAGAIN", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN")
# Refusals that mean the sink is elsewhere now: reconnect where the topology says.
MOVED_ON = ("READONLY", "MOVED", "ASK", "CLUSTERDOWN", "MASTERDOWN")
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
