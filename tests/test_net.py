"""Addresses, MACs, serials and names derived from the model (bramble.model.net)."""

from __future__ import annotations

import netaddr
import pytest

from bramble.model import net


@pytest.mark.parametrize(
    ("network", "bank", "slot", "stride", "expected"),
    [
        ("10.42.0.0/16", 7, 3, 256, "10.42.7.3"),
        ("10.42.0.0/16", 1, 1, 256, "10.42.1.1"),
        ("10.42.0.0/16", 254, 254, 256, "10.42.254.254"),
        ("10.3.0.0/16", 50, 21, 256, "10.3.50.21"),
        ("192.168.3.0/24", 1, 1, 16, "192.168.3.17"),
        ("192.168.3.0/24", 1, 4, 16, "192.168.3.20"),
        ("192.168.3.0/24", 2, 4, 16, "192.168.3.36"),
        ("10.0.0.0/8", 300, 5, 256, "10.1.44.5"),
    ],
)
def test_slot_ip_is_network_plus_bank_times_stride_plus_slot(network, bank, slot, stride, expected):
    assert net.slot_ip(network, bank, slot, stride) == expected


def test_slot_ip_default_stride_is_256():
    assert net.slot_ip("10.42.0.0/16", 7, 3) == "10.42.7.3"


@pytest.mark.parametrize(
    ("network", "bank", "slot", "stride"),
    [
        ("192.168.3.0/24", 16, 1, 16),  # 192.168.4.1: beyond the /24
        ("10.42.0.0/16", 256, 1, 256),  # 10.43.0.1
    ],
)
def test_slot_ip_outside_the_network_raises(network, bank, slot, stride):
    with pytest.raises(ValueError, match="outside") as caught:
        net.slot_ip(network, bank, slot, stride)
    assert f"bank {bank} slot {slot}" in str(caught.value)


@pytest.mark.parametrize(
    ("network", "bank", "slot", "stride"),
    [
        ("192.168.3.0/24", 15, 15, 16),  # 192.168.3.255
        ("10.42.0.0/16", 255, 255, 256),  # 10.42.255.255
    ],
)
def test_slot_ip_on_the_broadcast_address_raises(network, bank, slot, stride):
    with pytest.raises(ValueError, match="outside"):
        net.slot_ip(network, bank, slot, stride)


@pytest.mark.parametrize(("bank", "slot"), [(0, 1), (1, 0), (-1, 3)])
def test_slot_ip_counts_banks_and_slots_from_one(bank, slot):
    with pytest.raises(ValueError, match="count from 1"):
        net.slot_ip("10.42.0.0/16", bank, slot)


def test_slot_ip_refuses_a_slot_that_does_not_fit_the_stride():
    # slot 16 of bank 1 would be the first address of bank 2
    with pytest.raises(ValueError, match="stride of 16"):
        net.slot_ip("192.168.3.0/24", 1, 16, 16)


