"""bramble.lab.qemu_node without booting: the machine's command line and the PID safety rules.

The boot itself is tests/integration/test_qemu_node.py (slow, root).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bramble.lab.qemu_node import LAB_MAC, QemuNode, QemuNodeError, stop_pid_file


def _node(tmp_path: Path) -> QemuNode:
    return QemuNode(name="qn", netns="brt-x-lab", bridge="br0", console=tmp_path / "qn.console")


def test_the_machine_has_uefi_one_tap_nic_and_no_user_networking(tmp_path: Path) -> None:
    argv = _node(tmp_path).argv()
    assert argv[:3] == ["qemu-system-aarch64", "-M", "virt"]
    assert argv[argv.index("-bios") + 1] == "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
    netdevs = [argv[i + 1] for i, word in enumerate(argv) if word == "-netdev"]
    assert netdevs == ["tap,id=net0,ifname=qn0,script=no,downscript=no"]
    assert not any("user" in word.split(",")[0] for word in netdevs)
    assert "-nic" not in argv  # no default NIC either
    assert "-nodefaults" in argv
    assert f"mac={LAB_MAC}" in argv[argv.index("-device") + 1]
    assert argv[argv.index("-serial") + 1] == f"file:{tmp_path / 'qn.console'}"
    assert not LAB_MAC.startswith("b8:27:eb")  # never a Pi's MAC


def test_a_pid_file_of_another_program_is_not_killed(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file = tmp_path / "qemu-node.pid"
        pid_file.write_text(f"{other.pid}\n")
        assert stop_pid_file(pid_file) is False
        assert other.poll() is None  # still running: it is not QEMU
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait(timeout=10)


def test_a_missing_or_empty_pid_file_is_nothing_to_stop(tmp_path: Path) -> None:
    assert stop_pid_file(tmp_path / "none.pid") is False
    (tmp_path / "empty.pid").write_text("")
    assert stop_pid_file(tmp_path / "empty.pid") is False


def test_waiting_stops_at_a_kernel_panic_with_the_console(tmp_path: Path) -> None:
    node = _node(tmp_path)
    node.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        node.console.write_text("EFI stub: Booting Linux Kernel...\nKernel panic - not syncing\n")
        with pytest.raises(QemuNodeError, match="Kernel panic"):
            node.wait_for("bramble-overlay", timeout=5, poll=0.1)
        node.console.write_text("\x1b[0mbramble: loading efi-arm64/vmlinuz\n")
        assert node.wait_for("bramble: loading", timeout=5, poll=0.1) >= 0
        with pytest.raises(QemuNodeError, match="did not show"):
            node.wait_for("never", timeout=0.3, poll=0.1)
    finally:
        node.process.kill()
        node.process.wait(timeout=10)
    with pytest.raises(QemuNodeError, match="stopped"):
        node.wait_for("never", timeout=5, poll=0.1)
