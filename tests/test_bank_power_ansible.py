"""bank_power through real ansible-playbook runs against the simulators on 127.0.0.1.

The cluster: bank 1 on an HTTP relay board, bank 2 on a Synaccess telnet PDU, bank 3 on PoE
ports of switch sw1 (one port per slot), sw1 itself powered by PDU outlet 5. Simulated Pis
"boot" by writing dnsmasq-style DHCPDISCOVER lines to a log when their outlet or port goes on;
some are dead, some boot only on their second power-on, as real stragglers do.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.sim.power import Outlets
from bramble.sim.relay import RelayBoardSim
from bramble.sim.snmpagent import SnmpSim
from bramble.sim.synaccess import SynaccessSim
from cluster_helpers import BIN, ROOT, ansible_env, mac_of

pytestmark = pytest.mark.slow

SECRETS = {
    "vault_test_relay_token": "relay-t0ken-XYZZY",
    "vault_test_pdu_password": "pdu-pa55-PLUGH",
    "vault_test_sw_community": "sw-c0mm-FROTZ",
}


@dataclass
class Lab:
    """The three simulated controllers, the boot log, and what happened in which order."""

    tmp: Path
    relay: Outlets
    pdu: Outlets
    poe: Outlets
    relay_sim: RelayBoardSim
    pdu_sim: SynaccessSim
    snmp_sim: SnmpSim
    log: Path
    events: list[str] = field(default_factory=list)
    dead: set[tuple[int, int]] = field(default_factory=set)
    flaky: set[tuple[int, int]] = field(default_factory=set)
    power_ons: dict[tuple[int, int], int] = field(default_factory=dict)

    def boot(self, bank: int, slots: list[int]) -> None:
        with self.log.open("a", encoding="utf-8") as handle:
            for slot in slots:
                key = (bank, slot)
                self.power_ons[key] = self.power_ons.get(key, 0) + 1
                if key in self.dead or (key in self.flaky and self.power_ons[key] < 2):
                    continue
                handle.write(
                    f"Nov 22 02:00:00 dnsmasq-dhcp[7]: 653460281 DHCPDISCOVER(eth1) "
                    f"{mac_of(bank, slot)}\n"
                )

    def model(self, budget: int = 8) -> dict[str, Any]:
        return {
            "plugin": "bramble",
            "cluster": {"name": "test", "domain": "test.internal"},
            "head": {
                "name": "test-head",
                "address": "10.42.0.1",
                "interfaces": {"cluster": "eth1"},
            },
            "banks": {"count": 3, "size": 4, "model": "pi3bplus"},
            "controllers": [
                {
                    "name": "relay1",
                    "driver": "http_relay",
                    "address": "127.0.0.1",
                    "port": self.relay_sim.port,
                    "outlets": 4,
                    "credentials": "vault_test_relay_token",
                },
                {
                    "name": "pdu1",
                    "driver": "synaccess",
                    "address": "127.0.0.1",
                    "port": self.pdu_sim.port,
                    "outlets": 5,
                    "credentials": "vault_test_pdu_password",
                },
                {
                    "name": "sw1poe",
                    "driver": "poe_snmp",
                    "address": "127.0.0.1",
                    "port": self.snmp_sim.port,
                    "credentials": "vault_test_sw_community",
                },
            ],
            "power": {
                "budget": budget,
                "groups": [
                    {"id": 1, "controller": "relay1", "outlet": 1, "banks": [1]},
                    {"id": 2, "controller": "pdu1", "outlet": 1, "banks": [2]},
                    {"id": 3, "controller": "sw1poe", "outlet": "all", "banks": [3]},
                ],
            },
            "switches": [
                {
                    "name": "sw1",
                    "address": "127.0.0.1",
                    "power": {"controller": "pdu1", "outlet": 5},
                    "banks": [{"bank": 3, "first_port": 1}],
                }
            ],
        }


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    relay, pdu, poe = Outlets(4), Outlets(5), Outlets(8)
    relay_sim = RelayBoardSim(relay, SECRETS["vault_test_relay_token"])
    pdu_sim = SynaccessSim(pdu, "admin", SECRETS["vault_test_pdu_password"])
    snmp_sim = SnmpSim(write_community=SECRETS["vault_test_sw_community"])
    snmp_sim.add_poe_ports(poe)
    lab = Lab(tmp_path, relay, pdu, poe, relay_sim, pdu_sim, snmp_sim, tmp_path / "dnsmasq.log")
    lab.log.write_text("", encoding="utf-8")
    relay.subscribe(lambda n, on: on and n == 1 and lab.boot(1, [1, 2, 3, 4]))
    pdu.subscribe(lambda n, on: on and n == 1 and lab.boot(2, [1, 2, 3, 4]))
    poe.subscribe(lambda n, on: on and n <= 4 and lab.boot(3, [n]))
    relay.subscribe(lambda n, on: lab.events.append(f"relay{n}={on}"))
    pdu.subscribe(lambda n, on: lab.events.append(f"pdu{n}={on}"))
    poe.subscribe(lambda n, on: lab.events.append(f"poe{n}={on}"))
    try:
        for sim in (relay_sim, pdu_sim, snmp_sim):
            sim.start()
        yield lab
    finally:
        for sim in (relay_sim, pdu_sim, snmp_sim):
            sim.close()


PLAY = """
- name: Power
  hosts: test-head
  gather_facts: false
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    _names: "{{ bramble_model.controllers | selectattr('credentials', 'defined')
      | map(attribute='credentials') | select | unique }}"
  tasks:
    - name: Switch the power
      bank_power: %s
      register: __power
    - name: Show the result
      ansible.builtin.copy:
        content: "{{ __power | to_json }}"
        dest: "%s"
        mode: "0600"
      check_mode: false