@pytest.mark.parametrize(
    "spelling",
    [
        "b8:27:eb:12:34:56",
        "B8:27:EB:12:34:56",
        "b8-27-eb-12-34-56",
        "B8-27-EB-12-34-56",
        "b827.eb12.3456",
        "B827.EB12.3456",
        "b827eb123456",
        "B827EB123456",
        "  b8:27:eb:12:34:56\n",
    ],
)
def test_normalize_mac_accepts_the_common_spellings(spelling):
    assert net.normalize_mac(spelling) == "b8:27:eb:12:34:56"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "b8:27:eb:12:34",  # five octets
        "b8:27:eb:12:34:56:78",  # seven
        "b8:27:eb:12:34:5g",  # not hex
        "b8:27-eb:12:34:56",  # mixed separators
        "b8.27.eb.12.34.56",
        "b827.eb12.34.56",
        "b8:27:eb:12:3:456",
        "b827eb12345",
        "0xb827eb123456",
    ],
)
def test_normalize_mac_rejects_what_is_not_a_mac(value):
    with pytest.raises(ValueError, match="is not a MAC address") as caught:
        net.normalize_mac(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", [0xB827EB123456, 1234, None, b"b8:27:eb:12:34:56"])
def test_normalize_mac_rejects_non_strings_and_says_to_quote(value):
    with pytest.raises(ValueError, match=r"not a string.*quote it"):
        net.normalize_mac(value)


@pytest.mark.parametrize(
    "spelling",
    ["4db34690", "4DB34690", "0x4db34690", "0X4DB34690", "000000004db34690", " 4db34690 "],
)
def test_normalize_serial_gives_eight_lower_case_hex_digits(spelling):
    assert net.normalize_serial(spelling) == "4db34690"


@pytest.mark.parametrize(
    "value",
    ["", "4db3469", "4db346901", "4db3469g", "0x", "0000004db34690", "0x0x4db34690"],
)
def test_normalize_serial_rejects_other_strings(value):
    with pytest.raises(ValueError, match="is not a Pi serial"):
        net.normalize_serial(value)


@pytest.mark.parametrize("value", [12345678, 0x4DB34690, None])
def test_normalize_serial_rejects_non_strings_and_says_to_quote(value):
    with pytest.raises(ValueError, match=r"not a string.*quote it"):
        net.normalize_serial(value)


def test_normalize_serial_accepts_the_pi4_cpuinfo_form():
    # A Pi 4 prints its serial as 10000000 + the 8 digits that name its TFTP folder; the
    # docs promise "the 16-digit /proc/cpuinfo form" and pi4 is a supported banks.model.
    assert net.normalize_serial("100000004db34690") == "4db34690"


@pytest.mark.parametrize("model", ["pi3b", "pi3bplus"])
def test_serial_suffix_of_a_pi3_mac_is_its_low_three_bytes(model):
    assert net.serial_suffix_from_mac("B8-27-EB-B3-46-90", model) == "b34690"


def test_serial_suffix_defaults_to_pi3bplus():
    assert net.serial_suffix_from_mac("b8:27:eb:b3:46:90") == "b34690"


@pytest.mark.parametrize(
    ("mac", "model"),
    [
        ("dc:a6:32:b3:46:90", "pi4"),
        ("b8:27:eb:b3:46:90", "pi4"),
        ("d8:3a:dd:b3:46:90", "pi5"),
        ("dc:a6:32:b3:46:90", "pi3bplus"),  # not the b8:27:eb OUI
        ("02:62:72:00:00:01", "pi3bplus"),
    ],
)
def test_serial_suffix_is_none_when_the_mac_does_not_carry_the_serial(mac, model):
    assert net.serial_suffix_from_mac(mac, model) is None


def test_serial_suffix_rejects_a_bad_mac():
    with pytest.raises(ValueError, match="is not a MAC address"):
        net.serial_suffix_from_mac("b8:27:eb:b3:46")


@pytest.mark.parametrize(
    ("mac", "expected"),
    [("b8:27:eb:00:00:01", True), ("DC-A6-32-00-00-01", True), ("02:62:72:00:00:01", False)],
)
def test_is_pi_mac(mac, expected):
    assert net.is_pi_mac(mac) is expected


@pytest.mark.parametrize(
    ("bank", "slot", "count", "size", "expected"),
    [
        (7, 3, 50, 21, "pi-07-03"),
        (1, 1, 1, 4, "pi-01-01"),
        (50, 21, 50, 21, "pi-50-21"),
        (7, 3, 100, 21, "pi-007-03"),  # width follows the bank count
        (7, 3, 999, 254, "pi-007-003"),
        (12, 100, 12, 100, "pi-12-100"),
    ],
)
def test_pi_name_is_zero_padded_to_the_width_of_count_and_size(bank, slot, count, size, expected):
    assert net.pi_name(bank, slot, count, size) == expected


@pytest.mark.parametrize(
    ("bank", "count", "expected"),
    [(7, 50, "bank07"), (1, 1, "bank01"), (7, 100, "bank007"), (100, 100, "bank100")],
)
def test_bank_group_name_is_padded_like_the_pi_name(bank, count, expected):
    assert net.bank_group_name(bank, count) == expected
    assert net.pi_name(bank, 1, count, 4).startswith(f"pi-{expected.removeprefix('bank')}-")


@pytest.mark.parametrize(
    ("group", "expected"), [(1, "power01"), (25, "power25"), (100, "power100")]
)
def test_power_group_name_has_two_digits_at_least(group, expected):
    assert net.power_group_name(group) == expected


def test_names_sort_in_bank_and_slot_order():
    names = [net.pi_name(b, s, 120, 21) for b in range(1, 121) for s in range(1, 22)]
    assert names == sorted(names)


def test_dhcp_host_line_normalises_the_mac():
    line = net.dhcp_host_line("B8-27-EB-12-34-56", "pi-07-03", "10.42.7.3")
    assert line == "dhcp-host=b8:27:eb:12:34:56,pi-07-03,10.42.7.3"


@pytest.mark.parametrize("name", ["Pi-07-03", "pi_07_03", "-pi", "pi-", "pi 07", ""])
def test_dhcp_host_line_refuses_an_invalid_host_name(name):
    with pytest.raises(ValueError, match="not a valid host name"):
        net.dhcp_host_line("b8:27:eb:12:34:56", name, "10.42.7.3")


def test_dhcp_host_line_refuses_a_bad_address_or_mac():
    with pytest.raises((ValueError, netaddr.AddrFormatError), match=r"10\.42\.7\.300"):
        net.dhcp_host_line("b8:27:eb:12:34:56", "pi-07-03", "10.42.7.300")
    with pytest.raises(ValueError, match="is not a MAC address"):
        net.dhcp_host_line("b8:27:eb:12:34", "pi-07-03", "10.42.7.3")


def test_bank_block_is_the_stride_reserved_for_a_bank():
    assert net.bank_block("10.42.0.0/16", 7) == ("10.42.7.0", "10.42.7.255")
    assert net.bank_block("192.168.3.0/24", 1, 16) == ("192.168.3.16", "192.168.3.31")
