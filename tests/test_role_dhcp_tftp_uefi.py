"""dhcp_tftp's opt-in for UEFI arm64 machines (dhcp_tftp_uefi_arm64), rendered on localhost.

Off by default: nothing of it appears. On: dnsmasq hands GRUB to DHCP client arch 11, the TFTP
folder holds GRUB, links to the boot folder's kernel and initramfs and a grub.cfg with the Pis'
command line (console swapped); the Pi path (reservations, PXE answer, serial folders) is the
same as without it; a second run changes nothing and check mode tells the truth. A stand-in
GRUB image is given (dhcp_tftp_uefi_arm64_grub); the one made with apt and grub-mkimage boots
for real in tests/integration/test_qemu_node.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from test_role_dhcp_tftp import SHARED_CMDLINE, Render, _macs, _ok, _recap, render  # noqa: F401

pytestmark = pytest.mark.slow

UEFI_LINES = [
    "dhcp-match=set:efi-arm64,option:client-arch,11",
    "dhcp-boot=tag:efi-arm64,efi-arm64/bootaa64.efi",
]


def _uefi(render: Render, **extra: Any) -> dict[str, Any]:  # noqa: F811
    grub = render.tmp / "stand-in-bootaa64.efi"
    grub.write_bytes(b"MZ stand-in GRUB\n")
    return {"dhcp_tftp_uefi_arm64": True, "dhcp_tftp_uefi_arm64_grub": str(grub), **extra}


def test_off_by_default_nothing_for_uefi_machines(render: Render, model_dir: Any) -> None:  # noqa: F811
    _ok(render(model_dir(macs=_macs((1, 1)))))
    text = render.conf.read_text(encoding="utf-8")
    assert "client-arch" not in text
    assert "dhcp-boot" not in text
    assert not (render.tftp / "efi-arm64").exists()


def test_uefi_machines_get_grub_and_the_pis_kernel_and_cmdline(
    render: Render,  # noqa: F811
    model_dir: Any,
) -> None:
    inventory = model_dir(macs=_macs((1, 1), (1, 2)))
    _ok(render(inventory))
    pi_conf, pi_tree = render.conf.read_text(encoding="utf-8"), render.tree()
    _ok(render(inventory, **_uefi(render, dhcp_tftp_uefi_arm64_cmdline_extra=["panic=5"])))
    text = render.conf.read_text(encoding="utf-8")
    assert all(line in text.splitlines() for line in UEFI_LINES), text
    # the Pi path is untouched: the same lines and serial folders, plus the UEFI ones
    assert [line for line in text.splitlines() if line not in UEFI_LINES and line.strip()
            and not line.startswith("#")] == [
        line for line in pi_conf.splitlines() if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    tree = render.tree()
    assert {k: v for k, v in tree.items() if not k.startswith("efi-arm64")} == pi_tree
    assert tree["efi-arm64/bootaa64.efi"] == "MZ stand-in GRUB\n"
    assert tree["efi-arm64/vmlinuz"] == f"-> {render.boot / 'vmlinuz'}"
    assert tree["efi-arm64/initrd.img"] == f"-> {render.boot / 'initrd.img'}"
    grub = tree["efi-arm64/grub.cfg"]
    linux = re.search(r"^linux \$prefix/vmlinuz (.*)$", grub, re.MULTILINE)
    assert linux, grub
    words = SHARED_CMDLINE.split()
    assert linux.group(1).split() == [
        "console=ttyAMA0",
        *(word for word in words if not word.startswith("console=")),
        "panic=5",
    ]
    assert re.search(r"^initrd \$prefix/initrd\.img$", grub, re.MULTILINE)


def test_second_run_changes_nothing_and_check_mode_shows_a_new_cmdline(
    render: Render,  # noqa: F811
    model_dir: Any,
) -> None:
    inventory = model_dir(macs=_macs((1, 1)))
    settings = _uefi(render)
    _ok(render(inventory, **settings))
    second = _ok(render(inventory, **settings))
    assert _recap(second.stdout)["changed"] == 0, second.stdout
    grub_cfg = render.tftp / "efi-arm64" / "grub.cfg"
    before = grub_cfg.read_text(encoding="utf-8")
    (render.boot / "cmdline.txt").write_text(SHARED_CMDLINE.strip() + " quiet\n", "utf-8")
    check = _ok(render(inventory, "--check", "--diff", **settings))
    assert _recap(check.stdout)["changed"] == 1, check.stdout
    assert re.search(r"^\+linux .* quiet$", check.stdout, re.MULTILINE), check.stdout
    assert grub_cfg.read_text(encoding="utf-8") == before


def test_a_boot_folder_without_cmdline_stops_the_run(render: Render, model_dir: Any) -> None:  # noqa: F811
    (render.boot / "cmdline.txt").unlink()
    result = render(model_dir(macs=_macs((1, 1))), **_uefi(render))
    assert result.returncode != 0
    assert "dhcp_tftp_uefi_arm64 needs" in result.stdout
    assert "run the pi_image role first" in result.stdout


def test_grub_is_served_from_where_the_role_put_it(render: Render, model_dir: Any) -> None:  # noqa: F811
    _ok(render(model_dir(macs=_macs((1, 1))), **_uefi(render, dhcp_tftp_uefi_arm64_dir="uefi")))
    assert "dhcp-boot=tag:efi-arm64,uefi/bootaa64.efi" in render.conf.read_text(encoding="utf-8")
    assert (render.tftp / "uefi" / "bootaa64.efi").is_file()
    assert Path(render.tftp / "uefi" / "grub.cfg").is_file()
