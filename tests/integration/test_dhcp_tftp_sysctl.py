"""The dhcp_tftp role raises the head's ARP cache limits for real (not in a container).

The molecule scenario runs in a container, where /proc/sys is read-only and the role only
reports the values. Here the role's sysctl tasks run on this machine for the 1,050-Pi model:
the kernel's gc_thresh1..3 take the role's values, the sysctl.d file keeps them, a second run
changes nothing. The limits are global to the host (Linux exposes them only in the initial
network namespace), so the test puts the previous values back afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_helpers import INVENTORIES, run_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
KEYS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")
#: bigpi: 1,050 Pis + 64 other neighbours; thresholds 1x, 2x, 4x (never below the defaults).
EXPECTED = {"gc_thresh1": 1114, "gc_thresh2": 2228, "gc_thresh3": 4456}

PLAYBOOK = """\
---
- name: Apply the ARP cache limits of dhcp_tftp on this machine
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Run the role's sysctl tasks
      ansible.builtin.include_role:
        name: dhcp_tftp
        tasks_from: sysctl
"""


@pytest.fixture
def restored() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("needs root to set kernel parameters")
    if not os.access(NEIGH / "gc_thresh3", os.W_OK):
        pytest.skip("/proc/sys is read-only here (a container): the role reports instead")
    before = {key: (NEIGH / key).read_text(encoding="utf-8") for key in KEYS}
    try:
        yield
    finally:
        # gc_thresh1 <= gc_thresh2 <= gc_thresh3 need not hold, but restore from the top down
        for key in reversed(KEYS):
            (NEIGH / key).write_text(before[key], encoding="utf-8")


def _apply(tmp_path: Path, sysctl_file: Path) -> str:
    playbook = tmp_path / "sysctl.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    settings = {"dhcp_tftp_sysctl_file": str(sysctl_file)}
    result = run_tool(
        "ansible-playbook",
        "-i",
        INVENTORIES / "bigpi",
        playbook,
        "-e",
        json.dumps(settings),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_the_role_raises_the_arp_cache_limits_above_the_node_count(
    restored: None, tmp_path: Path
) -> None:
    sysctl_file = tmp_path / "60-bramble-neigh.conf"
    first = _apply(tmp_path, sysctl_file)
    assert "changed=" in first
    values = {key: int((NEIGH / key).read_text(encoding="utf-8")) for key in KEYS}
    assert values == EXPECTED
    kept = sysctl_file.read_text(encoding="utf-8")
    for key, value in EXPECTED.items():
        assert f"net.ipv4.neigh.default.{key}={value}" in kept.replace(" ", "")
    second = _apply(tmp_path, sysctl_file)
    assert "changed=0" in second.rsplit("PLAY RECAP", 1)[-1], second[-3000:]
