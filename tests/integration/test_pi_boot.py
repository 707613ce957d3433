"""The shared Pi image boots for real: two machines netboot it from a head in namespaces.

There is no Pi here and QEMU's raspi3b machine cannot netboot, so the built image's own kernel
(boot/vmlinuz), initramfs (boot/initrd.img) and command line (boot/cmdline.txt, consoles
swapped for QEMU's) start in QEMU's arm64 ``virt`` machine under TCG, one virtio NIC each on a
tap port of a lab bridge. On the head namespace run the real daemons with the roles' configs:
dnsmasq (dhcp_tftp: the reservations give each machine its name and address) and NFS-Ganesha
(nfs_root: the image's root, read-only). What the tests read off the machines proves the
design: they get their reserved name from DHCP, mount the read-only root, write through the
tmpfs overlay (each makes its own SSH host keys at boot: they differ, and none lands in the
shared root), and come up to systemd's multi-user target.

Needs root, the cached image of test_pi_image (built there when missing), and the Debian
packages qemu-system-arm, dnsmasq-base, nfs-ganesha nfs-ganesha-vfs rpcbind, openssh-client.
A boot takes 1-4 minutes on a quiet 2-core machine (both machines boot at once).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bramble.labnet import LabNet, ip
from bramble.sim import bootserver
from bramble.sim.bootserver import Dnsmasq, ModelPi
from integration.nfs_server import ganesha, render_ganesha
from integration.test_pi_image import HEAD, Built, built  # noqa: F401 - the image fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Two Pis of one bank; the model derives their MACs (Pi 3B+) and addresses from the serials.
PIS = (ModelPi(bank=1, slot=1, serial="4db34690"), ModelPi(bank=1, slot=2, serial="1a2b3c4d"))
#: The image's cmdline.txt names the desk head; the test cluster keeps that address.
CIDR = "192.168.0.0/16"
BOOT_TIMEOUT = 25 * 60
TOOLS = {
    "qemu-system-aarch64": "qemu-system-arm",
    "dnsmasq": "dnsmasq-base",
    "ganesha.nfsd": "nfs-ganesha nfs-ganesha-vfs",
    "rpcbind": "rpcbind",
    "ssh-keyscan": "openssh-client",
}


@dataclass
class Machine:
    """One booted machine: what DHCP reserved for it and what it showed."""

    name: str
    address: str
    mac: str
    console: Path
    host_key: str

    def console_text(self) -> str:
        return _console(self.console)


#: Colours and cursor moves of systemd's status lines.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _console(path: Path) -> str:
    """What the machine printed on its serial console, without terminal control sequences."""
    return ANSI.sub("", path.read_text(encoding="utf-8", errors="replace"))


def _cmdline(boot: Path) -> str:
    """The image's kernel command line with QEMU's serial console instead of the Pi's."""
    words = (boot / "cmdline.txt").read_text(encoding="utf-8").split()
    kept = [word for word in words if not word.startswith("console=")]
    return " ".join(["console=ttyAMA0", *kept, "panic=5"])


def _qemu_argv(boot: Path, tap: str, mac: str, console: Path) -> list[str]:
    return [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-smp", "1", "-m", "768",
        "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{console}",
        "-kernel", str(boot / "vmlinuz"), "-initrd", str(boot / "initrd.img"),
        "-append", _cmdline(boot),
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
    ]  # fmt: skip


#: systemd's line once the machine is fully up.
BOOTED = "Reached target multi-user.target"


def _booted(name: str, text: str) -> bool:
    """Up: systemd reached multi-user, or the serial getty shows the login prompt (systemd
    stops printing status once the getty owns the console). Either alone is not enough: on a
    busy machine udev under TCG may announce ttyAMA0 after systemd's 90 s device timeout, and
    then the getty is cancelled and no prompt appears."""
    return BOOTED in text or f"{name} login:" in text


