"""What the lab would start for a spec: config files and command lines. Pure."""

from __future__ import annotations

from pathlib import Path

from redis_forwarder.lab.binaries import Binaries
from redis_forwarder.lab.plan import STOP_ORDER, ProcessKind, plan_processes
from redis_forwarder.lab.spec import load_spec, parse_spec
from tests.support.deployments import SPECS

BINARIES = Binaries("/bin/redis-server", "/bin/redis-sentinel", "/bin/java", "/zk.jar")
LAB = Path("/lab")


def config(plan_files: tuple[tuple[str, str], ...], name: str) -> list[str]:
    return dict(plan_files)[name].splitlines()


def test_sentinel_plan_order_names_and_configs() -> None:
    plans = plan_processes(load_spec(SPECS / "sentinel.toml"), LAB, BINARIES)
    assert [p.kind for p in plans] == (
        [ProcessKind.ZOOKEEPER] + [ProcessKind.REDIS] * 6 + [ProcessKind.SENTINEL] * 3
    )
    names = [p.name for p in plans]
    assert len(set(names)) == len(names)
    replica = next(p for p in plans if p.name == "alpha-replica-1")
    lines = config(replica.files, "redis.conf")
    assert "replicaof 127.0.0.1 7100" in lines
    # announced as itself, not as the kernel's default loopback source address
    assert "replica-announce-ip 127.0.0.1" in lines and "bind-source-addr 127.0.0.1" in lines
    assert 'save ""' in lines and "appendonly no" in lines
    assert replica.argv == ("/bin/redis-server", "/lab/data/alpha-replica-1/redis.conf")
    sentinel = next(p for p in plans if p.name == "sentinel-2")
    lines = config(sentinel.files, "sentinel.conf")
    assert "sentinel monitor alpha 127.0.0.1 7100 2" in lines
    assert "sentinel monitor beta 127.0.0.1 7110 2" in lines
    assert "sentinel down-after-milliseconds beta 1000" in lines


def test_cluster_plan_enables_cluster_mode_without_replicaof() -> None:
    plans = plan_processes(load_spec(SPECS / "cluster.toml"), LAB, BINARIES)
    for plan in (p for p in plans if p.kind is ProcessKind.REDIS):
        lines = config(plan.files, "redis.conf")
        assert "cluster-enabled yes" in lines
        assert "cluster-node-timeout 2000" in lines
        assert not any(line.startswith("replicaof") for line in lines)


def test_zookeeper_ensemble_plan() -> None:
    plans = [
        p
        for p in plan_processes(load_spec(SPECS / "zk-ensemble.toml"), LAB, BINARIES)
        if p.kind is ProcessKind.ZOOKEEPER
    ]
    assert [dict(p.files)["myid"] for p in plans] == ["1\n", "2\n", "3\n"]
    lines = config(plans[1].files, "zoo.cfg")
    assert "clientPort=2331" in lines and "clientPortAddress=127.0.0.1" in lines
    assert "server.1=127.0.0.1:3330:4330" in lines and "server.3=127.0.0.1:3332:4332" in lines
    assert "admin.enableServer=false" in lines
    assert plans[0].argv[0] == "/bin/java" and "/zk.jar" in plans[0].argv


def test_single_zookeeper_has_no_server_lines() -> None:
    plans = plan_processes(load_spec(SPECS / "standalone.toml"), LAB, BINARIES)
    zookeeper = next(p for p in plans if p.kind is ProcessKind.ZOOKEEPER)
    assert not any(line.startswith("server.") for line in config(zookeeper.files, "zoo.cfg"))


