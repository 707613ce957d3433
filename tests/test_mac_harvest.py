"""mac_harvest's pure functions (plugins/module_utils): parsers, FDB decoding and the merge."""

from __future__ import annotations

import pytest

from bramble.model.schema import MacEntry
from bramble.sim.dhcp import (
    DHCPOFFER,
    OPT_MESSAGE_TYPE,
    OPT_VENDOR_CLASS,
    build_bootp,
    build_rom_discover_frame,
    build_udp_frame,
    ip_bytes,
    mac_bytes,
)
from cluster_helpers import load_module_utils, mac_of, serial_of

harvest = load_module_utils("bramble_harvest")
fdb = load_module_utils("bramble_snmp_fdb")

SLOTS_B1 = [(1, s) for s in range(1, 5)]


def entry(bank: int, slot: int, mac: str | None = None, serial: str | None = None) -> MacEntry:
    return MacEntry(bank=bank, slot=slot, mac=mac or mac_of(bank, slot), serial=serial)


def seen(bank: int | None, slot: int | None, mac: str, serial: str | None = None) -> object:
    return harvest.Sighting(mac=mac, source="test", bank=bank, slot=slot, serial=serial)


# --- dnsmasq log ---------------------------------------------------------------------------

#: Lines as dnsmasq 2.90 writes them with log-dhcp (recorded in the lab), plus a non-PXE client,
#: a malformed MAC and a syslog prefix.
LOG = """\
dnsmasq-dhcp[31097]: 653460281 available DHCP subnet: 10.42.0.0/255.255.0.0
dnsmasq-dhcp[31097]: 653460281 vendor class: PXEClient:Arch:00000:UNDI:002001
dnsmasq-dhcp[31097]: 653460281 DHCPDISCOVER(eth0) b8:27:eb:b3:46:90
dnsmasq-dhcp[31097]: 653460281 reply delay: 1
dnsmasq-dhcp[31097]: 653460281 DHCPOFFER(eth0) 10.42.1.1 b8:27:eb:b3:46:90
dnsmasq-tftp[31097]: file /srv/tftp/bootsig.bin not found for 10.42.1.1
dnsmasq-tftp[31097]: sent /srv/tftp/bootcode.bin to 10.42.1.1
dnsmasq-tftp[31097]: sent /srv/tftp/4db34690/start.elf to 10.42.1.1
dnsmasq-dhcp[31097]: 777 vendor class: android-dhcp-13
dnsmasq-dhcp[31097]: 777 DHCPDISCOVER(eth0) b8:27:eb:00:00:01
Jan  1 10:00:00 head dnsmasq-dhcp[31097]: 653460281 vendor class: PXEClient:Arch:00000:UNDI:002001
Jan  1 10:00:00 head dnsmasq-dhcp[31097]: 653460281 DHCPDISCOVER(eth0) b8:27:eb:99:88:77 no addr
dnsmasq-dhcp[31097]: 653460281 vendor class: PXEClient:Arch:00000:UNDI:002001
dnsmasq-dhcp[31097]: 653460281 DHCPDISCOVER(eth0) b8:27:eb:zz:88:77 no address available
dnsmasq-dhcp[31097]: 653460281 vendor class: PXEClient:Arch:00000:UNDI:002001
dnsmasq-dhcp[31097]: 653460281 DHCPDISCOVER(eth0) 00:11:22:33:44:55 no address available
"""


def test_log_gives_macs_and_serials_and_counts_what_it_skips() -> None:
    tally = harvest.Tally()
    found = harvest.sightings_from_log(
        LOG.splitlines(), tally, pxe_only=True, pi_only=True, model="pi3bplus"
    )
    macs = [s.mac for s in found]
    assert "b8:27:eb:b3:46:90" in macs
    assert "b8:27:eb:99:88:77" in macs  # syslog prefix, unknown to dnsmasq: still a sighting
    assert "b8:27:eb:00:00:01" not in macs  # vendor class is not PXEClient
    serials = {s.mac: s.serial for s in found if s.serial}
    assert serials == {"b8:27:eb:b3:46:90": "4db34690"}
    assert tally.counts == {"not_pxe": 1, "malformed": 1, "foreign": 1}
    assert "b8:27:eb:zz:88:77" in tally.examples["malformed"][0]