def _wait_for_boot(
    processes: dict[str, subprocess.Popen[bytes]], consoles: dict[str, Path]
) -> None:
    """Until every console shows BOOTED; fail on a panic, an exit or the time limit."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    waiting = set(consoles)
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            text = _console(consoles[name])
            if _booted(name, text):
                waiting.discard(name)
            elif "Kernel panic" in text or processes[name].poll() is not None:
                pytest.fail(f"{name} did not boot:\n{text[-5000:]}")
        time.sleep(2)
    if waiting:
        tails = "\n".join(f"--- {name}\n{_console(consoles[name])[-3000:]}" for name in waiting)
        pytest.fail(f"not booted within {BOOT_TIMEOUT} s:\n{tails}")


def _host_key(net: LabNet, netns: str, address: str) -> str:
    """The machine's ED25519 host key, as ssh-keyscan from the head sees it."""
    for _ in range(30):
        scan = net.run(netns, ["ssh-keyscan", "-T", "10", "-t", "ed25519", address], timeout=30)
        keys = [line.split()[-1] for line in scan.stdout.splitlines() if "ssh-ed25519" in line]
        if keys:
            return keys[0]
        time.sleep(5)
    raise AssertionError(f"no SSH host key from {address}: {scan.stderr}")


@pytest.fixture(scope="module")
def machines(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Machine]]:  # noqa: F811
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    assert not missing, f"install the Debian packages: apt-get install {' '.join(missing)}"
    work = tmp_path_factory.mktemp("pi-boot")
    inventory = work / "inventory"
    reservations = bootserver.write_inventory(
        inventory, PIS, cidr=CIDR, head_address=HEAD, bank_size=4, power_budget=4
    )
    dnsmasq_conf, _ = bootserver.role_conf(
        REPO,
        work,
        interface="eth0",
        inventory=inventory,
        extra_vars={"dhcp_tftp_boot_dir": str(built.boot), "dhcp_tftp_dns": False},
    )
    ganesha_conf = render_ganesha(work, inventory, built.root)
    with LabNet() as net:
        head = net.add_head(f"{HEAD}/16")
        processes: dict[str, subprocess.Popen[bytes]] = {}
        consoles: dict[str, Path] = {}
        with (
            Dnsmasq(net, head, dnsmasq_conf, work / "dnsmasq.log", log_dhcp=True),
            ganesha(head.netns, ganesha_conf, work / "ganesha.log", HEAD),
        ):
            for index, reservation in enumerate(reservations):
                tap = f"tap{index}"
                ip("-n", net.lab, "tuntap", "add", "dev", tap, "mode", "tap")
                ip("-n", net.lab, "link", "set", tap, "master", net.bridge, "up")
                console = work / f"{reservation.name}.console"
                console.touch()
                consoles[reservation.name] = console
                argv = _qemu_argv(built.boot, tap, reservation.mac, console)
                processes[reservation.name] = net.popen(
                    net.lab, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            _wait_for_boot(processes, consoles)
            yield [
                Machine(r.name, r.ip, r.mac, consoles[r.name], _host_key(net, head.netns, r.ip))
                for r in reservations
            ]


def test_each_machine_boots_with_its_reserved_name_and_address(machines: list[Machine]):
    assert [machine.name for machine in machines] == ["pi-01-01", "pi-01-02"]
    for machine in machines:
        text = machine.console_text()
        # the initramfs' DHCP (klibc ipconfig) took the reservation: address and host name
        assert re.search(rf"address: {re.escape(machine.address)}\s", text), text[-3000:]
        assert re.search(rf"host\s*: {re.escape(machine.name)}\s", text)
        assert _booted(machine.name, text)
        assert "Kernel panic" not in text


def test_the_root_is_the_read_only_nfs_export_under_a_tmpfs_overlay(
    machines: list[Machine],
    built: Built,  # noqa: F811
):
    for machine in machines:
        text = machine.console_text()
        assert "bramble-overlay: root: read-only lower layer with a tmpfs upper layer" in text
        assert "booting with the read-only root" not in text
    # what the machines wrote (host keys, logs, machine-id) stayed in their own overlays
    assert not list((built.root / "etc" / "ssh").glob("ssh_host_*"))
    assert not (built.root / "etc" / "hostname").exists()
    assert (built.root / "etc" / "machine-id").stat().st_size == 0


def test_ssh_host_keys_are_made_at_boot_and_differ_between_pis(machines: list[Machine]):
    keys = [machine.host_key for machine in machines]
    assert all(keys)
    assert len(set(keys)) == len(keys)
