"""Real arm64 nodes boot the shared image over the network, the way a cluster boots, and register.

Two QEMU ``virt`` machines (UEFI firmware of qemu-efi-aarch64, TCG, one virtio NIC each on a tap
port of a lab bridge in a network namespace, no user networking, no route out) power on with
the MACs of two Pis of the model. On the head namespace run the real daemons with the roles'
configs: dnsmasq (dhcp_tftp with ``dhcp_tftp_uefi_arm64``: reservations, and GRUB for DHCP
client arch 11 with a grub.cfg built from the image's cmdline.txt), NFS-Ganesha (nfs_root: the
image's root, read-only) and bramble-server. The firmware PXE-boots GRUB, GRUB loads the
image's kernel and initramfs over TFTP, the initramfs takes the reservation, mounts the NFS
root read-only under a tmpfs overlay, and systemd starts the real bramble-agent (installed into
a cached copy of the image with the pi_agent role, see qemu_image.py), which hears the beacon
and registers. Over SSH (a test key of the copy) the tests prove the root is read-only and the
writable layer tmpfs; SSH host keys are made at boot and differ between the two machines.

One boot for all tests: this module replaces the direct-kernel boot of the former
test_pi_boot.py and covers its assertions. Timings (power-on to GRUB, kernel, overlay and
registration) are printed and written to ``qemu-node-timings.json`` in the test's folder.

Needs root, the cached image of test_pi_image (built there when missing) and the Debian
packages qemu-system-arm qemu-efi-aarch64 grub-common dnsmasq-base nfs-ganesha
nfs-ganesha-vfs rpcbind openssh-client. About 3 to 10 minutes of TCG on 2 cores, plus about
3 minutes once to copy the image and install the agent into the copy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bramble.lab.qemu_node import GRUB, KERNEL, OVERLAY, QemuNode, required_tools
from bramble.labnet import LabNet, in_netns
from bramble.sim import bootserver
from bramble.sim.bootserver import Dnsmasq, ModelPi
from integration.nfs_server import ganesha, render_ganesha
from integration.qemu_image import AGENT_TOKEN, CLUSTER, CLUSTER_KEY, AgentImage, agent_image
from integration.test_pi_image import HEAD, Built, built  # noqa: F401 - the image fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]

REPO = Path(__file__).resolve().parents[2]
#: Two Pis of one bank: the machines take their MACs (the model derives them from the serials).
PIS = (ModelPi(bank=1, slot=1, serial="4db34690"), ModelPi(bank=1, slot=2, serial="1a2b3c4d"))
#: The image's cmdline.txt names the desk head; the test cluster keeps that address.
CIDR = "192.168.0.0/16"
BROADCAST = "192.168.255.255"
ADMIN_TOKEN = "qemu-node-admin-token-0123"  # noqa: S105 - test secret
BOOT_TIMEOUT = 25 * 60
TOOLS = {
    "dnsmasq": "dnsmasq-base",
    "ganesha.nfsd": "nfs-ganesha nfs-ganesha-vfs",
    "rpcbind": "rpcbind",
    "ssh": "openssh-client",
    "grub-mkimage": "grub-common",
}


SSH_WAIT = 240.0  # s a booted machine's sshd may take to listen after its agent registered


@dataclass
class Machine:
    """One booted machine: its reservation, console and what it showed on the way."""

    node: QemuNode
    name: str
    address: str
    mac: str
    timings: dict[str, float]


@dataclass
class Cluster:
    net: LabNet
    head: str  # namespace
    image: AgentImage
    machines: list[Machine]
    nodes: dict[str, Any]  # the server's registry by MAC, once all registered

    def ssh(self, machine: Machine, command: str) -> subprocess.CompletedProcess[str]:
        """``command`` on ``machine`` as root over SSH from the head (the image's test key).

        The agent may register before sshd listens (on an emulated CPU under load, sshd's
        start can come minutes after the agent's): a refused connection is tried again for
        up to SSH_WAIT s."""
        deadline = time.monotonic() + SSH_WAIT
        while True:
            result = self.net.run(self.head, [
                "ssh", "-i", str(self.image.ssh_key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
                f"root@{machine.address}", command,
            ], timeout=120)  # fmt: skip
            refused = result.returncode == 255 and "Connection refused" in result.stderr
            if not refused or time.monotonic() > deadline:
                return result
            time.sleep(3)


def _api(netns: str, path: str) -> Any:
    request = urllib.request.Request(f"http://{HEAD}:8470{path}")
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    with in_netns(netns), urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _server_config(work: Path, reservations: list[bootserver.Reservation]) -> Path:
    secrets = {"cluster.key": CLUSTER_KEY, "agent.token": AGENT_TOKEN, "admin.token": ADMIN_TOKEN}
    for name, text in secrets.items():
        (work / name).write_text(text, encoding="utf-8")
        (work / name).chmod(0o600)
    model = [
        {"name": r.name, "bank": p.bank, "slot": p.slot, "mac": r.mac, "ip": r.ip}
        for r, p in zip(reservations, PIS, strict=True)
    ]
    (work / "nodes.json").write_text(json.dumps(model), encoding="utf-8")
    config = work / "server.toml"
    config.write_text(
        f'[server]\ncluster = "{CLUSTER}"\nadvertise = "{HEAD}"\n'
        f'[beacon]\ninterval = 2.0\nbroadcast = "{BROADCAST}"\n'
        f'[auth]\ncluster_key_file = "{work / "cluster.key"}"\n'
        f'agent_token_file = "{work / "agent.token"}"\n'
        f'admin_token_file = "{work / "admin.token"}"\n'
        f'[store]\nsqlite = "{work / "server.db"}"\n'
        f'[model]\nnodes_file = "{work / "nodes.json"}"\n',
        encoding="utf-8",
    )
    return config


def _wait_for_boot(machines: list[Machine], deadline: float) -> None:
    """Until every console shows the overlay line; when each machine showed each stage."""
    marks = {"grub": GRUB, "kernel": KERNEL, "overlay": OVERLAY}
    while time.monotonic() < deadline:
        for machine in machines:
            text = machine.node.console_text()
            for label, mark in marks.items():
                if label not in machine.timings and mark in text:
                    machine.timings[label] = time.monotonic() - machine.node.powered_on
            machine.node.check(text)
        if all(len(machine.timings) == len(marks) for machine in machines):
            return
        time.sleep(1)
    tails = "\n".join(f"--- {m.name}\n{m.node.console_text()[-3000:]}" for m in machines)
    pytest.fail(f"not booted to the overlay within {BOOT_TIMEOUT} s:\n{tails}")


def _wait_for_registration(cluster: Cluster, deadline: float) -> None:
    """Until the server lists every machine's MAC; times from power-on in each's timings."""
    waiting = {machine.mac: machine for machine in cluster.machines}
    last: Any = None
    while waiting and time.monotonic() < deadline:
        try:
            last = {node["mac"]: node for node in _api(cluster.head, "/api/v1/nodes")["nodes"]}
        except (OSError, ValueError) as exc:
            last = exc
        if isinstance(last, dict):
            for mac in [mac for mac in waiting if mac in last]:
                machine = waiting.pop(mac)
                machine.timings["registered"] = time.monotonic() - machine.node.powered_on
            cluster.nodes = last
        for machine in waiting.values():
            if not machine.node.running():
                pytest.fail(f"{machine.name} stopped:\n{machine.node.console_text()[-4000:]}")
        time.sleep(2)
    if waiting:
        tails = "\n".join(
            f"--- {m.name}\n{m.node.console_text()[-3000:]}" for m in waiting.values()
        )
        pytest.fail(f"not registered within {BOOT_TIMEOUT} s (server: {last!r}):\n{tails}")


@pytest.fixture(scope="module")
def cluster(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # noqa: F811
    missing = {**required_tools(), **{t: p for t, p in TOOLS.items() if shutil.which(t) is None}}
    assert not missing, f"install the Debian packages: apt-get install {' '.join(missing.values())}"
    image = agent_image(built.root, built.boot)
    work = tmp_path_factory.mktemp("qemu-node")
    inventory = work / "inventory"
    reservations = bootserver.write_inventory(
        inventory, PIS, name=CLUSTER, cidr=CIDR, head_address=HEAD, bank_size=4, power_budget=4
    )
    dnsmasq_conf, _ = bootserver.role_conf(
        REPO,
        work,
        interface="eth0",
        inventory=inventory,
        extra_vars={
            "dhcp_tftp_boot_dir": str(image.boot),
            "dhcp_tftp_dns": False,
            "dhcp_tftp_uefi_arm64": True,
            "dhcp_tftp_uefi_arm64_cmdline_extra": ["panic=5"],
        },
    )
    ganesha_conf = render_ganesha(work, inventory, image.root)
    server_conf = _server_config(work, reservations)
    with LabNet() as net, ExitStack() as stack:
        head = net.add_head(f"{HEAD}/16")
        stack.enter_context(Dnsmasq(net, head, dnsmasq_conf, work / "dnsmasq.log", log_dhcp=True))
        stack.enter_context(ganesha(head.netns, ganesha_conf, work / "ganesha.log", HEAD))
        log = stack.enter_context((work / "server.log").open("ab"))
        net.popen(head.netns, [sys.executable, "-m", "bramble.services.server.main",
                               "--config", str(server_conf)], stdout=log, stderr=log)  # fmt: skip
        machines = []
        for index, reservation in enumerate(reservations):
            node = QemuNode(
                name=reservation.name,
                netns=net.lab,
                bridge=net.bridge,
                console=work / f"{reservation.name}.console",
                mac=reservation.mac,
                tap=f"qn{index}",
            )
            stack.callback(node.stop)
            node.start()
            machines.append(Machine(node, reservation.name, reservation.ip, reservation.mac, {}))
        deadline = time.monotonic() + BOOT_TIMEOUT
        _wait_for_boot(machines, deadline)
        result = Cluster(net, head.netns, image, machines, {})
        _wait_for_registration(result, deadline)
        timings = {m.name: {k: round(v, 1) for k, v in m.timings.items()} for m in machines}
        (work / "qemu-node-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        print(f"QEMU node timings (s from power-on): {timings}")
        yield result


def test_each_machine_netboots_grub_and_takes_its_reservation(cluster: Cluster) -> None:
    assert [machine.name for machine in cluster.machines] == ["pi-01-01", "pi-01-02"]
    for machine in cluster.machines:
        text = machine.node.console_text()
        # UEFI PXE loaded GRUB, whose grub.cfg (dhcp_tftp) loaded the image's kernel
        assert "bramble: loading efi-arm64/vmlinuz" in text, text[:3000]
        # the initramfs' DHCP (klibc ipconfig) took the reservation: address and host name
        assert re.search(rf"address: {re.escape(machine.address)}\s", text), text[-3000:]
        assert re.search(rf"host\s*: {re.escape(machine.name)}\s", text)
        assert machine.timings["grub"] < machine.timings["kernel"] < machine.timings["overlay"]


def test_agents_register_with_the_server(cluster: Cluster) -> None:
    for machine in cluster.machines:
        node = cluster.nodes[machine.mac]
        assert (node["name"], node["ip"], node["bank"]) == (machine.name, machine.address, 1)
        assert node["trusted"] is True
        assert machine.timings["overlay"] < machine.timings["registered"]
        agent = cluster.ssh(machine, "systemctl is-active bramble-agent")
        assert agent.stdout.strip() == "active", agent.stdout + agent.stderr


def test_the_root_is_read_only_nfs_under_a_tmpfs_overlay(cluster: Cluster) -> None:
    for machine in cluster.machines:
        mounts = cluster.ssh(
            machine,
            "for m in / /media/root-ro /media/root-rw;"
            " do findmnt -n -o FSTYPE,OPTIONS --mountpoint $m || exit 1; done",
        )
        assert mounts.returncode == 0, mounts.stderr
        root, lower, upper = (line.split() for line in mounts.stdout.splitlines())
        assert root[0] == "overlay"
        assert lower[0] == "nfs", lower
        assert "ro" in lower[1].split(","), lower
        assert upper[0] == "tmpfs", upper
        # a write to the shared root fails; the same write through the overlay lands in tmpfs
        write = cluster.ssh(machine, "echo x > /media/root-ro/bramble-write-test")
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr, write.stderr
        write = cluster.ssh(
            machine, "echo x > /bramble-write-test && cat /media/root-rw/upper/bramble-write-test"
        )
        assert write.stdout.strip() == "x", write.stderr
    assert not (cluster.image.root / "bramble-write-test").exists()


def test_nothing_a_machine_writes_reaches_the_shared_root(cluster: Cluster) -> None:
    root = cluster.image.root
    assert not list((root / "etc" / "ssh").glob("ssh_host_*"))
    assert not (root / "etc" / "hostname").exists()
    assert (root / "etc" / "machine-id").stat().st_size == 0


def test_ssh_host_keys_are_made_at_boot_and_differ_between_machines(cluster: Cluster) -> None:
    keys = []
    for machine in cluster.machines:
        key = cluster.ssh(machine, "cat /etc/ssh/ssh_host_ed25519_key.pub")
        assert key.stdout.startswith("ssh-ed25519 "), key.stderr
        keys.append(key.stdout.split()[1])
    assert len(set(keys)) == len(keys)
