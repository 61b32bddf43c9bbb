"""The dashboard in a real headless Chromium (tests/browser.py), served by a real
``kontext-bot run`` on a seeded database: the chart's marks against the ledger, the user
page against ``kontext-bot credits show``, the 401 path, and no console errors. A
screenshot of each page is saved (``KONTEXT_ARTIFACTS`` or the test's temporary
directory; the path is printed) for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import BrowserUnavailable, start_browser
from tests.support import HANG_GUARD_SECONDS, ROOT, SeededLedger, seed_dashboard

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

PASSWORD = "browser-test-password"
Site = tuple[str, SeededLedger, dict[str, str]]  # the URL, what was seeded, the environment
ALICE = "slack:T1:UALICE"


def bot_environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    env.update(
        KONTEXT_STORAGE__URL=f"sqlite:///{tmp / 'kontext.db'}",
        KONTEXT_STORAGE__DATA_DIR=str(tmp / "data"),
        # Nothing to run (every seeded job is finished): the provider is never called.
        KONTEXT_PROVIDER__BASE_URL="http://127.0.0.1:9",
        KONTEXT_PROVIDER__API_KEY="cdt_test_key_0123456789abcdef",
        KONTEXT_DASHBOARD__ENABLED="true",
        KONTEXT_DASHBOARD__PORT="0",
        KONTEXT_DASHBOARD__PASSWORD=PASSWORD,
        KONTEXT_CREDITS__BUDGET="1000",  # daily, so the gauge shows today's spend
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, SeededLedger, dict[str, str]]]:
    """``kontext-bot run`` with the dashboard on a database seeded up to now; its URL."""
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    env = bot_environment(tmp)
    subprocess.run(
        [sys.executable, "-m", "bot.cli", "migrate"],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        timeout=HANG_GUARD_SECONDS,
    )
    seeded = asyncio.run(seed_dashboard(env["KONTEXT_STORAGE__URL"], time.time()))
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert bot.stderr is not None
    port = None
    lines: list[str] = []
    # The bot says where it listens (port 0 picked a free one); reading its log line by
    # line waits on the event itself. The guard only ends a hang.
    guard = threading.Timer(HANG_GUARD_SECONDS, bot.kill)
    guard.start()
    for line in bot.stderr:
        lines.append(line)
        found = re.search(r"dashboard listening.*port=(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    guard.cancel()
    assert port is not None, "".join(lines)
    drain = threading.Thread(target=lambda: [None for _ in bot.stderr or ()], daemon=True)
    drain.start()
    try:
        yield f"http://127.0.0.1:{port}", seeded, env
    finally:
        bot.terminate()
        bot.wait(timeout=HANG_GUARD_SECONDS)
        drain.join(timeout=HANG_GUARD_SECONDS)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    try:
        driver = start_browser(tmp_path_factory.mktemp("chromium-profile"))
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless Chromium: {exc}")
    driver.set_page_load_timeout(HANG_GUARD_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("KONTEXT_ARTIFACTS")
    directory = Path(wanted) if wanted else tmp_path_factory.mktemp("artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def authorise(driver: Chrome, password: str | None) -> None:
    """Send (or stop sending) the Basic credentials with every request of the browser."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def visit(driver: Chrome, url: str, artifacts: Path, name: str) -> list[dict[str, Any]]:
    """Open a page, save its screenshot, and return what the console said meanwhile."""
    driver.get_log("browser")  # what earlier pages said is theirs
    driver.set_window_size(1280, 800)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(int(height) + 120, 600))
    shot = artifacts / f"dashboard-{name}.png"
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    return list(driver.get_log("browser"))


def errors(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log if entry.get("level") in ("SEVERE", "ERROR")]


