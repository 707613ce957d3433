"""The real arm64 Pi image, built once by the pi_image role and cached on this machine.

localhost acts as the head: the role bootstraps Debian bookworm arm64 (mmdebstrap, emulated
through qemu-user-static and binfmt_misc) into a cache folder that later runs, and CI on the
same machine, reuse: the role's own stamp decides whether to rebuild, so a fresh machine
builds once (tens of minutes on 2 cores) and every later run only checks and configures.
The playbook is the documented three-play pattern (roles/pi_image/README.md) with a small
test role applied inside the image through the chroot connection.

Needs root, the Debian mirror through apt's usual route, and (installed by the role when
missing) mmdebstrap qemu-user-static binfmt-support arch-test; zstd to read the initramfs.
Set BRAMBLE_PI_IMAGE_CACHE to build somewhere else than /var/cache/bramble/pi-image.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_helpers import BIN, ROOT, ansible_env

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("BRAMBLE_PI_IMAGE_CACHE", "/var/cache/bramble/pi-image"))
#: One folder per suite and architecture; the role rebuilds it in place when inputs change.
WORK = CACHE / "bookworm-arm64"
BUILD_TIMEOUT = 90 * 60
RUN_TIMEOUT = 20 * 60
INVENTORY = ROOT / "inventory" / "desk"
HEAD = "192.168.3.1"  # head address of the desk model

PLAYBOOK = """\
---
- name: Build the Pi image on the head
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: pi_image

- name: Configure the Pi image from inside (chroot connection)
  hosts: pi_images
  gather_facts: false
  tasks:
    - name: Apply pi_image_roles inside the image
      ansible.builtin.include_role:
        name: pi_image
        tasks_from: image_roles
      tags: [pi_image, pi_image_roles]

- name: Make the image shareable again and publish its boot files
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Finish the Pi image
      ansible.builtin.include_role:
        name: pi_image
        tasks_from: finish
      tags: [pi_image, pi_image_boot]
"""

#: A role applied inside the image: it sees the image's facts and runs the image's programs.
TEST_ROLE_TASKS = """\
---
- name: Ask the image what it is
  ansible.builtin.command: dpkg --print-architecture
  register: __probe_arch
  changed_when: false
  check_mode: false

- name: Write what the image said
  ansible.builtin.copy:
    content: >
      {{ ansible_facts.architecture }} {{ __probe_arch.stdout }} {{ ansible_facts.distribution }}
    dest: /etc/bramble-chroot-probe
    mode: "0644"
