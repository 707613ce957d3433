"""The lab's plan from the cluster model: names, identities and addresses (no root needed)."""

from __future__ import annotations

from pathlib import Path

from bramble.lab.plan import LabPlan, build_plan, lab_mac, lab_serial
from bramble.lab.supervisor import ROM_TIMEOUT, rom_timeout
from bramble.model import net
from cluster_helpers import INVENTORIES


def plan(tmp_path: Path) -> LabPlan:
    return build_plan(INVENTORIES / "lab" / "cluster.yml", "lab", tmp_path)


def test_every_pi_has_a_pi3bplus_identity_and_its_own_namespace(tmp_path: Path) -> None:
    lab = plan(tmp_path)
    assert len(lab.pis) == 8
    for pi in lab.pis:
        # The Pi 3B+ rule the harvest and dhcp_tftp rely on: MAC = b8:27:eb + serial's low 3 bytes.
        assert pi.mac == lab_mac(pi.serial)
        assert net.serial_suffix_from_mac(pi.mac, "pi3bplus") == pi.serial[-6:]
        assert pi.netns == f"brl-lab-b{pi.bank}s{pi.slot}"
    assert len({pi.mac for pi in lab.pis}) == len({pi.serial for pi in lab.pis}) == 8
    assert lab_serial(2, 3) == "1a002003"


def test_power_groups_switches_and_controllers_follow_the_model(tmp_path: Path) -> None:
    lab = plan(tmp_path)
    assert lab.groups == {1: ("relay1", 1), 2: ("pdu1", 1)}
    assert {pi.power_group for pi in lab.pis if pi.bank == 1} == {1}
    assert {pi.power_group for pi in lab.pis if pi.bank == 2} == {2}
    assert [(c.name, c.address, c.port) for c in lab.controllers] == [
        ("relay1", "10.42.0.10", 80),
        ("pdu1", "10.42.0.11", 23),
    ]
    assert next((pi.switch, pi.switch_port) for pi in lab.pis if pi.bank == 2) == ("sw1", 9)
    assert "10.42.0.20" in lab.device_addresses


def test_the_control_leg_takes_an_address_no_pi_uses(tmp_path: Path) -> None:
    lab = plan(tmp_path)
    assert lab.control_address == "10.42.255.254/16"
    assert lab.control_address.split("/")[0] not in {pi.ip for pi in lab.pis}
    assert len(lab.control_interface) <= 15
    assert lab.head_address == "10.42.0.1"


def test_the_plan_survives_its_state_file(tmp_path: Path) -> None:
    lab = plan(tmp_path)
    assert LabPlan.from_json(lab.to_json()) == lab
    assert lab.namespaces[0] == "brl-lab-net"


def test_the_bridges_boards_and_sound_pi_get_the_models_addresses(tmp_path: Path) -> None:
    lab = plan(tmp_path)
    assert [(b.name, b.kind, b.address, b.port) for b in lab.boards] == [
        ("buttons", "buttons", "10.42.0.30", 80),
        ("lights", "lights", "10.42.0.31", 80),
    ]
    assert {"10.42.0.30", "10.42.0.31"} <= set(lab.device_addresses)
    assert (lab.sound_netns, lab.sound_address) == ("brl-lab-sound", "10.42.0.32")
    assert "brl-lab-sound" in lab.namespaces
    assert LabPlan.from_json(lab.to_json()).boards == lab.boards


def test_a_rom_may_take_as_long_as_its_dhcp_rounds() -> None:
    assert rom_timeout(5) == ROM_TIMEOUT  # a real 3B+ ROM's 5 rounds: the floor
    assert rom_timeout(24) == ROM_TIMEOUT  # the lab's default (two minutes of DHCP)
    assert rom_timeout(96) == 96 * 5.0 + 60.0  # a big lab's ROMs wait longer for their bank
