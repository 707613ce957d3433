"""``POST /api/v1/power`` and ``bramble power`` switching the simulated controllers.

A real server (tests/dashboard/live.py) with ``[power]`` on drives the HTTP relay board
simulator and the Synaccess telnet simulator on 127.0.0.1 through bank_power's drivers.
The model: 2 banks of 4 Pis, group 1 = relay1 outlet 1 (bank 1), group 2 = pdu1 outlet 2
(bank 2), a budget of 4 Pis (one group on at a time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bramble.cli import main as cli
from bramble.services.config import ConfigError, PowerSection
from bramble.services.server.main import main as server_main
from bramble.services.server.power import load_power
from bramble.sim.power import Outlets
from bramble.sim.relay import RelayBoardSim
from bramble.sim.synaccess import SynaccessSim
from dashboard.live import ADMIN, AGENT, Live, config, free_port, nodes_from_inventory, serve

RELAY_TOKEN = "relay-token-0123456789"  # noqa: S105 - a test secret
PDU_PASSWORD = "pdu-password-0123"  # noqa: S105 - a test secret


@dataclass
class Lab:
    live: Live
    relay: Outlets
    pdu: Outlets
    relay_sim: RelayBoardSim
    pdu_sim: SynaccessSim

    def power(self, group: int, action: str, token: str | None = ADMIN) -> tuple[int, Any]:
        return self.live.call("POST", "/api/v1/power", token, {"group": group, "action": action})

    def events(self) -> list[str]:
        return [e["message"] for e in self.live.call("GET", "/api/v1/events?limit=20")[1]["events"]]


def power_model(relay_port: int, pdu_port: int) -> dict[str, Any]:
    return {
        "banks": {"count": 2, "size": 4},
        "power": {
            "budget": 4,
            "groups": [
                {"id": 1, "controller": "relay1", "outlet": 1, "banks": [1]},
                {"id": 2, "controller": "pdu1", "outlet": 2, "banks": [2]},
            ],
        },
        "controllers": [
            {
                "name": "relay1",
                "driver": "http_relay",
                "address": "127.0.0.1",
                "port": relay_port,
                "credentials": "vault_relay1_token",
            },
            {
                "name": "pdu1",
                "driver": "synaccess",
                "address": "127.0.0.1",
                "port": pdu_port,
                "credentials": "vault_pdu1_password",
                "options": {"username": "admin"},
            },
        ],
        "switches": [],
    }


def write_power_files(tmp: Path, relay_port: int, pdu_port: int) -> PowerSection:
    (tmp / "power.json").write_text(json.dumps(power_model(relay_port, pdu_port)))
    secrets = tmp / "power-secrets.json"
    secrets.write_text(
        json.dumps({"vault_relay1_token": RELAY_TOKEN, "vault_pdu1_password": PDU_PASSWORD})
    )
    secrets.chmod(0o600)
    return PowerSection(
        enabled=True,
        model_file=str(tmp / "power.json"),
        secrets_file=str(secrets),
        controller_timeout=1.0,
        request_timeout=20.0,
        settle=0.0,
        cycle_delay=0.2,
    )


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The simulators and a server with [power] on (``[power]`` keys from an indirect param)."""
    relay, pdu = Outlets(4), Outlets(5)
    relay_sim = RelayBoardSim(relay, token=RELAY_TOKEN)
    pdu_sim = SynaccessSim(pdu, user="admin", password=PDU_PASSWORD, busy_s=0.0)
    with relay_sim, pdu_sim:
        section = write_power_files(tmp_path, relay_sim.port, pdu_sim.port)
        section = section.model_copy(update=getattr(request, "param", {}))
        base = config(tmp_path, nodes_from_inventory("desk", fill=True))
        for live in serve(base.model_copy(update={"power": section})):
            yield Lab(live, relay, pdu, relay_sim, pdu_sim)


def test_on_off_and_cycle_switch_the_controllers_and_are_recorded(lab: Lab) -> None:
    status, answer = lab.power(1, "on")
    assert status == 200, answer
    assert lab.relay.get(1)
    assert answer["banks"] == [1]
    assert "relay1:1 on" in answer["message"]
    assert "4 of 4 budgeted Pis on" in answer["message"]
    status, answer = lab.power(1, "on")
    assert (status, lab.relay.requests) == (200, [(1, True)])  # already on: not switched again
    assert "nothing switched" in answer["message"]
    assert lab.power(1, "cycle")[0] == 200
    assert lab.relay.requests[1:] == [(1, False), (1, True)]
    assert lab.relay.get(1)
    assert lab.power(1, "off")[0] == 200
    assert not lab.relay.get(1)
    status, answer = lab.power(2, "on")  # the telnet PDU, now that group 1 is off
    assert status == 200, answer
    assert lab.pdu.snapshot() == {1: False, 2: True, 3: False, 4: False, 5: False}
    assert lab.power(2, "off")[0] == 200
    assert not lab.pdu.get(2)
    events = lab.events()
    assert any(
        e.startswith("power group 1 cycle: switched relay1:1 off, relay1:1 on") for e in events
    )
    assert any(e.startswith("power group 2 on: switched pdu1:2 on") for e in events)
    assert RELAY_TOKEN not in json.dumps(events)
    assert PDU_PASSWORD not in json.dumps(events)


