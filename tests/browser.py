"""A real headless Chromium for the dashboard's browser tests, found on the machine or
installed with apt (Debian's ``chromium`` and ``chromium-driver``) when the tests run as
root on a machine without it, as tests/pg.py does for PostgreSQL. No browser is ever
downloaded by a client library: Selenium is pointed at the system's binaries, so its
own driver manager never runs.

Chromium starts with a fresh profile and every background service off (the machine's
network is closed: nothing may try to phone home and stall a page load).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

INSTALL_TIMEOUT = 900
PACKAGES = ["chromium", "chromium-driver"]
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
]


class BrowserUnavailable(Exception):
    """Why no browser could be started (the tests skip with this reason, loudly)."""


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _install() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BrowserUnavailable(
            "chromium and chromium-driver are missing and cannot be installed here "
            "(not root, or no apt-get): install the Debian packages 'chromium' and "
            "'chromium-driver'"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise BrowserUnavailable(f"{' '.join(command)} failed: {result.stderr[-500:]}")


def binaries() -> tuple[str, str]:
    """The Chromium and chromedriver executables, installed first if need be."""
    found = _binaries()
    if found is None:
        _install()
        found = _binaries()
        if found is None:
            raise BrowserUnavailable("apt installed chromium but chromium/chromedriver are missing")
    return found


def start_browser(profile: Path | None = None) -> Chrome:
    """A headless Chromium under chromedriver, logging the page's console."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # the test extra was not installed
        raise BrowserUnavailable(f"selenium is not installed: {exc}") from None
    browser, driver = binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    directory = profile or Path(tempfile.mkdtemp(prefix="kontext-chromium-"))
    options.add_argument(f"--user-data-dir={directory}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Installed but failing to start is a failure of the test run, not a reason to skip.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
