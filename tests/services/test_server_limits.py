"""bramble-server's open-file limit: raised to the hard limit at start, a warning when too low.

Keep-alive means one idle connection per agent (health sweeps) and one per agent's telemetry
client; a shell's soft limit of 1024 runs out at a few hundred Pis (docs/server.md, Health).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from bramble.services.server.main import FILES_PER_NODE, FILES_SPARE, open_file_limit


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """The soft limit lowered to 512 (or the hard one when lower), put back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_hard_one(
    low_soft_limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    hard = low_soft_limit
    with caplog.at_level(logging.WARNING, logger="bramble.server"):
        limit = open_file_limit(10)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit
    if hard != resource.RLIM_INFINITY:
        assert limit == hard
    assert not caplog.records  # 10 nodes: plenty


def test_a_limit_too_low_for_the_fleet_is_named_with_the_fix(
    low_soft_limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nodes = (limit - FILES_SPARE) // FILES_PER_NODE + 1  # one node too many for the hard limit
    with caplog.at_level(logging.WARNING, logger="bramble.server"):
        open_file_limit(nodes)
    assert len(caplog.records) == 1
    assert f"{nodes} nodes need" in caplog.text
    assert "cluster_server_nofile" in caplog.text
