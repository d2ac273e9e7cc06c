from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.deployments import (
    Deployment,
    DeploymentProvider,
    DockerProvider,
    ProcessProvider,
    docker_engine_problem,
)

LOG_TAIL = 30


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With --deployment=docker the integration tests run on containers; where no
    Docker engine answers, those runs are skipped (saying why) and each test runs on
    the process provider instead."""
    if "provider" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("--deployment") != "docker":
        return  # the default: processes, without a parameter in the test ids
    names = ["docker"] if not _engine_problem() else ["docker", "process"]
    metafunc.parametrize("provider", names, indirect=True, scope="session")


@functools.cache
def _engine_problem() -> str:
    return docker_engine_problem()


@pytest.fixture(scope="session")
def provider(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DeploymentProvider:
    choice = getattr(request, "param", "process")
    if choice == "docker":
        if _engine_problem():
            pytest.skip(f"--deployment=docker: {_engine_problem()}; ran on processes instead")
        command = request.getfixturevalue("docker_compose_command")  # pytest-docker's
        return DockerProvider(command, f"rf-test-{os.getpid()}")
    return ProcessProvider(tmp_path_factory.mktemp("labs"))


_live: list[Deployment] = []


@pytest.fixture(scope="session")
def shared_deployment(provider: DeploymentProvider) -> Iterator[Callable[[str], Deployment]]:
    """A deployment per spec, started once and shared by the tests that only read it."""
    started: dict[str, Deployment] = {}

    def get(spec_name: str) -> Deployment:
        if spec_name not in started:
            started[spec_name] = provider.up(spec_name)
            _live.append(started[spec_name])
        return started[spec_name]

    yield get
    for deployment in started.values():
        _live.remove(deployment)
        provider.down(deployment)


@pytest.fixture
def fresh_deployment(provider: DeploymentProvider) -> Iterator[Callable[[str], Deployment]]:
    """A deployment of the test's own, for tests that change or break it."""
    started: list[Deployment] = []

    def get(spec_name: str) -> Deployment:
        deployment = provider.up(spec_name)
        started.append(deployment)
        _live.append(deployment)
        return deployment

    yield get
    for deployment in started:
        _live.remove(deployment)
        provider.down(deployment)


@pytest.fixture(autouse=True)
def _dump_server_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    for deployment in _live:
        for log in deployment.log_files():
            lines = Path(log).read_text(errors="replace").splitlines()[-LOG_TAIL:]
            print(f"----- {deployment.name}: {log.name} (last {LOG_TAIL} lines)")
            print("\n".join(lines))