"""


@dataclass
class Built:
    """What the three runs of the playbook on the cached image did."""

    root: Path
    boot: Path
    second: str  # output of the second run
    check_rc: int  # --check --diff with another time server
    check: str
    built_now: bool  # the first run bootstrapped (no usable cache)
    stamp_before: tuple[int, int]  # (inode of the root, mtime of the stamp) after the first run
    stamp_after: tuple[int, int]


def _bootstrapped(output: str) -> bool:
    """Whether this run of the role ran mmdebstrap (the task reports changed, not skipping)."""
    pattern = r"Bootstrap the root file system\] \*+\n(?:ASYNC [^\n]*\n)*changed:"
    return re.search(pattern, output) is not None


def _recaps(output: str) -> dict[str, dict[str, int]]:
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(.*)$", recap, re.MULTILINE)
    }


def _stamp(root: Path) -> tuple[int, int]:
    return root.stat().st_ino, (root / "etc" / "bramble-image.json").stat().st_mtime_ns


def _mounts_below(folder: Path) -> list[str]:
    targets = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [target for target in targets if target.startswith(f"{folder}/")]


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Only one playbook at a time on the cached image (xdist workers, parallel sessions)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{CACHE / '.lock'} stayed locked for {BUILD_TIMEOUT} s")
                time.sleep(5)
        yield


def _requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: mmdebstrap --mode=root, chroot, binfmt_misc")
    if shutil.which("apt-get") is None:
        pytest.skip("needs a Debian head (apt) to build the image")


def _project(work: Path, roles: list[str], role_tasks: str = TEST_ROLE_TASKS) -> list[str]:
    """The playbook, a test role and the settings in ``work``: ansible-playbook's arguments."""
    for name in roles:
        folder = work / "roles" / name / "tasks"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.yml").write_text(role_tasks, encoding="utf-8")
    (work / "play.yml").write_text(PLAYBOOK, encoding="utf-8")
    settings = {
        "pi_image_root": str(WORK / "root"),
        "pi_image_boot_dir": str(WORK / "boot"),
        "pi_image_roles": roles,
    }
    (work / "vars.yml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return [str(work / "play.yml"), "-e", f"@{work / 'vars.yml'}"]


def _playbook(work: Path, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    env = ansible_env()
    env["ANSIBLE_ROLES_PATH"] = f"{work / 'roles'}{os.pathsep}{ROOT / 'roles'}"
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run_three_times(work: Path) -> dict[str, Any]:
    """Build (or reuse) the image, run again, then check mode: the outcome, as JSON data."""
    args = _project(work, ["bramble_chroot_probe"])
    cached = (WORK / "root" / "etc" / "bramble-image.json").exists()
    start = time.monotonic()
    first = _playbook(work, *args, timeout=BUILD_TIMEOUT)
    first_seconds = time.monotonic() - start
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    stamp_before = _stamp(WORK / "root")
    start = time.monotonic()
    second = _playbook(work, *args, timeout=RUN_TIMEOUT)
    second_seconds = time.monotonic() - start
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    servers = '{"pi_image_time_servers": ["10.99.0.1"]}'
    check = _playbook(work, *args, "--check", "--diff", "-e", servers, timeout=RUN_TIMEOUT)
    timings = {
        "first_run_seconds": round(first_seconds),
        "first_run_built_the_image": _bootstrapped(first.stdout),
        "second_run_seconds": round(second_seconds),
        "cache_was_warm": cached,
    }
    (WORK / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    print(f"pi_image timings: {timings}")
    return {
        "second": second.stdout,
        "check_rc": check.returncode,
        "check": check.stdout + check.stderr,
        "built_now": timings["first_run_built_the_image"],
        "stamp_before": stamp_before,
        "stamp_after": _stamp(WORK / "root"),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The three runs, done once per test session even when xdist spreads this module."""
    _requirements()
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    shared = CACHE / f"results-{session}.json" if session else None
    with _cache_lock():
        if shared is not None and shared.exists():
            outcome = json.loads(shared.read_text(encoding="utf-8"))
        else:
            outcome = _run_three_times(tmp_path_factory.mktemp("pi-image"))
            if shared is not None:
                for old in CACHE.glob("results-*.json"):
                    old.unlink()
                shared.write_text(json.dumps(outcome), encoding="utf-8")
    return Built(
        WORK / "root",
        WORK / "boot",
        str(outcome["second"]),
        int(outcome["check_rc"]),
        str(outcome["check"]),
        bool(outcome["built_now"]),
        tuple(outcome["stamp_before"]),
        tuple(outcome["stamp_after"]),
    )


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def _cpio(data: bytes) -> dict[str, bytes]:
    """The files of a newc cpio archive (what initramfs-tools writes), by path."""
    files: dict[str, bytes] = {}
    offset = 0
    while offset + 110 <= len(data) and data[offset : offset + 6] in (b"070701", b"070702"):
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        size, name_size = fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + name_size - 1].decode()
        body = (name_start + name_size + 3) & ~3
        if name == "TRAILER!!!":
            offset = (body + 3) & ~3
            while offset < len(data) and data[offset] == 0:
                offset += 1
            continue  # early cpio archives may be followed by another archive
        files[name.removeprefix("./")] = data[body : body + size]
        offset = (body + size + 3) & ~3
    return files


@pytest.fixture(scope="module")
def initramfs(built: Built) -> dict[str, bytes]:
    raw = (built.boot / "initrd.img").read_bytes()
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        if shutil.which("zstd") is None:
            pytest.skip("needs zstd (apt: zstd) to read the initramfs")
        raw = subprocess.run(
            ["zstd", "-dc"], input=raw, capture_output=True, check=True, timeout=120
        ).stdout
    elif raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    files = _cpio(raw)
    assert files, "initrd.img is not a cpio archive"
    return files


def test_second_run_changes_nothing_and_does_not_rebuild(built):
    recaps = _recaps(built.second)
    assert set(recaps) == {"localhost", "pi-image"}, built.second[-3000:]
    assert all(counts["changed"] == 0 for counts in recaps.values()), recaps
    assert all(counts["failed"] == 0 for counts in recaps.values()), recaps
    assert not _bootstrapped(built.second)
    assert built.stamp_after == built.stamp_before


def test_check_mode_shows_the_one_change_and_writes_nothing(built):
    assert built.check_rc == 0, built.check[-6000:]
    recaps = _recaps(built.check)
    # the chrony source of the image is the one thing that would change
    assert recaps["localhost"]["changed"] == 1, built.check[-6000:]
    assert recaps["pi-image"]["changed"] == 0
    assert "+server 10.99.0.1 iburst" in built.check
    assert f"-server {HEAD} iburst" in built.check
    sources = built.root / "etc" / "chrony" / "sources.d" / "bramble.sources"
    assert f"server {HEAD} iburst" in sources.read_text(encoding="utf-8")
    assert _stamp(built.root) == built.stamp_after


def test_image_is_arm64_debian(built):
    assert _elf_machine(built.root / "bin" / "busybox") == 183  # EM_AARCH64
    assert _elf_machine((built.root / "bin" / "sh").resolve()) == 183
    stamp = json.loads((built.root / "etc" / "bramble-image.json").read_text(encoding="utf-8"))
    assert stamp["inputs"]["arch"] == "arm64"
    assert stamp["inputs"]["suite"] == "bookworm"
    assert "raspi-firmware" in stamp["inputs"]["packages"]
    assert re.fullmatch(r"[0-9a-f]{64}", stamp["inputs_hash"])


def test_boot_folder_has_what_the_firmware_fetches(built):
    boot = built.boot
    for name in ("bootcode.bin", "start.elf", "fixup.dat", "bcm2710-rpi-3-b-plus.dtb"):
        assert (boot / name).stat().st_size > 0, name
    firmware = built.root / "usr" / "lib" / "raspi-firmware"
    for name in ("bootcode.bin", "start.elf", "fixup.dat"):
        assert (boot / name).read_bytes() == (firmware / name).read_bytes(), name
    # the firmware's name of the 3B+ device tree is Debian's upstream one, byte for byte
    upstream = boot / "bcm2837-rpi-3-b-plus.dtb"
    assert (boot / "bcm2710-rpi-3-b-plus.dtb").read_bytes() == upstream.read_bytes()
    assert upstream.read_bytes()[:4] == b"\xd0\x0d\xfe\xed"  # flattened device tree
    # the kernel: gzip of the image's arm64 Image, as the firmware unpacks it
    kernels = sorted((built.root / "boot").glob("vmlinuz-*"))
    assert kernels
    image = gzip.decompress((boot / "vmlinuz").read_bytes())
    assert image[56:60] == b"ARM\x64"  # arm64 Image header magic
    assert hashlib.sha256(image).digest() == hashlib.sha256(kernels[-1].read_bytes()).digest()
    initrds = sorted((built.root / "boot").glob("initrd.img-*"))
    assert (boot / "initrd.img").read_bytes() == initrds[-1].read_bytes()
    cmdline = (boot / "cmdline.txt").read_text(encoding="utf-8")
    assert f"nfsroot={HEAD}:{built.root},nfsvers=3,tcp" in cmdline.split()
    assert "bramble.overlay=1" in cmdline.split()


def test_initramfs_carries_the_overlay_and_the_netboot_drivers(built, initramfs):
    script = "scripts/init-bottom/bramble-overlay"
    assert script in initramfs
    source = built.root / "etc" / "initramfs-tools" / script
    assert initramfs[script] == source.read_bytes()
    assert "bramble-overlay" in initramfs["scripts/init-bottom/ORDER"].decode()
    modules = {Path(name).name for name in initramfs if name.endswith(".ko")}
    for module in ("overlay.ko", "nfs.ko", "nfsv3.ko", "lan78xx.ko", "smsc95xx.ko", "dwc2.ko"):
        assert module in modules, sorted(modules)
    assert "overlay" in initramfs.get("conf/modules", b"").decode().split()
    # the NFS options of cmdline.txt are ones klibc's nfsmount (which mounts the root) knows
    nfsmount = next(data for name, data in initramfs.items() if name.endswith("bin/nfsmount"))
    for option in ("nfsvers", "tcp"):
        assert b"\0" + option.encode() + b"\0" in nfsmount, option
    assert b"\0vers\0" not in nfsmount
    # MODULES=list: the netboot drivers only, not every driver of the kernel
    assert len(modules) < 120, len(modules)


def test_nothing_in_the_image_pins_one_pi(built):
    root = built.root
    assert not list((root / "etc" / "ssh").glob("ssh_host_*"))
    assert not (root / "etc" / "hostname").exists()
    assert (root / "etc" / "machine-id").stat().st_size == 0
    unit = "bramble-ssh-host-keys.service"
    assert "ExecStart=/usr/bin/ssh-keygen -A" in (
        root / "etc" / "systemd" / "system" / unit
    ).read_text(encoding="utf-8")
    for wants in ("multi-user.target.wants", "ssh.service.wants"):
        link = root / "etc" / "systemd" / "system" / wants / unit
        assert link.is_symlink()
        assert link.resolve() == root / "etc" / "systemd" / "system" / unit
    assert (root / "lib" / "systemd" / "system" / "ssh.service").exists()


def test_the_image_takes_time_and_names_from_the_head(built):
    root = built.root
    sources = (root / "etc" / "chrony" / "sources.d" / "bramble.sources").read_text("utf-8")
    assert f"server {HEAD} iburst" in sources
    assert f"nameserver {HEAD}" in (root / "etc" / "resolv.conf").read_text(encoding="utf-8")
    hosts = (root / "etc" / "hosts").read_text(encoding="utf-8")
    assert f"{HEAD}\tdesk-head.desk.internal desk-head" in hosts
    apt = (root / "etc" / "apt" / "sources.list.d" / "debian.sources").read_text("utf-8")
    assert "Components: main non-free-firmware" in apt


def test_roles_apply_inside_the_image_through_chroot(built):
    probe = (built.root / "etc" / "bramble-chroot-probe").read_text(encoding="utf-8")
    assert probe.split() == ["aarch64", "arm64", "Debian"]
    # the play mounted /proc, /sys, /dev and resolv.conf into the image and took them away
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8")
    assert f" {built.root}/" not in mounts


#: An image role that fails half-way, after the image's /proc, /sys and /dev were mounted.
FAILING_ROLE_TASKS = """\
---
- name: Look around the image
  ansible.builtin.command: ls /proc/self
  changed_when: false
  check_mode: false

- name: Fail like a broken role
  ansible.builtin.fail:
    msg: bramble test role fails on purpose
"""


def test_a_failing_image_role_leaves_no_mount_behind(built, tmp_path):
    with _cache_lock():
        args = _project(tmp_path, ["bramble_failing_probe"], FAILING_ROLE_TASKS)
        result = _playbook(tmp_path, *args, timeout=RUN_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "bramble test role fails on purpose" in output
    # the mounts were there while the role ran, and the always: block took them away
    assert re.search(r"TASK \[bramble_failing_probe : Look around the image\][^\n]*\n+ok:", output)
    assert "Unmount /proc, /sys, /dev and the name servers from the image" in output
    assert _mounts_below(built.root) == []
    assert _stamp(built.root) == built.stamp_after


def test_a_failed_build_keeps_the_old_image_and_says_why(built, tmp_path):
    broken = {
        # a changed package list asks for a rebuild; the mirror that cannot answer breaks it
        "pi_image_extra_packages": ["bramble-no-such-package"],
        "pi_image_mirror": "file:///nonexistent/bramble-mirror",
        "pi_image_security_mirror": "",
        "pi_image_updates": False,
    }
    with _cache_lock():
        args = _project(tmp_path, [])
        result = _playbook(tmp_path, *args, "-e", json.dumps(broken), timeout=RUN_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mmdebstrap could not build the image" in output
    assert "check that file:///nonexistent/bramble-mirror is reachable" in output
    assert _stamp(built.root) == built.stamp_after  # the old image, untouched
    for leftover in ("root.build", "root.seed", "root.old"):
        assert not (WORK / leftover).exists(), leftover
    assert _mounts_below(WORK) == []


def test_a_newer_initramfs_input_rebuilds_the_initramfs_and_republishes_it(built, tmp_path):
    hook = built.root / "etc" / "initramfs-tools" / "hooks" / "bramble"
    with _cache_lock():
        before = (built.boot / "initrd.img").read_bytes()
        os.utime(hook)  # as if a template had just changed it
        args = _project(tmp_path, [])
        result = _playbook(tmp_path, *args, "--tags", "pi_image_boot", timeout=RUN_TIMEOUT)
        again = _playbook(tmp_path, *args, "--tags", "pi_image_boot", timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    rebuilt = r"Run update-initramfs in the image[^\n]*\n(?:[^\n]*\n)?changed:"
    assert re.search(rebuilt, result.stdout), result.stdout[-6000:]
    published = (built.boot / "initrd.img").read_bytes()
    assert published != before  # a new archive (its timestamps differ)...
    initrds = sorted((built.root / "boot").glob("initrd.img-*"))
    assert published == initrds[-1].read_bytes()  # ...that is the image's, published
    assert _mounts_below(built.root) == []
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    assert _recaps(again.stdout)["localhost"]["changed"] == 0
