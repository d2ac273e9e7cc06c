"""Shards of a Sentinel deployment: one per monitored master name.

Several sentinels are asked at once; some may be down or slow. The master address is
taken by vote (most sentinels, then the order they are configured in), and trusted only
after the node itself says ``ROLE`` master: a sentinel that has not yet seen a failover
must not send us to a replica.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis_forwarder.errors import (
    AuthenticationError,
    MasterUnconfirmedError,
    UnknownMasterError,
    UnreachableError,
    WrongServerError,
)
from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.settings import DeploymentSettings
from redis_forwarder.topology.connections import CommandRefused, Connections, NodeFailed

# Once a majority has answered, slower sentinels get this long before we go on without
# them: a stopped sentinel must not add a whole socket timeout to every refresh.
STRAGGLER_GRACE = 0.2
_UNHEALTHY_FLAGS = {"s_down", "o_down", "disconnected"}


def _healthy(replica: dict[str, str]) -> bool:
    """Up, and replicating: a replica whose link to its master is down (restarting,
    still syncing) receives none of the master's PUBLISHes, and a subscriber moved onto
    it lost them (issue 14: back on a restarted replica before it had synced)."""
    flags = set(replica.get("flags", "").split(","))
    return not _UNHEALTHY_FLAGS & flags and replica.get("master-link-status", "ok") == "ok"


@dataclass
class SentinelAnswer:
    """What one sentinel said: per master name, its master and its healthy replicas."""

    sentinel: Address
    masters: dict[str, Address | None] = field(default_factory=dict)
    replicas: dict[str, list[Address]] = field(default_factory=dict)


async def ask_sentinel(
    conns: Connections, sentinel: Address, names: tuple[str, ...]
) -> SentinelAnswer:
    answer = SentinelAnswer(sentinel)
    for name in names:
        try:
            reply = await conns.call(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
        except CommandRefused as exc:
            if "unknown command" in exc.reason.lower():
                raise WrongServerError(
                    f"{sentinel} is not a sentinel (it answered: {exc.reason}); list sentinel "
                    "addresses for kind = sentinel, or use kind = standalone / cluster"
                ) from None
            raise
        if not reply:
            answer.masters[name] = None
            continue
        answer.masters[name] = Address(str(reply[0]), int(reply[1]))
        replicas = await conns.call(sentinel, "SENTINEL", "REPLICAS", name)
        answer.replicas[name] = [
            Address(r["ip"], int(r["port"])) for r in map(_pairs, replicas) if _healthy(r)
        ]
    return answer


async def gather_answers(
    conns: Connections, settings: DeploymentSettings
) -> tuple[list[SentinelAnswer], dict[str, str]]:
    """Ask every sentinel; return the answers and, per address, why the others failed."""
    tasks = {
        asyncio.ensure_future(ask_sentinel(conns, address, settings.masters)): address
        for address in settings.addresses
    }
    majority = len(tasks) // 2 + 1
    answers: list[SentinelAnswer] = []
    failures: dict[str, str] = {}
    pending = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.socket_timeout + 0.5
    grace_end: float | None = None
    while pending:
        end = deadline if grace_end is None else min(deadline, grace_end)
        done, pending = await asyncio.wait(
            pending, timeout=max(0.0, end - loop.time()), return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            error = task.exception()
            if error is None:
                answers.append(task.result())
            elif isinstance(error, AuthenticationError):
                failures[str(tasks[task])] = f"auth: {error}"
            elif isinstance(error, NodeFailed):
                failures[str(tasks[task])] = error.reason
            elif isinstance(error, WrongServerError):
                failures[str(tasks[task])] = str(error)
            else:
                raise error
        if len(answers) >= majority and grace_end is None:
            grace_end = loop.time() + STRAGGLER_GRACE
        if not done and loop.time() >= end:
            break
    for task in pending:
        task.cancel()
        failures[str(tasks[task])] = "no answer in time (slow or stopped)"
        await conns.forget(tasks[task])
    await asyncio.gather(*pending, return_exceptions=True)
    # Keep the configured order: votes tie-break on it.
    order = {address: i for i, address in enumerate(settings.addresses)}
    answers.sort(key=lambda a: order[a.sentinel])
    return answers, failures


def _raise_for_no_answer(settings: DeploymentSettings, failures: dict[str, str]) -> None:
    auth = [reason for reason in failures.values() if reason.startswith("auth: ")]
    if auth and len(auth) == len(failures):
        raise AuthenticationError(next(iter(failures)), "sentinel", "every sentinel refused")
    wrong = [r for r in failures.values() if "is not a sentinel" in r]
    if wrong and len(wrong) == len(failures):
        raise WrongServerError(wrong[0])
    raise UnreachableError("sentinel", failures)


async def discover_sentinel(
    settings: DeploymentSettings, sentinels: Connections, nodes: Connections
) -> Topology:
    answers, failures = await gather_answers(sentinels, settings)
    if not answers:
        _raise_for_no_answer(settings, failures)
    shards = []
    for name in settings.masters:
        shards.append(await _shard(name, answers, len(settings.addresses), nodes))
    return Topology(DeploymentKind.SENTINEL, tuple(sorted(shards, key=lambda s: s.id)))


async def _shard(name: str, answers: list[SentinelAnswer], asked: int, nodes: Connections) -> Shard:
    named = [(i, a.masters[name]) for i, a in enumerate(answers) if a.masters.get(name)]
    votes: Counter[Address] = Counter(address for _, address in named if address is not None)
    if not votes:
        raise UnknownMasterError(
            f"no sentinel that answered monitors a master named {name!r}; check the name "
            "(SENTINEL MASTERS lists what they monitor)"
        )
    first_seen: dict[Address, int] = {}
    for index, address in named:
        if address is not None:
            first_seen.setdefault(address, index)
    candidates = sorted(votes, key=lambda address: (-votes[address], first_seen[address]))
    said: dict[str, str] = {}
    for candidate in candidates:
        try:
            role = await nodes.call(candidate, "ROLE")
        except NodeFailed as exc:
            said[str(candidate)] = exc.reason
            continue
        if role and role[0] == "master":
            agreeing = [a for a in answers if a.masters.get(name) == candidate]
            replicas = sorted({r for a in agreeing for r in a.replicas.get(name, [])} - {candidate})
            learned = (
                f"{votes[candidate]} of {len(answers)} answering sentinels ({asked} configured) "
                "name it; ROLE confirms master"
            )
            return Shard(
                id=name,
                master=RedisNode(candidate),
                replicas=tuple(RedisNode(r) for r in replicas),
                learned=learned,
            )
        said[str(candidate)] = f"ROLE says {_describe_role(role)}"
    raise MasterUnconfirmedError(
        f"the sentinels name {', '.join(said)} as master of {name!r}, but "
        + "; ".join(f"{a}: {r}" for a, r in said.items())
        + ". A failover may be under way: try again in a few seconds."
    )


def _describe_role(role: Any) -> str:
    if isinstance(role, list) and role and role[0] == "slave":
        return f"replica of {role[1]}:{role[2]}"
    return str(role[0] if isinstance(role, list) and role else role)


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}
