"""The lab's QEMU node without booting it: its place in the plan and the image put into the
head's /srv/bramble (no root needed; the boot itself is test_lab_qemu.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bramble.lab import qemu_image
from bramble.lab.plan import LabPlan, QemuSettings, build_plan
from cluster_helpers import INVENTORIES

MODEL = INVENTORIES / "lab" / "cluster.yml"
CMDLINE = (
    "console=tty0 console=ttyS1,115200 root=/dev/nfs "
    "nfsroot=192.168.3.1:/var/cache/bramble/qemu-node/abc/root,nfsvers=3,tcp ro ip=dhcp\n"
)


def test_the_lab_has_no_qemu_node_unless_asked(tmp_path: Path) -> None:
    assert build_plan(MODEL, "lab", tmp_path).qemu is None


def test_the_qemu_node_sits_outside_the_banks_with_its_own_mac(tmp_path: Path) -> None:
    plan = build_plan(MODEL, "lab", tmp_path, qemu=QemuSettings())
    node = plan.qemu
    assert node is not None
    assert (node.name, node.mac, node.ip, node.tap) == (
        "qemu1", "52:54:00:b7:00:01", "10.42.0.200", "qn0",
    )  # fmt: skip
    assert node.ip not in {pi.ip for pi in plan.pis} | set(plan.device_addresses)
    assert node.mac not in {pi.mac for pi in plan.pis}
    assert node.pid_file == str(tmp_path / "lab" / "qemu.pid")
    assert Path(node.console).is_relative_to(plan.state_dir)
    # a changed choice is a changed plan: `bramble.lab up` restarts the lab for it
    assert LabPlan.from_json(plan.to_json()) == plan
    assert plan.to_json() != build_plan(MODEL, "lab", tmp_path).to_json()
    other = build_plan(
        MODEL, "lab", tmp_path, qemu=QemuSettings("n", "52:54:00:AA:00:02", "10.42.0.9")
    )
    assert other.qemu is not None
    assert (other.qemu.name, other.qemu.mac, other.qemu.ip) == (
        "n",
        "52:54:00:aa:00:02",
        "10.42.0.9",
    )


def _cache(tmp_path: Path, key: str) -> Path:
    entry = tmp_path / "cache" / key
    (entry / "root" / "etc").mkdir(parents=True)
    (entry / "root" / "etc" / "os-release").write_text(f"ID=debian\nKEY={key}\n")
    (entry / "root" / "root" / ".ssh").mkdir(parents=True)  # the QEMU node test's key
    (entry / "root" / "root" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    (entry / "boot").mkdir()
    for name in qemu_image.BOOT_FILES:
        (entry / "boot" / name).write_text(f"{name} of {key}\n")
    (entry / "boot" / "cmdline.txt").write_text(CMDLINE.replace("abc", key))
    (entry / "ready").write_text(key)
    return entry


def test_the_image_is_copied_with_a_cmdline_naming_the_heads_export(tmp_path: Path) -> None:
    _cache(tmp_path, "k1")
    srv = tmp_path / "srv"
    first = qemu_image.install(srv, "10.42.0.1", tmp_path / "cache")
    assert first["changed"] is True
    assert (srv / "root" / "etc" / "os-release").read_text().endswith("KEY=k1\n")
    assert (srv / "boot" / "vmlinuz").read_text() == "vmlinuz of k1\n"
    # the test's SSH key stays in the cache, out of the lab's copy
    assert not (srv / "root" / "root" / ".ssh" / "authorized_keys").exists()
    assert (tmp_path / "cache" / "k1" / "root" / "root" / ".ssh" / "authorized_keys").exists()
    cmdline = (srv / "boot" / "cmdline.txt").read_text()
    assert "nfsroot=10.42.0.1:/srv/bramble/root,nfsvers=3,tcp" in cmdline
    assert cmdline.replace("10.42.0.1:/srv/bramble/root", "") == CMDLINE.replace(
        "192.168.3.1:/var/cache/bramble/qemu-node/abc/root", ""
    )
    # the lab's own files written over the copy stay: a second run changes nothing
    (srv / "root" / "etc" / "lab-written").write_text("x")
    assert qemu_image.install(srv, "10.42.0.1", tmp_path / "cache")["changed"] is False
    assert (srv / "root" / "etc" / "lab-written").exists()
    assert json.loads((srv / qemu_image.STAMP).read_text())["key"] == "k1"
    # a copy made before the key was left out loses it on the next run
    (srv / "root" / "root" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    assert qemu_image.install(srv, "10.42.0.1", tmp_path / "cache")["changed"] is True
    assert not (srv / "root" / "root" / ".ssh" / "authorized_keys").exists()
    assert (srv / "root" / "etc" / "lab-written").exists()


def test_a_stand_in_root_is_replaced_and_a_missing_cache_says_how_to_make_it(
    tmp_path: Path,
) -> None:
    srv = tmp_path / "srv"
    (srv / "root" / "etc").mkdir(parents=True)
    (srv / "root" / "etc" / "os-release").write_text("ID=bramble-lab-standin\n")
    with pytest.raises(RuntimeError, match=r"make lab-qemu-image"):
        qemu_image.install(srv, "10.42.0.1", tmp_path / "cache")
    _cache(tmp_path, "k2")
    assert qemu_image.install(srv, "10.42.0.1", tmp_path / "cache")["changed"] is True
    assert "KEY=k2" in (srv / "root" / "etc" / "os-release").read_text()
    assert not (srv / "root.partial").exists()


def test_a_cmdline_without_one_nfs_root_is_refused() -> None:
    with pytest.raises(ValueError, match="nfsroot"):
        qemu_image.nfs_cmdline("root=/dev/mmcblk0p2 ro", "10.42.0.1")
