"""One real arm64 node for the lab: a QEMU ``virt`` machine that network-boots from the head.

The machine has UEFI firmware (Debian's qemu-efi-aarch64, AAVMF), runs under TCG (software
emulation) and has one virtio NIC on a tap port of the lab's cluster bridge, inside the
bridge's network namespace: no user networking, no route anywhere but the lab. Its firmware
PXE-boots (DHCP client arch 11) the GRUB that the dhcp_tftp role serves with
``dhcp_tftp_uefi_arm64``; GRUB loads the shared image's kernel and initramfs over TFTP with the
Pis' command line, the initramfs mounts the NFS root read-only under a tmpfs overlay, and
systemd starts bramble-agent from the image.

``QemuNode`` starts the machine (``start``), remembers its PID (and writes it to ``pid_file``
when given), waits for lines of its serial console (``wait_for``, bounded), and stops it by PID
and deletes its tap (``stop``, safe to call twice). The console goes to a file.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bramble.labnet import ip, pid_running, stop_process

#: UEFI firmware of Debian's qemu-efi-aarch64 package.
FIRMWARE = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
QEMU = "qemu-system-aarch64"
#: Debian packages the node needs on the machine that runs it.
PACKAGES = ("qemu-system-arm", "qemu-efi-aarch64")
#: The lab's QEMU node: a MAC of QEMU's own prefix (52:54:00), never a Pi's (b8:27:eb).
LAB_MAC = "52:54:00:b7:00:01"
#: Lines of the serial console, in boot order (GRUB's are the grub.cfg of dhcp_tftp).
GRUB = "bramble: loading"
KERNEL = "Booting Linux on physical CPU"
OVERLAY = "bramble-overlay: root: read-only lower layer with a tmpfs upper layer"
FAILURES = ("Kernel panic", "booting with the read-only root")
#: Colours and cursor moves of systemd's status lines.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class QemuNodeError(RuntimeError):
    """The machine did not start or did not get where it was asked to, with its console's end."""


@dataclass
class QemuNode:
    """A QEMU arm64 machine on a tap port of ``bridge`` in namespace ``netns``."""

    name: str
    netns: str
    bridge: str
    console: Path
    mac: str = LAB_MAC
    tap: str = "qn0"
    memory_mb: int = 768
    cpus: int = 1
    pid_file: Path | None = None
    firmware: Path = FIRMWARE
    process: subprocess.Popen[bytes] | None = None
    powered_on: float = 0.0  # time.monotonic() at start
    _tap_made: bool = field(default=False, repr=False)

    def argv(self) -> list[str]:
        """QEMU's command line: UEFI firmware, no disk, one virtio NIC on the tap, no display."""
        return [
            QEMU, "-M", "virt", "-cpu", "cortex-a53", "-smp", str(self.cpus),
            "-m", str(self.memory_mb), "-bios", str(self.firmware),
            "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-netdev", f"tap,id=net0,ifname={self.tap},script=no,downscript=no",
            # romfile="": the firmware's own virtio driver, not iPXE's option ROM
            "-device", f"virtio-net-pci,netdev=net0,mac={self.mac},romfile=",
        ]  # fmt: skip

    def start(self) -> None:
        """Plug the tap into the bridge and power the machine on."""
        if self.process is not None:
            raise QemuNodeError(f"{self.name} is already running (PID {self.process.pid})")
        if not self.firmware.exists():
            raise QemuNodeError(
                f"no UEFI firmware at {self.firmware}: apt-get install {PACKAGES[1]}"
            )
        self.console.parent.mkdir(parents=True, exist_ok=True)
        self.console.write_bytes(b"")
        ip("-n", self.netns, "tuntap", "add", "dev", self.tap, "mode", "tap")
        self._tap_made = True
        ip("-n", self.netns, "link", "set", self.tap, "master", self.bridge, "up")
        log = self.console.with_suffix(".qemu.log").open("ab")
        try:
            # ip netns exec execs QEMU: the PID is QEMU's own
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *self.argv()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        except OSError as exc:
            self.stop()
            raise QemuNodeError(
                f"cannot start {QEMU}: {exc}; apt-get install {PACKAGES[0]}"
            ) from exc
        finally:
            log.close()
        self.powered_on = time.monotonic()
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n", encoding="utf-8")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def console_text(self) -> str:
        """What the machine printed on its serial console, without terminal control sequences."""
        try:
            return ANSI.sub("", self.console.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return ""

    def check(self, text: str) -> None:
        """Raise when ``text`` (the console) shows a failure line or QEMU has exited."""
        failed = [line for line in FAILURES if line in text]
        if failed:
            raise QemuNodeError(f"{self.name} showed {failed[0]!r}; console:\n{text[-4000:]}")
        if not self.running():
            raise QemuNodeError(f"{self.name} stopped; console:\n{text[-4000:]}")

    def wait_for(self, mark: str, timeout: float, poll: float = 2.0) -> float:
        """Seconds from power-on until the console shows ``mark``; raise on a failure line, an
        exit of QEMU or ``timeout`` (seconds from now)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            if mark in text:
                return time.monotonic() - self.powered_on
            self.check(text)
            if time.monotonic() > deadline:
                raise QemuNodeError(
                    f"{self.name} did not show {mark!r} within {timeout:.0f} s; "
                    f"console:\n{text[-4000:]}"
                )
            time.sleep(poll)

    def stop(self, timeout: float = 10.0) -> None:
        """Power off (SIGTERM, then SIGKILL, by PID) and unplug the tap. Safe to call twice."""
        if self.process is not None:
            stop_process(self.process, timeout)
            self.process = None
        if self.pid_file is not None and self.pid_file.exists():
            self.pid_file.unlink()
        if self._tap_made:
            ip("-n", self.netns, "link", "del", self.tap, check=False)
            self._tap_made = False

    def __enter__(self) -> QemuNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def stop_pid_file(pid_file: Path, timeout: float = 10.0) -> bool:
    """Stop a node started by another process (the lab supervisor's) by the PID it wrote, if
    that PID is still QEMU; True when one was stopped. For teardown after a lost supervisor."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except FileNotFoundError:
        pid_file.unlink(missing_ok=True)
        return False
    if os.path.basename(command.decode(errors="replace")) != QEMU:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_running(pid):
        os.kill(pid, 9)
    pid_file.unlink(missing_ok=True)
    return True


def required_tools() -> dict[str, Any]:
    """What is missing to run a node here: {what: Debian package}."""
    missing: dict[str, Any] = {}
    if not FIRMWARE.exists():
        missing[str(FIRMWARE)] = PACKAGES[1]
    if not any((Path(p) / QEMU).exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        missing[QEMU] = PACKAGES[0]
    return missing
