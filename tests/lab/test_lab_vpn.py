"""``lab_vpn: true``: the lab's cloud-side gateway answers the real vpn role on the head.

A copy of inventory/lab (own name and network, test_lab's fixture) is brought up with
``playbooks/lab.yml -e lab_vpn=true`` (the supervisor, the head container, the cloud gateway:
strongSwan in ``brl-<lab>-cloud``, bramble.lab.cloud), then ``playbooks/edge.yml`` runs the
real vpn role (and the firewall) on the head container. What a user cares about: the tunnel to
the model's first cloud endpoint is established, a ping from the head's cluster address to the
cloud subnet goes through it (the ESP packet counters rise on both sides), a second lab.yml
changes nothing, and lab_destroy leaves no cloud namespace and no charon behind.
Needs root, podman and strongSwan (Makefile APT_TEST). About 3 minutes on an idle 2-core
machine (most of it the head container and Ansible), longer under load.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import test_lab
import yaml
from test_lab import Lab, changed_tasks

from bramble.lab.cloud import CHARON, LIBIPSEC, SWANCTL, CloudGateway
from bramble.labnet import list_netns
from cluster_helpers import ROOT

# test_lab's fixture: a copy of inventory/lab with its own name and network, torn down after.
lab = test_lab.lab

# Its own group: it runs on the other worker while the long group's lab and QEMU tests run.
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.long(group="long-vpn")]

PLAYBOOKS = ROOT / "playbooks"
VPN = ("-e", "lab_vpn=true")
# The head's services are not configured in this test (no head.yml): the firewall opens none.
NO_SERVICES = json.dumps(
    {f"{role}_firewall_rules": [] for role in ("dhcp_tftp", "nfs_root", "time", "cluster_server")}
)


def _missing() -> str | None:
    for tool in (SWANCTL, CHARON, LIBIPSEC):
        if not Path(tool).exists():
            return (
                f"needs {tool} (apt: strongswan-swanctl charon-systemd "
                "libstrongswan-standard-plugins libcharon-extra-plugins)"
            )
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun (user-space ESP)"
    return None


def _running(proc: Path) -> bool:
    """A process that has not exited (a zombie has)."""
    return (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def run_ok(the_lab: Lab, playbook: Path, *args: str) -> dict[str, object]:
    run = the_lab.playbook(playbook, *args)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    result: dict[str, object] = json.loads(run.stdout[run.stdout.index("{") :])
    return result


def packets(sas: str) -> tuple[int, int]:
    """ESP packets in and out of the first CHILD_SA in ``swanctl --list-sas``."""
    found_in = re.search(r"\bin\s+\S+,\s+\d+ bytes,\s+(\d+) packets", sas)
    found_out = re.search(r"\bout\s+\S+,\s+\d+ bytes,\s+(\d+) packets", sas)
    assert found_in, sas
    assert found_out, sas
    return int(found_in.group(1)), int(found_out.group(1))


def head_sas(the_lab: Lab, installed: bool = True, timeout: float = 30) -> str:
    """The head's SAs, once a CHILD_SA is installed (bounded wait)."""
    deadline = time.monotonic() + timeout
    sas = ""
    while time.monotonic() < deadline:
        sas = the_lab.exec(the_lab.container, "swanctl", "--list-sas")
        if ("INSTALLED" in sas) == installed:
            break
        time.sleep(0.5)
    return sas


def test_lab_vpn_tunnel_carries_traffic_and_goes_away(lab: Lab) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    model = yaml.safe_load((lab.inventory / "cluster.yml").read_text())
    head = model["head"]["address"]
    endpoint = model["vpn"]["tunnels"][0]["remote"]
    cloud_address = "10.0.0.1"  # first host of the model's vpn.remote_subnets (10.0.0.0/24)
    started = time.monotonic()

    run_ok(lab, PLAYBOOKS / "lab.yml", *VPN)
    gateway = CloudGateway(lab.name)
    pid = gateway.pid()
    assert pid is not None, "the cloud gateway's charon is not running"
    assert gateway.netns in list_netns()

    run_ok(lab, PLAYBOOKS / "edge.yml", *VPN, "-e", NO_SERVICES)
    sas = head_sas(lab)
    for text in ("ESTABLISHED", "INSTALLED", "IKEv2", "AES_GCM_16-256", endpoint):
        assert text in sas, sas
    before = packets(sas)
    ping = subprocess.run(
        ["podman", "exec", lab.container, "busybox", "ping", "-c", "3", "-W", "2",
         "-I", head, cloud_address],
        env=lab.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    after = packets(lab.exec(lab.container, "swanctl", "--list-sas"))
    assert after[0] >= before[0] + 3, (before, after)
    assert after[1] >= before[1] + 3, (before, after)
    cloud = gateway.swanctl("--list-sas").stdout
    assert "INSTALLED" in cloud, cloud
    assert packets(cloud)[0] >= 3, cloud
    brought_up = time.monotonic() - started

    again = run_ok(lab, PLAYBOOKS / "lab.yml", *VPN)
    assert changed_tasks(again) == [], "the second lab.yml changed something"
    assert gateway.pid() == pid

    run_ok(lab, PLAYBOOKS / "lab_destroy.yml")
    assert gateway.netns not in list_netns()
    conf = f"STRONGSWAN_CONF={gateway.state}".encode()
    left = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if conf in environ.read_bytes() and _running(environ.parent):
                left.append(environ.parent.name)
    assert left == [], f"the cloud gateway's charon is left: {left}"
    print(f"lab + tunnel up and checked in {brought_up:.0f} s")
