"""The consumer group's backlog as a stream task measures it for the lag alert
(``forwarder_stream_lag_entries``, ``_pending_entries``), read from a real Redis:
entries not read yet, and read but not acknowledged, summed over the task's streams;
and Redis' refusal of XINFO (an ACL without it) returned, not raised: the task must
forward all the same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis

from redis_forwarder.resp import ReplyError, RespConnection
from redis_forwarder.source.streams import StreamReader
from tests.support.commands import command
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration


def test_the_backlog_counts_unread_and_unacknowledged_entries(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    client = redis.Redis(host=server.host, port=server.port)
    tag = uuid.uuid4().hex[:8]
    streams = [f"{tag}.a".encode(), f"{tag}.b".encode()]

    async def scenario() -> list[tuple[int | None, int] | ReplyError]:
        connection = RespConnection(server.host, server.port, timeout=2.0)
        await connection.open()
        reader = StreamReader(connection, streams, b"g", b"node-1")
        await reader.ensure_groups()
        seen = [await reader.backlog()]
        for i in range(5):
            client.xadd(streams[0], {"n": i})
        for i in range(3):
            client.xadd(streams[1], {"n": i})
        seen.append(await reader.backlog())
        read = await reader.read(4, 100)  # at most 4 a stream: 4 + 3, not acknowledged
        seen.append(await reader.backlog())
        done: dict[bytes, list[bytes]] = {}
        for stream, entry_id, _fields in read:
            done.setdefault(stream, []).append(entry_id)
        await reader.ack(done)
        seen.append(await reader.backlog())
        await connection.close()
        return seen

    assert asyncio.run(scenario()) == [(0, 0), (8, 0), (1, 7), (1, 0)]


def test_a_refused_xinfo_is_returned_not_raised(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    server = shared_deployment("standalone").spec.shards[0].master
    admin = redis.Redis(host=server.host, port=server.port)
    user, password = f"noxinfo-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    command(admin, "ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all", "-xinfo")
    try:

        async def scenario() -> object:
            connection = RespConnection(server.host, server.port, timeout=2.0)
            await connection.open()
            await connection.call(b"AUTH", user.encode(), password.encode())
            reader = StreamReader(connection, [f"{user}.s".encode()], b"g", b"node-1")
            await reader.ensure_groups()
            answer = await reader.backlog()
            await connection.close()
            return answer

        answer = asyncio.run(scenario())
        assert isinstance(answer, ReplyError) and "NOPERM" in str(answer)
    finally:
        command(admin, "ACL", "DELUSER", user)