def test_log_without_log_dhcp_keeps_every_discover() -> None:
    line = "dnsmasq-dhcp[5]: DHCPDISCOVER(eth1) B8-27-EB-01-02-03 no address available"
    tally = harvest.Tally()
    found = harvest.sightings_from_log([line], tally, pxe_only=True, pi_only=True, model="pi3b")
    assert [s.mac for s in found] == ["b8:27:eb:01:02:03"]


def test_log_serial_that_does_not_fit_the_mac_is_skipped() -> None:
    lines = [
        "dnsmasq-dhcp[1]: 9 DHCPOFFER(eth0) 10.42.1.1 b8:27:eb:b3:46:90",
        "dnsmasq-tftp[1]: sent /srv/tftp/12345678/start.elf to 10.42.1.1",
    ]
    tally = harvest.Tally()
    found = harvest.sightings_from_log(lines, tally, pxe_only=True, pi_only=True, model="pi3bplus")
    assert all(s.serial is None for s in found)
    assert tally.counts == {"bad_serial": 1}


def test_leases() -> None:
    text = (
        "1700000000 b8:27:eb:b3:46:90 10.42.1.1 pi-01-01 01:b8:27:eb:b3:46:90\n"
        "1700000000 not-a-mac 10.42.1.2 * *\n"
        "duid 00:01:00:01\n"
        "garbage\n"
    )
    tally = harvest.Tally()
    found = harvest.sightings_from_leases(text, tally, pi_only=True)
    assert [(s.mac, s.ip) for s in found] == [("b8:27:eb:b3:46:90", "10.42.1.1")]
    assert tally.counts == {"malformed": 2}


# --- captured frames -------------------------------------------------------------------------


def rom_frame(mac: str, serial: str) -> bytes:
    return build_rom_discover_frame(mac, serial)


def test_rom_discover_gives_mac_and_serial() -> None:
    tally = harvest.Tally()
    sighting = harvest.sighting_from_frame(
        rom_frame("b8:27:eb:b3:46:90", "4db34690"),
        tally,
        pxe_only=True,
        pi_only=True,
        model="pi3bplus",
    )
    assert sighting.mac == "b8:27:eb:b3:46:90"
    assert sighting.serial == "4db34690"
    assert sighting.position is None


def test_pi3b_constant_guid_is_not_taken_for_a_serial() -> None:
    # The 3B sends 16 x 0x44 in option 97: it does not end in the MAC's low bytes.
    tally = harvest.Tally()
    sighting = harvest.sighting_from_frame(
        rom_frame("b8:27:eb:b3:46:90", "44444444"), tally, pxe_only=True, pi_only=True, model="pi3b"
    )
    assert sighting.serial is None
    assert tally.counts == {"bad_serial": 1}


def test_frames_that_are_not_rom_discovers_are_left_out() -> None:
    offer = build_bootp(
        op=2,
        xid=1,
        chaddr=mac_bytes("b8:27:eb:01:02:03"),
        options=[(OPT_MESSAGE_TYPE, bytes([DHCPOFFER]))],
    )
    other = build_bootp(
        op=1,
        xid=1,
        chaddr=mac_bytes("b8:27:eb:01:02:03"),
        options=[(OPT_MESSAGE_TYPE, b"\x01"), (OPT_VENDOR_CLASS, b"udhcp 1.36")],
    )
    tally = harvest.Tally()
    for payload, port in ((offer, 67), (other, 67), (other, 68)):
        frame = build_udp_frame(
            src_mac=mac_bytes("b8:27:eb:01:02:03"),
            dst_mac=b"\xff" * 6,
            src_ip=ip_bytes("10.42.0.1"),
            dst_ip=ip_bytes("255.255.255.255"),
            src_port=68,
            dst_port=port,
            payload=payload,
        )
        assert harvest.sighting_from_frame(
            frame, tally, pxe_only=True, pi_only=True, model="pi3bplus"
        ) is None  # fmt: skip
    assert tally.counts == {"not_pxe": 1}
    truncated = rom_frame("b8:27:eb:b3:46:90", "4db34690")[:60]
    assert (
        harvest.sighting_from_frame(truncated, tally, pxe_only=True, pi_only=True, model="x")
        is None
    )
    assert tally.counts == {"not_pxe": 1, "bad_frame": 1}


