"""Who this node is: the MAC and IPv4 address of its cluster interface, its serial, its name."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

_CPUINFO_SERIAL = re.compile(r"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", re.MULTILINE)


class IdentityError(RuntimeError):
    """The node's interface, MAC or address cannot be found."""


@dataclass(frozen=True)
class Identity:
    """What the agent registers with (docs/services-protocol.md, register)."""

    mac: str
    ip: str
    hostname: str
    serial: str | None = None


def default_interface(route_file: Path = Path("/proc/net/route")) -> str | None:
    """The interface of the IPv4 default route, if there is one."""
    try:
        lines = route_file.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def _addresses(interface: str) -> tuple[str | None, str | None]:
    mac = ip = None
    for address in psutil.net_if_addrs().get(interface, []):
        if address.family == psutil.AF_LINK and address.address:
            mac = address.address.lower().replace("-", ":")
        elif address.family == socket.AF_INET and ip is None:
            ip = address.address
    return mac, ip


def pick_interface(wanted: str = "") -> str:
    """``wanted``, else the default route's interface, else the first one that is up with an
    IPv4 address and is not loopback (a Pi on the cluster LAN has no default route)."""
    if wanted:
        if wanted not in psutil.net_if_addrs():
            raise IdentityError(f"agent.interface: there is no interface {wanted!r}")
        return wanted
    found = default_interface()
    if found:
        return found
    stats = psutil.net_if_stats()
    for name in sorted(psutil.net_if_addrs()):
        if name == "lo" or not stats.get(name, None) or not stats[name].isup:
            continue
        if _addresses(name)[1]:
            return name
    raise IdentityError("agent.interface: no interface with an IPv4 address is up; set it")


def read_serial(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    devicetree: Path = Path("/sys/firmware/devicetree/base/serial-number"),
) -> str | None:
    """The Pi's serial as 8 hex digits (the low part, as the boot ROM names its folder)."""
    text = ""
    try:
        text = devicetree.read_text(encoding="ascii", errors="replace").strip("\x00\n ")
    except OSError:
        try:
            match = _CPUINFO_SERIAL.search(cpuinfo.read_text(encoding="ascii", errors="replace"))
        except OSError:
            match = None
        text = match.group(1) if match else ""
    if not re.fullmatch(r"[0-9a-fA-F]{8,16}", text):
        return None
    return text[-8:].lower()


def detect(interface: str = "") -> Identity:
    """This node's identity on ``interface`` (see ``pick_interface``)."""
    name = pick_interface(interface)
    mac, ip = _addresses(name)
    if not mac:
        raise IdentityError(f"agent.interface: {name} has no MAC address")
    if not ip:
        raise IdentityError(f"agent.interface: {name} has no IPv4 address yet")
    return Identity(mac=mac, ip=ip, hostname=socket.gethostname(), serial=read_serial())
