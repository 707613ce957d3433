"""Relations between model entries (bramble.model.checks): one message per problem, naming the
entries and the file to fix."""

from __future__ import annotations

import pytest

from bramble.model import load_cluster
from cluster_helpers import INVENTORIES, mac_of, serial_of


def _problems(folder) -> list[str]:
    return list(load_cluster(folder).problems)


def _only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize("name", ["lab", "desk", "bigpi"])
def test_shipped_inventories_have_no_problems(name):
    cluster = load_cluster(INVENTORIES / name)
    assert cluster.problems == ()


def test_a_valid_mac_file_has_no_problems(model_dir):
    macs = [
        {"bank": b, "slot": s, "mac": mac_of(b, s), "serial": serial_of(b, s)}
        for b in (1, 2)
        for s in range(1, 5)
    ]
    assert _problems(model_dir(macs=macs)) == []


# --- macs.yml ---------------------------------------------------------------------------


def test_duplicate_macs_name_both_slots_and_the_mac_file(model_dir):
    folder = model_dir(
        macs=[
            {"bank": 1, "slot": 1, "mac": "b8:27:eb:00:00:01"},
            {"bank": 1, "slot": 2, "mac": mac_of(1, 2)},
            {"bank": 2, "slot": 3, "mac": "B8-27-EB-00-00-01"},  # same MAC, other spelling
        ]
    )
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: ")
    assert "MAC b8:27:eb:00:00:01 is claimed by bank 1 slot 1 and bank 2 slot 3" in problem


def test_a_mac_claimed_three_times_is_one_problem_naming_all_three(model_dir):
    folder = model_dir(macs=[{"bank": 1, "slot": s, "mac": "b8:27:eb:00:00:01"} for s in (1, 2, 3)])
    problem = _only(_problems(folder))
    assert "bank 1 slot 1 and bank 1 slot 2 and bank 1 slot 3" in problem


def test_malformed_mac(model_dir):
    folder = model_dir(macs=[{"bank": 2, "slot": 3, "mac": "b8:27:eb:00:00:0g"}])
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: macs[0] (bank 2 slot 3): ")
    assert "'b8:27:eb:00:00:0g' is not a MAC address" in problem


def test_unquoted_numeric_mac_says_to_quote_it(model_dir):
    folder = model_dir(macs="macs:\n  - {bank: 1, slot: 1, mac: 123456789012}\n")
    problem = _only(_problems(folder))
    assert "macs[0] (bank 1 slot 1)" in problem
    assert "quote it" in problem


def test_malformed_serial(model_dir):
    folder = model_dir(
        macs=[{"bank": 1, "slot": 2, "mac": mac_of(1, 2), "serial": "1000010"}],
    )
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: macs[0] (bank 1 slot 2): ")
    assert "'1000010' is not a Pi serial" in problem


def test_serial_not_matching_the_pi3_mac(model_dir):
    folder = model_dir(
        macs=[{"bank": 1, "slot": 2, "mac": "b8:27:eb:00:01:02", "serial": "10000103"}],
    )
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: macs[0] (bank 1 slot 2): ")
    assert "serial 10000103 does not match MAC b8:27:eb:00:01:02" in problem
    assert "000102" in problem  # what the serial should end with


def test_serial_is_not_checked_against_a_pi4_mac(model_dir, base_model):
    base_model["banks"]["model"] = "pi4"
    folder = model_dir(
        base_model, macs=[{"bank": 1, "slot": 1, "mac": "dc:a6:32:00:01:01", "serial": "abcdef12"}]
    )
    assert _problems(folder) == []


@pytest.mark.parametrize(("bank", "slot"), [(1, 5), (3, 1)])
def test_mac_file_slot_beyond_the_model(model_dir, bank, slot):
    folder = model_dir(macs=[{"bank": bank, "slot": slot, "mac": mac_of(bank, slot)}])
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: macs[0] (bank {bank} slot {slot}): ")
    assert "beyond the model (2 banks of 4)" in problem
    assert str(folder / "cluster.yml") in problem


