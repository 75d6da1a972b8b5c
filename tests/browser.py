"""A real headless Chromium (Debian's chromium + chromium-driver, driven by selenium) for the report tests."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def chromium_or_skip():
    """Chromium's path; missing, the test skips on a workstation but fails in CI (CI installs it: .ci/run)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium and Path(CHROMEDRIVER).exists():
        return chromium
    message = "chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Page:
    """One report opened in headless Chromium: the load time, the DOM, and the console's errors."""

    def __init__(self, path: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium_or_skip()
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        started = time.perf_counter()
        self.driver.get(path.resolve().as_uri())
        # pytest-html renders the results table from its JSON after load: wait for its rows
        self.wait(lambda d: d.execute_script("return document.querySelectorAll('#results-table tbody').length") > 0)
        self.load_seconds = time.perf_counter() - started

    def wait(self, condition, timeout: float = 60):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(condition)

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def close(self):
        self.driver.quit()


@pytest.fixture
def browser():
    pages = []

    def open_page(path: Path) -> Page:
        pages.append(Page(path))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()