def test_over_the_budget_is_refused_and_nothing_is_switched(lab: Lab) -> None:
    assert lab.power(1, "on")[0] == 200
    status, answer = lab.power(2, "on")
    assert status == 409
    assert "over the power budget of 4" in answer["error"]
    assert "nothing was switched" in answer["error"]
    assert lab.pdu.requests == []
    assert not lab.pdu.get(2)
    assert any("power group 2 on: refused" in e for e in lab.events())
    assert lab.power(2, "off")[0] == 200  # switching off is never over the budget


def test_a_stuck_relay_is_reported(lab: Lab) -> None:
    lab.relay.faults.stuck.add(1)
    status, answer = lab.power(1, "on")
    assert status == 502
    assert "relay1" in answer["error"]
    assert "stuck" in answer["error"]
    assert any("power group 1 on: FAILED" in e for e in lab.events())


def test_unreachable_and_hanging_controllers_are_named(lab: Lab) -> None:
    lab.pdu_sim.faults.hang = True
    started = time.monotonic()
    status, answer = lab.power(2, "on")
    assert status == 504, answer
    assert "controller pdu1" in answer["error"]
    assert time.monotonic() - started < 10  # bounded by power.controller_timeout
    lab.pdu_sim.faults.hang = False  # (an unreadable pdu1 would count as on for the budget)
    lab.relay_sim.close()
    status, answer = lab.power(1, "on")
    assert status == 502, answer
    assert "controller relay1" in answer["error"]
    assert "unreachable" in answer["error"]
    assert lab.pdu.requests == []


@pytest.mark.parametrize(
    "lab", [{"request_timeout": 0.3, "controller_timeout": 3.0}], indirect=True
)
def test_a_request_is_bounded_and_one_runs_at_a_time(lab: Lab) -> None:
    lab.pdu_sim.faults.hang = True  # each telnet read waits controller_timeout (3 s)
    status, answer = lab.power(2, "on")
    assert status == 504, answer
    assert "within 0.3 s (power.request_timeout) from controller pdu1" in answer["error"]
    status, answer = lab.power(1, "on")  # the first one's thread is still talking to pdu1
    assert status == 409, answer
    assert "another power request is still running" in answer["error"]
    lab.pdu_sim.faults.hang = False
    deadline = time.monotonic() + 10
    while (status := lab.power(1, "off")[0]) == 409 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200  # free again once the late request ended


def test_unknown_group_and_tokens(lab: Lab) -> None:
    assert lab.power(1, "on", token=None)[0] == 401
    assert lab.power(1, "on", token=AGENT)[0] == 403
    assert lab.relay.requests == []
    status, answer = lab.power(9, "on")
    assert status == 404
    assert "groups [1, 2]" in answer["error"]


def test_cli_power_through_the_server(lab: Lab, tmp_path: Path, capsys) -> None:
    token = tmp_path / "cli.token"
    token.write_text(ADMIN)
    token.chmod(0o600)
    argv = ["--server", lab.live.url, "--token-file", str(token)]
    assert cli(["power", "1", "on", *argv]) == 0
    out = capsys.readouterr().out
    assert out.startswith("power group 1 on: switched relay1:1 on")
    assert "(banks 1)" in out
    assert lab.relay.get(1)
    assert cli(["power", "2", "cycle", *argv]) == 1
    err = capsys.readouterr().err
    assert "HTTP 409" in err
    assert "power budget" in err
    assert lab.pdu.requests == []


def test_power_section_is_checked(tmp_path: Path, capsys) -> None:
    section = write_power_files(tmp_path, 1, 2)
    setup = load_power(section)
    assert setup is not None
    assert setup.summary() == "power on: 2 group(s) on 2 controller(s), budget 4 Pis"
    assert load_power(PowerSection()) is None
    (tmp_path / "power-secrets.json").write_text(json.dumps({"vault_relay1_token": "x" * 20}))
    with pytest.raises(ConfigError, match=r"no secret for \['vault_pdu1_password'\]"):
        load_power(section)
    (tmp_path / "power-secrets.json").chmod(0o644)
    with pytest.raises(ConfigError, match=r"power\.secrets_file .* mode 0644"):
        load_power(section)
    model = power_model(1, 2)
    model["power"]["groups"][1]["controller"] = "pdu9"
    (tmp_path / "power.json").write_text(json.dumps(model))
    with pytest.raises(ConfigError, match="power group 2 names controller 'pdu9'"):
        load_power(section)
    # --check-config reads [power] too
    base = config(tmp_path, nodes_from_inventory("desk", fill=True))
    path = tmp_path / "server.toml"
    path.write_text(
        f"""
[server]
cluster = "dash"
listen = "127.0.0.1"
port = {free_port()}
advertise = "127.0.0.1"
[beacon]
broadcast = "127.0.0.1"
[auth]
cluster_key_file = "{base.auth.cluster_key_file}"
agent_token_file = "{base.auth.agent_token_file}"
admin_token_file = "{base.auth.admin_token_file}"
[model]
nodes_file = "{base.model.nodes_file}"
[power]
enabled = true
model_file = "power.json"
secrets_file = "power-secrets.json"
"""
    )
    assert server_main(["--config", str(path), "--check-config"]) == 2
    assert "power group 2 names controller 'pdu9'" in capsys.readouterr().err
    write_power_files(tmp_path, 1, 2)
    assert server_main(["--config", str(path), "--check-config"]) == 0
    assert "power on: 2 group(s)" in capsys.readouterr().out