def test_duplicate_slot_entries(model_dir):
    folder = model_dir(
        macs=[
            {"bank": 1, "slot": 1, "mac": mac_of(1, 1)},
            {"bank": 1, "slot": 2, "mac": mac_of(1, 2)},
            {"bank": 1, "slot": 1, "mac": mac_of(2, 2)},
        ]
    )
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'macs.yml'}: macs[2] (bank 1 slot 1): ")
    assert "listed twice (also macs[0])" in problem


# --- addresses ----------------------------------------------------------------------------


def test_two_devices_on_one_address(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "address": "10.42.0.11"}]
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "address 10.42.0.11 is given to controller pdu1 and switch sw1" in problem


def test_head_and_sound_pi_on_one_address(model_dir, base_model):
    base_model["bridges"] = {"sound": {"name": "sound", "address": "10.42.0.1"}}
    problem = _only(_problems(model_dir(base_model)))
    assert "address 10.42.0.1 is given to head test-head and sound Pi sound" in problem


def test_too_many_banks_for_the_network(model_dir, base_model):
    base_model["banks"]["count"] = 255  # bank 255 would reach 10.42.255.255, the broadcast
    folder = model_dir(base_model)
    problems = [p for p in _problems(folder) if "bank_stride" in p]
    problem = _only(problems)
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "255 banks with bank_stride 256 reach 10.42.255.255, outside network 10.42.0.0/16" in (
        problem
    )


def test_the_largest_fleet_that_fits_the_network_is_accepted(model_dir, base_model):
    base_model["banks"]["count"] = 254
    folder = model_dir(base_model)
    assert not [p for p in _problems(folder) if "bank_stride" in p]
    assert load_cluster(folder).pis[-1].ip == "10.42.254.4"


def test_too_many_banks_for_a_small_network_and_stride(model_dir, base_model):
    base_model["network"] = {"cidr": "192.168.3.0/24", "bank_stride": 16}
    base_model["head"]["address"] = "192.168.3.1"
    base_model["controllers"][0]["address"] = "192.168.3.11"
    base_model["banks"]["count"] = 16
    folder = model_dir(base_model)
    problem = _only([p for p in _problems(folder) if "bank_stride" in p])
    assert "16 banks with bank_stride 16 reach 192.168.4.15, outside network 192.168.3.0/24" in (
        problem
    )


def test_stride_not_above_the_bank_size(model_dir, base_model):
    base_model["network"]["bank_stride"] = 4
    problem = _only(_problems(model_dir(base_model)))
    assert "network.bank_stride 4 leaves no room for 4 Pis per bank" in problem


def test_head_address_inside_the_pi_range(model_dir, base_model):
    base_model["head"]["address"] = "10.42.1.5"
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "head test-head address 10.42.1.5 is inside the Pi range" in problem
    # the way out names both ends of the range as addresses
    assert "move it below 10.42.1.0 or beyond 10.42.2.255" in problem


def test_device_address_inside_the_pi_range(model_dir, base_model):
    base_model["controllers"][0]["address"] = "10.42.2.200"
    problem = _only(_problems(model_dir(base_model)))
    assert "controller pdu1 address 10.42.2.200 is inside the Pi range" in problem


def test_head_address_outside_the_cluster_network(model_dir, base_model):
    base_model["head"]["address"] = "192.168.1.1"
    problem = _only(_problems(model_dir(base_model)))
    assert "head address 192.168.1.1 is not a host address of the cluster network" in problem


# --- power --------------------------------------------------------------------------------


def test_bank_in_no_power_group(model_dir, base_model):
    base_model["power"]["groups"].pop()
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem == (
        f"{folder / 'cluster.yml'}: bank 2 is in no power group; add it to one in power.groups"
    )


def test_bank_in_two_power_groups(model_dir, base_model):
    base_model["power"]["groups"][1]["banks"] = [1, 2]
    problem = _only(_problems(model_dir(base_model)))
    assert "bank 1 is in power groups 1 and 2" in problem


