"""Fixtures for integration tests: a lab network in namespaces and a real dnsmasq boot server.

The boot server's config and TFTP tree come from the dhcp_tftp role (rendered against a test
inventory, no packages, no service); ``render_boot_server`` is the one place that decides
that, and falls back to the hand-written equivalent only when the role is not in the tree.
Everything runs as root inside ``brt-*`` namespaces that the fixtures remove again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bramble.labnet import LabNet, Node
from bramble.sim import bootserver
from bramble.sim.bootserver import Dnsmasq, ModelPi, Reservation
from bramble.sim.pirom import cli_argv

REPO = Path(__file__).resolve().parents[2]
NETWORK, NETMASK, HEAD_IP = "10.42.0.0", "255.255.0.0", "10.42.0.1"
#: Pis in the test model: two reserved; a third Pi of the bank has no MAC (unharvested).
MODEL_PIS = (ModelPi(bank=1, slot=1, serial="4db34690"), ModelPi(bank=1, slot=2, serial="1a2b3c4d"))
#: A Pi 3B+ MAC that is in no reservation.
UNKNOWN_MAC = "b8:27:eb:99:88:77"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs root, network namespaces and real daemons (dnsmasq)"
    )


def missing_requirements() -> str | None:
    """Why integration tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets)"
    for tool in ("ip", "dnsmasq", "busybox", "curl"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"needs {tool} (apt: iproute2 dnsmasq-base busybox curl)"
    return None


@dataclass
class BootServer:
    """Rendered config and TFTP tree of one boot server."""

    conf: Path
    tftp_root: Path
    boot_dir: Path
    reservations: list[Reservation]
    digests: dict[str, str]
    rendered_by_role: bool


def render_boot_server(work: Path) -> BootServer:
    """Config + TFTP tree for MODEL_PIS: the dhcp_tftp role's, else the hand-written one."""
    boot = work / "boot"
    bootserver.make_boot_files(boot, bootserver.SMALL_SIZES)
    (boot / "bootcode.bin").write_bytes(bootserver._pattern(b"bootcode", 52_456))
    digests = {p.name: bootserver.sha256_file(p) for p in boot.iterdir()}
    reservations = bootserver.write_inventory(
        work / "inventory", MODEL_PIS, bank_size=3, power_budget=3
    )
    if bootserver.role_available(REPO):
        conf, root = bootserver.role_conf(
            REPO,
            work,
            interface="eth0",
            inventory=work / "inventory",
            extra_vars={"dhcp_tftp_boot_dir": str(boot), "dhcp_tftp_dns": False},
        )
        return BootServer(conf, root, boot, reservations, digests, rendered_by_role=True)
    root = work / "tftp"
    bootserver.make_tftp_tree(root, [r.serial for r in reservations], boot_dir=boot)
    conf = bootserver.hand_written_conf(
        work / "bramble.conf",
        interface="eth0",
        network=NETWORK,
        netmask=NETMASK,
        tftp_root=root,
        lease_file=work / "leases",
        reservations=reservations,
        settings=bootserver.ServerSettings(dhcp_reply_delay=1, tftp_max=50),
    )
    return BootServer(conf, root, boot, reservations, digests, rendered_by_role=False)


@dataclass
class Lab:
    """A lab network with a running dnsmasq and one Pi namespace per test Pi."""

    net: LabNet
    head: Node
    server: BootServer
    dnsmasq: Dnsmasq
    pis: dict[str, Node]  # by MAC
    work: Path

    def pirom(self, mac: str, serial: str, *args: str, timeout: float = 120) -> tuple[int, str]:
        """Run the simulator CLI in the Pi's namespace; (exit code, JSON outcome)."""
        node = self.pis[mac]
        argv = cli_argv(node.interface, mac, serial, *args)
        result = self.net.run(node.netns, argv, timeout=timeout)
        return result.returncode, result.stdout.strip().splitlines()[-1] if result.stdout else ""


def _start_lab(work: Path, server: BootServer, macs: list[str]) -> Iterator[Lab]:
    with LabNet() as net:
        head = net.add_head(f"{HEAD_IP}/16")
        pis = {mac: net.add_pi(mac) for mac in macs}
        dnsmasq = Dnsmasq(net, head, server.conf, work / f"dnsmasq-{net.prefix}.log", log_dhcp=True)
        with dnsmasq:
            yield Lab(net, head, server, dnsmasq, pis, work)


@pytest.fixture(scope="module")
def boot_server(tmp_path_factory: pytest.TempPathFactory) -> BootServer:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    return render_boot_server(tmp_path_factory.mktemp("bootserver"))


@pytest.fixture(scope="module")
def lab(boot_server: BootServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The boot server running with the role's config; Pi namespaces for every test Pi."""
    macs = [r.mac for r in boot_server.reservations] + [UNKNOWN_MAC]
    yield from _start_lab(tmp_path_factory.mktemp("lab"), boot_server, macs)


@pytest.fixture
def lab_with(
    boot_server: BootServer, tmp_path: Path
) -> Iterator[Callable[[Callable[[str], str]], Lab]]:
    """A separate lab whose dnsmasq runs the role's config changed by ``edit(text)``."""
    started: list[Iterator[Lab]] = []

    def start(edit: Callable[[str], str]) -> Lab:
        conf = tmp_path / "edited.conf"
        conf.write_text(edit(boot_server.conf.read_text(encoding="utf-8")), encoding="utf-8")
        server = BootServer(
            conf,
            boot_server.tftp_root,
            boot_server.boot_dir,
            boot_server.reservations,
            boot_server.digests,
            boot_server.rendered_by_role,
        )
        generator = _start_lab(tmp_path, server, [r.mac for r in boot_server.reservations])
        started.append(generator)
        return next(generator)

    yield start
    for generator in started:
        generator.close()  # runs the with-blocks' exits: dnsmasq stopped, namespaces deleted