# --- SNMP forwarding tables (recorded varbinds) ---------------------------------------------

DOT1D = "1.3.6.1.2.1.17.4.3.1"
DOT1Q = "1.3.6.1.2.1.17.7.1.2.2.1"
IFX = "1.3.6.1.2.1.17.1.4.1.2"


def octets(mac: str) -> str:
    return ".".join(str(int(part, 16)) for part in mac.split(":"))


#: A walk of a small switch: two Pis learned, the switch's own MAC, the uplink, a bad index.
DOT1D_WALK = [
    (f"{DOT1D}.1.{octets(mac_of(1, 1))}", bytes.fromhex(mac_of(1, 1).replace(":", ""))),
    (f"{DOT1D}.2.{octets(mac_of(1, 1))}", 1),
    (f"{DOT1D}.3.{octets(mac_of(1, 1))}", 3),
    (f"{DOT1D}.2.{octets(mac_of(1, 2))}", 2),
    (f"{DOT1D}.3.{octets(mac_of(1, 2))}", 3),
    (f"{DOT1D}.2.{octets('02:00:00:00:00:fe')}", 0),
    (f"{DOT1D}.3.{octets('02:00:00:00:00:fe')}", 4),
    (f"{DOT1D}.2.{octets('00:11:22:33:44:55')}", 24),
    (f"{DOT1D}.3.{octets('00:11:22:33:44:55')}", 3),
    (f"{DOT1D}.2.184.39.235.1.2", 5),  # five octets: malformed
    (f"{DOT1D}.3.184.39.235.1.2", 3),
    (f"{IFX}.1", 1001),
    (f"{IFX}.2", 1002),
]


def test_dot1d_walk_decodes_rows_and_counts_malformed() -> None:
    table = fdb.fdb_from_varbinds(DOT1D_WALK)
    rows = {(r.mac, r.port, r.status, r.if_index) for r in table.rows}
    assert (mac_of(1, 1), 1, 3, 1001) in rows
    assert (mac_of(1, 2), 2, 3, 1002) in rows
    assert ("02:00:00:00:00:fe", 0, 4, None) in rows
    assert table.malformed == 1


def test_dot1d_address_column_must_agree_with_index() -> None:
    walk = [
        (f"{DOT1D}.1.{octets(mac_of(1, 1))}", b"\x01\x02"),  # a 2-byte address: malformed
        (f"{DOT1D}.2.{octets(mac_of(1, 1))}", 1),
        (f"{DOT1D}.3.{octets(mac_of(1, 1))}", 3),
    ]
    table = fdb.fdb_from_varbinds(walk)
    assert table.rows == []
    assert table.malformed == 1


def test_dot1q_rows_carry_the_vlan_and_win_over_dot1d() -> None:
    walk = [
        *DOT1D_WALK,
        (f"{DOT1Q}.2.10.{octets(mac_of(1, 1))}", 1),
        (f"{DOT1Q}.3.10.{octets(mac_of(1, 1))}", 3),
        (f".{DOT1Q}.2.10.{octets(mac_of(1, 3))}", 3),  # leading dot, as some tools print OIDs
        (f".{DOT1Q}.3.10.{octets(mac_of(1, 3))}", 3),
        (f"{DOT1Q}.2.10.1.2.3.4.5.6.7", 3),  # seven octets: malformed
    ]
    table = fdb.fdb_from_varbinds(walk)
    ones = [r for r in table.rows if r.mac == mac_of(1, 1)]
    assert len(ones) == 1
    assert ones[0].vlan == 10
    assert any(r.mac == mac_of(1, 3) and r.port == 3 for r in table.rows)
    assert table.malformed == 2


