from __future__ import annotations

from collections.abc import Generator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--deployment",
        choices=("process", "docker"),
        default="process",
        help="where integration tests get their Redis and ZooKeeper: local processes "
        "(the lab) or containers (compose; needs a Docker engine)",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can dump server logs on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
