"""What a lab is made of, derived from the cluster model: names, addresses, Pis, controllers.

Pure functions (no root needed): the supervisor builds what the plan says, tests read it.
Every name carries the lab's prefix ``brl-<lab>`` so two labs (or a lab and a test) never
collide, and teardown can find what belongs to a lab by name.
"""

from __future__ import annotations

import ipaddress
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bramble.lab.qemu_node import LAB_MAC
from bramble.model.cluster import load_cluster

STATE_ROOT = Path("/run/bramble/lab")
#: Admin-side network of the lab (head's admin interface); nothing else lives there.
ADMIN_NETWORK = "192.168.42.0/24"


#: A Linux bridge holds at most 1024 ports (BR_MAX_PORTS); every Pi has one on br-cluster.
BRIDGE_PORTS = 1024


@dataclass(frozen=True)
class LabPi:
    """One simulated Pi: where it sits, its identity and its namespace."""

    name: str
    bank: int
    slot: int
    ip: str
    mac: str
    serial: str
    netns: str
    power_group: int
    switch: str | None = None
    switch_port: int | None = None


@dataclass(frozen=True)
class LabController:
    """A simulated power controller on a lab address."""

    name: str
    driver: str
    address: str
    port: int
    outlets: int
    credentials: str | None


@dataclass(frozen=True)
class LabSwitch:
    """A simulated managed switch: its SNMP agent serves the MAC table (port -> MAC)."""

    name: str
    address: str
    community: str | None


@dataclass(frozen=True)
class LabBoard:
    """A simulated bridge board (bramble.sim.boards) on its model address, in the devices
    namespace; its secret is ``board-<name>`` of the lab's secrets (the bridges role's)."""

    name: str
    kind: str
    address: str
    port: int
    pixels: int
    pixel_type: str


@dataclass(frozen=True)
class LabQemu:
    """The lab's one real arm64 node (``lab_qemu_node``): a QEMU machine on a tap port of the
    cluster bridge (bramble.lab.qemu_node); the head reserves ``ip`` for ``mac``."""

    name: str
    mac: str
    ip: str
    tap: str
    pid_file: str
    console: str


