"""Smoke test of the fleet benchmark (bench/fleet/fleet.py --quick): it runs and counts right.

Only correctness is asserted (nothing lost, every dead agent found dead, the restarted server
sees its fleet again); the timing goals are the benchmark's business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fleet" / "fleet.py"


@pytest.mark.slow
def test_quick_fleet_bench_loses_nothing_and_finds_the_dead(tmp_path):
    out = tmp_path / "fleet.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    telemetry = figures["telemetry-1050"]
    assert telemetry["agents"] == 1050
    assert telemetry["sampled"] > 1050
    assert telemetry["lost"] == 0
    health = figures["health"]
    assert health["dead"] == round(1050 * 0.05)
    assert health["every_dead_found"] is True  # a busy machine may add slow ones, never miss
    again = figures["reregister-1050"]
    assert again["restart_share_by_end"] == 1.0  # every agent registered again
    assert figures["writes"]["ratio"] > 1
