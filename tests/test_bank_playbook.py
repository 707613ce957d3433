"""playbooks/bank.yml end to end on a copy of the lab inventory, against the simulators.

Bank 1 hangs on the HTTP relay board simulator, its switch is the SNMP simulator (MAC table),
dhcp_tftp renders into a scratch folder (no service). Check mode switches and writes nothing;
a real run powers the bank, harvests its MACs, writes the reservations and prints the summary
line; a second run changes neither the MAC file nor the reservations.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.sim.power import Outlets
from bramble.sim.relay import RelayBoardSim
from bramble.sim.snmpagent import SnmpSim
from cluster_helpers import BIN, INVENTORIES, ROOT, ansible_env, mac_of

pytestmark = pytest.mark.slow

TOKEN = "relay-t0ken-bank"  # noqa: S105 - the simulator's test token


@dataclass
class Site:
    inventory: Path
    work: Path
    relay: Outlets
    switch: SnmpSim
    extra: dict[str, Any]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    relay = Outlets(4)
    relay_sim = RelayBoardSim(relay, token=TOKEN)
    switch = SnmpSim(host="127.0.0.2")  # its own address: the model wants one per device
    relay_sim.start()
    try:
        switch.start()
        try:
            inventory = tmp_path / "inventory" / "lab"
            inventory.mkdir(parents=True)
            model = yaml.safe_load((INVENTORIES / "lab" / "cluster.yml").read_text())
            model["controllers"][0].update(address="127.0.0.1", port=relay_sim.port)
            model["controllers"][1].update(address="127.0.0.3", port=9)  # bank 2: not used
            model["switches"][0]["address"] = "127.0.0.2"
            del model["switches"][0]["power"]  # the switch is always on here
            (inventory / "cluster.yml").write_text("---\n" + yaml.safe_dump(model))
            (inventory / "macs.yml").write_text("---\nmacs: []\n")
            work = tmp_path / "work"
            extra = {
                "vault_lab_relay1_token": TOKEN,
                "bank_snmp_port": switch.port,
                "bank_head_host": "localhost",
                "bank_power_host": "localhost",
                "bank_settle": 0,
                "bank_budget_count": "request",
                "bank_cycle_delay": 0,
                "dhcp_tftp_manage_service": False,
                "dhcp_tftp_require_boot_files": False,
                "dhcp_tftp_conf_file": str(work / "bramble.conf"),
                "dhcp_tftp_tftp_root": str(work / "tftp"),
                "dhcp_tftp_boot_dir": str(work / "boot"),
                "dhcp_tftp_lease_file": str(work / "leases"),
                "dhcp_tftp_interface": "eth0",
                "ansible_python_interpreter": str(BIN / "python"),
            }
            work.mkdir()
            yield Site(inventory, work, relay, switch, extra)
        finally:
            switch.close()
    finally:
        relay_sim.close()


def run_bank(inventory: Path, extra: dict[str, Any], *flags: str) -> tuple[int, list[Any], str]:
    """Run playbooks/bank.yml; (exit code, tasks of the JSON report, failures or output tail)."""
    env = ansible_env() | {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/bank.yml",
         "-e", json.dumps(extra), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON from ansible-playbook:\n{result.stdout[-3000:]}{result.stderr}")
    tasks = [task for p in report["plays"] for task in p["tasks"]]
    failures = [
        f"{task['task']['name']} on {host}: {res.get('msg')}"
        for task in tasks
        for host, res in task["hosts"].items()
        if res.get("failed")
    ]
    return result.returncode, tasks, "\n".join(failures) or result.stdout[-3000:]


def play(site: Site, *flags: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_bank(site.inventory, site.extra, "--limit", "bank01", *flags)


def named(task: dict[str, Any], name: str) -> bool:
    """Whether a task of the JSON report is ``name`` (bank.yml's tasks are roles/bank's)."""
    return str(task["task"]["name"]).removeprefix("bank : ") == name


def task_result(tasks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The result of the named task on the host that ran it (the bank's leader)."""
    for task in tasks:
        if named(task, name):
            for result in task["hosts"].values():
                if not result.get("skipped"):
                    return dict(result)
    raise AssertionError(f"task {name!r} did not run")


def test_bank_playbook_check_run_and_second_run(site: Site) -> None:
    site.switch.set_fdb({mac_of(1, s): s for s in (1, 2, 4)} | {mac_of(2, 1): 9})
    mac_file = site.inventory / "macs.yml"
    before = mac_file.read_text()

    code, tasks, out = play(site, "--check", "--diff")
    assert code == 0, out
    harvest = task_result(tasks, "Harvest the bank's MACs")
    assert harvest["changed"] is True
    assert mac_of(1, 1) in harvest["diff"]["after"]
    assert mac_file.read_text() == before  # check mode wrote nothing
    assert site.relay.requests == []  # and switched nothing

    code, tasks, out = play(site)
    assert code == 0, out
    assert site.relay.get(1)  # bank 1 group is on
    text = mac_file.read_text()
    assert all(mac_of(1, s) in text for s in (1, 2, 4))
    assert mac_of(2, 1) not in text  # bank 2 was not in --limit
    conf = (site.work / "bramble.conf").read_text()
    assert f"dhcp-host={mac_of(1, 1)},pi-01-01,10.42.1.1" in conf
    report = task_result(tasks, "Report the bank")["msg"]
    assert report.startswith("bank01: unverified/4 booted")
    assert "missing slots: 3" in report

    code, tasks, out = play(site)
    assert code == 0, out
    assert task_result(tasks, "Harvest the bank's MACs")["changed"] is False
    assert mac_file.read_text() == text
    assert (site.work / "bramble.conf").read_text() == conf
