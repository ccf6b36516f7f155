"""A broker process with its console, and one headless Chromium per module.

The browser is Debian's ``chromium`` driven through Debian's
``chromium-driver`` by selenium (``make test`` and ``.ci/run`` install both
where missing). One browser session serves every test of a module: starting
Chromium is the slow part. Screenshots go to the module's tmp directory, and
also to ``$CONSOLE_SCREENSHOTS`` when set (how docs/console/ is
refreshed).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import BrokerProcess
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
_CONSOLE = re.compile(r"serving the console address=(\S+)")


class ConsoleBroker(BrokerProcess):
    """A broker process started with ``--console 127.0.0.1:0``."""

    def __init__(self, data_dir: Path, *args: str, **kw: Any) -> None:
        super().__init__(data_dir, "--console", "127.0.0.1:0", *args, **kw)

    @property
    def console(self) -> str:
        for line in self.log_lines:
            m = _CONSOLE.search(line)
            if m:
                return "http://" + m.group(1)
        raise AssertionError("the broker logged no console address:\n" + "\n".join(self.log_lines))


def open_browser() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (then return it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Shots:
    """Screenshots of pages, saved as PNG."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.extra = os.environ.get("CONSOLE_SCREENSHOTS")

    def take(self, driver: WebDriver, name: str) -> Path:
        path = self.directory / f"{name}.png"
        # the whole page: grow the window to the document's height
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height), 700), 2400))
        assert driver.save_screenshot(str(path))
        driver.set_window_size(1280, 1000)
        assert path.stat().st_size > 1000
        if self.extra:
            Path(self.extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.extra) / path.name)
        return path


def text_of(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text
