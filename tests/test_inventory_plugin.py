"""The inventory plugin, through ansible-inventory and ansible as an operator runs them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bramble.model import read_mac_file
from cluster_helpers import INVENTORIES


def _plain(value: Any) -> Any:
    """JSON of ansible-inventory without the ``{"__ansible_unsafe": ...}`` wrappers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _inventory(run, source, *extra: str) -> dict[str, Any]:
    result = run("ansible-inventory", "-i", source, "--list", *extra)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return _plain(json.loads(result.stdout))


def _hosts(inventory: dict[str, Any], group: str) -> list[str]:
    return inventory.get(group, {}).get("hosts", [])


@pytest.fixture(scope="module")
def lab(ansible_run):
    return _inventory(ansible_run, INVENTORIES / "lab")


@pytest.fixture(scope="module")
def desk(ansible_run):
    return _inventory(ansible_run, INVENTORIES / "desk")


@pytest.fixture(scope="module")
def bigpi(ansible_run):
    # --export keeps the fleet-wide variables of `all` on the group (see the growth test)
    return _inventory(ansible_run, INVENTORIES / "bigpi", "--export")


def test_lab_hosts_and_groups(lab):
    assert len(lab["_meta"]["hostvars"]) == 10
    assert _hosts(lab, "head") == ["lab-head"]
    assert _hosts(lab, "pis") == [f"pi-0{b}-0{s}" for b in (1, 2) for s in range(1, 5)]
    assert _hosts(lab, "bank01") == ["pi-01-01", "pi-01-02", "pi-01-03", "pi-01-04"]
    assert _hosts(lab, "bank02") == ["pi-02-01", "pi-02-02", "pi-02-03", "pi-02-04"]
    assert _hosts(lab, "power01") == _hosts(lab, "bank01")
    assert _hosts(lab, "power02") == _hosts(lab, "bank02")
    assert sorted(_hosts(lab, "bridges")) == ["lab-head", "sound"]
    assert _hosts(lab, "vpn_gateways") == ["lab-head"]


def test_lab_pi_vars(lab):
    pi = lab["_meta"]["hostvars"]["pi-02-03"]
    assert pi["bramble_bank"] == 2
    assert pi["bramble_slot"] == 3
    assert pi["bramble_ip"] == pi["ansible_host"] == "10.42.2.3"
    assert pi["bramble_bank_group"] == "bank02"
    assert pi["bramble_power_group"] == "power02"
    assert pi["bramble_switch"] == "sw1"
    assert pi["bramble_switch_port"] == 11
    assert pi["bramble_state"] == "unharvested"
    assert pi["bramble_mac"] is None
    assert pi["bramble_serial"] is None
    assert pi["bramble_serial_suffix"] is None


def test_lab_cluster_vars_reach_every_host(lab):
    head = lab["_meta"]["hostvars"]["lab-head"]
    assert head["bramble_cluster"]["name"] == "lab"
    assert head["bramble_cluster"]["pi_count"] == 8
    assert head["bramble_model_errors"] == []
    # fleet-sized variables are templates that fetch the model when used (not copied per host)
    assert "query('bramble', 'pis')" in head["bramble_pis"]
    assert "lookup('bramble', 'model')" in head["bramble_model"]
    assert head["bramble_address"] == "10.42.0.1"
    assert head["bramble_interfaces"] == {"cluster": "eth1", "admin": "eth0"}
    sound = lab["_meta"]["hostvars"]["sound"]
    assert sound["bramble_address"] == "10.42.0.32"
    # The lab's sound Pi is a container (inventory/lab/host_vars/sound.yml), not an SSH host.
    assert sound["ansible_connection"] == "containers.podman.podman"


def test_desk_hosts_and_groups(desk):
    assert sorted(desk["_meta"]["hostvars"]) == [
        "desk-head",
        "pi-01-01",
        "pi-01-02",
        "pi-01-03",
        "pi-01-04",
    ]
    assert _hosts(desk, "bank01") == _hosts(desk, "pis") == _hosts(desk, "power01")
    assert _hosts(desk, "bridges") == ["desk-head"]
    assert _hosts(desk, "vpn_gateways") == []
    assert desk["_meta"]["hostvars"]["pi-01-04"]["ansible_host"] == "192.168.3.20"


def test_bigpi_host_count(bigpi):
    hostvars = bigpi["_meta"]["hostvars"]
    assert len(hostvars) == 1052
    assert {"bigpi-head", "sound"} <= set(hostvars)
    assert len(_hosts(bigpi, "pis")) == 1050


def test_bigpi_bank_groups(bigpi):
    banks = sorted(group for group in bigpi if re.fullmatch(r"bank\d+", group))
    assert banks == [f"bank{b:02d}" for b in range(1, 51)]
    for bank in range(1, 51):
        assert _hosts(bigpi, f"bank{bank:02d}") == [
            f"pi-{bank:02d}-{slot:02d}" for slot in range(1, 22)
        ]


def test_bigpi_power_groups(bigpi):
    groups = sorted(group for group in bigpi if re.fullmatch(r"power\d+", group))
    assert groups == [f"power{g:02d}" for g in range(1, 26)]
    for group in range(1, 26):
        hosts = _hosts(bigpi, f"power{group:02d}")
        first, second = 2 * group - 1, 2 * group
        assert len(hosts) == 42
        assert set(hosts) == set(_hosts(bigpi, f"bank{first:02d}")) | set(
            _hosts(bigpi, f"bank{second:02d}")
        )


def test_bigpi_other_groups(bigpi):
    assert _hosts(bigpi, "head") == ["bigpi-head"]
    assert sorted(_hosts(bigpi, "bridges")) == ["bigpi-head", "sound"]
    assert _hosts(bigpi, "vpn_gateways") == ["bigpi-head"]
    head = bigpi["_meta"]["hostvars"]["bigpi-head"]
    assert head["ansible_host"] == "192.168.1.3"
    assert head["bramble_address"] == "10.3.0.1"


