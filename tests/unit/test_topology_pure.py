"""Pure topology logic: slot hashing, slot ranges, the diff, and cluster id carry-over."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.forwarding.placement import candidates, serves
from redis_forwarder.model import Address, DeploymentKind, RedisNode, Shard, Topology
from redis_forwarder.topology.cluster import carry_ids, named_like, shard_names
from redis_forwarder.topology.diff import ChangeKind, diff
from redis_forwarder.topology.slots import CLUSTER_SLOTS, hash_tag, key_slot, ranges_of


def test_known_slots() -> None:
    # Values from the Redis Cluster specification and CLUSTER KEYSLOT.
    assert key_slot("foo") == 12182
    assert key_slot("123456789") == 12739
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == key_slot("foo{}{bar}")  # empty tag: whole key hashed
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar}{zap}") == b"bar"


@given(st.sets(st.integers(0, CLUSTER_SLOTS - 1), max_size=300))
def test_ranges_round_trip(slots: set[int]) -> None:
    ranges = ranges_of(slots)
    assert {s for a, b in ranges for s in range(a, b + 1)} == slots
    assert all(a <= b for a, b in ranges)
    assert all(ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1))


def node(port: int, node_id: str = "") -> RedisNode:
    return RedisNode(Address("127.0.0.1", port), node_id)


shards = st.builds(
    lambda sid, master, replicas, slots: Shard(
        sid, node(master), tuple(sorted(node(r) for r in replicas - {master})), ranges_of(slots)
    ),
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(7000, 7010),
    st.sets(st.integers(7000, 7010), max_size=3),
    st.sets(st.integers(0, 50), max_size=10),
)
topologies = st.lists(shards, max_size=4, unique_by=lambda s: s.id).map(
    lambda items: Topology(DeploymentKind.CLUSTER, tuple(sorted(items, key=lambda s: s.id)))
)


@given(topologies, topologies)
def test_diff_names_exactly_what_changed(old: Topology, new: Topology) -> None:
    changes = diff(old, new, at=1.0)
    if old == new:
        assert changes == []
    added = {c.shard for c in changes if c.kind is ChangeKind.SHARD_ADDED}
    removed = {c.shard for c in changes if c.kind is ChangeKind.SHARD_REMOVED}
    old_ids, new_ids = {s.id for s in old.shards}, {s.id for s in new.shards}
    assert added == new_ids - old_ids and removed == old_ids - new_ids
    for shard_id in old_ids & new_ids:
        before, after = old.shard(shard_id), new.shard(shard_id)
        assert before is not None and after is not None
        kinds = {c.kind for c in changes if c.shard == shard_id}
        assert (ChangeKind.MASTER_CHANGED in kinds) == (before.master != after.master)
        assert (ChangeKind.SLOTS_MOVED in kinds) == (before.slot_set() != after.slot_set())
        replicas_changed = set(before.replicas) != set(after.replicas)
        replica_events = kinds & {ChangeKind.REPLICA_ADDED, ChangeKind.REPLICA_REMOVED}
        assert bool(replica_events) == replicas_changed
    for change in changes:
        event = change.to_json()
        assert event["event"] == str(change.kind) and event["shard"] == change.shard


def test_master_changed_json() -> None:
    old = Topology(DeploymentKind.SENTINEL, (Shard("alpha", node(7100), (node(7101),)),))
    new = Topology(DeploymentKind.SENTINEL, (Shard("alpha", node(7101), (node(7100),)),))
    events = [c.to_json() for c in diff(old, new, at=12.5)]
    assert events == [
        {
            "event": "master-changed",
            "shard": "alpha",
            "master": "127.0.0.1:7101",
            "previous": "127.0.0.1:7100",
            "at": 12.5,
        },
        {"event": "replica-added", "shard": "alpha", "replica": "127.0.0.1:7100", "at": 12.5},
        {"event": "replica-removed", "shard": "alpha", "replica": "127.0.0.1:7101", "at": 12.5},
    ]


def test_carry_ids_keeps_the_shard_through_a_promotion() -> None:
    before = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("aaa", node(7200, "aaa1"), (node(7203, "fff3"),), ((0, 99),)),
            Shard("bbb", node(7201, "bbb1"), (node(7204, "ccc4"),), ((100, 199),)),
        ),
    )
    # 7200 died; 7203 took over its slots. Fresh ids are derived from members only.
    fresh = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("fff3", node(7203, "fff3"), (), ((0, 99),)),
            Shard("bbb1", node(7201, "bbb1"), (node(7204, "ccc4"),), ((100, 199),)),
        ),
    )
    carried = carry_ids(before, fresh)
    assert [(s.id, s.master.address.port) for s in carried.shards] == [("aaa", 7203), ("bbb", 7201)]
    assert [c.kind for c in diff(before, carried, 1.0)] == [
        ChangeKind.MASTER_CHANGED,
        ChangeKind.REPLICA_REMOVED,
    ]
    # a brand-new shard keeps its fresh id
    grown = Topology(DeploymentKind.CLUSTER, (*fresh.shards, Shard("ddd1", node(7206, "ddd1"))))
    assert {s.id for s in carry_ids(before, grown).shards} == {"aaa", "bbb", "ddd1"}


def test_carry_ids_through_a_demotion_in_progress() -> None:
    """Mid-failover a view can show the old master with no slots and not yet a replica:
    it is not a new shard, and the shard keeps its id under the promoted master."""
    before = Topology(
        DeploymentKind.CLUSTER,
        (Shard("aaa", node(7200, "aaa1"), (node(7203, "fff3"),), ((0, 99),)),),
    )
    mid = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("aaa1", node(7200, "aaa1")),  # lost its slots
            Shard("fff3", node(7203, "fff3"), (), ((0, 99),)),  # promoted
        ),
    )
    carried = carry_ids(before, mid)
    assert [(s.id, s.master.address.port) for s in carried.shards] == [("aaa", 7203)]
    after = Topology(
        DeploymentKind.CLUSTER,
        (Shard("aaa1", node(7203, "fff3"), (node(7200, "aaa1"),), ((0, 99),)),),
    )
    assert [(s.id, s.master.address.port) for s in carry_ids(carried, after).shards] == [
        ("aaa", 7203)
    ]


def test_carry_ids_follows_slots_and_keeps_emptied_shards() -> None:
    before = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("aaa", node(7200, "a1"), (), ((0, 99),)),
            Shard("bbb", node(7201, "b1"), (), ((100, 199),)),
        ),
    )
    # every slot of aaa migrated to bbb: aaa is still a shard, with no slots
    moved = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("a1", node(7200, "a1")),
            Shard("b1", node(7201, "b1"), (), ((0, 199),)),
        ),
    )
    carried = carry_ids(before, moved)
    assert {(s.id, s.master.address.port) for s in carried.shards} == {("aaa", 7200), ("bbb", 7201)}


def test_a_node_takes_the_controllers_names_for_the_same_shards() -> None:
    """Two views of one cluster, named apart (one watcher once read a partial view and
    derived fresh ids): the names travel as slots + members, and map back by them."""
    controllers = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("aaa", node(7200, "a1"), (node(7203, "a2"),), ((0, 99),)),
            Shard("ccc", node(7202, "c1"), (node(7205, "c2"),), ((100, 199),)),
        ),
    )
    mine = Topology(
        DeploymentKind.CLUSTER,
        (
            Shard("aaa", node(7200, "a1"), (node(7203, "a2"),), ((0, 99),)),
            Shard("c1", node(7205, "c2"), (node(7202, "c1"),), ((100, 199),)),  # failed over
        ),
    )
    names = shard_names(controllers)
    assert names["ccc"] == {"slots": [[100, 199]], "members": ["c1", "c2"]}
    renamed = named_like(mine, names)
    assert {(s.id, s.master.address.port) for s in renamed.shards} == {
        ("aaa", 7200),
        ("ccc", 7205),  # the real view's master, under the controller's name
    }
    assert named_like(renamed, names) == renamed  # already agreeing: nothing changes


def test_a_demoted_master_still_serves_classic_pubsub() -> None:
    """After a CLUSTER FAILOVER the old master is the new master's replica: a classic
    pub/sub task subscribed there stays (node._stays); a node gone from the view does
    not serve."""
    before = Topology(DeploymentKind.CLUSTER, (Shard("b", node(7501), (node(7504),)),))
    after = Topology(DeploymentKind.CLUSTER, (Shard("b", node(7504), (node(7501),)),))
    gone = Topology(DeploymentKind.CLUSTER, (Shard("b", node(7504)),))
    assert serves(before, Address("127.0.0.1", 7501))
    assert serves(after, Address("127.0.0.1", 7501))
    assert not serves(gone, Address("127.0.0.1", 7501))
    assert not serves(after, Address("127.0.0.1", 7999))
    # A new attempt (after a failure) still prefers the master.
    assert candidates(after, "b", any_node=True)[0] == Address("127.0.0.1", 7504)