def test_setting_values_are_quoted_for_redis() -> None:
    spec = parse_spec(
        'name = "q"\nkind = "standalone"\n[[shard]]\nname = "m"\nmaster = "127.0.0.1:7000"\n'
        '[redis.settings]\nsave = ""\nlazyfree-lazy-eviction = true\nmaxmemory = 1000\n'
        'notify-keyspace-events = "K E"\n'
    )
    lines = config(plan_processes(spec, LAB, BINARIES)[0].files, "redis.conf")
    assert 'save ""' in lines
    assert "lazyfree-lazy-eviction yes" in lines
    assert "maxmemory 1000" in lines
    assert 'notify-keyspace-events "K E"' in lines


def test_forwarders_stop_first_then_sentinels_and_zookeeper_last() -> None:
    # Prometheus before them all: it would only alert on what the lab stops.
    assert STOP_ORDER[:3] == (ProcessKind.PROMETHEUS, ProcessKind.FORWARDER, ProcessKind.SENTINEL)
    assert STOP_ORDER[-1] is ProcessKind.ZOOKEEPER


def test_the_labs_prometheus_scrapes_every_node_with_the_shipped_rules(tmp_path: Path) -> None:
    import json

    from redis_forwarder.lab.monitoring import shipped_rules

    spec = load_spec(SPECS / "monitoring.toml")
    binaries = Binaries("redis-server", "", "java", "zk.jar", "/usr/bin/prometheus")
    (plan,) = [p for p in plan_processes(spec, tmp_path, binaries) if p.kind == "prometheus"]
    files = dict(plan.files)
    config = json.loads(files["prometheus.yml"])  # JSON is YAML
    assert config["rule_files"] == ["alerts.yml"]  # beside it: the lab's and compose's
    assert files["alerts.yml"] == shipped_rules()
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "redis-forwarder"  # the job ForwarderNodeDown selects
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9500", "127.0.0.1:9501"]
    assert config["global"]["evaluation_interval"] == "1000ms"
    assert plan.argv[0] == "/usr/bin/prometheus"
    assert "--web.listen-address=127.0.0.1:9590" in plan.argv


def test_forwarder_nodes_get_a_config_the_forwarder_accepts(tmp_path: Path) -> None:
    from redis_forwarder.config import load_config

    spec = load_spec(SPECS / "ha.toml")
    plans = plan_processes(spec, LAB, BINARIES)
    forwarders = [p for p in plans if p.kind is ProcessKind.FORWARDER]
    assert [p.name for p in forwarders] == ["fwd-1", "fwd-2", "fwd-3"]
    assert plans[-3:] == forwarders  # started last
    node = forwarders[1]
    assert node.argv[-4:] == ("--config", "/lab/data/fwd-2/forwarder.toml", "--node-id", "fwd-2")
    written = tmp_path / "forwarder.toml"
    written.write_text(dict(node.files)["forwarder.toml"])
    config = load_config(written)  # what `run` will read
    assert config.coordination is not None
    assert config.coordination.zookeeper == "127.0.0.1:2340,127.0.0.1:2341,127.0.0.1:2342"
    assert config.source.masters == ["alpha", "beta"]
    assert str(config.node.metrics) == "127.0.0.1:9471"
    assert [r.name for r in config.routes] == ["orders", "audit", "drill", "drill-streams"]


def test_a_sink_is_a_plain_server_beside_a_cluster(tmp_path: Path) -> None:
    from redis_forwarder.config import load_config

    spec = load_spec(SPECS / "ha-cluster.toml")
    plans = plan_processes(spec, LAB, BINARIES)
    (sink,) = [p for p in plans if p.role == "sink"]
    assert sink.name == "sink-sink" and sink.kind is ProcessKind.REDIS and sink.shard is None
    assert not any(line.startswith("cluster-") for line in config(sink.files, "redis.conf"))
    node = next(p for p in plans if p.kind is ProcessKind.FORWARDER)
    written = tmp_path / "forwarder.toml"
    written.write_text(dict(node.files)["forwarder.toml"])
    config_ = load_config(written)
    assert config_.targets["sink"].addresses == ["127.0.0.1:7520"]
    assert {r.to.target for r in config_.routes} == {"sink"}