def test_overview_chart_matches_the_ledger(site: Site, browser: Chrome, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    url, seeded, _ = site
    authorise(browser, PASSWORD)
    log = visit(browser, url + "/", artifacts, "overview")
    assert errors(log) == []
    marks = browser.find_elements(By.CSS_SELECTOR, "svg#spend-chart g.day")
    shown = {m.get_attribute("data-day"): int(m.get_attribute("data-total") or 0) for m in marks}
    assert shown == seeded.spend_per_day()
    assert len(marks) >= 15
    for mark in marks:
        # Each mark is drawn: its segments add up to its total, and it has a height.
        segments = mark.find_elements(By.CSS_SELECTOR, "rect.segment")
        values = [int(s.get_attribute("data-value") or 0) for s in segments]
        assert sum(values) == int(mark.get_attribute("data-total") or 0)
        assert all(s.rect["height"] > 0 for s in segments)
    # The shared budget's gauge: today's spend (the period is daily) of 1000 credits.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    used = seeded.spend_per_day().get(today, 0)
    gauge = browser.find_elements(By.CSS_SELECTOR, "svg#budget-gauge rect")
    assert [float(r.get_attribute("width") or 0) for r in gauge] == [600, min(used, 1000) * 0.6]
    # Every page is linked from the overview.
    links = {a.get_attribute("href") for a in browser.find_elements(By.TAG_NAME, "a")}
    for path in ["/jobs", "/users/", "/ledger.csv"]:
        assert any(link and path in link for link in links), path
    # The page's only stylesheet came from the bot itself.
    sheets = browser.find_elements(By.CSS_SELECTOR, "link[rel=stylesheet]")
    assert [s.get_attribute("href") for s in sheets] == [url + "/static/dashboard.css"]
    header = browser.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(38, 50, 56, 1)"


def test_user_page_matches_credits_show(site: Site, browser: Chrome, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    url, _, env = site
    authorise(browser, PASSWORD)
    log = visit(browser, f"{url}/users/{ALICE}", artifacts, "user")
    assert errors(log) == []
    shown = subprocess.run(
        [sys.executable, "-m", "bot.cli", "credits", "show", ALICE, "--history", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        check=True,
    ).stdout.splitlines()
    text = {
        key: browser.find_element(By.ID, key).text
        for key in ["balance", "images-left", "allowance", "active"]
    }
    assert shown[0] == f"{ALICE}: {text['balance']}"
    assert shown[1] == f"  images left: {text['images-left']}"
    assert shown[2] == f"  next allowance: {text['allowance'].replace(', next', '')}"
    assert shown[3] == f"  jobs running: {text['active']}"
    cli_entries = [
        re.match(r"\s+#(\d+) (\w+)\s+([+-]\d+)", line).groups()  # type: ignore[union-attr]
        for line in shown[5:]
    ]
    rows = browser.find_elements(By.CSS_SELECTOR, "table#ledger tbody tr")
    page_entries = [
        tuple(cell.text for cell in row.find_elements(By.TAG_NAME, "td"))[:4] for row in rows
    ]
    assert [(i, k, a) for i, _, k, a in page_entries] == cli_entries
    assert len(cli_entries) > 5


def test_jobs_page_and_filter(site: Site, browser: Chrome, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, seeded, _ = site
    authorise(browser, PASSWORD)
    log = visit(browser, url + "/jobs", artifacts, "jobs")
    assert errors(log) == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.job")) == len(seeded.jobs)
    # The filter form is plain HTML: choose "failed" and submit.
    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    # A click does not wait for the navigation it starts: wait for the filtered page.
    WebDriverWait(browser, HANG_GUARD_SECONDS).until(
        lambda driver: (
            "state=failed" in driver.current_url
            and driver.execute_script("return document.readyState") == "complete"
        )
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.job")
    assert len(rows) == sum(1 for j in seeded.jobs if j["state"] == "failed")
    assert all(row.find_elements(By.CSS_SELECTOR, ".reason") for row in rows)
    assert browser.current_url.endswith("state=failed&platform=&user=")
    # The prompt is shown as the text the user wrote, markup and all.
    prompts = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "td.prompt")]
    assert any(p.startswith('<script>alert("x")</script>') for p in prompts)
    assert errors(list(browser.get_log("browser"))) == []


def test_without_the_password_the_browser_gets_401_and_nothing(
    site: Site, browser: Chrome, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, _, _ = site
    authorise(browser, None)
    try:
        log = visit(browser, url + "/", artifacts, "unauthorized")
        assert browser.find_element(By.TAG_NAME, "body").text == ""
        assert browser.find_elements(By.TAG_NAME, "svg") == []
        assert any("401" in str(entry.get("message")) for entry in errors(log)), log
        authorise(browser, "wrong password")
        log = visit(browser, url + "/jobs", artifacts, "wrong-password")
        assert browser.find_elements(By.CSS_SELECTOR, "tr.job") == []
        assert any("401" in str(entry.get("message")) for entry in errors(log)), log
    finally:
        authorise(browser, PASSWORD)
