"""Shared simulator plumbing: outlets with callbacks and faults, the fake uhubctl, bramble-sim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bramble.sim.cli import main as sim_main
from bramble.sim.power import Outlets, uhubctl_main, write_uhubctl_state


def test_outlets_switch_and_call_back_only_on_change() -> None:
    outlets = Outlets(3, on=[2])
    seen: list[tuple[int, bool]] = []
    outlets.subscribe(lambda n, on: seen.append((n, on)))
    assert outlets.set(1, True) is True
    assert outlets.set(1, True) is True  # no change: no callback
    assert outlets.set(2, False) is False
    assert seen == [(1, True), (2, False)]
    assert outlets.snapshot() == {1: True, 2: False, 3: False}
    assert outlets.requests == [(1, True), (1, True), (2, False)]


def test_a_stuck_relay_acknowledges_and_stays() -> None:
    outlets = Outlets(2)
    outlets.faults.stuck.add(2)
    assert outlets.set(2, True) is False
    assert outlets.get(2) is False


def test_outlets_out_of_range_are_refused() -> None:
    with pytest.raises(KeyError, match="outlet 5 does not exist"):
        Outlets(4).set(5, True)
    with pytest.raises(ValueError, match="at least one outlet"):
        Outlets(0)


@pytest.fixture
def hubs(tmp_path: Path) -> Path:
    state = tmp_path / "hubs.json"
    write_uhubctl_state(state, {"1-1": 4}, on=True)
    return state


def test_fake_uhubctl_reports_like_uhubctl(hubs: Path) -> None:
    code, out = uhubctl_main(["-l", "1-1"], hubs)
    assert code == 0
    assert out.splitlines()[0].startswith("Current status for hub 1-1 [")
    assert "  Port 3: 0100 power" in out.splitlines()


def test_fake_uhubctl_switches_one_port_and_keeps_state(hubs: Path) -> None:
    code, out = uhubctl_main(["-l", "1-1", "-p", "2", "-a", "off"], hubs)
    assert code == 0
    lines = out.splitlines()
    assert lines == [
        lines[0],
        "  Port 2: 0100 power",
        "Sent power off request",
        lines[3],
        "  Port 2: 0000 off",
    ]
    assert lines[3].startswith("New status for hub 1-1")
    assert json.loads(hubs.read_text())["hubs"]["1-1"]["on"] == {
        "1": True,
        "2": False,
        "3": True,
        "4": True,
    }
    code, out = uhubctl_main(["-l", "1-1", "-p", "1-2", "-a", "cycle"], hubs)
    assert out.count("Sent power") == 2
    assert json.loads(hubs.read_text())["hubs"]["1-1"]["on"]["2"] is True


def test_fake_uhubctl_fails_like_uhubctl(hubs: Path) -> None:
    code, out = uhubctl_main(["-l", "9-9", "-a", "on"], hubs)
    assert code == 1
    assert "No compatible devices detected at location 9-9" in out
    assert uhubctl_main(["-a", "sideways"], hubs)[0] == 1
    data = json.loads(hubs.read_text())
    data["fail"] = True
    hubs.write_text(json.dumps(data))
    assert uhubctl_main(["-l", "1-1"], hubs)[0] == 1


def test_bramble_sim_uhubctl_command_line(hubs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["uhubctl", "--state", str(hubs), "-l", "1-1", "-p", "4", "-a", "0"]) == 0
    assert "Port 4: 0000 off" in capsys.readouterr().out


def test_bramble_sim_serves_until_terminated(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0k\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "bramble.sim.cli", "relay", "--token-file", str(token)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