def test_bank_listed_twice_in_one_group_is_not_called_two_groups(model_dir, base_model):
    base_model["power"]["groups"][0]["banks"] = [1, 1]
    problems = _problems(model_dir(base_model))
    assert not [p for p in problems if "power groups 1 and 1" in p], problems


def test_power_group_over_the_budget(model_dir, base_model):
    base_model["power"]["groups"] = [{"id": 1, "controller": "pdu1", "outlet": 1, "banks": [1, 2]}]
    base_model["power"]["budget"] = 6
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "power group 1 (power01) powers 8 Pis at once, over the power budget of 6" in problem


def test_power_group_at_the_budget_is_accepted(model_dir, base_model):
    base_model["power"]["budget"] = 4
    assert _problems(model_dir(base_model)) == []


def test_power_group_naming_a_bank_beyond_the_model(model_dir, base_model):
    base_model["power"]["groups"][1]["banks"] = [2, 3]
    problem = _only(_problems(model_dir(base_model)))
    assert "power group 2 (power02) lists bank 3, but the model has 2 banks" in problem


def test_unknown_controller(model_dir, base_model):
    base_model["power"]["groups"][1]["controller"] = "pdu9"
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "power group 2 (power02) names controller 'pdu9', which is not defined" in problem
    assert "known controllers: pdu1" in problem


def test_unknown_controller_of_a_switch(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "power": {"controller": "relay", "outlet": 3}}]
    problem = _only(_problems(model_dir(base_model)))
    assert "switch sw1 names controller 'relay', which is not defined" in problem


def test_outlet_used_twice(model_dir, base_model):
    base_model["power"]["groups"][1]["outlet"] = 1
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert (
        "outlet 1 of controller pdu1 is used by power group 1 (power01) and power group 2 (power02)"
    ) in problem


def test_outlet_shared_by_a_power_group_and_a_switch(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "power": {"controller": "pdu1", "outlet": 2}}]
    problem = _only(_problems(model_dir(base_model)))
    assert "outlet 2 of controller pdu1 is used by power group 2 (power02) and switch sw1" in (
        problem
    )


def test_outlet_beyond_the_controller(model_dir, base_model):
    base_model["power"]["groups"][1]["outlet"] = 5
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert "power group 2 (power02) uses outlet 5, but controller pdu1 has 4 outlets" in problem


def test_duplicate_controller_names_and_group_ids(model_dir, base_model):
    base_model["controllers"].append(dict(base_model["controllers"][0], address="10.42.0.12"))
    base_model["power"]["groups"][1]["id"] = 1
    problems = _problems(model_dir(base_model))
    assert any("controller name 'pdu1' is used twice" in p for p in problems), problems
    assert any("power group id 1 is used twice" in p for p in problems), problems


# --- switches -----------------------------------------------------------------------------


def test_switch_port_ranges_overlap(model_dir, base_model):
    base_model["switches"] = [
        {"name": "sw1", "banks": [{"bank": 1, "first_port": 1}, {"bank": 2, "first_port": 4}]}
    ]
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "port 4 of switch sw1 is given to bank 1 slot 4 and bank 2 slot 1" in problem


def test_switch_port_listed_twice(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "banks": [{"bank": 1, "ports": [1, 2, 2, 3]}]}]
    problem = _only(_problems(model_dir(base_model)))
    assert "port 2 of switch sw1 is given to bank 1 slot 2 and bank 1 slot 3" in problem


def test_bank_mapped_on_two_switches(model_dir, base_model):
    base_model["switches"] = [
        {"name": "sw1", "banks": [{"bank": 2, "first_port": 1}]},
        {"name": "sw2", "banks": [{"bank": 2, "first_port": 1}]},
    ]
    problem = _only(_problems(model_dir(base_model)))
    assert "bank 2 is mapped on switch sw1 and on sw2" in problem