class FakePi:
    def __init__(self, bank: int, slot: int, port: int | None) -> None:
        self.bank, self.slot, self.switch, self.switch_port = bank, slot, "sw1", port


def test_fdb_ports_become_slots_and_unmapped_ports_are_left_out() -> None:
    slots = harvest.port_slots([FakePi(1, s, s) for s in range(1, 5)] + [FakePi(2, 1, None)])
    assert slots[("sw1", 2)] == (1, 2)
    table = fdb.fdb_from_varbinds(DOT1D_WALK)
    tally = harvest.Tally()
    found = harvest.sightings_from_fdb("sw1", table.rows, slots, tally, pi_only=True)
    assert {(s.mac, s.position) for s in found} == {(mac_of(1, 1), (1, 1)), (mac_of(1, 2), (1, 2))}
    # the switch's own MAC (status self) is not counted; the uplink host is not a Pi
    assert tally.counts == {"foreign": 1}
    by_if = harvest.sightings_from_fdb(
        "sw1", table.rows, {("sw1", 1002): (1, 4)}, harvest.Tally(), pi_only=True, use_if_index=True
    )
    assert [(s.mac, s.position) for s in by_if] == [(mac_of(1, 2), (1, 4))]


# --- merge -----------------------------------------------------------------------------------


def test_merge_new_unchanged_missing_and_serial_learnt() -> None:
    existing = [entry(1, 1)]
    sightings = [
        seen(1, 1, mac_of(1, 1), serial_of(1, 1)),
        seen(1, 2, mac_of(1, 2)),
        seen(2, 1, mac_of(2, 1)),  # another bank: not harvested now
    ]
    plan = harvest.merge(existing, sightings, SLOTS_B1)
    assert [(r["bank"], r["slot"]) for r in plan.new] == [(1, 2)]
    assert [(r["bank"], r["slot"], r["serial"]) for r in plan.unchanged] == [
        (1, 1, serial_of(1, 1))
    ]
    assert plan.serials == [{"bank": 1, "slot": 1, "mac": mac_of(1, 1), "serial": serial_of(1, 1)}]
    assert plan.missing == [{"bank": 1, "slot": 3}, {"bank": 1, "slot": 4}]
    assert plan.conflicts == []
    assert plan.changed
    assert [(e.bank, e.slot, e.mac, e.serial) for e in plan.entries] == [
        (1, 1, mac_of(1, 1), serial_of(1, 1)),
        (1, 2, mac_of(1, 2), None),
    ]


def test_merge_again_changes_nothing() -> None:
    sightings = [seen(1, s, mac_of(1, s)) for s in range(1, 5)]
    first = harvest.merge([], sightings, SLOTS_B1)
    second = harvest.merge(first.entries, sightings, SLOTS_B1)
    assert not second.changed
    assert len(second.unchanged) == 4
    assert second.entries == first.entries


def test_merge_moved_mac_leaves_its_old_slot() -> None:
    existing = [entry(1, 1, serial=serial_of(1, 1)), entry(1, 2)]
    plan = harvest.merge(existing, [seen(1, 3, mac_of(1, 1))], SLOTS_B1)
    assert plan.moved == [
        {"mac": mac_of(1, 1), "from": [1, 1], "to": [1, 3], "serial": serial_of(1, 1)}
    ]
    assert {(e.slot, e.mac) for e in plan.entries} == {(2, mac_of(1, 2)), (3, mac_of(1, 1))}


def test_merge_swap_of_two_pis_is_two_moves_not_a_conflict() -> None:
    existing = [entry(1, 1), entry(1, 2)]
    plan = harvest.merge(existing, [seen(1, 1, mac_of(1, 2)), seen(1, 2, mac_of(1, 1))], SLOTS_B1)
    assert plan.conflicts == []
    assert len(plan.moved) == 2
    assert {(e.slot, e.mac) for e in plan.entries} == {(1, mac_of(1, 2)), (2, mac_of(1, 1))}


