"""compose/ is generated from the topology specs: each file equals what `redis-forwarder
lab compose` makes of its spec, and validates against the Compose specification's
schema (tests/data, with its provenance)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from redis_forwarder.lab.compose import compose_document
from redis_forwarder.lab.spec import load_spec
from tests.support.cli import run_cli
from tests.support.deployments import REPO, SHIPPED_SPECS, SPECS

COMPOSE = REPO / "compose"
SCHEMA = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
GENERATED = [name for name in SHIPPED_SPECS if not load_spec(SPECS / f"{name}.toml").redis.tls]


@pytest.mark.parametrize("name", GENERATED)
def test_compose_files_are_what_the_command_generates(name: str) -> None:
    result = run_cli("lab", "compose", f"topology/{name}.toml", cwd=REPO)
    assert result.code == 0, result.stderr
    assert (COMPOSE / f"{name}.yaml").read_text() == result.stdout, (
        f"compose/{name}.yaml is stale: run `redis-forwarder lab compose "
        f"topology/{name}.toml -o compose/{name}.yaml`"
    )


@pytest.mark.parametrize("name", GENERATED)
def test_compose_files_validate_and_mirror_the_spec(name: str) -> None:
    document = yaml.safe_load((COMPOSE / f"{name}.yaml").read_text())
    # The schema names draft 7 by an address jsonschema does not know: say it here.
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    spec = load_spec(SPECS / f"{name}.toml")
    assert document == compose_document(spec, (SPECS / f"{name}.toml").read_text())
    services = document["services"]
    assert all(s["network_mode"] == "host" for s in services.values())
    for shard in spec.shards:
        assert f"{shard.name}-master" in services
    forwarders = [n.id for n in spec.forwarders.nodes] if spec.forwarders else []
    for node in forwarders:
        assert services[node]["build"]["context"] == ".."
        assert "--node-id" in services[node]["command"]
    if spec.kind == "cluster":
        assert services["cluster-init"]["command"][:2] == ["lab", "form-cluster"]


def test_a_tls_spec_is_refused_with_a_reason() -> None:
    result = run_cli("lab", "compose", "topology/tls.toml", cwd=REPO)
    assert result.code == 2 and "TLS" in result.stderr


def test_the_dockerfile_runs_as_a_user_and_checks_health() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER forwarder" in dockerfile and "HEALTHCHECK" in dockerfile
    assert 'ENTRYPOINT ["redis-forwarder"]' in dockerfile
