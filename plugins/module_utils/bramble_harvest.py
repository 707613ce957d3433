"""mac_harvest's pure functions: sightings from each source, and the MAC file merge.

A *sighting* is one MAC seen by one source, with the slot when the source knows it (the
switch port, the slot being powered in sequential mode) and the serial when the source
reveals it (option 97 of a Pi 3B+ DISCOVER, the ``<serial>/`` folder of its TFTP reads).
``merge`` turns the MAC file's entries and the sightings into the new entries and the report
(new, unchanged, moved, missing, conflicts, unplaced).

mac_harvest runs on the control node, where the MAC file lives (inventory/<cluster>/macs.yml)
and where the bramble package is installed (the inventory plugin needs it too), so MAC and
serial rules come from bramble.model.net and the file format from bramble.model.macfile.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bramble.model import net
from bramble.model.schema import MacEntry
from bramble.sim.dhcp import (
    DHCP_SERVER_PORT,
    DHCPDISCOVER,
    DHCPREQUEST,
    OPT_CLIENT_GUID,
    OPT_VENDOR_CLASS,
    FrameError,
    parse_dhcp,
    parse_udp_frame,
)

Slot = tuple[int, int]
PXE_VENDOR_PREFIX = "PXEClient"
#: dnsmasq log lines (syslog prefix or not): "<xid> vendor class: ...", "DHCPOFFER(eth0) ...".
_LOG_VENDOR = re.compile(r"dnsmasq-dhcp\[\d+\]: (?P<xid>\d+) vendor class: (?P<vendor>.*?)\s*$")
_LOG_DHCP = re.compile(
    r"dnsmasq-dhcp\[\d+\]: (?:(?P<xid>\d+) )?DHCP(?P<kind>DISCOVER|REQUEST|OFFER|ACK)"
    r"\((?P<iface>[^)]*)\)(?: (?P<ip>\d{1,3}(?:\.\d{1,3}){3}))? (?P<mac>\S+)"
)
_LOG_TFTP = re.compile(
    r"dnsmasq-tftp\[\d+\]: (?:sent (?P<sent>\S+) to|file (?P<missing>\S+) not found for) "
    r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3})"
)
_SERIAL_FOLDER = re.compile(r"/(?P<serial>[0-9a-f]{8})/[^/]+$")


@dataclass(frozen=True)
class Sighting:
    """One MAC seen by one source; bank/slot and serial when the source knows them."""

    mac: str
    source: str
    bank: int | None = None
    slot: int | None = None
    serial: str | None = None
    ip: str | None = None

    @property
    def position(self) -> Slot | None:
        return (self.bank, self.slot) if self.bank and self.slot else None


@dataclass
class Tally:
    """Input that was skipped, by reason, with a few examples for the report."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(example[:120])

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": dict(self.examples)}


def checked_mac(value: str, tally: Tally, *, pi_only: bool, where: str) -> str | None:
    """The normalised MAC, or None (counted as malformed, or as foreign with ``pi_only``)."""
    try:
        mac = net.normalize_mac(value)
    except ValueError:
        tally.skip("malformed", f"{where}: {value!r}")
        return None
    if pi_only and not net.is_pi_mac(mac):
        tally.skip("foreign", f"{where}: {mac}")
        return None
    return mac


def checked_serial(serial: str | None, mac: str, model: str, tally: Tally) -> str | None:
    """A serial that fits the MAC (Pi 3B/3B+: MAC ends in the serial's low 3 bytes), or None."""
    if serial is None:
        return None
    try:
        serial = net.normalize_serial(serial)
    except ValueError:
        tally.skip("bad_serial", f"{mac}: {serial!r}")
        return None
    suffix = net.serial_suffix_from_mac(mac, model)
    if suffix is not None and not serial.endswith(suffix):
        tally.skip("bad_serial", f"{mac}: serial {serial} does not end in {suffix}")
        return None
    return serial


def serial_from_guid(guid: bytes) -> str | None:
    """The serial in option 97 of a Pi 3B+ DISCOVER: type 0, then the serial little-endian.

    The Pi 3B sends a constant GUID instead; ``checked_serial`` rejects it because it does
    not match the MAC.
    """
    if len(guid) != 17 or guid[0] != 0:
        return None
    (value,) = struct.unpack_from("<I", guid, 1)
    return f"{value:08x}"


