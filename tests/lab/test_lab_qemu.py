"""``lab_qemu_node: true``: the lab gets one real arm64 node that netboots from the lab's head.

A copy of inventory/lab (own name and network, test_lab's fixture) is provisioned by
``site.yml -e lab_qemu_node=true``: besides the simulated Pis, the supervisor powers on a QEMU
``virt`` machine (UEFI PXE, TCG) on a tap of the lab's cluster bridge once the head serves
GRUB; the head's dnsmasq reserves its address, NFS-Ganesha exports the real image (copied from
this machine's cache of tests/integration/qemu_image.py, made here when missing), and the
image's agent registers with the lab's server. What a user cares about: the node registers, the
lab report lists it with its time from power-on, and ``lab_destroy`` leaves no QEMU process,
PID file, tap or namespace behind. Needs root, podman, qemu-system-arm, qemu-efi-aarch64 and
grub-common. Slow: about 15 minutes on 2 cores (the lab run, then the rest of the node's TCG
boot), plus the image copy's first build when the cache is empty.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import test_lab
from test_lab import SITE, Lab

from bramble.lab import qemu_image
from bramble.lab.plan import QemuSettings, build_plan
from bramble.lab.qemu_node import QEMU, required_tools
from bramble.lab.supervisor import QEMU_TRIES
from bramble.labnet import ip, list_netns, pid_running
from cluster_helpers import ROOT
from integration.test_pi_image import built  # noqa: F401 - made only when the cache is empty

# test_lab's fixture: a copy of inventory/lab with its own name and network, torn down after.
lab = test_lab.lab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.long,
    # A lab run plus a QEMU boot (16 minutes at load 11): `make test` boots the QEMU node in
    # tests/integration/test_qemu_node.py and runs the lab in tests/lab/test_lab.py; this one,
    # both together as `make run LAB_QEMU=1` does, runs on demand.
    pytest.mark.skipif(
        os.environ.get("BRAMBLE_LAB_QEMU") != "1",
        reason="the lab with its QEMU node runs on demand: BRAMBLE_LAB_QEMU=1",
    ),
]

QEMU_ON = ("-e", "lab_qemu_node=true")
#: From power-on to registration: 4.5 minutes at load 10 in test_qemu_node; room for more.
REGISTER_TIMEOUT = 20 * 60


@pytest.fixture
def image(request: pytest.FixtureRequest) -> Path:
    """The cached image with the agent: the one there, else made as test_qemu_node makes it."""
    missing = required_tools()
    if missing:
        pytest.skip(f"apt-get install {' '.join(sorted(set(missing.values())))}")
    ready = qemu_image.newest_ready()
    if ready is None:
        from integration.qemu_image import agent_image  # noqa: PLC0415 - builds the image

        built = request.getfixturevalue("built")
        agent_image(built.root, built.boot)
        ready = qemu_image.newest_ready()
    assert ready is not None
    return ready


def _nodes(lab: Lab, head: str) -> dict[str, Any]:
    """The lab server's nodes by MAC (its API through the control leg, the admin token)."""
    token = lab.exec(lab.container, "cat", "/etc/bramble/secrets/admin.token").strip()
    request = urllib.request.Request(f"http://{head}:8470/api/v1/nodes")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the lab's server
        return {node["mac"]: node for node in json.loads(response.read())["nodes"]}


def _status(lab: Lab) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab.state_dir / "status.json").read_text())
    return data


def _qemu_pid(pid_file: Path) -> int | None:
    """The PID in the node's PID file when that process is QEMU."""
    try:
        pid = int(pid_file.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(command.decode()).name == QEMU else None


def test_the_qemu_node_joins_the_lab_registers_and_goes_with_it(lab: Lab, image: Path) -> None:
    plan = build_plan(lab.inventory / "cluster.yml", lab.name, qemu=QemuSettings())
    node = plan.qemu
    assert node is not None
    started = time.monotonic()
    run = lab.playbook(SITE, *QEMU_ON)
    assert run.returncode == 0, (
        run.stdout[-6000:] + run.stderr[-3000:] + "\n== lab state\n" + lab.diagnostics()
    )
    site_seconds = time.monotonic() - started

    # the head serves the node: its reservation, GRUB, and the real image's kernel and root
    conf = lab.exec(lab.container, "cat", "/etc/dnsmasq.d/bramble.conf")
    assert f"dhcp-host={node.mac},{node.ip},{node.name}" in conf
    assert "dhcp-match=set:efi-arm64,option:client-arch,11" in conf
    grub = lab.exec(lab.container, "cat", "/srv/bramble/tftp/efi-arm64/grub.cfg")
    assert f"nfsroot={plan.head_address}:/srv/bramble/root" in grub
    release = lab.exec(lab.container, "cat", "/srv/bramble/root/etc/os-release")
    assert "ID=debian" in release, release

    # the supervisor powered it on (QEMU by its PID file, its tap on the cluster bridge)
    pid = _qemu_pid(Path(node.pid_file))
    assert pid is not None, _status(lab).get("qemu")
    taps = ip("-n", plan.cluster_netns, "-o", "link", "show", "master", "br-cluster").stdout
    assert f" {node.tap}:" in taps

    # its agent registers with the lab's server (untrusted: not in the model's MAC file)
    deadline = time.monotonic() + REGISTER_TIMEOUT
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = _nodes(lab, plan.head_address).get(node.mac, {})
        if found:
            break
        qemu = _status(lab)["qemu"]
        if qemu["failure"] and not qemu["powered"] and qemu["power_ons"] >= QEMU_TRIES:
            pytest.fail(f"the QEMU node gave up: {qemu}\n{lab.diagnostics()}")
        time.sleep(5)
    qemu = _status(lab)["qemu"]
    console = Path(node.console).read_text(errors="replace")
    assert found, f"not registered within {REGISTER_TIMEOUT} s: {qemu}\n{console[-4000:]}"
    assert found["ip"] == node.ip, found
    assert set(qemu["boot"]) == {"grub", "kernel", "overlay"}, qemu

    # the lab report lists it: registered, with its time from power-on
    report_run = lab.playbook(ROOT / "playbooks" / "lab_report.yml", *QEMU_ON)
    assert report_run.returncode == 0, report_run.stdout[-4000:]
    report = json.loads((lab.state_dir / "report.json").read_text())
    assert report["qemu"]["registered"] is True, report["qemu"]
    seconds = report["qemu"]["seconds_from_power_on"]
    assert 0 < seconds < REGISTER_TIMEOUT + 3600
    print(
        f"QEMU node in the lab: site.yml {site_seconds:.0f} s; from power-on: {qemu['boot']},"
        f" registered at {seconds} s; power-ons {qemu['power_ons']}"
    )

    # teardown: no QEMU, PID file, tap or namespace left
    down = lab.playbook(ROOT / "playbooks" / "lab_destroy.yml")
    assert down.returncode == 0, down.stdout[-4000:]
    assert not Path(f"/proc/{pid}").exists() or _qemu_pid_is_gone(pid)
    assert not Path(node.pid_file).exists()
    assert not [n for n in list_netns() if n.startswith(plan.prefix)]


def _qemu_pid_is_gone(pid: int) -> bool:
    """True when ``pid`` is no longer QEMU (gone, a zombie or a reused PID)."""
    if not pid_running(pid):
        return True
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return True
    return Path(command.decode()).name != QEMU