def test_ports_list_not_one_per_slot(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "banks": [{"bank": 1, "ports": [1, 2, 3]}]}]
    problem = _only(_problems(model_dir(base_model)))
    assert "switch sw1 bank 1 lists 3 ports for 4 slots" in problem


def test_switch_mapping_a_bank_beyond_the_model(model_dir, base_model):
    base_model["switches"] = [{"name": "sw1", "banks": [{"bank": 3, "first_port": 1}]}]
    problem = _only(_problems(model_dir(base_model)))
    assert "switch sw1 maps bank 3, but the model has 2 banks" in problem


# --- names, bridges, VPN ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pis", "head", "bridges", "all", "bank01", "power02"])
def test_head_name_equal_to_a_group_name(model_dir, base_model, name):
    base_model["head"]["name"] = name
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert f"host name {name!r} is also the name of an inventory group" in problem


def test_sound_pi_name_equal_to_a_group_name(model_dir, base_model):
    base_model["bridges"] = {"sound": {"name": "bank02", "address": "10.42.0.32"}}
    problem = _only(_problems(model_dir(base_model)))
    assert "host name 'bank02' is also the name of an inventory group" in problem


def test_host_name_that_looks_like_a_pi(model_dir, base_model):
    base_model["head"]["name"] = "pi-01-01"
    problem = _only(_problems(model_dir(base_model)))
    assert "host name 'pi-01-01' looks like a Pi name" in problem


def test_sound_pi_named_like_the_head(model_dir, base_model):
    base_model["bridges"] = {"sound": {"name": "test-head", "address": "10.42.0.32"}}
    problem = _only(_problems(model_dir(base_model)))
    assert "host name 'test-head' is used twice" in problem


def _board(name: str, address: str, mac: str) -> dict[str, str]:
    return {"name": name, "kind": "buttons", "address": address, "mac": mac}


def test_bridge_boards_sharing_a_mac(model_dir, base_model):
    base_model["bridges"] = {
        "boards": [
            _board("buttons", "10.42.0.30", "02:62:72:00:00:01"),
            _board("lights", "10.42.0.31", "02-62-72-00-00-01"),
        ]
    }
    folder = model_dir(base_model)
    problem = _only(_problems(folder))
    assert problem.startswith(f"{folder / 'cluster.yml'}: ")
    assert "bridge boards buttons and lights share MAC 02:62:72:00:00:01" in problem


def test_bridge_board_with_a_pi_mac(model_dir, base_model):
    base_model["bridges"] = {"boards": [_board("buttons", "10.42.0.30", mac_of(2, 1))]}
    folder = model_dir(base_model, macs=[{"bank": 2, "slot": 1, "mac": mac_of(2, 1)}])
    problem = _only(_problems(folder))
    assert f"bridge board buttons has MAC {mac_of(2, 1)}, which" in problem
    assert f"{folder / 'macs.yml'} gives to bank 2 slot 1" in problem


def test_vpn_remote_subnet_overlapping_the_cluster(model_dir, base_model):
    base_model["vpn"] = {
        "remote_subnets": ["10.42.128.0/24"],
        "tunnels": [{"name": "cloud1", "remote": "192.0.2.1", "psk": "vault_psk"}],
    }
    problem = _only(_problems(model_dir(base_model)))
    assert "VPN remote subnet 10.42.128.0/24 overlaps the cluster network 10.42.0.0/16" in problem


def test_every_problem_is_reported_at_once(model_dir, base_model):
    base_model["power"]["budget"] = 3
    base_model["head"]["name"] = "pis"
    folder = model_dir(
        base_model,
        macs=[
            {"bank": 1, "slot": 1, "mac": mac_of(1, 1)},
            {"bank": 1, "slot": 2, "mac": mac_of(1, 1)},
            {"bank": 1, "slot": 9, "mac": mac_of(1, 3)},
        ],
    )
    problems = _problems(folder)
    assert len(problems) == 5, problems  # 2 groups over budget, a name, a MAC twice, a slot
    assert sum("over the power budget" in p for p in problems) == 2
