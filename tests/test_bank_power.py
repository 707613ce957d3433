"""bank_power's pure functions, its runner with a fake driver, wait sources and local drivers.

The module_utils files are loaded under their Ansible names (``ansible.module_utils.X``), as
AnsiballZ bundles them.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bramble.sim.power import write_uhubctl_state
from cluster_helpers import load_module_utils, mac_of

DRIVERS = load_module_utils("bramble_power_drivers")
WAIT = load_module_utils("bramble_power_wait")
POWER = load_module_utils("bramble_power")

MODEL: dict[str, Any] = {
    "banks": {"count": 3, "size": 4},
    "controllers": [
        {"name": "pdu1", "driver": "synaccess", "credentials": "vault_pdu"},
        {"name": "poe1", "driver": "poe_snmp"},
    ],
    "power": {
        "budget": 8,
        "groups": [
            {"id": 2, "controller": "pdu1", "outlet": 2, "banks": [2]},
            {"id": 1, "controller": "pdu1", "outlet": 1, "banks": [1]},
            {"id": 3, "controller": "poe1", "outlet": "all", "banks": [3]},
        ],
    },
    "switches": [
        {
            "name": "sw1",
            "power": {"controller": "pdu1", "outlet": 5},
            "banks": [{"bank": 3, "ports": [10, 12, 14, 16]}],
        }
    ],
}
PIS = [
    {"bank": b, "slot": s, "name": f"pi-{b}-{s}", "mac": mac_of(b, s)}
    for b in (1, 2, 3)
    for s in (1, 2, 3, 4)
]


# --- the plan -----------------------------------------------------------------------------


def test_groups_come_in_the_models_power_on_order() -> None:
    assert [g["id"] for g in POWER.select_groups(MODEL, [1, 2], [])] == [2, 1]
    assert [g["id"] for g in POWER.select_groups(MODEL, [], [3, 1])] == [1, 3]


@pytest.mark.parametrize(
    ("banks", "groups", "message"),
    [
        ([], [], "name what to power"),
        ([9], [], r"bank\(s\) \[9\] are in no power group"),
        ([], [7], r"no power group \[7\]"),
    ],
)
def test_bad_targets_are_refused(banks: list[int], groups: list[int], message: str) -> None:
    with pytest.raises(POWER.PlanError, match=message):
        POWER.select_groups(MODEL, banks, groups)


def test_switch_ports_from_the_model() -> None:
    assert POWER.switch_port(MODEL, 3, 2) == ("sw1", 12)
    assert POWER.switch_port(MODEL, 1, 2) is None
    model = copy.deepcopy(MODEL)
    model["switches"][0]["banks"] = [{"bank": 3, "first_port": 9}]
    assert POWER.switch_port(model, 3, 4) == ("sw1", 12)


def test_units_whole_outlet_or_one_port_per_slot() -> None:
    refs = POWER.pi_refs(MODEL, PIS)
    whole = POWER.group_units(MODEL, MODEL["power"]["groups"][0], refs, per_slot=False)
    assert [(u.controller, u.outlet, len(u.pis)) for u in whole] == [("pdu1", 2, 4)]
    ports = POWER.group_units(MODEL, MODEL["power"]["groups"][2], refs, True, slots=[2, 4])
    assert [(u.outlet, u.pis[0].name) for u in ports] == [(12, "pi-3-2"), (16, "pi-3-4")]
    with pytest.raises(POWER.PlanError, match="slots cannot be targeted"):
        POWER.group_units(MODEL, MODEL["power"]["groups"][0], refs, False, slots=[1])


def test_uhubctl_units_need_a_hub_location() -> None:
    model = copy.deepcopy(MODEL)
    model["controllers"][1] = {"name": "poe1", "driver": "uhubctl", "options": {"first_port": 2}}
    refs = POWER.pi_refs(model, [])
    with pytest.raises(POWER.PlanError, match="no hub location for bank 3"):
        POWER.group_units(model, model["power"]["groups"][2], refs, True)
    model["controllers"][1]["options"]["location"] = "1-1.4"
    units = POWER.group_units(model, model["power"]["groups"][2], refs, True)
    assert [(u.location, u.outlet) for u in units] == [("1-1.4", p) for p in (2, 3, 4, 5)]
    assert units[0].pis[0].name == "pi-03-01"  # the model's naming without bramble_pis


def test_switches_powering_the_banks() -> None:
    assert [u.key for u in POWER.switch_units(MODEL, {3})] == ["pdu1:5"]
    assert POWER.switch_units(MODEL, {1, 2}) == []


def test_budget_counts_what_is_on_and_unreadable() -> None:
    refs = POWER.pi_refs(MODEL, PIS)
    groups = MODEL["power"]["groups"]
    target = POWER.group_units(MODEL, groups[0], refs, False)
    other = POWER.group_units(MODEL, groups[1], refs, False)
    assert POWER.check_budget(8, target, other, {other[0].key: True}) == 8
    with pytest.raises(POWER.PlanError, match="12 Pis on at once, over the power budget of 8"):
        POWER.check_budget(
            8,
            target,
            other + POWER.group_units(MODEL, groups[2], refs, True),
            {other[0].key: True, "poe1:10": True},
        )
    with pytest.raises(POWER.PlanError, match=r"counting unreadable controllers \['pdu1'\] as on"):
        POWER.check_budget(5, target, other, {other[0].key: None})


# --- the runner with a fake driver --------------------------------------------------------


class FakeDriver(DRIVERS.Driver):
    """Keeps outlet state in a dict shared by the test; boots Pis into a watcher."""

    per_slot = False
    state: ClassVar[dict[str, bool]] = {}
    log: ClassVar[list[str]] = []
    broken: ClassVar[set[str]] = set()
    boots: ClassVar[list[Any]] = []  # the boot hook, in a list so it does not become a method

    def read(self, units: list[Any]) -> dict[str, bool]:
        if self.name in self.broken:
            raise self.fail("unreachable at 192.0.2.1:23 (timed out)")
        return {u.key: self.state.get(u.key, False) for u in units}

    def switch(self, unit: Any, on: bool) -> None:
        if self.name in self.broken:
            raise self.fail("unreachable")
        self.state[unit.key] = on
        self.log.append(f"{unit.key}={'on' if on else 'off'}")
        if on and self.boots:
            self.boots[0](unit)


class FakePoe(FakeDriver):
    per_slot = True


class FakeWatcher:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.starts = 0

    def start(self) -> None:
        self.starts += 1

    def poll(self) -> set[str]:
        return set(self.seen)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWatcher]:
    FakeDriver.state, FakeDriver.log, FakeDriver.broken = {}, [], set()
    monkeypatch.setitem(DRIVERS.DRIVERS, "synaccess", FakeDriver)
    monkeypatch.setitem(DRIVERS.DRIVERS, "poe_snmp", FakePoe)
    watcher = FakeWatcher()
    monkeypatch.setattr(POWER.Runner, "watcher", lambda self: watcher)
    yield watcher
    FakeDriver.boots = []


def runner(check_mode: bool = False, **kwargs: Any) -> Any:
    request = POWER.Request(
        model=MODEL,
        pis=PIS,
        credentials={"vault_pdu": "pw"},
        settle=1,
        cycle_delay=0.5,
        **kwargs,
    )
    sleeps: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    run = POWER.Runner(request, check_mode, sleep=sleep, clock=lambda: clock[0])
    run.sleeps = sleeps
    return run


def test_on_in_order_with_settle_between_groups(fake: FakeWatcher) -> None:
    run = runner(state="on", banks=[1, 2, 3])
    run.req.model = copy.deepcopy(MODEL)
    run.req.model["power"]["budget"] = 12
    out = run.run()
    assert FakeDriver.log == [
        "pdu1:5=on",
        "pdu1:2=on",
        "pdu1:1=on",
        "poe1:10=on",
        "poe1:12=on",
        "poe1:14=on",
        "poe1:16=on",
    ]
    assert run.sleeps == [1, 1, 1]  # after the switch, between the three groups
    assert out.changed
    assert out.pis_on == 12
    again = runner(state="on", banks=[1, 2, 3])
    again.req.model = run.req.model
    out = again.run()
    assert not out.changed
    assert {p["outcome"] for p in out.pis} == {"already_on"}


def test_check_mode_switches_nothing(fake: FakeWatcher) -> None:
    out = runner(True, state="cycle", banks=[2]).run()
    assert out.changed
    assert [a["action"] for a in out.actions] == ["off", "on"]
    assert FakeDriver.log == []


def test_off_leaves_switches_alone(fake: FakeWatcher) -> None:
    FakeDriver.state = {"pdu1:5": True, "poe1:10": True, "poe1:12": True}
    out = runner(state="off", banks=[3]).run()
    assert FakeDriver.log == ["poe1:10=off", "poe1:12=off"]
    assert out.pis_on is None


def test_missing_secret_is_named(fake: FakeWatcher) -> None:
    run = runner(state="on", banks=[1])
    run.req.credentials = {}
    with pytest.raises(POWER.PlanError, match="controller pdu1 needs the secret vault_pdu"):
        run.run()


def test_failed_controller_fails_its_banks_and_others_go_on(fake: FakeWatcher) -> None:
    model = copy.deepcopy(MODEL)
    model["controllers"].append({"name": "pdu2", "driver": "synaccess"})
    model["power"]["groups"][1]["controller"] = "pdu2"
    FakeDriver.broken = {"pdu2"}
    run = runner(state="on", banks=[1, 2], budget_count="request")
    run.req.model = model
    out = run.run()
    assert FakeDriver.log == ["pdu1:2=on"]
    assert out.failed_banks == [1]
    assert "controller pdu2: unreachable" in out.failed["pdu2"]
    assert "FAILED controller pdu2" in POWER.summary(out)


def _boot_unless(watcher: FakeWatcher, dead: set[str], flaky: dict[str, int]) -> Any:
    def boots(unit: Any) -> None:
        for pi in unit.pis:
            if pi.name in dead:
                continue
            if flaky.get(pi.name, 0) > 0:
                flaky[pi.name] -= 1
                continue
            watcher.seen.add(pi.mac)

    return boots


def test_stragglers_cycled_per_slot_until_the_bound(fake: FakeWatcher) -> None:
    FakeDriver.boots = [_boot_unless(fake, {"pi-3-1"}, {"pi-3-4": 1})]
    out = runner(state="on", banks=[3], wait_for="dhcp_seen", timeout=10, poll=1, retries=3).run()
    assert out.cycles == 3
    assert out.booted == 3
    assert out.expected == 4
    outcomes = {p["name"]: (p["outcome"], p["cycles"]) for p in out.pis}
    assert outcomes == {
        "pi-3-1": ("missing", 3),
        "pi-3-2": ("booted", 0),
        "pi-3-3": ("booted", 0),
        "pi-3-4": ("booted", 1),
    }
    assert FakeDriver.log.count("poe1:10=off") == 3
    assert FakeDriver.log.count("poe1:16=off") == 1
    assert "poe1:12=off" not in FakeDriver.log
    assert "missing: pi-3-1" in POWER.summary(out)


def test_group_stragglers_cycle_the_group_and_stop_when_all_seen(fake: FakeWatcher) -> None:
    FakeDriver.boots = [_boot_unless(fake, set(), {"pi-1-3": 2})]
    out = runner(state="on", banks=[1], wait_for="dhcp_seen", timeout=5, poll=1, retries=5).run()
    assert out.cycles == 2
    assert out.booted == 4
    assert FakeDriver.log == ["pdu1:1=on", "pdu1:1=off", "pdu1:1=on", "pdu1:1=off", "pdu1:1=on"]


def test_expected_lower_than_the_bank_is_enough(fake: FakeWatcher) -> None:
    FakeDriver.boots = [_boot_unless(fake, {"pi-1-3"}, {})]
    out = runner(
        state="on", banks=[1], wait_for="dhcp_seen", timeout=5, poll=1, retries=2, expected=3
    ).run()
    assert out.cycles == 0
    assert out.booted == 3


# --- wait sources -------------------------------------------------------------------------


def test_dhcp_seen_reads_only_new_log_lines_and_changed_leases(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    leases = tmp_path / "dnsmasq.leases"
    log.write_text("Nov 22 dnsmasq-dhcp[1]: 1 DHCPDISCOVER(eth1) b8:27:eb:00:01:01\n")
    leases.write_text("1700000000 b8:27:eb:00:01:02 10.42.1.2 pi-01-02 *\n")
    seen = WAIT.DhcpSeen(str(log), str(leases))
    seen.start()
    assert seen.poll() == set()
    with log.open("a") as handle:
        handle.write("Nov 22 dnsmasq-dhcp[1]: 1 PXE(eth1) B8:27:EB:00:01:03 proxy\n")
        handle.write("Nov 22 dnsmasq-dhcp[1]: 1 DHCPDISCOVER(eth1) zz:27:eb:00:01:09\n")
        handle.write("Nov 22 dnsmasq-dhcp[1]: 1 DHCPDISCOVER(eth1) b8:27:eb:00:01:04")  # partial
    leases.write_text("1700000600 b8:27:eb:00:01:02 10.42.1.2 pi-01-02 *\n")
    assert seen.poll() == {"b8:27:eb:00:01:02", "b8:27:eb:00:01:03"}
    with log.open("a") as handle:
        handle.write("\n")
    assert "b8:27:eb:00:01:04" in seen.poll()


def test_dhcp_seen_needs_a_source() -> None:
    with pytest.raises(WAIT.WaitError, match="needs dhcp_log"):
        WAIT.DhcpSeen(None, None)


class _Nodes(BaseHTTPRequestHandler):
    nodes: ClassVar[Any] = []

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer adm1n":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps(self.nodes).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Nodes)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_agent_registered_asks_the_server(server: str) -> None:
    watcher = WAIT.AgentRegistered(server, "adm1n")
    watcher.start()
    _Nodes.nodes = {
        "nodes": [
            {"mac": "b8:27:eb:00:01:01", "state": "up", "registered_at": watcher.since + 1},
            {"mac": "b8:27:eb:00:01:02", "registered_at": watcher.since - 3600},  # stale
            {"mac": "b8:27:eb:00:01:03", "health": "down"},
            {"mac": "not-a-mac"},
            {"mac": "B8:27:EB:00:01:04"},
            # registered long ago and again now: the server moves only last_seen
            {"mac": "b8:27:eb:00:01:06", "registered_at": 1.0, "last_seen": watcher.since + 2},
        ]
    }
    assert watcher.poll() == {"b8:27:eb:00:01:01", "b8:27:eb:00:01:04", "b8:27:eb:00:01:06"}
    _Nodes.nodes = [{"mac": "b8:27:eb:00:01:05"}]  # a bare list is accepted too
    assert watcher.poll() == {"b8:27:eb:00:01:05"}
    with pytest.raises(WAIT.WaitError, match="refused the admin token"):
        WAIT.AgentRegistered(server, "wrong").poll()


def test_agent_registered_counts_registrations_not_telemetry(server: str) -> None:
    """bramble-server's nodes carry last_registered: the old agent's last posts, between start()
    and the power going off, move last_seen but do not count the Pi as booted."""
    watcher = WAIT.AgentRegistered(server, "adm1n")
    watcher.start()
    old = watcher.since - 600
    _Nodes.nodes = {
        "nodes": [
            # the old agent posted after start(): last_seen moved, no new registration
            {"mac": "b8:27:eb:00:02:01", "health": "up", "registered_at": old,
             "last_registered": old, "last_seen": watcher.since + 1},
            # the booted Pi's new agent registered
            {"mac": "b8:27:eb:00:02:02", "health": "up", "registered_at": old,
             "last_registered": watcher.since + 30, "last_seen": watcher.since + 30},
            # listed from the store after a server restart, not registered with it yet
            {"mac": "b8:27:eb:00:02:03", "health": "unknown", "registered_at": old,
             "last_registered": None, "last_seen": watcher.since + 5},
        ]
    }  # fmt: skip
    assert watcher.poll() == {"b8:27:eb:00:02:02"}


def test_agent_registered_keeps_polling_while_the_server_is_down() -> None:
    assert WAIT.AgentRegistered("http://127.0.0.1:9", "x", timeout=0.5).poll() == set()


def test_wait_until_is_bounded() -> None:
    clock = [0.0]

    class Never:
        def poll(self) -> set[str]:
            return set()

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    assert WAIT.wait_until(Never(), {"a"}, 1, 5, 1, sleep, lambda: clock[0]) == set()
    assert clock[0] == 5


# --- local-program drivers ----------------------------------------------------------------


@pytest.fixture
def fake_uhubctl(tmp_path: Path) -> Path:
    state = tmp_path / "hubs.json"
    write_uhubctl_state(state, {"1-1": 4})
    script = tmp_path / "bin" / "uhubctl"
    script.parent.mkdir()
    script.write_text(
        f'#!/bin/sh\nexec {sys.executable} -m bramble.sim.cli uhubctl --state {state} "$@"\n'
    )
    script.chmod(0o755)
    return state


def test_uhubctl_driver_switches_one_port(
    fake_uhubctl: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", f"{fake_uhubctl.parent / 'bin'}{os.pathsep}{os.environ['PATH']}")
    driver = DRIVERS.make_driver({"name": "hub", "driver": "uhubctl"}, None, 10)
    unit = DRIVERS.Unit("hub", 3, "hub:1-1:3", location="1-1")
    assert driver.read([unit]) == {"hub:1-1:3": False}
    driver.switch(unit, True)
    assert driver.read([unit]) == {"hub:1-1:3": True}
    assert json.loads(fake_uhubctl.read_text())["hubs"]["1-1"]["on"]["2"] is False
    with pytest.raises(DRIVERS.PowerError, match="No compatible devices detected at location 2-2"):
        driver.switch(DRIVERS.Unit("hub", 1, "k", location="2-2"), True)
    missing = DRIVERS.make_driver(
        {"name": "hub", "driver": "uhubctl", "options": {"binary": "no-such-uhubctl"}}, None, 5
    )
    with pytest.raises(DRIVERS.PowerError, match="not installed"):
        missing.read([unit])


def test_command_driver_uses_argv_and_passes_the_secret_in_the_environment(
    tmp_path: Path,
) -> None:
    record = tmp_path / "calls"
    tool = tmp_path / "power-tool"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$* secret=$BRAMBLE_POWER_SECRET" >> {record}\n'
        'case "$1" in status) echo on ;; esac\n'
    )
    tool.chmod(0o755)
    controller = {
        "name": "cmd1",
        "driver": "command",
        "address": "10.0.0.9",
        "options": {
            "on": f"{tool} set {{outlet}} 'on; rm -rf /'",
            "off": f"{tool} set {{outlet}} off",
            "status": f"{tool} status {{outlet}}",
        },
    }
    driver = DRIVERS.make_driver(controller, "hunter2", 5)
    unit = DRIVERS.Unit("cmd1", 4, "cmd1:4")
    driver.switch(unit, True)
    assert driver.read([unit]) == {"cmd1:4": True}
    assert record.read_text().splitlines() == [
        "set 4 on; rm -rf / secret=hunter2",  # one argument, no shell
        "status 4 secret=hunter2",
    ]
    assert driver.per_slot is False
    controller["options"]["on"] = "/bin/false {slot}"
    failing = DRIVERS.make_driver(controller, "hunter2", 5)
    assert failing.per_slot is True
    with pytest.raises(DRIVERS.PowerError, match="exited 1") as info:
        failing.switch(DRIVERS.Unit("cmd1", 4, "k", pis=[DRIVERS.PiRef("p", 1, 2)]), True)
    assert "hunter2" not in str(info.value)
