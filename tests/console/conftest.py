from __future__ import annotations

import pytest
from console_helpers import Shots, open_browser


@pytest.fixture(scope="module")
def browser():
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return Shots(tmp_path_factory.mktemp("screenshots"))