def test_bigpi_cluster_vars(bigpi):
    all_vars = bigpi["all"]["vars"]
    assert all_vars["bramble_cluster"]["harvested"] == 1050
    assert all_vars["bramble_model_errors"] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "pis", "first_ip", "budget"),
    [("lab", 8, "10.42.1.1", 8), ("bigpi", 1050, "10.3.1.1", 168)],
)
def test_fleet_variables_resolve_in_a_play(ansible_run, name, pis, first_ip, budget):
    result = ansible_run(
        "ansible",
        "-i",
        INVENTORIES / name,
        "localhost",
        "-e",
        "ansible_python_interpreter={{ ansible_playbook_python }}",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "msg={{ [bramble_pis | length, bramble_pis[0].ip, bramble_pis | map(attribute='name')"
        " | unique | length, bramble_model.power.budget] }}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"\[\s*{pis},\s*\"{first_ip}\",\s*{pis},\s*{budget}\s*\]", result.stdout), (
        result.stdout
    )


def test_bigpi_pi_vars_follow_the_model_and_the_mac_file(bigpi):
    hostvars = bigpi["_meta"]["hostvars"]
    macs = {(e.bank, e.slot): e for e in read_mac_file(INVENTORIES / "bigpi" / "macs.yml")}
    for name in _hosts(bigpi, "pis"):
        pi = hostvars[name]
        bank, slot = pi["bramble_bank"], pi["bramble_slot"]
        entry = macs[(bank, slot)]
        assert name == f"pi-{bank:02d}-{slot:02d}"
        assert pi["bramble_ip"] == pi["ansible_host"] == f"10.3.{bank}.{slot}"
        assert pi["bramble_power_group"] == f"power{(bank + 1) // 2:02d}"
        assert pi["bramble_state"] == "harvested"
        assert pi["bramble_mac"] == entry.mac
        assert pi["bramble_serial"] == entry.serial
        suffix = pi["bramble_mac"].removeprefix("b8:27:eb:").replace(":", "")
        assert pi["bramble_serial_suffix"] == suffix
        assert pi["bramble_serial"].endswith(suffix)
        assert pi["bramble_switch"] == f"sw{(bank + 1) // 2:02d}"


def test_bigpi_graph(ansible_run):
    result = ansible_run("ansible-inventory", "-i", INVENTORIES / "bigpi", "--graph")
    assert result.returncode == 0, result.stderr
    assert "@bank50:" in result.stdout
    assert "@power25:" in result.stdout
    assert "|--pi-50-21" in result.stdout


def test_limit_bank07_selects_exactly_bank_7(ansible_run):
    result = ansible_run("ansible", "-i", INVENTORIES / "bigpi", "bank07", "--list-hosts")
    assert result.returncode == 0, result.stderr
    hosts = result.stdout.split()
    assert hosts[:2] == ["hosts", "(21):"]
    assert hosts[2:] == [f"pi-07-{slot:02d}" for slot in range(1, 22)]


def test_schema_error_stops_ansible_inventory_with_the_message(ansible_run, model_dir, base_model):
    base_model["banks"]["colour"] = "red"
    folder = model_dir(base_model)
    result = ansible_run("ansible-inventory", "-i", folder, "--list")
    assert result.returncode != 0
    assert re.search(
        rf"{re.escape(str(folder / 'cluster.yml'))}:\d+: banks.colour: unknown key 'colour'",
        result.stderr,
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_relation_problems_are_warnings_and_the_hosts_are_still_listed(ansible_run, model_dir):
    folder = model_dir(
        macs=[
            {"bank": 1, "slot": 1, "mac": "b8:27:eb:00:00:01"},
            {"bank": 1, "slot": 2, "mac": "b8:27:eb:00:00:01"},
        ]
    )
    result = ansible_run("ansible-inventory", "-i", folder, "--list", "--export")
    assert result.returncode == 0, result.stderr
    assert "[WARNING]: bramble model:" in result.stderr
    assert "MAC b8:27:eb:00:00:01 is claimed by bank 1 slot 1 and bank 1 slot 2" in result.stderr
    inventory = _plain(json.loads(result.stdout))
    assert len(inventory["all"]["vars"]["bramble_model_errors"]) == 1
    assert len(_hosts(inventory, "pis")) == 8


def _fleet(base_model, banks: int) -> dict[str, Any]:
    base_model["banks"] = {"count": banks, "size": 16}
    base_model["controllers"][0]["outlets"] = banks
    base_model["power"] = {
        "budget": 16,
        "groups": [
            {"id": b, "controller": "pdu1", "outlet": b, "banks": [b]} for b in range(1, banks + 1)
        ],
    }
    return base_model


def test_list_output_grows_linearly_with_the_fleet(ansible_run, model_dir, base_model):
    # `ansible-inventory --list` merges the variables of `all` into every host. With the whole
    # fleet (bramble_pis, bramble_model) in `all`, the output grows with hosts x Pis: for
    # inventory/bigpi it is 1.5 GB and takes minutes. Four times the Pis should give about
    # four times the output.
    small = model_dir(_fleet(base_model, 1))
    large = model_dir(_fleet(base_model, 4))
    sizes = []
    for folder in (small, large):
        result = ansible_run("ansible-inventory", "-i", folder, "--list")
        assert result.returncode == 0, result.stderr
        sizes.append(len(result.stdout))
    assert sizes[1] / sizes[0] < 6, f"16 Pis: {sizes[0]} bytes, 64 Pis: {sizes[1]} bytes"
