"""The watcher through real faults: Sentinel and Cluster failovers, kill -9 of masters, a
dead and a stopped sentinel, slot migration, a new shard. Each test prints the measured
detection delay (see docs/topology.md for the numbers) and bounds it by what the lab's
settings allow, so that a regression fails rather than only prints."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest
import redis

from redis_forwarder.errors import MasterUnconfirmedError
from redis_forwarder.lab.spec import settings_from_spec
from redis_forwarder.model import Address
from redis_forwarder.topology import ChangeKind, DeploymentSettings, discover
from tests.support.cluster import move_slots
from tests.support.commands import command, pubsub_of
from tests.support.deployments import Deployment
from tests.support.waiting import wait_until
from tests.support.watching import WatchRecorder

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Fresh = Callable[[str], Deployment]


def client(address: Address) -> redis.Redis:
    return redis.Redis(
        host=address.host, port=address.port, decode_responses=True, socket_timeout=5
    )


class SwitchClock:
    """The time the first sentinel announced +switch-master: the sentinels' switch."""

    def __init__(self, sentinels: list[Address]) -> None:
        self.at: float | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, args=(s,), daemon=True) for s in sentinels
        ]

    def _listen(self, sentinel: Address) -> None:
        pubsub = pubsub_of(client(sentinel), ignore_subscribe_messages=True)
        pubsub.subscribe("+switch-master")
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and self.at is None:
                self.at = time.time()
        pubsub.close()

    def __enter__(self) -> SwitchClock:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def report(what: str, delay: float, bound: float) -> None:
    print(f"DETECTION {what}: {delay * 1000:.0f} ms")
    assert delay < bound, f"{what}: detected after {delay:.2f}s, bound {bound:.2f}s"


def sentinel_failover_time(deployment: Deployment) -> float:
    """The sentinels' own time to fail a dead master over: down-after, then at most the
    failover timeout to elect a leader and promote a replica."""
    sentinel = deployment.spec.sentinel
    assert sentinel is not None
    return (sentinel.down_after_ms + sentinel.failover_timeout_ms) / 1000


def cluster_node_timeout(deployment: Deployment) -> float:
    assert deployment.spec.cluster is not None
    return deployment.spec.cluster.node_timeout_ms / 1000


def test_sentinel_failover_is_reported_for_the_same_shard(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("sentinel")
    old = deployment.spec.shards[0].master
    with (
        WatchRecorder(settings_from_spec(deployment.spec)) as watch,
        SwitchClock(deployment.sentinels) as clock,
    ):
        command(client(deployment.sentinels[0]), "SENTINEL", "FAILOVER", "alpha")
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.MASTER_CHANGED and c.shard == "alpha",
            "master-changed for alpha",
        )
        assert change.previous == str(old)
        assert change.master != str(old)
        assert command(client(Address.parse(change.master)), "ROLE")[0] == "master"
        wait_until(lambda: clock.at is not None, "+switch-master seen")
        assert clock.at is not None
        # Events make it milliseconds (docs/topology.md: 10 ms worst); the periodic
        # refresh alone would take up to an interval, and that is the bound.
        report("sentinel failover (after +switch-master)", change.at - clock.at, watch.interval)
        # beta did not move
        assert not [c for c in watch.changes if c.shard == "beta"]
        assert watch.current().shard("alpha").master.address == Address.parse(change.master)  # type: ignore[union-attr]


def test_sentinel_kill_master(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    old = deployment.spec.shards[1].master
    with (
        WatchRecorder(settings_from_spec(deployment.spec)) as watch,
        SwitchClock(deployment.sentinels) as clock,
    ):
        killed_at = time.time()
        lab.send_signal("beta-master", signal.SIGKILL)
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.MASTER_CHANGED and c.shard == "beta",
            "master-changed for beta after kill -9",
            timeout=60,
        )
        assert change.previous == str(old)
        assert Address.parse(change.master) in deployment.spec.shards[1].replicas
        wait_until(lambda: clock.at is not None, "+switch-master seen")
        assert clock.at is not None
        switched = change.at - clock.at
        report("sentinel kill -9 master (after +switch-master)", switched, watch.interval)
        # The sentinels' failover plus an interval: 6.5 s on this lab, measured 2.3 s.
        report(
            "sentinel kill -9 master (after the kill)",
            change.at - killed_at,
            sentinel_failover_time(deployment) + watch.interval,
        )


def test_sentinel_down_and_stale_sentinel(fresh_deployment: Fresh) -> None:
    """One sentinel dead, one stopped through a failover: discovery still gives the true
    master, and a stale sentinel alone never sends us to the old master (now a replica)."""
    deployment = fresh_deployment("sentinel")
    lab = deployment.require_lab()
    lab.send_signal("sentinel-1", signal.SIGKILL)
    settings = settings_from_spec(deployment.spec)
    found = discover(settings)
    assert found.shard("alpha").master.address == deployment.spec.shards[0].master  # type: ignore[union-attr]
    assert "of 2 answering sentinels (3 configured)" in found.shards[0].learned

    old = deployment.spec.shards[0].master
    stale = deployment.sentinels[2]
    lab.send_signal("sentinel-3", signal.SIGSTOP)
    try:
        with WatchRecorder(settings) as watch:
            command(client(deployment.sentinels[1]), "SENTINEL", "FAILOVER", "alpha")
            change = watch.wait_for_change(
                lambda c: c.kind is ChangeKind.MASTER_CHANGED and c.shard == "alpha",
                "master-changed with one sentinel dead and one stopped",
            )
            new = Address.parse(change.master)
            wait_until(
                lambda: command(client(old), "ROLE")[0] == "slave",
                "old master reconfigured as a replica",
            )
    finally:
        lab.send_signal("sentinel-3", signal.SIGCONT)
    only_stale = DeploymentSettings(settings.kind, (stale,), ("alpha",))
    for _ in range(5):  # right after SIGCONT the stale sentinel may still name the old master
        try:
            assert discover(only_stale).shard("alpha").master.address == new  # type: ignore[union-attr]
        except MasterUnconfirmedError as exc:
            assert str(old) in str(exc) and "replica of" in str(exc)


