"""Addresses, names and identifiers derived from the cluster model (pure functions).

The rules here are the documented ones (docs/cluster-model.md); templates reach them through
the filter plugin in plugins/filter/bramble.py.
"""

from __future__ import annotations

import re

import netaddr

#: Organisationally unique identifiers of Raspberry Pi network interfaces.
PI_OUIS = ("b8:27:eb", "dc:a6:32", "e4:5f:01", "d8:3a:dd", "2c:cf:67")

#: Models whose MAC carries the low three bytes of the board serial.
SERIAL_IN_MAC_MODELS = frozenset({"pi3b", "pi3bplus"})

_HEX12 = re.compile(r"^[0-9a-f]{12}$")
_SERIAL = re.compile(r"^[0-9a-f]{8}$")


def _network(value: object) -> netaddr.IPNetwork:
    try:
        return netaddr.IPNetwork(str(value))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IP network (e.g. 10.42.0.0/16)") from None


def _address(value: object) -> netaddr.IPAddress:
    try:
        return netaddr.IPAddress(str(value))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IP address (e.g. 10.42.7.3)") from None


def normalize_mac(value: object) -> str:
    """Return a MAC as six lower-case colon-separated octets.

    Accepts ``b8:27:eb:01:02:03``, ``B8-27-EB-01-02-03``, ``b827.eb01.0203`` and ``b827eb010203``.
    Raises ValueError naming the value otherwise.
    """
    if not isinstance(value, str):
        raise ValueError(
            f"MAC {value!r} is not a string (quote it: YAML reads some bare MACs as numbers)"
        )
    digits = re.sub(r"[:.\-]", "", value.strip().lower())
    if not _HEX12.match(digits) or not _separators_ok(value.strip()):
        raise ValueError(
            f"{value!r} is not a MAC address (expected six hex octets, b8:27:eb:12:34:56)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _separators_ok(value: str) -> bool:
    return bool(
        re.fullmatch(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}", value)
        or re.fullmatch(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", value)
        or re.fullmatch(r"[0-9A-Fa-f]{12}", value)
    )


def normalize_serial(value: object) -> str:
    """Return a Pi serial as 8 lower-case hex digits (the name of its TFTP folder)."""
    if not isinstance(value, str):
        raise ValueError(
            f"serial {value!r} is not a string (quote it: YAML reads bare digits as a number)"
        )
    serial = value.strip().lower()
    if serial.startswith("0x"):
        serial = serial[2:]
    if len(serial) == 16 and serial[:8] in ("00000000", "10000000"):  # /proc/cpuinfo form
        serial = serial[8:]
    if not _SERIAL.match(serial):
        raise ValueError(f"{value!r} is not a Pi serial (expected 8 hex digits, e.g. 4db34690)")
    return serial


def serial_suffix_from_mac(mac: str, model: str = "pi3bplus") -> str | None:
    """The part of the serial a MAC reveals: its low 3 bytes as 6 hex digits, or None.

    On a Pi 3B/3B+ the MAC is b8:27:eb followed by the serial's low 3 bytes. The serial's top
    byte is not in the MAC: it is learnt from the Pi's TFTP requests (``<serial>/start.elf``).
    Other models' MACs do not encode the serial.
    """
    normal = normalize_mac(mac)
    if model not in SERIAL_IN_MAC_MODELS or not normal.startswith("b8:27:eb:"):
        return None
    return normal[9:].replace(":", "")


def is_pi_mac(mac: str) -> bool:
    """True when the MAC belongs to one of the Raspberry Pi OUIs."""
    return normalize_mac(mac)[:8] in PI_OUIS


def slot_ip(network: str, bank: int, slot: int, bank_stride: int = 256) -> str:
    """The Pi address: network address + bank * bank_stride + slot.

    With the default /16 and stride 256, bank 7 slot 3 of 10.42.0.0/16 is 10.42.7.3. Raises
    ValueError when the address falls outside the network or is its broadcast address.
    """
    if bank < 1 or slot < 1:
        raise ValueError(f"bank {bank} slot {slot}: banks and slots count from 1")
    if slot >= bank_stride:
        raise ValueError(f"slot {slot} does not fit a bank stride of {bank_stride}")
    net = _network(network)
    address = netaddr.IPAddress(int(net.network) + bank * bank_stride + slot, net.version)
    if address not in net or address == net.broadcast:
        raise ValueError(
            f"bank {bank} slot {slot} would be {address}, outside {net.cidr}: use a larger "
            "network or a smaller bank_stride"
        )
    return str(address)


def bank_block(network: str, bank: int, bank_stride: int = 256) -> tuple[str, str]:
    """First and last address of the block reserved for one bank."""
    net = _network(network)
    first = int(net.network) + bank * bank_stride
    return (
        str(netaddr.IPAddress(first, net.version)),
        str(netaddr.IPAddress(first + bank_stride - 1, net.version)),
    )


def number_width(count: int) -> int:
    """Digits used for bank and slot numbers in names: at least two."""
    return max(2, len(str(count)))


def bank_group_name(bank: int, bank_count: int) -> str:
    """Group name of a bank: ``bank07`` (zero-padded to the width of the bank count)."""
    return f"bank{bank:0{number_width(bank_count)}d}"


def power_group_name(group_id: int) -> str:
    """Group name of a power group: ``power03``."""
    return f"power{group_id:02d}"


def pi_name(bank: int, slot: int, bank_count: int, bank_size: int) -> str:
    """Host name of a Pi: ``pi-07-03`` is bank 7, slot 3."""
    return f"pi-{bank:0{number_width(bank_count)}d}-{slot:0{number_width(bank_size)}d}"


def dhcp_host_line(mac: str, name: str, ip: str) -> str:
    """A dnsmasq reservation: ``dhcp-host=b8:27:eb:12:34:56,pi-07-03,10.42.7.3``."""
    address = _address(ip)
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
        raise ValueError(f"{name!r} is not a valid host name for a DHCP reservation")
    return f"dhcp-host={normalize_mac(mac)},{name},{address}"