def test_merge_never_overwrites_a_conflicting_entry_without_force() -> None:
    stranger = "b8:27:eb:aa:bb:cc"
    existing = [entry(1, 1)]
    plan = harvest.merge(existing, [seen(1, 1, stranger)], SLOTS_B1)
    assert [c["kind"] for c in plan.conflicts] == ["file"]
    assert "holds b8:27:eb:00:01:01" in plan.conflicts[0]["reason"]
    assert not plan.changed
    assert plan.entries == [entry(1, 1)]
    forced = harvest.merge(existing, [seen(1, 1, stranger)], SLOTS_B1, force=True)
    assert forced.changed
    assert [(e.slot, e.mac) for e in forced.entries] == [(1, stranger)]


def test_merge_one_mac_at_two_slots_and_two_macs_at_one_slot_are_conflicts() -> None:
    plan = harvest.merge(
        [],
        [
            seen(1, 1, mac_of(1, 1)),
            seen(1, 2, mac_of(1, 1)),
            seen(1, 3, mac_of(1, 3)),
            seen(1, 3, mac_of(1, 4)),
        ],
        SLOTS_B1,
        force=True,
    )
    reasons = [c["reason"] for c in plan.conflicts]
    assert any("seen at bank 1 slot 1, bank 1 slot 2" in r for r in reasons)
    assert any("bank 1 slot 3 claimed by" in r for r in reasons)
    assert {c["kind"] for c in plan.conflicts} == {"seen"}
    assert plan.entries == []  # nothing ambiguous is written, even with force


def test_merge_unplaced_macs_are_reported_or_fill_free_slots_in_order() -> None:
    existing = [entry(1, 2)]
    sightings = [seen(None, None, mac_of(1, 2)), seen(None, None, "b8:27:eb:00:00:0a"),
                 seen(None, None, "b8:27:eb:00:00:0b")]  # fmt: skip
    report = harvest.merge(existing, sightings, SLOTS_B1)
    assert report.unplaced == ["b8:27:eb:00:00:0a", "b8:27:eb:00:00:0b"]
    assert [r["slot"] for r in report.unchanged] == [2]
    assert not report.changed
    filled = harvest.merge(existing, sightings, SLOTS_B1, fill=True)
    assert [(r["slot"], r["mac"]) for r in filled.new] == [
        (1, "b8:27:eb:00:00:0a"),
        (3, "b8:27:eb:00:00:0b"),
    ]
    assert filled.missing == [{"bank": 1, "slot": 4}]


def test_merge_serial_disagreement_is_a_conflict() -> None:
    existing = [entry(1, 1, serial=serial_of(1, 1))]
    other = "2" + serial_of(1, 1)[1:]
    plan = harvest.merge(existing, [seen(1, 1, mac_of(1, 1), other)], SLOTS_B1)
    assert [c["kind"] for c in plan.conflicts] == ["file"]
    assert not plan.changed


@pytest.mark.parametrize("mac", ["b8:27:eb:00:01", "zz:27:eb:00:01:01", "", "b8:27:eb:00:01:01:02"])
def test_checked_mac_counts_malformed(mac: str) -> None:
    tally = harvest.Tally()
    assert harvest.checked_mac(mac, tally, pi_only=False, where="test") is None
    assert tally.counts == {"malformed": 1}


def test_claim_gives_a_powered_slot_the_first_mac_not_ignored() -> None:
    seen = [
        harvest.Sighting(mac=mac_of(1, 1), source="dhcp"),  # slot 1's ROM, retrying
        harvest.Sighting(mac=mac_of(1, 2), source="dhcp", serial=serial_of(1, 2)),
        harvest.Sighting(mac=mac_of(1, 3), source="dhcp"),
    ]
    got = harvest.claim(seen, 1, 2, {mac_of(1, 1)})
    assert got == harvest.Sighting(
        mac=mac_of(1, 2), source="sequential", bank=1, slot=2, serial=serial_of(1, 2)
    )
    assert harvest.claim(seen[:1], 1, 2, {mac_of(1, 1)}) is None
    assert harvest.claim([], 1, 2, set()) is None