@dataclass
class LabPlan:
    """Everything one lab holds."""

    name: str
    prefix: str
    state_dir: str
    cluster_netns: str
    head_netns: str
    devices_netns: str
    head_address: str
    prefix_length: int
    cluster_interface: str
    admin_interface: str
    admin_address: str
    control_interface: str
    control_address: str
    rom_dhcp_tries: int = 5
    device_addresses: list[str] = field(default_factory=list)
    switches: list[LabSwitch] = field(default_factory=list)
    controllers: list[LabController] = field(default_factory=list)
    # power group id -> (controller name, outlet)
    groups: dict[int, tuple[str, int]] = field(default_factory=dict)
    pis: list[LabPi] = field(default_factory=list)
    boards: list[LabBoard] = field(default_factory=list)
    # The sound Pi's namespace (its systemd container joins it) and address, if the model has one.
    sound_netns: str | None = None
    sound_address: str | None = None
    # The QEMU node, when the lab has one (off by default).
    qemu: LabQemu | None = None

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the lab, the bridge's first."""
        sound = [self.sound_netns] if self.sound_netns else []
        return [self.cluster_netns, self.head_netns, self.devices_netns, *sound] + [
            pi.netns for pi in self.pis
        ]

    def bridge_ports(self) -> int:
        """Ports on the cluster bridge: one per namespace but the bridge's own, one for the
        control leg, one for the QEMU node's tap."""
        return len(self.namespaces) + (1 if self.qemu else 0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabPlan:
        data: dict[str, Any] = json.loads(text)
        data["controllers"] = [LabController(**c) for c in data["controllers"]]
        data["pis"] = [LabPi(**p) for p in data["pis"]]
        data["switches"] = [LabSwitch(**w) for w in data.get("switches", [])]
        data["boards"] = [LabBoard(**b) for b in data.get("boards", [])]
        data["groups"] = {int(k): (v[0], int(v[1])) for k, v in data["groups"].items()}
        if data.get("qemu"):
            data["qemu"] = LabQemu(**data["qemu"])
        return cls(**data)


def lab_serial(bank: int, slot: int) -> str:
    """A deterministic Pi 3B+ serial for a lab slot (8 hex digits, unique per slot)."""
    return f"1a{bank:03x}{slot:03x}"


def lab_mac(serial: str) -> str:
    """A Pi 3B+ MAC: ``b8:27:eb`` and the low three bytes of the serial."""
    low = serial[-6:]
    return "b8:27:eb:" + ":".join(low[i : i + 2] for i in range(0, 6, 2))


DEFAULT_PORTS = {"http_relay": 80, "synaccess": 23, "snmp_pdu": 161, "poe_snmp": 161}
#: The QEMU node's address: this host part of the lab's network (block 0 holds the head and
#: the devices, .0.1 to .0.100 at most; the banks start at block 1).
QEMU_HOST = 200
#: The QEMU node's tap port on br-cluster (in the bridge's namespace).
QEMU_TAP = "qn0"
#: The boards' HTTP port (the sketches' and bridges_board_port's default).
BOARD_PORT = 80


@dataclass(frozen=True)
class QemuSettings:
    """What ``lab_qemu_node`` asks for: the node's name, MAC and reserved address (None: the
    network's host part .0.200, outside the banks and the devices)."""

    name: str = "qemu1"
    mac: str = LAB_MAC
    ip: str | None = None


def build_plan(
    model_file: str | Path,
    name: str,
    state_root: Path = STATE_ROOT,
    rom_dhcp_tries: int = 5,
    qemu: QemuSettings | None = None,
) -> LabPlan:
    """The lab for the cluster model at ``model_file`` (its cluster.yml).

    ``rom_dhcp_tries``: DHCP rounds of each simulated ROM before it gives up (a Pi 3B+ tries 5).
    ``qemu``: the lab also has the QEMU node (None: it has none).
    """
    cluster = load_cluster(model_file)
    model = cluster.model
    network = ipaddress.ip_network(str(model.network.cidr))
    prefix = f"brl-{name}"
    controllers = [
        LabController(
            name=c.name,
            driver=str(c.driver),
            address=str(c.address),
            port=int(c.port or DEFAULT_PORTS.get(str(c.driver), 0)),
            outlets=int(c.outlets or 8),
            credentials=c.credentials,
        )
        for c in model.controllers
        if c.address
    ]
    groups: dict[int, tuple[str, int]] = {}
    bank_group: dict[int, int] = {}
    for group in model.power.groups:
        groups[group.id] = (group.controller, int(group.outlet))
        for bank in group.banks:
            bank_group[bank] = group.id
    addresses = [c.address for c in controllers]
    addresses += [str(s.address) for s in model.switches if s.address]
    bridges = model.bridges
    boards = [
        LabBoard(b.name, str(b.kind), str(b.address), BOARD_PORT, b.pixels, str(b.pixel_type))
        for b in (bridges.boards if bridges else [])
    ]
    addresses += [b.address for b in boards]
    sound = bridges.sound if bridges else None
    pis = []
    for pi in cluster.pis:
        serial = lab_serial(pi.bank, pi.slot)
        pis.append(
            LabPi(
                name=pi.name,
                bank=pi.bank,
                slot=pi.slot,
                ip=pi.ip,
                mac=lab_mac(serial),
                serial=serial,
                netns=f"{prefix}-b{pi.bank}s{pi.slot}",
                power_group=bank_group.get(pi.bank, 0),
                switch=pi.switch,
                switch_port=pi.switch_port,
            )
        )
    admin = ipaddress.ip_network(ADMIN_NETWORK)
    switches = [
        LabSwitch(name=w.name, address=str(w.address), community=w.credentials)
        for w in model.switches
        if w.address
    ]
    state_dir = state_root / name
    node = None
    if qemu is not None:
        node = LabQemu(
            name=qemu.name,
            mac=qemu.mac.lower(),
            ip=qemu.ip or str(network.network_address + QEMU_HOST),
            tap=QEMU_TAP,
            pid_file=str(state_dir / "qemu.pid"),
            console=str(state_dir / "qemu" / "console.log"),
        )
    plan = LabPlan(
        name=name,
        prefix=prefix,
        state_dir=str(state_dir),
        cluster_netns=f"{prefix}-net",
        head_netns=f"{prefix}-head",
        devices_netns=f"{prefix}-dev",
        head_address=str(model.head.address or next(network.hosts())),
        prefix_length=network.prefixlen,
        cluster_interface=model.head.interfaces.cluster,
        admin_interface=model.head.interfaces.admin or "eth0",
        admin_address=f"{admin.network_address + 1}/{admin.prefixlen}",
        control_interface=f"brl{zlib.crc32(prefix.encode()):08x}"[:15],
        control_address=f"{network.broadcast_address - 1}/{network.prefixlen}",
        rom_dhcp_tries=rom_dhcp_tries,
        device_addresses=sorted(set(addresses)),
        switches=switches,
        controllers=controllers,
        groups=groups,
        pis=pis,
        boards=boards,
        sound_netns=f"{prefix}-sound" if sound else None,
        sound_address=str(sound.address) if sound else None,
        qemu=node,
    )
    if plan.bridge_ports() > BRIDGE_PORTS:
        raise ValueError(
            f"the lab would need {plan.bridge_ports()} ports on its cluster bridge "
            f"({len(pis)} Pis{' and the QEMU node' if node else ''}); a Linux bridge holds "
            f"{BRIDGE_PORTS}: make the lab smaller"
            + (" or leave the QEMU node out" if node else "")
        )
    return plan
