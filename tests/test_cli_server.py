"""``bramble`` status, bank, power, events and warble against a running bramble-server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bramble.cli import main
from bramble.cli_client import CliError, settings
from bramble.services.server.dashboard import PowerResult, set_power_hook
from dashboard.live import ADMIN, Live, config, fake_agent, nodes_from_inventory, serve


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Live]:
    yield from serve(config(tmp_path, nodes_from_inventory("desk", fill=True)))


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "admin.token"
    path.write_text(ADMIN + "\n")
    path.chmod(0o600)
    return str(path)


def up(live: Live, slots: int) -> list[str]:
    macs = [n.mac for n in sorted(live.running.server.model.values(), key=lambda n: n.slot)]
    for mac in macs[:slots]:
        live.register(mac)
        live.telemetry(mac, cpu=12.5, temp=51.0)
    return macs


def test_status_table_and_json(desk, capsys):
    up(desk, 3)
    assert main(["status", "--server", desk.url]) == 0
    out = capsys.readouterr().out
    assert "cluster dash: 3/4 up" in out
    assert "█" in out
    assert "░" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("01"))
    assert "3/4" in row
    assert "12.5%" in row
    assert "51°C" in row
    assert main(["status", "--json", "--server", desk.url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["up"] == 3
    assert data["totals"]["off"] == 1
    assert data["bank_summary"][0]["slots"] == 4


def test_bank_lists_slots_and_unknown_bank_fails(desk, capsys, monkeypatch):
    up(desk, 1)
    monkeypatch.setenv("BRAMBLE_SERVER", desk.url)
    assert main(["bank", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bank 01: 1/4 up")
    slot1 = next(line for line in lines if line.split()[:2] == ["1", "pi-01-01"])
    assert "up" in slot1
    assert "12.5%" in slot1
    assert next(line for line in lines if line.split()[:1] == ["4"]).split()[2] == "off"
    assert main(["bank", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["slots"]) == 4
    assert main(["bank", "9"]) == 1
    assert "bank 9 is not in the cluster model" in capsys.readouterr().err


def test_power_needs_the_token_which_is_never_printed(desk, capsys, token_file):
    assert main(["power", "1", "cycle", "--server", desk.url]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err
    assert "token" in err
    assert main(["power", "1", "cycle", "--server", desk.url, "--token-file", token_file]) == 1
    err = capsys.readouterr().err
    assert "HTTP 501" in err
    assert "no power hook" in err
    assert ADMIN not in err

    async def hook(group: int, action: str) -> PowerResult:
        return PowerResult((group,), f"outlet {group} {action}")

    set_power_hook(desk.running.server, hook)
    argv = ["power", "1", "off", "--server", desk.url, "--token-file", token_file, "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "group": 1,
        "action": "off",
        "banks": [1],
        "message": "outlet 1 off",
    }
    assert ADMIN not in captured.out + captured.err
    assert ADMIN not in repr(settings(desk.url, token_file))


def test_events_follow_the_stream(desk, capsys):
    up(desk, 1)
    macs = up(desk, 0)

    def later() -> None:
        time.sleep(1.0)
        desk.register(macs[3])

    thread = threading.Thread(target=later)
    thread.start()
    try:
        assert main(["events", "--server", desk.url, "--count", "1", "--limit", "5"]) == 0
    finally:
        thread.join(10)
    lines = capsys.readouterr().out.splitlines()
    assert any("pi-01-01" in line and "registered" in line for line in lines)
    assert ("pi-01-04" in lines[-1] and "registered" in lines[-1]) or "address" in lines[-1]
    assert main(["events", "--server", desk.url, "--no-follow", "--json", "--limit", "2"]) == 0
    assert all("kind" in json.loads(line) for line in capsys.readouterr().out.splitlines())


def test_warble_submit_waits_for_the_output_and_results_list_it(desk, capsys, tmp_path):
    runner, port = desk.run(fake_agent("3.14159"))
    try:
        node = next(iter(desk.running.server.model.values()))
        desk.register(node.mac, port=port)
        desk.telemetry(node.mac, cpu=1.0)
        source = tmp_path / "pi.warble"
        source.write_text('#pi{PRINT("3.14159")}\n')
        argv = ["warble", "submit", str(source), "--user", "ada", "--server", desk.url]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "Warble 1 by ada: done" in out
        assert "3.14159" in out
        assert main(["warble", "results", "--server", desk.url]) == 0
        assert "ada" in capsys.readouterr().out
        assert main(["warble", "results", "--leaderboard", "--json", "--server", desk.url]) == 0
        board = json.loads(capsys.readouterr().out)["leaderboard"]
        assert board[0]["user"] == "ada"
        assert board[0]["digits"] == 6
    finally:
        desk.run(runner.cleanup())


def test_job_cancel_needs_the_token_and_cancels_until_an_agent_has_it(desk, capsys, token_file):
    # no node is up: ada's first Warble waits for one, her second stays queued behind it
    body = {"user": "ada", "source": 'PRINT("1")'}
    first, second = (desk.call("POST", "/api/v1/warbles", None, body)[1]["id"] for _ in range(2))
    deadline = time.monotonic() + 10
    while desk.call("GET", f"/api/v1/jobs/{first}", ADMIN)[1]["state"] != "waiting":
        assert time.monotonic() < deadline, "the first Warble never started waiting"
        time.sleep(0.05)
    assert main(["job", "cancel", str(second), "--server", desk.url]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    argv = ["job", "cancel", str(second), "--server", desk.url, "--token-file", token_file]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"job {second} of ada: cancelled\n"
    assert main([*argv, "--json"]) == 0  # cancelling again changes nothing
    assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
    argv[2] = str(first)  # waiting for an idle node, not on an agent yet: cancellable
    assert main(argv) == 0
    assert capsys.readouterr().out == f"job {first} of ada: cancelled\n"
    runner, port = desk.run(fake_agent("done"))
    try:
        node = next(iter(desk.running.server.model.values()))
        desk.register(node.mac, port=port)
        desk.telemetry(node.mac, cpu=1.0)
        third = desk.call("POST", "/api/v1/warbles", None, body)[1]["id"]
        while desk.call("GET", f"/api/v1/jobs/{third}", ADMIN)[1]["state"] != "done":
            assert time.monotonic() < deadline + 10, "the third Warble never ran"
            time.sleep(0.05)
    finally:
        desk.run(runner.cleanup())
    argv[2] = str(third)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "HTTP 409" in err
    assert "only a queued or waiting job can be cancelled" in err
    assert ADMIN not in err


def test_unreachable_server_and_bad_settings(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("BRAMBLE_SERVER", raising=False)
    assert main(["status", "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the server at http://127.0.0.1:9" in capsys.readouterr().err
    with pytest.raises(CliError, match="not an http"):
        settings("ftp://x", None, environ={})
    conf = tmp_path / "cli.toml"
    conf.write_text('server = "http://127.0.0.1:8470"\nbogus = 1\n')
    with pytest.raises(CliError, match="unknown keys"):
        settings(None, None, str(conf), environ={})
    conf.write_text(f'server = "http://127.0.0.2:1"\ntoken_file = "{tmp_path}/t"\n')
    (tmp_path / "t").write_text("from-config-file-token\n")
    found = settings(None, None, str(conf), environ={})
    assert (found.server, found.token) == ("http://127.0.0.2:1", "from-config-file-token")
    found = settings(None, None, str(conf), environ={"BRAMBLE_SERVER": "http://127.0.0.3:2"})
    assert found.server == "http://127.0.0.3:2"
    assert found.source == "BRAMBLE_SERVER"
