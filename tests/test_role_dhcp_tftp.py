"""The dhcp_tftp role, rendered on localhost from cluster models (no package, service, sysctl).

Render-only mode is the interface the integration tests use to serve the result with a real
dnsmasq: dhcp_tftp_manage_service=false with dhcp_tftp_conf_file, dhcp_tftp_tftp_root,
dhcp_tftp_boot_dir, dhcp_tftp_interface and dhcp_tftp_lease_file pointing at a scratch folder.
The TFTP tree module's planning is also tested directly (fast, no Ansible).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.model import load_cluster
from cluster_helpers import ROOT, fleet_model, mac_of, serial_of

PLAYBOOK = """\
---
- name: Render dhcp_tftp
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: dhcp_tftp
  post_tasks:
    - name: Write what the role derived from the model
      ansible.builtin.copy:
        content: >-
          {{ {'firewall_rules': dhcp_tftp_firewall_rules, 'sysctl': dhcp_tftp_sysctl,
              'max_transfers': dhcp_tftp_max_transfers | int, 'nofile': _dhcp_tftp_nofile | int}
             | to_nice_json }}
        dest: "{{ derived_out }}"
        mode: "0644"
"""

VALIDATED_PLAYBOOK = (
    "---\n"
    "- name: Validate the model first, as playbooks/head.yml does\n"
    f"  ansible.builtin.import_playbook: {ROOT}/playbooks/validate.yml\n\n"
    + PLAYBOOK.removeprefix("---\n")
)

BOOT_FILES = ("bootcode.bin", "start.elf", "fixup.dat", "kernel8.img", "config.txt")
SHARED_CMDLINE = "console=tty0 root=/dev/nfs nfsroot=10.42.0.1:/srv/bramble/root ro\n"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

pytestmark = pytest.mark.slow


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


class Render:
    """Runs the role in render-only mode into one scratch folder."""

    def __init__(self, run: Callable[..., Any], tmp_path: Path) -> None:
        self.run_tool = run
        self.tmp = tmp_path
        self.conf = tmp_path / "etc" / "bramble.conf"
        self.conf.parent.mkdir()
        self.tftp = tmp_path / "tftp"
        self.boot = tmp_path / "boot"
        self.boot.mkdir()
        (self.boot / "overlays").mkdir()
        for name in BOOT_FILES:
            (self.boot / name).write_text(f"stand-in {name}\n", encoding="utf-8")
        (self.boot / "cmdline.txt").write_text(SHARED_CMDLINE, encoding="utf-8")
        self.derived_file = tmp_path / "derived.json"
        self.playbook = tmp_path / "dhcp_tftp.yml"
        self.playbook.write_text(PLAYBOOK, encoding="utf-8")

    def __call__(
        self, inventory: Path, *args: str, playbook: Path | None = None, **extra: Any
    ) -> Any:
        variables = {
            "dhcp_tftp_manage_service": False,
            "dhcp_tftp_conf_file": str(self.conf),
            "dhcp_tftp_tftp_root": str(self.tftp),
            "dhcp_tftp_boot_dir": str(self.boot),
            "dhcp_tftp_interface": "brt-test0",
            "dhcp_tftp_lease_file": str(self.tmp / "leases"),
            "derived_out": str(self.derived_file),
            **extra,
        }
        return self.run_tool(
            "ansible-playbook",
            "-i",
            inventory,
            playbook or self.playbook,
            "-e",
            json.dumps(variables),
            *args,
            timeout=300,
        )

    def lines(self, prefix: str) -> list[str]:
        text = self.conf.read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line.startswith(prefix)]

    @property
    def derived(self) -> dict[str, Any]:
        return dict(json.loads(self.derived_file.read_text(encoding="utf-8")))

    def tree(self) -> dict[str, str]:
        """Every entry under the TFTP root: link target, file content or ``<dir>``."""
        found: dict[str, str] = {}
        for path in sorted(self.tftp.rglob("*")):
            key = str(path.relative_to(self.tftp))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "<dir>"
            else:
                found[key] = path.read_text(encoding="utf-8")
        return found


@pytest.fixture
def render(ansible_run: Callable[..., Any], tmp_path: Path) -> Render:
    return Render(ansible_run, tmp_path)


def _macs(*slots: tuple[int, int], serials: bool = True) -> list[dict[str, Any]]:
    entries = []
    for bank, slot in slots:
        entry: dict[str, Any] = {"bank": bank, "slot": slot, "mac": mac_of(bank, slot)}
        if serials:
            entry["serial"] = serial_of(bank, slot)
        entries.append(entry)
    return entries


def _ok(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# -- DHCP ------------------------------------------------------------------------------------


def test_one_reservation_per_harvested_mac_and_no_dynamic_pool(render, model_dir):
    macs = _macs((1, 1), (1, 2)) + _macs((2, 4), serials=False)
    inventory = model_dir(macs=macs)
    result = _ok(render(inventory))
    pis = {pi.name: pi for pi in load_cluster(inventory).pis}
    harvested = [pi for pi in pis.values() if pi.mac]
    assert render.lines("dhcp-host=") == [
        f"dhcp-host={pi.mac},{pi.name},{pi.ip}" for pi in harvested
    ]
    assert len(harvested) == 3
    assert render.lines("dhcp-range=") == ["dhcp-range=10.42.0.0,static,255.255.0.0,12h"]
    assert render.lines("interface=") == ["interface=brt-test0"]
    assert render.lines("enable-tftp") == ["enable-tftp=brt-test0"]
    assert render.lines("dhcp-vendorclass=") == ["dhcp-vendorclass=set:pxe,PXEClient"]
    assert render.lines("pxe-service=") == ['pxe-service=tag:pxe,0,"Raspberry Pi Boot"']
    assert render.lines("dhcp-reply-delay=") == ["dhcp-reply-delay=tag:pxe,1"]
    assert render.lines("dhcp-leasefile=") == [f"dhcp-leasefile={render.tmp / 'leases'}"]
    assert render.lines("tftp-root=") == [f"tftp-root={render.tftp}"]
    # the five unharvested Pis are reported by name, not treated as an error
    unharvested = sorted(name for name, pi in pis.items() if not pi.mac)
    assert len(unharvested) == 5
    assert ", ".join(unharvested) in result.stdout
    # the Pi with a MAC but no serial gets a reservation and is reported: it has no folder
    assert "No serial harvested" in result.stdout
    assert "pi-02-04" in result.stdout.split("No serial harvested", 1)[1]
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (apt dnsmasq-base, in the Makefile's APT_TEST)")
    check = subprocess.run(
        [DNSMASQ, "--test", f"--conf-file={render.conf}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_dns_pool_and_delay_follow_the_variables(render, model_dir):
    inventory = model_dir(macs=_macs((1, 1)))
    _ok(render(inventory))
    # default: DNS for the cluster domain, every Pi by name (harvested or not)
    records = render.lines("host-record=")
    assert records[0] == "host-record=test-head.test.internal,test-head,10.42.0.1"
    assert "host-record=pi-02-04.test.internal,pi-02-04,10.42.2.4" in records
    assert len(records) == 1 + 8
    assert render.lines("port=") == []
    assert render.lines("except-interface=") == ["except-interface=lo"]
    assert {(r["proto"], r["port"]) for r in render.derived["firewall_rules"]} == {
        ("udp", 67),
        ("udp", 69),
        ("udp", 53),
        ("tcp", 53),
    }
    assert all(r["interface"] == "brt-test0" for r in render.derived["firewall_rules"])

    _ok(
        render(
            inventory,
            dhcp_tftp_dns=False,
            dhcp_tftp_dynamic_range="10.42.9.10,10.42.9.50",
            dhcp_tftp_reply_delay=0,
        )
    )
    assert render.lines("port=") == ["port=0"]
    assert render.lines("host-record=") == []
    assert render.lines("dhcp-range=") == [
        "dhcp-range=10.42.0.0,static,255.255.0.0,12h",
        "dhcp-range=10.42.9.10,10.42.9.50,255.255.0.0,12h",
    ]
    assert render.lines("dhcp-reply-delay=") == []
    assert {(r["proto"], r["port"]) for r in render.derived["firewall_rules"]} == {
        ("udp", 67),
        ("udp", 69),
    }


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        # 8 Pis: 8 x 4 x 1.5 = 48, dnsmasq's default of 50 is the floor; kernel defaults kept
        pytest.param((2, 4), (50, 1024, [128, 512, 1024]), id="8-pis-floor"),
        # 100 Pis: 100 x 4 x 1.5 = 600; 164 neighbours (100 + 64) raise gc_thresh1 only
        pytest.param((4, 25), (600, 1024, [164, 512, 1024]), id="100-pis"),
    ],
)
def test_tftp_max_and_sysctls_follow_the_power_budget(
    render, model_dir, base_model, shape, expected
):
    tftp_max, nofile, gc_thresh = expected
    _ok(render(model_dir(fleet_model(base_model, *shape))))
    assert render.lines("tftp-max=") == [f"tftp-max={tftp_max}"]
    derived = render.derived
    assert derived["max_transfers"] == tftp_max
    assert derived["nofile"] == nofile
    sysctl = derived["sysctl"]
    assert [int(sysctl[f"net.ipv4.neigh.default.gc_thresh{n}"]) for n in (1, 2, 3)] == gc_thresh


def test_the_full_size_reference_cluster(render, copy_inventory):
    """bigpi: 1,050 harvested Pis, power budget 168: the whole tree in one run."""
    inventory = copy_inventory("bigpi")
    result = _ok(render(inventory))
    assert len(render.lines("dhcp-host=")) == 1050
    # 168 Pis x 4 transfers x 1.5 = 1008 > the 899 dnsmasq allows with 1024 open files
    assert render.lines("tftp-max=") == ["tftp-max=1008"]
    derived = render.derived
    assert derived["nofile"] == 1008 + 256
    assert int(derived["sysctl"]["net.ipv4.neigh.default.gc_thresh3"]) == 4 * (1050 + 64)
    folders = [p for p in render.tftp.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(folders) == 1050
    pi = next(p for p in load_cluster(inventory).pis if p.name == "pi-07-03")
    assert pi.serial
    assert os.readlink(render.tftp / pi.serial / "start.elf") == str(render.boot / "start.elf")
    assert "1050/1050 Pis have a DHCP reservation, 1050 a TFTP serial folder" in result.stdout


# -- TFTP tree -------------------------------------------------------------------------------


def test_tftp_tree_links_serial_folders_with_own_cmdline_only_where_it_differs(render, model_dir):
    macs = _macs((1, 1), (1, 2), (1, 3)) + _macs((1, 4), serials=False)
    inventory = model_dir(macs=macs)
    own = "console=serial0,115200 root=/dev/nfs ro\n"
    _ok(
        render(
            inventory,
            dhcp_tftp_cmdline_overrides={
                "pi-01-01": own,
                "pi-01-02": SHARED_CMDLINE,  # same as the shared one: a link, not a copy
                "pi-02-01": own,  # not harvested: no folder, no error
            },
        )
    )
    tree = render.tree()
    boot = str(render.boot)
    assert tree["bootcode.bin"] == f"-> {boot}/bootcode.bin"
    serials = {slot: serial_of(1, slot) for slot in (1, 2, 3)}
    assert {key for key, value in tree.items() if value == "<dir>"} == set(serials.values())
    for slot, serial in serials.items():
        for name in (*BOOT_FILES, "overlays"):
            assert tree[f"{serial}/{name}"] == f"-> {boot}/{name}", (slot, name)
        assert tree[f"{serial}/.bramble-tftp"].startswith("Managed by bramble")
    assert tree[f"{serials[1]}/cmdline.txt"] == own
    assert tree[f"{serials[2]}/cmdline.txt"] == f"-> {boot}/cmdline.txt"
    assert tree[f"{serials[3]}/cmdline.txt"] == f"-> {boot}/cmdline.txt"
    # the tree holds nothing else: no folder for the Pi without a serial
    assert len(tree) == 1 + 3 * (1 + len(BOOT_FILES) + 3)


def test_stale_serial_folders_go_and_foreign_ones_stay(render, model_dir):
    inventory = model_dir(macs=_macs((1, 1), (1, 2)))
    _ok(render(inventory))
    gone = serial_of(1, 2)
    assert (render.tftp / gone).is_dir()
    (render.tftp / "cafebabe").mkdir()
    (render.tftp / "cafebabe" / "start.elf").write_text("someone else's\n", encoding="utf-8")
    (render.tftp / "notes").mkdir()
    (inventory / "macs.yml").write_text(yaml.safe_dump({"macs": _macs((1, 1))}), encoding="utf-8")
    result = _ok(render(inventory, "--diff"))
    assert not (render.tftp / gone).exists()
    assert (render.tftp / serial_of(1, 1) / "start.elf").is_symlink()
    assert (render.tftp / "cafebabe" / "start.elf").read_text(
        encoding="utf-8"
    ) == "someone else's\n"
    assert (render.tftp / "notes").is_dir()
    assert f"{gone}/ (stale folder)" in result.stdout
    assert "left alone: cafebabe" in result.stdout
    # a new file in the shared boot folder is linked into every serial folder on the next run
    (render.boot / "bcm2710-rpi-3-b-plus.dtb").write_text("dtb\n", encoding="utf-8")
    _ok(render(inventory))
    assert (render.tftp / serial_of(1, 1) / "bcm2710-rpi-3-b-plus.dtb").is_symlink()


# -- idempotence, check and diff -------------------------------------------------------------


def test_second_run_changes_nothing_and_check_mode_tells_the_truth(render, model_dir):
    inventory = model_dir(macs=_macs((1, 1), (2, 2)))
    dry = _ok(render(inventory, "--check", "--diff"))
    assert _recap(dry.stdout)["changed"] >= 2
    assert not render.conf.exists()
    assert not render.tftp.exists()
    assert f"+dhcp-host={mac_of(1, 1)}," in dry.stdout
    assert f"{serial_of(2, 2)}/start.elf -> {render.boot}/start.elf" in dry.stdout

    first = _ok(render(inventory))
    assert _recap(first.stdout)["changed"] >= 2
    again = _ok(render(inventory))
    assert _recap(again.stdout)["changed"] == 0, again.stdout
    assert _recap(_ok(render(inventory, "--check", "--diff")).stdout)["changed"] == 0

    # a newly harvested Pi: check mode shows its reservation and folder, and writes neither
    (inventory / "macs.yml").write_text(
        yaml.safe_dump({"macs": _macs((1, 1), (2, 2), (1, 3))}), encoding="utf-8"
    )
    before = render.conf.read_text(encoding="utf-8")
    dry = _ok(render(inventory, "--check", "--diff"))
    assert _recap(dry.stdout)["changed"] == 2
    assert f"+dhcp-host={mac_of(1, 3)},pi-01-03,10.42.1.3" in dry.stdout
    assert f"{serial_of(1, 3)}/start.elf -> {render.boot}/start.elf" in dry.stdout
    assert render.conf.read_text(encoding="utf-8") == before
    assert not (render.tftp / serial_of(1, 3)).exists()


# -- bad input -------------------------------------------------------------------------------


def test_missing_boot_files_stop_the_run_with_what_to_do(render, model_dir):
    inventory = model_dir(macs=_macs((1, 1)))
    (render.boot / "start.elf").unlink()
    result = render(inventory)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"dhcp_tftp_boot_dir={render.boot} lacks start.elf" in out
    assert "raspi-firmware" in out
    assert "pi_image" in out
    assert not render.conf.exists()
    assert not render.tftp.exists()
    # the tree can still be rendered on purpose without boot files
    _ok(render(inventory, dhcp_tftp_require_boot_files=False))
    assert (render.tftp / serial_of(1, 1) / "kernel8.img").is_symlink()


def test_an_override_for_an_unknown_pi_is_refused(render, model_dir):
    result = render(model_dir(macs=_macs((1, 1))), dhcp_tftp_cmdline_overrides={"pi-09-09": "x"})
    assert result.returncode != 0
    assert (
        "dhcp_tftp_cmdline_overrides names Pi(s) that are not in the cluster model: pi-09-09"
        in (result.stdout)
    )
    assert not render.conf.exists()


def test_duplicate_mac_is_stopped_by_validation_before_dnsmasq_is_touched(render, model_dir):
    macs = _macs((1, 1), (1, 2))
    macs[1]["mac"] = macs[0]["mac"]
    del macs[1]["serial"]
    playbook = render.tmp / "validated.yml"
    playbook.write_text(VALIDATED_PLAYBOOK, encoding="utf-8")
    result = render(model_dir(macs=macs), playbook=playbook)
    assert result.returncode != 0
    assert f"MAC {mac_of(1, 1)} is claimed by bank 1 slot 1 and bank 1 slot 2" in result.stdout
    assert not render.conf.exists()
    assert not render.tftp.exists()


# -- the TFTP tree module's planning, without Ansible ----------------------------------------


def _module() -> Any:
    path = ROOT / "roles" / "dhcp_tftp" / "library" / "bramble_tftp_tree.py"
    spec = importlib.util.spec_from_file_location("bramble_tftp_tree", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_module_refuses_bad_and_duplicate_serials():
    tree = _module()
    with pytest.raises(tree.TreeError, match="pi-01-02: serial 'xyz' is not 8 hex digits"):
        tree.folders_of([{"name": "pi-01-02", "serial": "xyz"}], {})
    with pytest.raises(tree.TreeError, match="serial 4db34690 is claimed by pi-01-01 and pi-01-02"):
        tree.folders_of(
            [
                {"name": "pi-01-01", "serial": "4DB34690"},
                {"name": "pi-01-02", "serial": "4db34690"},
            ],
            {},
        )
    assert tree.folders_of([{"name": "pi-01-03", "serial": None}], {}) == []


def test_module_replaces_an_old_serial_link_and_converges(tmp_path):
    tree = _module()
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "start.elf").write_text("elf\n", encoding="utf-8")
    root = tmp_path / "tftp"
    root.mkdir()
    (root / "4db34690").symlink_to(boot)  # the layout some clusters start from
    (root / "stray.txt").write_text("kept\n", encoding="utf-8")
    folders = tree.folders_of([{"name": "pi-01-01", "serial": "4db34690"}], {})
    plan = tree.plan_tree(str(root), str(boot), folders, ["bootcode.bin"], True)
    assert plan.changed
    assert plan.created == ["4db34690"]
    tree.apply_plan(str(root), plan)
    assert (root / "4db34690").is_dir()
    assert not (root / "4db34690").is_symlink()
    assert os.readlink(root / "4db34690" / "start.elf") == str(boot / "start.elf")
    assert (boot / "start.elf").read_text(encoding="utf-8") == "elf\n"
    assert (root / "stray.txt").exists()
    again = tree.plan_tree(str(root), str(boot), folders, ["bootcode.bin"], True)
    assert not again.changed
