"""mac_harvest's live DHCP capture: simulated Pi ROMs send real DISCOVERs on a lab bridge.

The module runs through Ansible, captures in the head's namespace, and records each Pi's MAC
and the serial its option 97 carries; a non-Pi client is left out and counted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bramble.labnet import LabNet
from bramble.model import load_cluster
from bramble.sim.bootserver import ModelPi, write_inventory
from bramble.sim.pirom import cli_argv
from cluster_helpers import BIN, ROOT, ansible_env
from integration.conftest import missing_requirements

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLAYBOOK = """\
---
- name: Harvest from DHCP
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Capture the Pis' DISCOVERs
      mac_harvest: "{{ harvest_args }}"
"""

PIS = (ModelPi(bank=1, slot=1, serial="4db34690"), ModelPi(bank=1, slot=2, serial="1a2b3c4d"))
NOT_A_PI = "02:42:ac:11:00:02"


def test_capture_records_macs_and_serials(tmp_path: Path) -> None:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    inventory = tmp_path / "inventory"
    write_inventory(inventory, [], bank_size=3, power_budget=3)
    playbook = tmp_path / "harvest.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    with LabNet() as net:
        head = net.add_head("10.42.0.1/16")
        roms = []
        for mac, serial in [(p.mac, p.serial) for p in PIS] + [(NOT_A_PI, "00110002")]:
            node = net.add_pi(mac)
            argv = cli_argv(
                node.interface, mac, serial, "--dhcp-tries", "12", "--dhcp-interval", "1"
            )
            roms.append(net.popen(node.netns, argv, stdout=subprocess.DEVNULL))
        args = {
            "model": str(inventory),
            "sources": ["dhcp"],
            "capture_interface": head.interface,
            "capture_netns": head.netns,
            "capture_seconds": 20,
            "unplaced": "fill",
        }
        env = ansible_env() | {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
             "-e", json.dumps({"harvest_args": args})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        for rom in roms:
            net.stop(rom)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert task["rejected"]["counts"].get("foreign", 0) >= 1
    assert [(m["bank"], m["slot"]) for m in task["missing"]] == [(1, 3)]
    cluster = load_cluster(inventory)
    assert cluster.problems == ()
    harvested = {p.mac: p.serial for p in cluster.pis if p.mac}
    assert harvested == {p.mac: p.serial for p in PIS}
