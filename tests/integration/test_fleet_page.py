"""The fleet page (``GET /`` on a node's metrics address) in a real browser: headless
chromium, driven through chromedriver, on a real fleet of two ``redis-forwarder run``
processes. The page shows every task with its owner; when the node that does not serve
the page is killed (SIGKILL, by the pid the test started), its tasks show as not running
(or owned by the survivor) within seconds, then running on the survivor. Everything is
read from the page's DOM (its rows' data attributes), which the page redraws by itself.

With ``RF_FLEET_PAGE_SCREENSHOT=path`` the test also saves the settled page there, with
messages flowing (the docs' picture, docs/fleet-page.png)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from redis_forwarder.model import Address
from tests.support.deployments import Deployment
from tests.support.fleet import Fleet, fleet
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = "RF_FLEET_PAGE_SCREENSHOT"
# The fleet's session timeout is 4 s, a stale report 5 s, the page polls every 2 s: a
# takeover shows well within this.
TAKEOVER_SHOWN_WITHIN = 20.0
# One object per task row: its data-* attributes, and the owner cell as the page reads.
TASK_ROWS = """
return Array.from(document.querySelectorAll('#tasks tbody tr[data-task]'),
                  row => Object.assign({ownerText: row.querySelector('td.owner').textContent},
                                       row.dataset));
"""
MEMBER_ROWS = """
return Array.from(document.querySelectorAll('#members tbody tr[data-member]'),
                  row => Object.assign({}, row.dataset));
"""


def no_browser(reason: str) -> None:
    """Locally a machine without chromium skips the test; CI must not pass without it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI runs the fleet page's browser test (scripts/install)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed: pip install -e '.[dev]'")
        raise  # not reached: no_browser fails or skips
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        no_browser(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        pytest.fail(f"chromium ({CHROMIUM}) could not be driven through {CHROMEDRIVER}: {exc}")
    try:
        size_viewport(driver, 1200, 800)
        yield driver
    finally:
        driver.quit()


def size_viewport(driver: WebDriver, width: int, height: int) -> None:
    """The page's own area at ``width`` x ``height`` (a window's size counts its frame)."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])


def free_address() -> str:
    """A loopback port nothing listens on now (the node binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def task_rows(driver: WebDriver) -> dict[str, dict[str, str]]:
    """route@shard -> the row's attributes; read in one script, so that no row is
    replaced (the page redraws every 2 s) between finding it and reading it."""
    rows: list[dict[str, str]] = driver.execute_script(TASK_ROWS)
    return {row["task"]: row for row in rows}


def task_names(f: Fleet) -> set[str]:
    return {f"{t['route']}@{t['shard']}" for t in f.status()["tasks"]}


@contextlib.contextmanager
def publishing(source: Address, routes: list[str]) -> Iterator[None]:
    """Messages on every route's channel while the block runs (the screenshot shows
    rates and last messages, not zeros)."""
    stop = threading.Event()

    def publish() -> None:
        client = redis.Redis(host=source.host, port=source.port, socket_timeout=5)
        while not stop.wait(0.02):
            for route in routes:
                client.publish(route, b"x" * 200)
        client.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_the_page_shows_a_takeover_by_itself(
    shared_deployment: Callable[[str], Deployment], tmp_path: Path, browser: WebDriver
) -> None:
    deployment = shared_deployment("standalone")
    source = deployment.spec.shards[0].master
    screenshot = os.environ.get(SCREENSHOT)
    with fleet(tmp_path, source, deployment.zookeeper_hosts) as f:
        page_address = free_address()
        f.start("n1", metrics=page_address)
        f.start("n2", metrics=free_address())
        owners, _standbys = f.wait_settled({"n1", "n2"})
        names = task_names(f)
        browser.get(f"http://{page_address}/")

        def settled_on_page() -> bool:
            rows = task_rows(browser)
            return set(rows) == names and all(
                row["owner"] == owners[row["task"].partition("@")[0]]
                and row["running"] == "true"
                and row["standbyReady"] == "true"
                and row["severity"] == "ok"
                for row in rows.values()
            )

        wait_until(settled_on_page, "the page shows every task running on its owner", 20)
        members = browser.execute_script(MEMBER_ROWS)
        assert {m["member"]: m["health"] for m in members} == {
            "n1": "reporting",
            "n2": "reporting",
        }
        assert browser.find_element("id", "freshness").get_attribute("data-state") == "ok"
        if screenshot:
            save_picture(browser, f, source, Path(screenshot))
        victims = {name for name in names if owners[name.partition("@")[0]] == "n2"}
        assert victims, f"n2 owns nothing to take over: {owners}"
        f.nodes["n2"].signal(signal.SIGKILL)

        def gone_from_victim() -> bool:
            rows = task_rows(browser)
            return all(rows[v]["running"] == "false" or rows[v]["owner"] != "n2" for v in victims)

        wait_until(gone_from_victim, "n2's tasks shown as not running", TAKEOVER_SHOWN_WITHIN)

        def all_on_survivor() -> bool:
            rows = task_rows(browser)
            return set(rows) == names and all(
                row["owner"] == "n1" and row["running"] == "true" and row["ownerText"] == "n1"
                for row in rows.values()
            )

        wait_until(all_on_survivor, "every task running on n1", TAKEOVER_SHOWN_WITHIN)
        wait_until(
            lambda: [m["member"] for m in browser.execute_script(MEMBER_ROWS)] == ["n1"],
            "n2 gone from the members",
            TAKEOVER_SHOWN_WITHIN,
        )


def save_picture(driver: WebDriver, f: Fleet, source: Address, path: Path) -> None:
    """The settled page with messages flowing and the standbys' rings a few seconds
    deep: the docs' picture."""

    def flowing() -> bool:
        tasks = f.status()["tasks"]
        return all(
            t["rate"] > 0 and (t["standby_ring"] or {}).get("ring_seconds", 0) >= 5 for t in tasks
        )

    with publishing(source, f.routes):
        wait_until(flowing, "messages flowing on every task, its standby's ring 5 s deep", 30)
        wait_until(lambda: _rates_shown(driver), "rates on the page", 10)
        assert driver.save_screenshot(str(path)), path


def _rates_shown(driver: WebDriver) -> bool:
    cells: list[Any] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#tasks td.rate'), c => c.textContent)"
    )
    return bool(cells) and all(c not in ("\u2013", "0.0") for c in cells)  # an en dash: none
