"""Lab sizes: inventory/lab scaled to N banks of M Pis (bramble.lab.sizes; no root needed).

What a user of ``make run LAB_BANKS=N LAB_BANK_SIZE=M`` relies on: the copy is a valid model
of exactly N x M Pis with a power group per bank, a budget that lets every bank be on, switch
ports that fit; its own name and network, so it runs next to the default lab; the default
size is the committed lab itself; a size the network plan cannot hold is refused with the
reason; writing it again changes nothing and keeps the lab's harvested MACs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bramble.lab import sizes
from bramble.lab.cli import main
from bramble.lab.plan import QemuSettings, build_plan
from bramble.model.cluster import load_cluster
from cluster_helpers import ANSIBLE_TIMEOUT, BIN, INVENTORIES, ROOT

LAB = INVENTORIES / "lab"


def committed() -> dict[str, object]:
    model: dict[str, object] = yaml.safe_load((LAB / "cluster.yml").read_text())
    return model


def test_two_banks_of_four_is_the_committed_lab() -> None:
    model, secrets = sizes.scaled_model(committed(), 2, 4, "lab", "10.42.0.0/16")
    assert model == committed()
    assert secrets == {}
    # Without a name or folder the default size is inventory/lab itself: nothing is written.
    made = sizes.write_inventory(2, 4)
    assert made.inventory == sizes.LAB_INVENTORY == LAB.resolve()
    assert (made.name, made.network, made.pis, made.changed) == ("lab", "10.42.0.0/16", 8, False)


@pytest.mark.parametrize(("banks", "size"), [(1, 1), (4, 8), (8, 8), (4, 21), (9, 21), (3, 254)])
def test_a_scaled_lab_is_a_valid_model_of_n_banks_of_m(
    tmp_path: Path, banks: int, size: int
) -> None:
    made = sizes.write_inventory(banks, size, out=tmp_path / "lab")
    cluster = load_cluster(made.inventory)
    assert cluster.problems == ()
    model = cluster.model
    assert (model.banks.count, model.banks.size, len(cluster.pis)) == (banks, size, banks * size)
    assert made.name == model.cluster.name == f"lab{banks}x{size}"
    # One power group (one outlet) per bank; every bank can be on at once (the lab leaves each
    # booted bank on), so no power-on is refused by the budget.
    assert sorted(b for g in model.power.groups for b in g.banks) == list(range(1, banks + 1))
    assert all(len(g.banks) == 1 for g in model.power.groups)
    assert model.power.budget == banks * size
    outlets = {(g.controller, g.outlet) for g in model.power.groups}
    assert len(outlets) == banks
    # Every Pi has its own switch port on the one switch, as the harvest by MAC table needs.
    ports = [pi.switch_port for pi in cluster.pis]
    assert None not in ports
    assert len(set(ports)) == len(ports)
    # The lab simulates the controllers: each is one it can run, on its own address.
    plan = build_plan(made.inventory / "cluster.yml", made.name, tmp_path / "state")
    assert {c.driver for c in plan.controllers} <= {"http_relay", "synaccess"}
    assert len({c.address for c in plan.controllers}) == len(plan.controllers)
    assert set(plan.groups) == {pi.power_group for pi in plan.pis}
    assert len(plan.namespaces) == len(set(plan.namespaces))
    assert len({pi.netns for pi in plan.pis}) == banks * size


def test_a_scaled_lab_never_collides_with_the_default_lab(tmp_path: Path) -> None:
    default = build_plan(LAB / "cluster.yml", "lab", tmp_path / "state")
    made = sizes.write_inventory(2, 4, out=tmp_path / "lab2x4", name="lab2x4")
    scaled = build_plan(made.inventory / "cluster.yml", made.name, tmp_path / "state")
    assert scaled.name == "lab2x4"
    assert not set(default.namespaces) & set(scaled.namespaces)
    assert default.control_interface != scaled.control_interface
    assert scaled.state_dir != default.state_dir
    # Both control legs sit on this machine's routing table: their networks must differ, from
    # the default lab's 10.42/16 and from the lab test's 10.100-199/16 too.
    octet = int(made.network.split(".")[1])
    assert 200 <= octet < 250
    assert scaled.control_address.split("/")[0] != default.control_address.split("/")[0]
    assert {pi.ip.split(".")[1] for pi in scaled.pis} == {str(octet)}
    other = sizes.write_inventory(4, 8, out=tmp_path / "lab4x8")
    assert other.name == "lab4x8"
    assert other.network == sizes.lab_network("lab4x8")


def test_the_copy_keeps_the_labs_group_vars_and_adds_the_extra_controllers_secrets(
    tmp_path: Path,
) -> None:
    made = sizes.write_inventory(17, 2, out=tmp_path / "lab")
    for file in (LAB / "group_vars").rglob("*.yml"):
        copy = made.inventory / file.relative_to(LAB)
        assert copy.read_text() == file.read_text()
    extra = yaml.safe_load((made.inventory / "group_vars" / "all" / sizes.SIZE_VARS).read_text())
    model = load_cluster(made.inventory).model
    names = {c.credentials for c in model.controllers}
    # 17 banks: three relay/PDU pairs; pair 1's secrets are the lab's own (group_vars/all/lab.yml).
    assert len(model.controllers) == 6
    assert names - set(extra) == {"vault_lab_relay1_token", "vault_lab_pdu1_password"}
    secrets = {k: v for k, v in extra.items() if k.startswith("vault_")}
    assert all("lookup('ansible.builtin.password'" in v for v in secrets.values())
    # The ROMs of the 17th bank are still asking when its harvest comes (45 s a bank).
    assert extra["lab_rom_dhcp_tries"] == sizes.rom_dhcp_tries(17) >= 17 * 45 // 5


def test_small_copies_keep_the_labs_rom_patience() -> None:
    assert sizes.rom_dhcp_tries(2) == sizes.DEFAULT_ROM_DHCP_TRIES
    assert sizes.rom_dhcp_tries(16) > sizes.rom_dhcp_tries(4) > sizes.DEFAULT_ROM_DHCP_TRIES


def test_the_ansible_inventory_resolves_every_controller_secret(tmp_path: Path) -> None:
    made = sizes.write_inventory(9, 3, out=tmp_path / "lab")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    run = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(made.inventory), "--host", "lab9x3-head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=ANSIBLE_TIMEOUT,
        check=True,
    )
    hostvars = json.loads(run.stdout)
    assert hostvars["bramble_cluster"]["pi_count"] == 27
    assert hostvars["bramble_lab"] is True
    for controller in load_cluster(made.inventory).model.controllers:
        assert hostvars[str(controller.credentials)], controller.name


def test_writing_again_changes_nothing_and_keeps_the_harvested_macs(tmp_path: Path) -> None:
    out = tmp_path / "lab"
    assert sizes.write_inventory(3, 5, out=out).changed
    (out / "macs.yml").write_text("---\nmacs: []\n")
    stamp = (out / "cluster.yml").stat().st_mtime_ns
    assert not sizes.write_inventory(3, 5, out=out).changed
    assert (out / "cluster.yml").stat().st_mtime_ns == stamp
    assert (out / "macs.yml").read_text() == "---\nmacs: []\n"
    # A file the lab's group_vars no longer hold goes from the copy too.
    stale = out / "group_vars" / "all" / "gone.yml"
    stale.symlink_to(LAB / "cluster.yml")
    assert sizes.write_inventory(3, 5, out=out).changed
    assert not stale.is_symlink()


@pytest.mark.parametrize(
    ("banks", "size", "reason"),
    [
        (0, 4, "at least 1 bank"),
        (2, 0, "at least 1 bank of 1 Pi"),
        (255, 4, "at most 254 banks"),
        (2, 255, "at most 254"),
        (40, 40, "at most 1020 Pis"),
    ],
)
def test_sizes_beyond_the_network_plan_are_refused_with_the_reason(
    tmp_path: Path, banks: int, size: int, reason: str
) -> None:
    with pytest.raises(sizes.SizeError, match=reason):
        sizes.write_inventory(banks, size, out=tmp_path / "lab")
    assert not (tmp_path / "lab").exists()


def test_the_cli_prints_the_inventory_and_refuses_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lab"
    assert main(["inventory", "--banks", "4", "--bank-size", "8", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["inventory"] == str(out)
    assert (printed["pis"], printed["changed"]) == (32, True)
    assert (
        main(["inventory", "--banks", "4", "--bank-size", "8", "--out", str(out), "--path-only"])
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out)
    assert main(["inventory", "--path-only"]) == 0
    assert capsys.readouterr().out.strip() == str(sizes.LAB_INVENTORY)
    assert main(["inventory", "--banks", "300", "--out", str(tmp_path / "big")]) == 1
    assert "at most 254 banks" in capsys.readouterr().err


def test_the_largest_lab_has_no_bridge_port_left_for_the_qemu_node(tmp_path: Path) -> None:
    made = sizes.write_inventory(60, 17, out=tmp_path / "lab60x17", name="lab60x17")
    model = made.inventory / "cluster.yml"
    plan = build_plan(model, made.name, tmp_path / "state")
    assert plan.bridge_ports() == 1024  # 1,020 Pis, the head, devices, sound Pi, control leg
    with pytest.raises(ValueError, match=r"1025 ports .*1020 Pis and the QEMU node.*QEMU node out"):
        build_plan(model, made.name, tmp_path / "state", qemu=QemuSettings("qemu1"))