def sighting_from_frame(
    frame: bytes, tally: Tally, *, pxe_only: bool, pi_only: bool, model: str
) -> Sighting | None:
    """A sighting from one captured Ethernet frame: a DHCPDISCOVER/REQUEST to port 67."""
    try:
        datagram = parse_udp_frame(frame, verify_udp_checksum=False)
        if datagram is None or datagram.dst_port != DHCP_SERVER_PORT:
            return None
        message = parse_dhcp(datagram.payload)
    except FrameError as exc:
        tally.skip("bad_frame", str(exc))
        return None
    if message.op != 1 or message.message_type not in (DHCPDISCOVER, DHCPREQUEST):
        return None
    vendor = message.options.get(OPT_VENDOR_CLASS, b"").decode("ascii", "replace")
    if pxe_only and not vendor.startswith(PXE_VENDOR_PREFIX):
        tally.skip("not_pxe", f"{message.chaddr} vendor class {vendor!r}")
        return None
    mac = checked_mac(message.chaddr, tally, pi_only=pi_only, where="DHCP frame")
    if mac is None:
        return None
    guid = message.options.get(OPT_CLIENT_GUID)
    serial = checked_serial(serial_from_guid(guid), mac, model, tally) if guid else None
    return Sighting(mac=mac, source="dhcp", serial=serial)


def sightings_from_log(
    lines: Iterable[str], tally: Tally, *, pxe_only: bool, pi_only: bool, model: str
) -> list[Sighting]:
    """Sightings from a dnsmasq log: DHCP lines give MACs, TFTP lines give serials.

    With ``log-dhcp`` each DISCOVER is preceded by its "vendor class" line (same transaction
    id), so ``pxe_only`` keeps the Pi ROM's DISCOVERs only; without ``log-dhcp`` dnsmasq does
    not log the vendor class and every DISCOVER counts. A TFTP read of ``<serial>/...`` by an
    address that an OFFER/ACK gave to a MAC records that MAC's serial.
    """
    found: list[Sighting] = []
    vendor_of: dict[str, str] = {}
    mac_of_ip: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if match := _LOG_VENDOR.search(line):
            vendor_of[match["xid"]] = match["vendor"]
        elif match := _LOG_DHCP.search(line):
            kind, xid = match["kind"], match["xid"]
            vendor = vendor_of.pop(xid, None) if xid else None
            pxe = vendor is None or vendor.startswith(PXE_VENDOR_PREFIX)
            if kind in ("DISCOVER", "REQUEST") and pxe_only and not pxe:
                tally.skip("not_pxe", f"line {number}: vendor class {vendor!r}")
                continue
            mac = checked_mac(match["mac"], tally, pi_only=pi_only, where=f"line {number}")
            if mac is None:
                continue
            if match["ip"]:
                mac_of_ip[match["ip"]] = mac
            found.append(Sighting(mac=mac, source="log", ip=match["ip"]))
        elif match := _LOG_TFTP.search(line):
            folder = _SERIAL_FOLDER.search(match["sent"] or match["missing"])
            mac = mac_of_ip.get(match["ip"])
            if folder and mac:
                serial = checked_serial(folder["serial"], mac, model, tally)
                if serial:
                    found.append(Sighting(mac=mac, source="log", serial=serial, ip=match["ip"]))
    return found


def sightings_from_leases(text: str, tally: Tally, *, pi_only: bool) -> list[Sighting]:
    """Sightings from a dnsmasq lease file: ``expiry mac ip name client-id`` per line."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "duid":
            continue
        if len(fields) < 3:
            tally.skip("malformed", f"lease line {number}: {line!r}")
            continue
        mac = checked_mac(fields[1], tally, pi_only=pi_only, where=f"lease line {number}")
        if mac:
            found.append(Sighting(mac=mac, source="lease", ip=fields[2]))
    return found


def port_slots(pis: Iterable[Any]) -> dict[tuple[str, int], Slot]:
    """(switch name, port) -> (bank, slot), from the model's Pis (``switch``/``switch_port``)."""
    return {
        (pi.switch, pi.switch_port): (pi.bank, pi.slot)
        for pi in pis
        if pi.switch and pi.switch_port is not None
    }


