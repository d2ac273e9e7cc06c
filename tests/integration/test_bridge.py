"""A node that bridges two deployments both ways (issue 20's first step): [source] a
standalone server, [targets.east] a Sentinel deployment of two masters; one route reads
the source and writes east, the other reads each of east's masters (a task per master)
and writes the source, pub/sub and streams alike, under names that differ each way
(the same names both ways are refused until loop prevention lands: test_bridge_config).
Everything arrives once on the other side and nothing comes back."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redis_forwarder.model import Address
from redis_forwarder.progress import ProgressReport
from tests.support.commands import pubsub_of, xrange
from tests.support.deployments import Deployment
from tests.support.node_runner import NodeRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
COUNT = 200


def bridge_config(west: Address, east: Deployment, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """West a standalone [source], east a Sentinel deployment ([targets.east])."""
    return {
        "source": {"kind": "standalone", "addresses": [str(west)]},
        "targets": {
            "east": {
                "kind": "sentinel",
                "addresses": [str(a) for a in east.sentinels],
                "masters": [s.name for s in east.spec.shards],
            }
        },
        "route": routes,
        "node": {"topology_interval": 0.5},
    }


def test_a_node_bridges_two_deployments_both_ways(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    west = shared_deployment("standalone").spec.shards[0].master
    east = shared_deployment("sentinel")
    tag = uuid.uuid4().hex[:8]
    config = bridge_config(
        west,
        east,
        [
            {
                "name": "west-east",
                "from": {"channels": [f"{tag}.w"]},
                "to": {"target": "east", "channel": f"{tag}.from-west"},
            },
            {
                "name": "east-west",
                "from": {"deployment": "east", "channels": [f"{tag}.e"]},
                "to": {"stream": f"{tag}:from-east:{{shard}}"},
            },
            {
                "name": "east-west-streams",
                "from": {"deployment": "east", "streams": [f"{tag}:events"], "group": "g"},
                "to": {"stream": f"{tag}:events-from-east:{{shard}}"},
            },
        ],
    )
    west_client = redis.Redis(host=west.host, port=west.port)
    masters = {s.name: s.master for s in east.spec.shards}
    east_clients = {n: redis.Redis(host=a.host, port=a.port) for n, a in masters.items()}
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "every task forwarding", timeout=30)
        assert set(runner.node.tasks) == {
            ("west-east", str(west)),
            *(("east-west", name) for name in masters),
            *(("east-west-streams", name) for name in masters),
        }
        # west -> east: listened to on east's first master, where the sink publishes
        listener = pubsub_of(next(iter(east_clients.values())))
        listener.subscribe(f"{tag}.from-west")
        wait_until(lambda: listener.get_message(timeout=0.1) is not None, "subscribed")
        for i in range(COUNT):
            west_client.publish(f"{tag}.w", f"w{i}")
            for name, client in east_clients.items():
                client.publish(f"{tag}.e", f"{name}-{i}")
                client.xadd(f"{tag}:events", {"n": i})
        heard: list[bytes] = []

        def all_heard() -> bool:
            while (message := listener.get_message(timeout=0.05)) is not None:
                heard.append(message["data"])
            return len(heard) >= COUNT

        wait_until(all_heard, f"{COUNT} west messages heard on east", timeout=20)
        for name in masters:
            wait_until(
                lambda n=name: (
                    west_client.xlen(f"{tag}:from-east:{n}") == COUNT  # type: ignore[misc]
                    and west_client.xlen(f"{tag}:events-from-east:{n}") == COUNT
                ),
                f"east {name}'s messages and entries in the west",
                timeout=20,
            )
        assert heard == [f"w{i}".encode() for i in range(COUNT)]
        for name in masters:
            payloads = [
                fields[b"payload"] for _id, fields in xrange(west_client, f"{tag}:from-east:{name}")
            ]
            assert payloads == [f"{name}-{i}".encode() for i in range(COUNT)]
        # nothing went back: the west's channel and east's inputs hold only what we sent
        all_heard()
        assert len(heard) == COUNT
        assert all(c.xlen(f"{tag}:events") == COUNT for c in east_clients.values())
        listener.close()


def test_the_same_stream_bridged_both_ways_arrives_once_and_never_comes_back(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """One stream name on both sides, a route each way with to.origin: 10,000 entries
    added on each side at random pauses (10 payloads repeated on every side) arrive
    once on the other,
    none returns, and after the load the counts stay still (no circulation)."""
    west = shared_deployment("standalone").spec.shards[0].master
    east = shared_deployment("sentinel")
    tag = uuid.uuid4().hex[:8]
    stream = f"{tag}:sync"
    config = bridge_config(
        west,
        east,
        [
            {
                "name": "west-east",
                "from": {"streams": [stream], "group": "bridge"},
                "to": {"target": "east", "stream": stream, "origin": True},
            },
            {
                "name": "east-west",
                "from": {"deployment": "east", "streams": [stream], "group": "bridge"},
                "to": {"stream": stream, "origin": True},
            },
        ],
    )
    west_client = redis.Redis(host=west.host, port=west.port)
    masters = {s.name: s.master for s in east.spec.shards}
    east_clients = {n: redis.Redis(host=a.host, port=a.port) for n, a in masters.items()}
    with NodeRunner(config) as runner:
        wait_until(runner.all_running, "every task forwarding", timeout=30)
        clients = {"west": west_client, **east_clients}
        add_at_random(clients, stream, STREAM_COUNT)

        def sides(client: redis.Redis) -> dict[bytes, int]:
            found: dict[bytes, int] = {}
            for _id, fields in xrange(client, stream):
                found[fields[b"side"]] = found.get(fields[b"side"], 0) + 1
            return found

        # west gets every entry of both east masters; east's sink master (where the
        # route writes: one master of the deployment) gets the west's
        everything = {b"west": STREAM_COUNT, **{name.encode(): STREAM_COUNT for name in masters}}
        wait_until(lambda: sides(west_client) == everything, "east's entries in the west", 60)
        wait_until(
            lambda: any(sides(c).get(b"west", 0) == STREAM_COUNT for c in east_clients.values()),
            "the west's entries in the east",
            timeout=60,
        )
        # still: nothing circulates (the counts do not move for two heartbeats and more)
        before = (sides(west_client), {n: sides(c) for n, c in east_clients.items()})
        time.sleep(3)  # not a wait for a condition: a still span, where a loop would grow
        after = (sides(west_client), {n: sides(c) for n, c in east_clients.items()})
        assert before == after
        assert before[0] == everything
        receiving = [n for n, c in before[1].items() if c.get(b"west")]
        assert len(receiving) == 1, before[1]
        for name, found in before[1].items():
            expected = {name.encode(): STREAM_COUNT}
            expected |= {b"west": STREAM_COUNT} if name in receiving else {}
            assert found == expected, (name, found)
        skipped = sum(
            s.value
            for family in runner.node.metrics.registry.collect()
            for s in family.samples
            if s.name == "forwarder_origin_skipped_entries_total"
        )
        # the east's 2 x COUNT read back in the west, the west's COUNT read back in east
        assert skipped == 3 * STREAM_COUNT


def echo_routes(channel: str) -> list[dict[str, Any]]:
    """``channel`` both ways between the west ([source]) and east, echoes suppressed."""
    return [
        {
            "name": "west-east",
            "from": {"channels": [channel]},
            "to": {"target": "east", "channel": channel, "echo": "suppress"},
        },
        {
            "name": "east-west",
            "from": {"deployment": "east", "channels": [channel]},
            "to": {"channel": channel, "echo": "suppress"},
        },
    ]


STREAM_COUNT = 10_000  # entries added on each side (each east master is a side)


def add_at_random(clients: dict[str, redis.Redis], stream: str, count: int) -> None:
    """``count`` entries on every side at once, in bursts at random pauses, with 10
    payloads repeated on every side; a "side" field says where each was added."""

    def add(side: str, client: redis.Redis, seed: int) -> None:
        chance, left = random.Random(seed), count
        while left:
            burst = min(left, chance.randint(1, 200))
            pipe = client.pipeline(transaction=False)
            for _ in range(burst):
                pipe.xadd(stream, {"payload": f"same-{chance.randrange(10)}", "side": side})
            pipe.execute()
            left -= burst
            if chance.random() < 0.2:
                time.sleep(chance.random() * 0.01)  # a pause in the load, not a wait

    threads = [
        threading.Thread(target=add, args=(side, client, seed))
        for seed, (side, client) in enumerate(clients.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


class Heard:
    """Everything a channel delivers on one server, in a thread of its own (so that
    tens of thousands of messages do not sit in Redis' output buffer meanwhile)."""

    def __init__(self, address: Address, channel: str) -> None:
        self.messages: list[bytes] = []
        self._pubsub = pubsub_of(redis.Redis(host=address.host, port=address.port))
        self._pubsub.subscribe(**{channel: lambda m: self.messages.append(m["data"])})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def counts(self) -> Counter[bytes]:
        return Counter(list(self.messages))

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(5)
        self._pubsub.close()


def publish_at_random(
    client: redis.Redis, channel: str, count: int, seed: int, sent: Counter[bytes]
) -> None:
    """``count`` messages in bursts of random sizes at random pauses, with payloads
    from 20 values (the same on every side), counted in ``sent``."""
    chance = random.Random(seed)
    left = count
    while left:
        burst = min(left, chance.randint(1, 200))
        pipe = client.pipeline(transaction=False)
        for _ in range(burst):
            payload = f"p{chance.randrange(20)}".encode()
            pipe.publish(channel, payload)
            sent[payload] += 1
        pipe.execute()
        left -= burst
        if chance.random() < 0.2:
            time.sleep(chance.random() * 0.01)  # a pause in the load, not a wait


def publish_on_every_side(
    clients: dict[str, redis.Redis], channel: str, counts: dict[str, int]
) -> dict[str, Counter[bytes]]:
    """Every side at once, each in a thread of its own: what each one published."""
    sent: dict[str, Counter[bytes]] = {name: Counter() for name in clients}
    threads = [
        threading.Thread(
            target=publish_at_random, args=(client, channel, counts[name], seed, sent[name])
        )
        for seed, (name, client) in enumerate(clients.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sent


def metric_sum(runner: NodeRunner, name: str) -> float:
    return sum(
        s.value
        for family in runner.node.metrics.registry.collect()
        for s in family.samples
        if s.name == name
    )


def test_the_same_channel_bridged_both_ways_arrives_once_and_never_comes_back(
    shared_deployment: Callable[[str], Deployment],
) -> None:
    """One channel name on both sides, a route each way with to.echo = "suppress":
    10,000 messages published on each side (in bursts, at random pauses, the same 20
    payloads on both sides): each side's channel carries exactly its own messages and
    the other side's, counted by payload; none comes back, and after the load the
    counts stay still (no circulation)."""
    west = shared_deployment("standalone").spec.shards[0].master
    east = shared_deployment("sentinel")
    channel = f"{uuid.uuid4().hex[:8]}.sync"
    config = bridge_config(west, east, echo_routes(channel))
    masters = {s.name: s.master for s in east.spec.shards}
    sink_master = east.spec.shards[0].name  # where west-east publishes: the first master
    heard = {"west": Heard(west, channel), **{n: Heard(a, channel) for n, a in masters.items()}}
    try:
        with NodeRunner(config) as runner:
            wait_until(runner.all_running, "every task forwarding", timeout=30)
            clients = {
                name: redis.Redis(host=address.host, port=address.port)
                for name, address in {"west": west, **masters}.items()
            }
            counts = {"west": 10_000, **dict.fromkeys(masters, 5_000)}
            sent = publish_on_every_side(clients, channel, counts)
            from_east: Counter[bytes] = sum((sent[n] for n in masters), Counter())
            expected = {
                "west": sent["west"] + from_east,  # its own, and both east masters'
                sink_master: sent[sink_master] + sent["west"],
                **{n: sent[n] for n in masters if n != sink_master},  # its own only
            }
            wait_until(
                lambda: heard["west"].counts() == expected["west"],
                "the east's messages in the west",
                timeout=60,
            )
            wait_until(
                lambda: heard[sink_master].counts() == expected[sink_master],
                "the west's messages in the east",
                timeout=60,
            )
            before = {side: h.counts() for side, h in heard.items()}
            time.sleep(3)  # not a wait for a condition: a still span, where a loop would grow
            after = {side: h.counts() for side, h in heard.items()}
            assert before == after, "the counts moved after the load: messages circulate"
            assert after == expected
            suppressed = metric_sum(runner, "forwarder_echoes_suppressed_total")
            assert suppressed == 20_000  # each side's forwarded copies heard back once
            report = ProgressReport().of(runner.node.tasks)  # what status shows, per task
            echoes = sum(task["bridged"]["echoes"] for task in report.values())
            assert echoes == suppressed
            assert metric_sum(runner, "forwarder_echoes_unheard_total") == 0
    finally:
        for listener in heard.values():
            listener.close()
