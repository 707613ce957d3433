"""load_cluster: the Pis derived from cluster.yml and macs.yml, and the cluster summary."""

from __future__ import annotations

from bramble.model import load_cluster
from cluster_helpers import INVENTORIES, mac_of, serial_of


def test_lab_pis_in_bank_and_slot_order():
    cluster = load_cluster(INVENTORIES / "lab")
    assert [pi.name for pi in cluster.pis] == [
        f"pi-0{b}-0{s}" for b in (1, 2) for s in (1, 2, 3, 4)
    ]
    pi = cluster.pis[6]  # bank 2 slot 3
    assert (pi.bank, pi.slot, pi.ip) == (2, 3, "10.42.2.3")
    assert (pi.bank_group, pi.power_group) == ("bank02", "power02")
    assert (pi.switch, pi.switch_port) == ("sw1", 11)  # first_port 9 + slot 3 - 1
    assert pi.state == "unharvested"
    assert (pi.mac, pi.serial, pi.serial_suffix) == (None, None, None)


def test_load_cluster_accepts_the_file_or_its_folder():
    by_folder = load_cluster(INVENTORIES / "desk")
    by_file = load_cluster(INVENTORIES / "desk" / "cluster.yml")
    assert by_folder.pis == by_file.pis
    assert by_file.mac_file == INVENTORIES / "desk" / "macs.yml"


def test_desk_addresses_follow_the_stride():
    cluster = load_cluster(INVENTORIES / "desk")
    assert [pi.ip for pi in cluster.pis] == [f"192.168.3.{n}" for n in (17, 18, 19, 20)]
    assert all(pi.switch is None for pi in cluster.pis)


def test_bigpi_switch_ports_and_power_groups():
    cluster = load_cluster(INVENTORIES / "bigpi")
    by_name = {pi.name: pi for pi in cluster.pis}
    assert len(by_name) == 1050
    assert (by_name["pi-08-21"].switch, by_name["pi-08-21"].switch_port) == ("sw04", 45)
    assert by_name["pi-50-01"].power_group == "power25"
    assert by_name["pi-07-03"].ip == "10.3.7.3"


def test_harvested_pi_carries_mac_serial_and_suffix(model_dir):
    folder = model_dir(
        macs=[{"bank": 2, "slot": 4, "mac": mac_of(2, 4).upper(), "serial": "0x" + serial_of(2, 4)}]
    )
    pi = load_cluster(folder).pis[-1]
    assert pi.name == "pi-02-04"
    assert pi.state == "harvested"
    assert (pi.mac, pi.serial, pi.serial_suffix) == (mac_of(2, 4), serial_of(2, 4), "000204")
    assert pi.as_vars()["bramble_state"] == "harvested"


def test_an_entry_with_a_problem_leaves_its_pi_unharvested(model_dir):
    folder = model_dir(macs=[{"bank": 1, "slot": 1, "mac": mac_of(1, 1), "serial": "deadbeef"}])
    cluster = load_cluster(folder)
    assert len(cluster.problems) == 1
    assert cluster.pis[0].state == "unharvested"


def test_head_defaults(model_dir, base_model):
    del base_model["head"]["name"]
    del base_model["head"]["address"]
    summary = load_cluster(model_dir(base_model)).summary()
    assert (summary["head_name"], summary["head_address"]) == ("test-head", "10.42.0.1")


def test_summary(model_dir, base_model):
    del base_model["cluster"]["domain"]
    folder = model_dir(base_model, macs=[{"bank": 1, "slot": 1, "mac": mac_of(1, 1)}])
    summary = load_cluster(folder).summary()
    assert summary == {
        "name": "test",
        "domain": "test.internal",
        "network": "10.42.0.0/16",
        "netmask": "255.255.0.0",
        "prefix": 16,
        "bank_stride": 256,
        "head_name": "test-head",
        "head_address": "10.42.0.1",
        "bank_count": 2,
        "bank_size": 4,
        "pi_model": "pi3bplus",
        "pi_count": 8,
        "harvested": 1,
        "power_budget": 8,
        "model_file": str(folder / "cluster.yml"),
        "mac_file": str(folder / "macs.yml"),
    }


def test_a_model_whose_pis_leave_the_network_still_loads(model_dir, base_model):
    # the problem is reported; the Pis past the network get no address instead of a crash
    base_model["banks"]["count"] = 260
    cluster = load_cluster(model_dir(base_model))
    assert any("bank_stride 256 reach" in p for p in cluster.problems)
    assert cluster.pis[-1].ip == ""