def sightings_from_fdb(
    switch: str,
    rows: Iterable[Any],
    slots: Mapping[tuple[str, int], Slot],
    tally: Tally,
    *,
    pi_only: bool,
    use_if_index: bool = False,
) -> list[Sighting]:
    """Sightings from a switch's learned FDB rows; the port gives the bank and slot.

    Rows on ports the model does not map (uplinks, the head) and rows that are not
    ``learned`` (the switch's own MACs, static entries) are left out.
    """
    found = []
    for row in rows:
        if row.status != 3:
            continue
        mac = checked_mac(row.mac, tally, pi_only=pi_only, where=f"switch {switch}")
        if mac is None:
            continue
        port = row.if_index if use_if_index else row.port
        position = slots.get((switch, port)) if port is not None else None
        if position is None:
            tally.skip("unmapped_port", f"{switch} port {port}: {mac}")
            continue
        found.append(Sighting(mac=mac, source="snmp", bank=position[0], slot=position[1]))
    return found


@dataclass
class Plan:
    """The merge result: the MAC file's new entries and what changed, per category."""

    entries: list[MacEntry]
    new: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    serials: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False


def _row(slot: Slot, mac: str, serial: str | None) -> dict[str, Any]:
    return {"bank": slot[0], "slot": slot[1], "mac": mac, "serial": serial}


def _slot_text(slot: Slot) -> str:
    return f"bank {slot[0]} slot {slot[1]}"


@dataclass
class _Seen:
    positions: list[Slot] = field(default_factory=list)
    serials: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _collect(sightings: Iterable[Sighting]) -> dict[str, _Seen]:
    seen: dict[str, _Seen] = {}
    for sighting in sightings:
        entry = seen.setdefault(sighting.mac, _Seen())
        position = sighting.position
        if position and position not in entry.positions:
            entry.positions.append(position)
        if sighting.serial and sighting.serial not in entry.serials:
            entry.serials.append(sighting.serial)
        if sighting.source not in entry.sources:
            entry.sources.append(sighting.source)
    return seen


def _conflict(plan: Plan, kind: str, reason: str, **where: Any) -> None:
    """kind "seen": this harvest contradicts itself; "file": it contradicts the MAC file."""
    plan.conflicts.append({"kind": kind, **where, "reason": reason})


def _place(
    seen: Mapping[str, _Seen], targets: set[Slot], file_slot: Mapping[str, Slot], plan: Plan
) -> dict[str, Slot]:
    """MAC -> slot: where it was seen, else where the file has it; the rest is unplaced."""
    placed: dict[str, Slot] = {}
    for mac, info in seen.items():
        if len(info.positions) > 1:
            where = ", ".join(_slot_text(p) for p in info.positions)
            _conflict(plan, "seen", f"{mac} seen at {where}", mac=mac)
        elif info.positions:
            if info.positions[0] in targets:
                placed[mac] = info.positions[0]
        elif mac in file_slot:
            if file_slot[mac] in targets:
                placed[mac] = file_slot[mac]
        else:
            plan.unplaced.append(mac)
    claims: dict[Slot, list[str]] = {}
    for mac, slot in placed.items():
        claims.setdefault(slot, []).append(mac)
    for slot, macs in claims.items():
        if len(macs) > 1:
            reason = f"{_slot_text(slot)} claimed by {', '.join(macs)}"
            _conflict(plan, "seen", reason, bank=slot[0], slot=slot[1])
            for mac in macs:
                del placed[mac]
    return placed


def _fill(placed: dict[str, Slot], targets: Sequence[Slot], taken: set[Slot], plan: Plan) -> None:
    """Give unplaced MACs the free target slots, in the order they were first seen."""
    free = [slot for slot in targets if slot not in taken and slot not in placed.values()]
    for mac, slot in zip(list(plan.unplaced), free, strict=False):
        placed[mac] = slot
        plan.unplaced.remove(mac)


