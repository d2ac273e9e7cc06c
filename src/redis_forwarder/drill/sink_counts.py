"""What the forwarder nodes counted lost at the sink during a campaign, read from their
logs: pub/sub messages written and never answered (the connection closed first) and
ids a sink's new master lacked after a failover (``TaskMetrics.unanswered``,
``lost_to_sink_failover``).

Why a campaign needs it: a message held through one fault (a node's death, a
ZooKeeper outage) is written when the fault ends, by its standby's replay; if the sink's
master is demoted just then (a sentinel failover, a frozen master), Redis erases it.
Its send time lies outside any fault of Redis, so the verdict counted it against the
forwarder (chaos campaigns: 603 messages replayed into a master frozen a moment later;
830 into one failed over 150 ms later). The forwarder cannot save those without
``to.wait``, but it counts them; what it counted is the sink's own loss.
"""

from __future__ import annotations

import re
from collections import defaultdict

# "<route>@<shard>: 603 pub/sub messages written to the sink and never answered"
_UNANSWERED = re.compile(
    rb": ([^\s@]+)@(\S+): (\d+) pub/sub messages written to the sink and never answered"
)
# "<route>@<shard>: the sink moved from A to B, which lacks 117 of the last 117 entries"
_LACKED = re.compile(rb": ([^\s@]+)@(\S+): the sink moved from \S+ to \S+, which lacks (\d+) ")


def counted(lines: list[bytes]) -> dict[tuple[str, str], int]:
    """(route, shard) -> messages counted lost, or at risk, at the sink."""
    found: dict[tuple[str, str], int] = defaultdict(int)
    for line in lines:
        match = _UNANSWERED.search(line) or _LACKED.search(line)
        if match is not None:
            route, shard, count = match.groups()
            found[(route.decode(), shard.decode())] += int(count)
    return dict(found)


def counted_in_logs(logs: dict[str, list[bytes]]) -> dict[tuple[str, str], int]:
    """Every forwarder node's log lines (``exits.log_lines``), summed."""
    total: dict[tuple[str, str], int] = defaultdict(int)
    for lines in logs.values():
        for key, count in counted(lines).items():
            total[key] += count
    return dict(total)
