"""Fixtures of the dashboard tests: a live server per test and one headless Chromium."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Live, config, nodes_from_inventory, serve

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through chromedriver; its profile is removed afterwards."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs apt packages chromium and chromium-driver (make test-deps)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415 - after the skip

    profile = tempfile.mkdtemp(prefix="brt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def bigpi(tmp_path: Path) -> Iterator[Live]:
    """A server with the 1,050 Pis of inventory/bigpi, anonymous read allowed."""
    yield from serve(config(tmp_path, nodes_from_inventory("bigpi")))


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Live]:
    """A server with the 4-Pi desk cluster (synthetic MACs), anonymous read allowed."""
    yield from serve(config(tmp_path, nodes_from_inventory("desk", fill=True)))


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Live]:
    """The desk cluster with anonymous read refused."""
    yield from serve(config(tmp_path, nodes_from_inventory("desk", fill=True), public_read=False))
