"""Fixtures of the dashboard tests: a live server per test and one headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Live, chromium, config, have_chromium, nodes_from_inventory, serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through chromedriver (tests/dashboard/live.py: chromium)."""
    if not have_chromium():
        pytest.skip("needs apt packages chromium and chromium-driver (make test-deps)")
    pytest.importorskip("selenium.webdriver")
    with chromium() as driver:
        yield driver


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