"""


def _run(
    lab: Lab, args: dict[str, Any], *options: str, budget: int = 8
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    inventory = lab.tmp / "inventory"
    inventory.mkdir(exist_ok=True)
    macs = [{"bank": b, "slot": s, "mac": mac_of(b, s)} for b in (1, 2, 3) for s in (1, 2, 3, 4)]
    (inventory / "cluster.yml").write_text(yaml.safe_dump(lab.model(budget)), encoding="utf-8")
    (inventory / "macs.yml").write_text(yaml.safe_dump({"macs": macs}), encoding="utf-8")
    params = {
        "model": "{{ bramble_model }}",
        "pis": "{{ bramble_pis }}",
        "credentials": "{{ dict(_names | zip(query('vars', *_names))) }}",
        "settle": 0,
        "cycle_delay": 0.1,
        "controller_timeout": 2,
        **args,
    }
    result_file = lab.tmp / "result.json"
    result_file.unlink(missing_ok=True)
    playbook = lab.tmp / "play.yml"
    playbook.write_text(PLAY % (json.dumps(params), result_file), encoding="utf-8")
    extra = lab.tmp / "secrets.json"
    extra.write_text(json.dumps(SECRETS), encoding="utf-8")
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            f"@{extra}",
            *options,
            str(playbook),
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if not result:
        match = re.search(r"fatal: \[test-head\]: FAILED! => (\{.*\})", done.stdout, re.DOTALL)
        result = json.loads(match.group(1)) if match else {}
    return done, result


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_check_mode_reports_and_switches_nothing(lab: Lab) -> None:
    done, result = _run(lab, {"banks": [1, 2], "state": "on"}, "--check")
    _ok(done)
    assert result["changed"] is True
    assert [(a["controller"], a["action"]) for a in result["actions"]] == [
        ("relay1", "on"),
        ("pdu1", "on"),
    ]
    assert {p["outcome"] for p in result["pis"]} == {"would_switch"}
    assert not any(lab.relay.snapshot().values())
    assert not any(lab.pdu.snapshot().values())
    assert lab.relay.requests == []
    assert lab.pdu.requests == []


def test_on_then_second_run_changes_nothing(lab: Lab) -> None:
    done, result = _run(lab, {"banks": [2], "state": "on"})
    _ok(done)
    assert result["changed"] is True
    assert lab.pdu.snapshot()[1] is True
    assert lab.relay.snapshot()[1] is False  # bank 1 untouched
    done, result = _run(lab, {"banks": [2], "state": "on"})
    _ok(done)
    assert result["changed"] is False
    assert result["actions"] == []
    done, result = _run(lab, {"banks": [2], "state": "off"})
    _ok(done)
    assert result["changed"] is True
    assert lab.pdu.snapshot()[1] is False


def test_budget_violation_fails_and_switches_nothing(lab: Lab) -> None:
    lab.relay.set(1, True)  # bank 1 already on: 4 Pis
    done, result = _run(lab, {"banks": [2, 3], "state": "on"})
    assert done.returncode != 0
    assert "12 Pis on at once, over the power budget of 8" in result["msg"]
    assert "nothing was switched" in result["msg"]
    assert lab.pdu.requests == []  # not even the switch
    assert lab.poe.requests == []


def test_unreachable_controller_fails_its_bank_only(lab: Lab) -> None:
    lab.relay.faults.hang = True
    done, result = _run(lab, {"banks": [1, 2], "state": "on", "budget_count": "request"})
    assert done.returncode != 0
    assert "bank(s) 1" in result["msg"]
    assert "controller relay1" in result["msg"]
    assert lab.pdu.snapshot()[1] is True  # bank 2 was powered all the same
    assert result["failed_banks"] == [1]


def test_switch_first_then_stragglers_cycled_per_slot_within_the_bound(lab: Lab) -> None:
    lab.dead = {(3, 2)}
    lab.flaky = {(3, 3)}
    args = {
        "banks": [3],
        "state": "on",
        "wait_for": "dhcp_seen",
        "dhcp_log": str(lab.log),
        "timeout": 1,
        "poll": 0.1,
        "retries": 2,
    }
    done, result = _run(lab, args)
    assert done.returncode != 0  # one Pi never came: fail_on_missing
    assert lab.events[0] == "pdu5=True"  # the switch before its bank
    assert result["booted"] == 3
    assert result["expected"] == 4
    assert result["cycles"] == 2
    outcome = {p["slot"]: (p["outcome"], p["cycles"]) for p in result["pis"]}
    assert outcome == {1: ("booted", 0), 2: ("missing", 2), 3: ("booted", 1), 4: ("booted", 0)}
    # only the stragglers' ports were cycled: port 2 twice, port 3 once, 1 and 4 never
    offs = [e for e in lab.events if e.endswith("=False")]
    assert sorted(offs) == ["poe2=False", "poe2=False", "poe3=False"]
    assert "only 3/4 booted" in result["msg"]
    assert "missing: pi-03-02" in result["msg"]


def test_group_straggler_cycles_the_outlet_and_succeeds(lab: Lab) -> None:
    lab.flaky = {(2, 4)}
    args = {
        "banks": [2],
        "state": "on",
        "wait_for": "dhcp_seen",
        "dhcp_log": str(lab.log),
        "timeout": 1,
        "poll": 0.1,
        "retries": 3,
    }
    done, result = _run(lab, args)
    _ok(done)
    assert result["booted"] == 4
    assert result["cycles"] == 1  # stops as soon as every Pi is seen
    assert [e for e in lab.events if e.startswith("pdu1")] == [
        "pdu1=True",
        "pdu1=False",
        "pdu1=True",
    ]


def test_slots_on_a_whole_outlet_controller_are_refused(lab: Lab) -> None:
    done, result = _run(lab, {"banks": [2], "slots": [3], "state": "cycle"})
    assert done.returncode != 0
    assert "slots cannot be targeted" in result["msg"]
    assert lab.pdu.requests == []


def test_secrets_never_reach_the_output(lab: Lab) -> None:
    lab.pdu.faults.refuse_auth = True
    done, result = _run(lab, {"banks": [1, 2, 3], "state": "on"}, "-vvv", budget=12)
    assert done.returncode != 0
    assert "refused the login" in result["msg"]
    text = done.stdout + done.stderr + json.dumps(result)
    for secret in SECRETS.values():
        assert secret not in text


def test_ansible_doc_renders(ansible_run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    done = ansible_run("ansible-doc", "-M", "library", "bank_power")
    assert done.returncode == 0, done.stderr
    assert "budget" in done.stdout
    assert "wait_for" in done.stdout