def _serial(
    mac: str, slot: Slot, seen: Sequence[str], known: str | None, plan: Plan, *, force: bool
) -> str | None:
    """The serial to record for a MAC: what the file has, else the one serial seen."""
    if len(seen) > 1:
        _conflict(plan, "seen", f"{mac} showed serials {', '.join(seen)}", mac=mac)
        return known
    if not seen or seen[0] == known:
        return known
    if known:
        reason = f"{mac} has serial {known} in the MAC file, {seen[0]} was seen"
        _conflict(plan, "file", reason, mac=mac)
        return seen[0] if force else known
    plan.serials.append(_row(slot, mac, seen[0]))
    return seen[0]


def merge(
    existing: Sequence[MacEntry],
    sightings: Sequence[Sighting],
    slots: Sequence[Slot],
    *,
    fill: bool = False,
    force: bool = False,
) -> Plan:
    """Merge this harvest's sightings into the MAC file's entries.

    ``slots`` are the slots being harvested (the target banks or slots): only they change,
    and those that stayed silent are ``missing``. A MAC seen at a known slot lands there:
    ``new``, ``unchanged`` or ``moved`` (it was in another slot). A MAC without a slot keeps
    its slot from the file; if it has none it is ``unplaced``, or with ``fill`` takes the
    next free slot in the order it was first seen (right only when the Pis came up in slot
    order). ``conflicts``: one MAC at two slots, two MACs at one slot, two serials for one
    MAC (kind ``seen``), or a slot or serial the file gives to another (kind ``file``):
    those entries stay as they are, unless ``force`` lets what was seen win a ``file`` one.
    """
    targets = list(dict.fromkeys(slots))
    file_mac: dict[Slot, str] = {}
    file_serial: dict[Slot, str | None] = {}
    for entry in existing:
        slot = (entry.bank, entry.slot)
        file_mac[slot] = net.normalize_mac(entry.mac)
        file_serial[slot] = net.normalize_serial(entry.serial) if entry.serial else None
    file_slot = {mac: slot for slot, mac in file_mac.items()}
    plan = Plan(entries=[])
    seen = _collect(sightings)
    placed = _place(seen, set(targets), file_slot, plan)
    if fill:
        _fill(placed, targets, set(file_mac), plan)
    result_mac, result_serial = dict(file_mac), dict(file_serial)
    for mac, slot in sorted(placed.items(), key=lambda item: item[1]):
        occupant, old = file_mac.get(slot), file_slot.get(mac)
        if occupant and occupant != mac and placed.get(occupant, slot) == slot:
            reason = f"{_slot_text(slot)} holds {occupant} in the MAC file, {mac} was seen there"
            _conflict(plan, "file", reason, bank=slot[0], slot=slot[1], mac=mac)
            if not force:
                continue
        known = file_serial.get(old) if old else None
        serial = _serial(mac, slot, seen[mac].serials, known, plan, force=force)
        if old is None:
            plan.new.append(_row(slot, mac, serial))
        elif old == slot:
            plan.unchanged.append(_row(slot, mac, serial))
        else:
            if result_mac.get(old) == mac:
                del result_mac[old]
                result_serial.pop(old, None)
            plan.moved.append({"mac": mac, "from": list(old), "to": list(slot), "serial": serial})
        result_mac[slot], result_serial[slot] = mac, serial
    heard = set(placed.values())
    plan.missing = [{"bank": s[0], "slot": s[1]} for s in targets if s not in heard]
    plan.entries = [
        MacEntry(bank=slot[0], slot=slot[1], mac=mac, serial=result_serial.get(slot))
        for slot, mac in sorted(result_mac.items())
    ]
    plan.changed = {s: (m, file_serial.get(s)) for s, m in file_mac.items()} != {
        s: (m, result_serial.get(s)) for s, m in result_mac.items()
    }
    return plan


def claim(sightings: Iterable[Sighting], bank: int, slot: int, ignore: set[str]) -> Sighting | None:
    """Sequential mode: the first MAC seen after one slot was powered, placed in that slot.

    ``ignore`` holds MACs that cannot be this slot's: those taken by the slots powered before
    (their ROMs keep resending DISCOVERs) and those the MAC file places in other banks.
    """
    for sighting in sightings:
        if sighting.mac not in ignore:
            return Sighting(
                mac=sighting.mac,
                source="sequential",
                bank=bank,
                slot=slot,
                serial=sighting.serial,
                ip=sighting.ip,
            )
    return None