def _cluster_shard_of(watch: WatchRecorder, master: Address) -> str:
    return next(s.id for s in watch.current().shards if s.master.address == master)


def test_cluster_failover_keeps_the_shard(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("cluster")
    spec_shard = deployment.spec.shards[0]
    replica = spec_shard.replicas[0]
    with WatchRecorder(settings_from_spec(deployment.spec)) as watch:
        shard_id = _cluster_shard_of(watch, spec_shard.master)
        slots = watch.current().shard(shard_id).slots  # type: ignore[union-attr]
        command(client(replica), "CLUSTER", "FAILOVER")
        wait_until(
            lambda: command(client(replica), "ROLE")[0] == "master",
            "replica promoted",
            timeout=30,
        )
        promoted_at = time.time()
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.MASTER_CHANGED, "master-changed after CLUSTER FAILOVER"
        )
        assert (change.shard, change.master, change.previous) == (
            shard_id,
            str(replica),
            str(spec_shard.master),
        )
        assert watch.current().shard(shard_id).slots == slots  # type: ignore[union-attr]
        # Polled: the next refresh, or the one after when it raced the promotion and a
        # lagging node was asked; a refresh itself takes milliseconds. Measured 0.5 s.
        report(
            "cluster failover (after ROLE master, polled)",
            change.at - promoted_at,
            2 * watch.interval + 0.5,
        )


def test_cluster_kill_master_keeps_the_shard(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("cluster")
    lab = deployment.require_lab()
    spec_shard = deployment.spec.shards[1]
    with WatchRecorder(settings_from_spec(deployment.spec)) as watch:
        shard_id = _cluster_shard_of(watch, spec_shard.master)
        killed_at = time.time()
        lab.send_signal(f"{spec_shard.name}-master", signal.SIGKILL)
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.MASTER_CHANGED,
            "master-changed after kill -9",
            timeout=60,
        )
        assert (change.shard, change.master) == (shard_id, str(spec_shard.replicas[0]))
        # The node timeout to PFAIL, gossip to FAIL and the replica's election delay
        # (together about another node timeout), one retried election (Redis waits two
        # node timeouts), then two polling intervals: 10 s on this lab, measured 4.1-4.7.
        report(
            "cluster kill -9 master (after the kill)",
            change.at - killed_at,
            4 * cluster_node_timeout(deployment) + 2 * watch.interval,
        )
        assert len(watch.current().shards) == 3  # the dead master is no shard of its own


def test_slot_migration_moves_slots_between_shards(fresh_deployment: Fresh) -> None:
    """Slots 0-4 move (keys and all); a MOVED hint makes the watcher look at once."""
    deployment = fresh_deployment("cluster")
    masters = [s.master for s in deployment.spec.shards]
    source, target = masters[0], masters[1]
    keys = [f"{{k{i}}}" for i in range(200)]
    moved = range(0, 5)
    seed = client(source)
    owned = [k for k in keys if command(seed, "CLUSTER", "KEYSLOT", k) in moved]
    for key in owned:
        seed.set(key, key)
    # A long interval: the refresh must come from the hint a client gives on MOVED.
    with WatchRecorder(settings_from_spec(deployment.spec), interval=60) as watch:
        source_id, target_id = (_cluster_shard_of(watch, m) for m in (source, target))
        move_slots(masters, source, target, moved)
        done_at = time.time()
        watch.refresh_soon(f"MOVED {moved[0]} {target}")
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.SLOTS_MOVED and c.shard == target_id,
            "slots-moved on the target shard",
        )
        # The hint refreshes at once (measured 14 ms worst); without it the next refresh
        # is a 60 s interval away. One second is all a refresh may take.
        report(
            "slot migration (after the last SETSLOT NODE, with a MOVED hint)",
            change.at - done_at,
            1.0,
        )
        watch.wait_for_change(
            lambda c: c.kind is ChangeKind.SLOTS_MOVED and c.shard == source_id,
            "slots-moved on the source shard",
        )
        topology = watch.current()
        for slot in moved:
            assert topology.shard_for_slot(slot).id == target_id  # type: ignore[union-attr]
        assert topology.shard_for_slot(5).id == source_id  # type: ignore[union-attr]
    for key in owned:
        assert client(target).get(key) == key


def test_added_shard_appears(fresh_deployment: Fresh) -> None:
    deployment = fresh_deployment("cluster")
    lab = deployment.require_lab()
    first = deployment.spec.shards[0].master
    new = Address(first.host, 7206)
    with WatchRecorder(settings_from_spec(deployment.spec)) as watch:
        lab.add_redis_node(deployment.spec, "shard-d-master", new)
        command(client(first), "CLUSTER", "MEET", new.host, new.port)
        met_at = time.time()
        change = watch.wait_for_change(
            lambda c: c.kind is ChangeKind.SHARD_ADDED, "shard-added after CLUSTER MEET"
        )
        assert change.master == str(new)
        # The handshake (gossip; within a node timeout) and two polling intervals: 3 s on
        # this lab, measured 0.46-0.99 s.
        report(
            "shard added (after CLUSTER MEET)",
            change.at - met_at,
            cluster_node_timeout(deployment) + 2 * watch.interval,
        )
        assert len(watch.current().shards) == 4
