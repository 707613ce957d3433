"""The mac_harvest module run through Ansible against the SNMP switch simulator (loopback).

Check mode changes nothing, diff shows the MAC file change, a second run reports no change,
conflicts fail without writing, malformed MACs are counted and never written.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.model import load_cluster
from bramble.sim.snmpagent import SnmpSim
from cluster_helpers import BASE_MODEL, BIN, ROOT, ansible_env, mac_of

pytestmark = pytest.mark.slow

PLAYBOOK = """\
---
- name: Harvest
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Harvest MACs
      mac_harvest: "{{ harvest_args }}"
"""

Harvest = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def switch() -> Iterator[SnmpSim]:
    sim = SnmpSim(read_community="bramble-ro")
    sim.start()
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """BASE_MODEL with a switch on loopback: bank 1 on ports 1-4, bank 2 on ports 9-12."""
    model = json.loads(json.dumps(BASE_MODEL))
    model["switches"] = [
        {
            "name": "sw1",
            "address": "127.0.0.1",
            "banks": [{"bank": 1, "first_port": 1}, {"bank": 2, "first_port": 9}],
        }
    ]
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "cluster.yml").write_text("---\n" + yaml.safe_dump(model), encoding="utf-8")
    return folder


@pytest.fixture
def harvest(tmp_path: Path, inventory: Path, switch: SnmpSim) -> Harvest:
    playbook = tmp_path / "harvest.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")

    def run(*flags: str, **args: Any) -> tuple[int, dict[str, Any]]:
        harvest_args = {
            "model": str(inventory),
            "sources": ["snmp"],
            "snmp_community": "bramble-ro",
            "snmp_port": switch.port,
            "snmp_timeout": 1,
            "snmp_retries": 0,
            **args,
        }
        env = ansible_env() | {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *flags,
             "-e", json.dumps({"harvest_args": harvest_args})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON from ansible-playbook:\n{result.stdout}\n{result.stderr}")
        task = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return result.returncode, task

    return run


def macs_file(inventory: Path) -> Path:
    return inventory / "macs.yml"


def test_ansible_doc_renders() -> None:
    result = subprocess.run(
        [str(BIN / "ansible-doc"), "-M", "library", "mac_harvest"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "snmp_port_index" in result.stdout
    assert "RETURN VALUES" in result.stdout


def test_check_diff_write_and_second_run(
    harvest: Harvest, switch: SnmpSim, inventory: Path
) -> None:
    switch.set_fdb(
        {
            mac_of(1, 1): 1,
            mac_of(1, 2): 2,
            mac_of(1, 4): 4,
            mac_of(2, 1): 9,
            "02:00:00:00:00:01": 24,  # the uplink: not a slot, not a Pi
            b"\xb8\x27\xeb\x01": 3,  # a malformed entry on slot 3's port
        }
    )
    code, task = harvest("--check", "--diff", banks=[1])
    assert code == 0, task
    assert task["changed"] is True
    assert not macs_file(inventory).exists()
    assert f'mac: "{mac_of(1, 1)}"' in task["diff"]["after"]
    assert mac_of(2, 1) not in task["diff"]["after"]  # bank 2 was not harvested
    assert [(m["bank"], m["slot"]) for m in task["missing"]] == [(1, 3)]
    assert task["rejected"]["counts"]["malformed"] >= 1

    code, task = harvest(banks=[1])
    assert code == 0, task
    assert task["changed"] is True
    assert len(task["new"]) == 3
    text = macs_file(inventory).read_text(encoding="utf-8")
    assert "b8:27:eb:01" not in text.replace(mac_of(1, 1), "")
    cluster = load_cluster(inventory)
    assert cluster.problems == ()
    assert {(p.slot, p.mac) for p in cluster.pis if p.bank == 1 and p.mac} == {
        (1, mac_of(1, 1)),
        (2, mac_of(1, 2)),
        (4, mac_of(1, 4)),
    }

    code, task = harvest("--diff", banks=[1])
    assert code == 0
    assert task["changed"] is False
    assert len(task["unchanged"]) == 3
    assert macs_file(inventory).read_text(encoding="utf-8") == text


def test_conflict_fails_and_leaves_the_file_until_forced(
    harvest: Harvest, switch: SnmpSim, inventory: Path
) -> None:
    switch.set_fdb({mac_of(1, 1): 1, mac_of(1, 2): 2})
    assert harvest(banks=[1])[0] == 0
    macs_file(inventory).chmod(0o600)
    before = macs_file(inventory).read_text(encoding="utf-8")
    stranger = "b8:27:eb:aa:bb:cc"
    switch.set_fdb({stranger: 1, mac_of(1, 2): 2})
    code, task = harvest(banks=[1])
    assert code != 0
    assert "bank 1 slot 1 holds b8:27:eb:00:01:01" in task["msg"]
    assert "force=true" in task["msg"]
    assert macs_file(inventory).read_text(encoding="utf-8") == before
    code, task = harvest(banks=[1], force=True)
    assert code == 0, task
    assert stranger in macs_file(inventory).read_text(encoding="utf-8")
    assert macs_file(inventory).stat().st_mode & 0o777 == 0o600  # the mode is kept


def test_moved_pi_is_reported_and_moved(harvest: Harvest, switch: SnmpSim, inventory: Path) -> None:
    switch.set_fdb({mac_of(1, 1): 1})
    assert harvest(banks=[1])[0] == 0
    switch.set_fdb({mac_of(1, 1): 3})
    code, task = harvest(banks=[1])
    assert code == 0, task
    assert task["moved"] == [{"mac": mac_of(1, 1), "from": [1, 1], "to": [1, 3], "serial": None}]
    cluster = load_cluster(inventory)
    assert [(p.slot, p.mac) for p in cluster.pis if p.mac] == [(3, mac_of(1, 1))]


def test_unreachable_switch_fails_naming_it(harvest: Harvest) -> None:
    code, task = harvest(banks=[1], snmp_community="wrong")  # a wrong community gets no answer
    assert code != 0
    assert "switch sw1" in task["msg"]
    assert "wrong" not in task["msg"]  # the community is never echoed


def test_log_source_fills_slots_in_order(tmp_path: Path, harvest: Harvest, inventory: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text(
        "".join(
            f"dnsmasq-dhcp[1]: 1 vendor class: PXEClient:Arch:00000:UNDI:002001\n"
            f"dnsmasq-dhcp[1]: 1 DHCPDISCOVER(eth1) {mac} no address available\n"
            for mac in (mac_of(2, 2), mac_of(2, 1), "b8:27:eb:xx:00:00")
        ),
        encoding="utf-8",
    )
    code, task = harvest(banks=[2], sources=["log"], log_file=str(log))
    assert code == 0, task
    assert task["changed"] is False
    assert task["unplaced"] == [mac_of(2, 2), mac_of(2, 1)]
    assert task["rejected"]["counts"] == {"malformed": 1}
    code, task = harvest(banks=[2], sources=["log"], log_file=str(log), unplaced="fill")
    assert code == 0, task
    assert [(n["slot"], n["mac"]) for n in task["new"]] == [(1, mac_of(2, 2)), (2, mac_of(2, 1))]


def _sequential_inventory(tmp_path: Path, controller: dict[str, Any]) -> Path:
    model = json.loads(json.dumps(BASE_MODEL))
    model["controllers"] = [controller]
    model["power"]["groups"] = [{"id": 1, "controller": controller["name"], "outlet": 1,
                                 "banks": [1, 2]}]  # fmt: skip
    folder = tmp_path / "seq-inventory"
    folder.mkdir()
    (folder / "cluster.yml").write_text("---\n" + yaml.safe_dump(model), encoding="utf-8")
    return folder


def _run_harvest(tmp_path: Path, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    playbook = tmp_path / "harvest.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    env = ansible_env() | {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
         "-e", json.dumps({"harvest_args": args})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    return result.returncode, report["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_sequential_takes_the_new_mac_of_each_powered_slot(tmp_path: Path) -> None:
    """A per-slot ``command`` controller whose power-on makes dnsmasq-like log lines: slot 2's
    power-on also shows slot 1's Pi again (its ROM retries), slot 3 stays silent."""
    log = tmp_path / "dnsmasq.log"
    log.write_text("")
    line = "Nov 22 02:28:05 dnsmasq-dhcp[7]: 1 DHCPDISCOVER(eth0) b8:27:eb:00:01:0"
    switched = tmp_path / "switched"
    script = (
        f"echo on {{slot}} >> {switched}; test {{slot}} = 3 && exit 0;"
        f" test {{slot}} = 2 && echo '{line}1 no address' >> {log};"
        f" echo '{line}{{slot}} no address available' >> {log}"
    )
    controller = {
        "name": "cmd1",
        "driver": "command",
        "options": {
            "on": shlex.join(["sh", "-c", script]),
            "off": shlex.join(["sh", "-c", f"echo off {{slot}} >> {switched}"]),
        },
    }
    inventory = _sequential_inventory(tmp_path, controller)
    args = {"model": str(inventory), "banks": [1], "slots": [1, 2, 3], "sources": ["log"],
            "log_file": str(log), "sequential": True, "sequential_timeout": 1}  # fmt: skip
    code, task = _run_harvest(tmp_path, args)
    assert code == 0, task
    assert [(e["slot"], e["mac"]) for e in task["new"]] == [(1, mac_of(1, 1)), (2, mac_of(1, 2))]
    assert [(m["bank"], m["slot"]) for m in task["missing"]] == [(1, 3)]
    assert switched.read_text().split("\n")[:6] == [
        "off 1",
        "off 2",
        "off 3",
        "on 1",
        "on 2",
        "on 3",
    ]
    cluster = load_cluster(inventory)
    assert {(p.slot, p.mac) for p in cluster.pis if p.mac} == {(1, mac_of(1, 1)), (2, mac_of(1, 2))}

    code, task = _run_harvest(tmp_path, args)  # the same Pis again: nothing changes
    assert code == 0, task
    assert task["changed"] is False


def test_sequential_refuses_a_whole_outlet_controller(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text("")
    controller = {"name": "pdu9", "driver": "synaccess", "address": "127.0.0.1", "port": 9}
    inventory = _sequential_inventory(tmp_path, controller)
    code, task = _run_harvest(
        tmp_path,
        {"model": str(inventory), "banks": [1], "sources": ["log"], "log_file": str(log),
         "sequential": True},
    )  # fmt: skip
    assert code != 0
    assert "sequential mode powers one slot at a time" in task["msg"]
    assert "controller pdu9 (synaccess)" in task["msg"]
    assert not (inventory / "macs.yml").exists()
