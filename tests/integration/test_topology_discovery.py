"""Discovery against each shipped deployment, the CLI's JSON, and bad seeds: clear
typed errors, never a traceback, never a password in the output."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_forwarder.errors import (
    AuthenticationError,
    UnknownMasterError,
    UnreachableError,
    WrongServerError,
)
from redis_forwarder.lab.spec import settings_from_spec
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.settings import Credentials
from redis_forwarder.topology import DeploymentSettings, discover, key_slot
from tests.support.cli import run_cli
from tests.support.commands import command
from tests.support.deployments import Deployment

pytestmark = pytest.mark.integration
Shared = Callable[[str], Deployment]


def test_sentinel_shards_are_the_master_names(shared_deployment: Shared) -> None:
    deployment = shared_deployment("sentinel")
    found = discover(settings_from_spec(deployment.spec))
    assert found.kind is DeploymentKind.SENTINEL
    assert [s.id for s in found.shards] == ["alpha", "beta"]
    for shard, spec_shard in zip(found.shards, deployment.spec.shards, strict=True):
        assert shard.master.address == spec_shard.master
        assert {r.address for r in shard.replicas} == set(spec_shard.replicas)
        assert shard.slots == ()
        assert "ROLE confirms master" in shard.learned


def test_cluster_shards_have_masters_replicas_and_slots(shared_deployment: Shared) -> None:
    deployment = shared_deployment("cluster")
    found = discover(settings_from_spec(deployment.spec))
    expected = deployment.spec.slot_ranges()
    by_master = {s.master.address: s for s in found.shards}
    assert len(found.shards) == 3
    for spec_shard in deployment.spec.shards:
        shard = by_master[spec_shard.master]
        assert [r.address for r in shard.replicas] == list(spec_shard.replicas)
        assert shard.slots == expected[spec_shard.name]
        assert len(shard.id) == 12 and shard.master.node_id
    # any one seed is enough, and the answer is the same
    for seed in deployment.redis_nodes:
        again = discover(DeploymentSettings(DeploymentKind.CLUSTER, (seed,)))
        assert again == found


def test_standalone_is_one_shard(shared_deployment: Shared) -> None:
    deployment = shared_deployment("standalone")
    found = discover(settings_from_spec(deployment.spec))
    assert [(s.id, s.master.address) for s in found.shards] == [
        (str(deployment.spec.shards[0].master), deployment.spec.shards[0].master)
    ]


def test_cli_json_shape(shared_deployment: Shared) -> None:
    cluster = shared_deployment("cluster")
    seed = str(cluster.redis_nodes[0])
    out = run_cli("topology", "--cluster", seed, "--json")
    assert out.code == 0, out.stderr
    data = out.json()
    assert data["kind"] == "cluster"
    assert set(data["shards"][0]) == {"id", "master", "replicas", "slots", "learned"}
    assert sum(b - a + 1 for s in data["shards"] for a, b in s["slots"]) == 16384
    sentinel = shared_deployment("sentinel")
    args = [f"--sentinel={a}" for a in sentinel.sentinels] + ["--master=alpha", "--master=beta"]
    out = run_cli("topology", *args, "--json")
    assert out.code == 0, out.stderr
    shards = out.json()["shards"]
    assert [s["id"] for s in shards] == ["alpha", "beta"]
    assert "slots" not in shards[0]
    assert shards[0]["master"] == str(sentinel.spec.shards[0].master)


def test_sentinel_errors(shared_deployment: Shared) -> None:
    sentinel = shared_deployment("sentinel")
    standalone = shared_deployment("standalone")
    with pytest.raises(UnknownMasterError, match="'nope'"):
        discover(DeploymentSettings(DeploymentKind.SENTINEL, tuple(sentinel.sentinels), ("nope",)))
    server = standalone.spec.shards[0].master
    with pytest.raises(WrongServerError, match="is not a sentinel"):
        discover(DeploymentSettings(DeploymentKind.SENTINEL, (server,), ("alpha",)))
    closed = Address(server.host, 1)
    with pytest.raises(UnreachableError) as caught:
        discover(DeploymentSettings(DeploymentKind.SENTINEL, (closed,), ("alpha",)))
    assert str(closed) in str(caught.value)
    # one unreachable sentinel among good ones is tolerated
    mixed = (closed, *sentinel.sentinels)
    found = discover(DeploymentSettings(DeploymentKind.SENTINEL, mixed, ("alpha",)))
    assert found.shards[0].master.address == sentinel.spec.shards[0].master


def test_seed_of_the_wrong_kind(shared_deployment: Shared) -> None:
    standalone = shared_deployment("standalone").spec.shards[0].master
    cluster_node = shared_deployment("cluster").redis_nodes[0]
    sentinel = shared_deployment("sentinel").sentinels[0]
    with pytest.raises(WrongServerError, match="cluster support disabled"):
        discover(DeploymentSettings(DeploymentKind.CLUSTER, (standalone,)))
    with pytest.raises(WrongServerError, match="is a Redis Cluster node"):
        discover(DeploymentSettings(DeploymentKind.STANDALONE, (cluster_node,)))
    with pytest.raises(WrongServerError, match="is a sentinel"):
        discover(DeploymentSettings(DeploymentKind.STANDALONE, (sentinel,)))
    result = run_cli("topology", "--cluster", str(standalone))
    assert result.code == 5 and "use kind = standalone" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_cli_exit_code(shared_deployment: Shared) -> None:
    host = shared_deployment("standalone").spec.shards[0].master.host
    result = run_cli("topology", "--cluster", f"{host}:1", "--timeout", "0.5")
    assert result.code == 5
    assert f"{host}:1" in result.stderr and "no cluster node answered" in result.stderr


def test_a_name_that_does_not_resolve_is_named() -> None:
    """A seed's DNS name does not resolve (.invalid never does): an error naming the
    name and why, exit 5."""
    alone = run_cli("topology", "--standalone", "redis.does-not-exist.invalid:7000")
    assert alone.code == 5 and "redis.does-not-exist.invalid:7000" in alone.stderr
    assert "not known" in alone.stderr or "resolution" in alone.stderr, alone.stderr
    assert "Traceback" not in alone.stderr


def test_wrong_password(fresh_deployment: Callable[[str], Deployment]) -> None:
    deployment = fresh_deployment("standalone")
    server = deployment.spec.shards[0].master
    secret = "s3cret-do-not-print"
    admin = redis.Redis(host=server.host, port=server.port)
    admin.config_set("requirepass", secret)
    base = DeploymentSettings(DeploymentKind.STANDALONE, (server,))
    for wrong in (Credentials(), Credentials(password="wrong-password-x")):
        with pytest.raises(AuthenticationError, match="refused our credentials") as caught:
            discover(DeploymentSettings(base.kind, base.addresses, redis=wrong))
        assert "wrong-password-x" not in str(caught.value)
    good = discover(
        DeploymentSettings(base.kind, base.addresses, redis=Credentials(password=secret))
    )
    assert good.shards[0].master.address == server
    result = run_cli(
        "topology",
        "--standalone",
        str(server),
        "--password-env",
        "FWD_TEST_PASSWORD",
        FWD_TEST_PASSWORD="wrong-password-x",
    )
    assert result.code == 5 and "refused our credentials" in result.stderr
    assert "wrong-password-x" not in result.stderr + result.stdout
    ok = run_cli(
        "topology",
        "--standalone",
        str(server),
        "--password-env",
        "FWD_TEST_PASSWORD",
        "--json",
        FWD_TEST_PASSWORD=secret,
    )
    assert ok.code == 0 and secret not in ok.stdout + ok.stderr


@settings(max_examples=200, deadline=None)
@given(
    key=st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda a, t, b: a + b"{" + t + b"}" + b,
            st.binary(max_size=8),
            st.binary(max_size=8),
            st.binary(max_size=8),
        ),
    )
)
def test_key_slot_matches_cluster_keyslot(key: bytes, shared_deployment: Shared) -> None:
    node = shared_deployment("cluster").redis_nodes[0]
    client = redis.Redis(host=node.host, port=node.port)
    assert key_slot(key) == command(client, "CLUSTER", "KEYSLOT", key)


def test_sentinel_password_is_separate(fresh_deployment: Callable[[str], Deployment]) -> None:
    """Sentinels with a password of their own; Redis nodes without one."""
    deployment = fresh_deployment("sentinel")
    secret = "sentinel-secret-x"
    for sentinel in deployment.sentinels:
        command(
            redis.Redis(host=sentinel.host, port=sentinel.port),
            "ACL",
            "SETUSER",
            "default",
            "resetpass",
            f">{secret}",
        )
    base = settings_from_spec(deployment.spec)
    with pytest.raises(AuthenticationError, match="sentinel username and password"):
        discover(base)
    wrong_side = DeploymentSettings(
        base.kind, base.addresses, base.masters, redis=Credentials(password=secret)
    )
    with pytest.raises(AuthenticationError):
        discover(wrong_side)
    good = DeploymentSettings(
        base.kind, base.addresses, base.masters, sentinel=Credentials(password=secret)
    )
    assert [s.id for s in discover(good).shards] == ["alpha", "beta"]
    args = [f"--sentinel={a}" for a in deployment.sentinels] + ["--master=alpha", "--master=beta"]
    result = run_cli(
        "topology", *args, "--sentinel-password-env", "FWD_SENTINEL", "--json", FWD_SENTINEL=secret
    )
    assert result.code == 0, result.stderr
    assert secret not in result.stdout + result.stderr
