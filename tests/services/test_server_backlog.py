"""bramble-server's listen queue holds a fleet woken by one beacon (docs/benchmarks.md,
"Cluster services"): aiohttp's own default of 128 made agents beyond it wait for TCP's SYN
retries (1, 3, 7 s...) after a restart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_server import Client, Running, run, settings

from bramble.services.server.main import LISTEN_BACKLOG


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_api_listens_with_the_large_backlog(tmp_path: Path) -> None:
    seen: list[str] = []

    async def scenario(server: Running, _api: Client) -> None:
        listing = subprocess.run(
            ["ss", "-Hltn", f"sport = :{server.port}"],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
        seen.extend(listing.stdout.split())

    run(settings(tmp_path), scenario)
    # ss -lt: State Recv-Q Send-Q Local Peer; for a listening socket Send-Q is the backlog
    backlog = int(seen[2])
    assert backlog == min(LISTEN_BACKLOG, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    assert backlog >= 1024
