"""pi_image without building an image: boot files rendered from the cluster model, bad input,
and the initramfs overlay script run for real in a private mount namespace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cluster_helpers import ROOT, run_tool

ROLE = ROOT / "roles" / "pi_image"
OVERLAY_SCRIPT = ROLE / "files/etc/initramfs-tools/scripts/init-bottom/bramble-overlay"
TIMEOUT = 300


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _play(tmp_path: Path, **variables: object) -> Path:
    """A playbook that runs pi_image on localhost (acting as the head) with ``variables``."""
    play = [
        {
            "name": "Render the Pi boot files",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "pi_image_root": str(tmp_path / "root"),
                "pi_image_boot_dir": str(tmp_path / "boot"),
                **variables,
            },
            "roles": [{"role": "pi_image"}],
        }
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    return path


def _render(play: Path, *args: str, inventory: str = "desk") -> subprocess.CompletedProcess[str]:
    return run_tool(
        "ansible-playbook",
        "-i",
        ROOT / "inventory" / inventory,
        play,
        "--tags",
        "pi_image_boot_config",
        *args,
        timeout=TIMEOUT,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("inventory", "head"), [("desk", "192.168.3.1"), ("lab", "10.42.0.1")], ids=["desk", "lab"]
)
def test_cmdline_and_config_come_from_the_model(tmp_path, inventory, head):
    result = _render(_play(tmp_path), inventory=inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    cmdline = (tmp_path / "boot" / "cmdline.txt").read_text(encoding="utf-8")
    # the firmware hands the whole file to the kernel: one line, no comment
    assert cmdline.count("\n") == 1
    assert cmdline.endswith("\n")
    assert "#" not in cmdline
    args = cmdline.split()
    assert f"nfsroot={head}:{tmp_path / 'root'},nfsvers=3,tcp" in args
    for arg in ("root=/dev/nfs", "ro", "ip=dhcp", "rootwait", "bramble.overlay=1"):
        assert arg in args, cmdline
    assert "rw" not in args
    config = (tmp_path / "boot" / "config.txt").read_text(encoding="utf-8")
    settings = [line for line in config.splitlines() if line and not line.startswith("#")]
    assert "arm_64bit=1" in settings
    assert "kernel=vmlinuz" in settings
    assert "initramfs initrd.img followkernel" in settings
    assert config.startswith("#\n# Ansible managed")


@pytest.mark.slow
def test_export_path_and_overlay_follow_the_variables(tmp_path):
    result = _render(
        _play(
            tmp_path,
            pi_image_nfs_path="/exports/pis",
            pi_image_overlay=False,
            pi_image_config_extra=["gpu_mem=16"],
        )
    )
    assert result.returncode == 0, result.stdout + result.stderr
    args = (tmp_path / "boot" / "cmdline.txt").read_text(encoding="utf-8").split()
    assert "nfsroot=192.168.3.1:/exports/pis,nfsvers=3,tcp" in args
    assert not [arg for arg in args if arg.startswith("bramble.overlay")]
    assert "gpu_mem=16" in (tmp_path / "boot" / "config.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_second_run_changes_nothing_and_check_mode_shows_a_new_head(tmp_path):
    play = _play(tmp_path)
    first = _render(play)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first.stdout)["changed"] == 3  # boot folder, config.txt, cmdline.txt
    second = _render(play)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second.stdout)["changed"] == 0
    cmdline = tmp_path / "boot" / "cmdline.txt"
    before = cmdline.read_text(encoding="utf-8")
    check = _render(play, "--check", "--diff", "-e", "pi_image_nfs_server=10.99.0.1")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _recap(check.stdout)["changed"] == 1
    assert re.search(r"^-console=.*nfsroot=192\.168\.3\.1:", check.stdout, re.MULTILINE)
    assert re.search(r"^\+console=.*nfsroot=10\.99\.0\.1:", check.stdout, re.MULTILINE)
    assert cmdline.read_text(encoding="utf-8") == before


@pytest.mark.slow
def test_components_without_raspi_firmware_are_refused(tmp_path):
    result = _render(_play(tmp_path, pi_image_components=["main"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "raspi-firmware" in output
    assert "add non-free-firmware" in output
    assert not (tmp_path / "boot").exists()


@pytest.mark.slow
def test_raspberry_pi_os_folder_without_start_elf_is_refused(tmp_path):
    firmware = tmp_path / "rpios-boot"
    firmware.mkdir()
    (firmware / "bootcode.bin").write_bytes(b"\0" * 64)
    (firmware / "fixup.dat").write_bytes(b"\0" * 64)
    result = _render(
        _play(tmp_path, pi_image_boot_source="directory", pi_image_boot_files_dir=str(firmware))
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"pi_image_boot_files_dir ({firmware})" in output
    assert "lacks start.elf:" in output
    assert "bootcode.bin" not in output.split("lacks", 1)[1].split(":", 1)[0]
    assert not (tmp_path / "boot").exists()


# --- the initramfs overlay script, run for real -------------------------------------------------

#: Runs inside `unshare -m`: an initramfs-like tree (busybox only) whose /root is a read-only
#: bind mount of the fake NFS root, the test's kernel command line over /proc/cmdline, then the
#: overlay script exactly as initramfs-tools runs it (rootmnt=/root), then the checks.
NAMESPACE_SCRIPT = r"""
set -u
initrd=$1 lower=$2 cmdline=$3
mount -t proc proc "$initrd/proc"
mount --bind "$cmdline" "$initrd/proc/cmdline"
mount --bind "$lower" "$initrd/root"
mount -o remount,bind,ro "$initrd/root"
chroot "$initrd" /bin/busybox env -i PATH=/sbin:/bin rootmnt=/root \
    /bin/sh /scripts/init-bottom/bramble-overlay
echo "rc=$?"
echo "root=$(awk -v r="$initrd/root" '$2 == r { print $3 }' /proc/self/mounts | tail -n 1)"
if echo changed >"$initrd/root/etc/motd" 2>/dev/null; then echo edit=ok; else echo edit=refused; fi
if echo new >"$initrd/root/etc/new" 2>/dev/null; then echo create=ok; else echo create=refused; fi
if rm "$initrd/root/etc/gone" 2>/dev/null; then echo delete=ok; else echo delete=refused; fi
echo "motd=$(cat "$initrd/root/etc/motd")"
if [ -d "$initrd/root/media/root-rw" ]; then
    echo "upper=$(cd "$initrd/root/media/root-rw/upper" && find . -type f | sort | tr '\n' ' ')"
    rw="$initrd/root/media/root-rw"
    echo "rw=$(awk -v r="$rw" '$2 == r { print $3 " " $4 }' /proc/self/mounts)"
    if echo x >"$initrd/root/media/root-ro/etc/direct" 2>/dev/null; then
        echo lower_write=ok
    else
        echo lower_write=refused
    fi
fi
"""


def _initrd(tmp_path: Path) -> Path:
    """An initramfs-like tree: busybox and its libraries, the overlay script, /root."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox is installed (checked by the fixture)"
    initrd = tmp_path / "initrd"
    for folder in ("bin", "sbin", "proc", "root", "scripts/init-bottom", "dev"):
        (initrd / folder).mkdir(parents=True)
    shutil.copy2(busybox, initrd / "bin" / "busybox")
    libraries = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=False).stdout
    for library in re.findall(r"(/\S+\.so[.\d]*)", libraries):
        target = initrd / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)
    for applet in ("sh", "mount", "umount", "mkdir", "cat", "echo", "modprobe", "env"):
        (initrd / "bin" / applet).symlink_to("busybox")
    shutil.copy2(OVERLAY_SCRIPT, initrd / "scripts/init-bottom/bramble-overlay")
    return initrd


@pytest.fixture
def fake_nfs_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: mount namespaces, tmpfs and overlay mounts")
    for tool in ("unshare", "busybox", "ldd", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt: util-linux busybox libc-bin coreutils)")
    if "overlay" not in Path("/proc/filesystems").read_text(encoding="utf-8"):
        subprocess.run(["modprobe", "overlay"], check=False, capture_output=True)
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "media").mkdir()
    (lower / "etc" / "motd").write_text("shared\n", encoding="utf-8")
    (lower / "etc" / "gone").write_text("keep me\n", encoding="utf-8")
    return lower


def _boot(tmp_path: Path, lower: Path, cmdline: str) -> dict[str, str]:
    """Run the overlay script against ``lower`` with ``cmdline``; the namespace's report."""
    (tmp_path / "cmdline").write_text(cmdline + "\n", encoding="utf-8")
    result = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh"),
            *(str(_initrd(tmp_path)), str(lower), str(tmp_path / "cmdline")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    report["output"] = result.stdout + result.stderr
    return report


def _lower_unchanged(lower: Path) -> None:
    assert (lower / "etc" / "motd").read_text(encoding="utf-8") == "shared\n"
    assert (lower / "etc" / "gone").read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in (lower / "etc").iterdir()) == ["gone", "motd"]
    assert sorted(p.name for p in lower.iterdir()) == ["etc", "media"]


def test_overlay_keeps_writes_in_tmpfs_and_the_nfs_root_untouched(tmp_path, fake_nfs_root):
    report = _boot(
        tmp_path,
        fake_nfs_root,
        "console=ttyS1,115200 root=/dev/nfs ro ip=dhcp bramble.overlay=1 bramble.overlay_size=8m",
    )
    assert report["rc"] == "0", report["output"]
    assert report["root"] == "overlay", report["output"]
    assert (report["edit"], report["create"], report["delete"]) == ("ok", "ok", "ok")
    assert report["motd"] == "changed"
    # the writes are in the tmpfs upper layer...
    assert report["upper"].split() == ["./etc/motd", "./etc/new"]
    assert report["rw"] == "tmpfs rw,relatime,size=8192k,mode=755"
    # ...the read-only lower layer refuses a direct write...
    assert report["lower_write"] == "refused"
    assert "tmpfs upper layer (size=8m)" in report["output"]
    # ...and the NFS root itself never changed
    _lower_unchanged(fake_nfs_root)


def test_without_the_kernel_argument_the_root_stays_read_only(tmp_path, fake_nfs_root):
    report = _boot(tmp_path, fake_nfs_root, "root=/dev/nfs ro ip=dhcp bramble.overlay=0")
    assert report["rc"] == "0", report["output"]
    assert report["root"] != "overlay"
    assert (report["edit"], report["create"], report["delete"]) == ("refused",) * 3
    assert report["motd"] == "shared"
    assert "upper" not in report
    assert "bramble-overlay" not in report["output"]
    _lower_unchanged(fake_nfs_root)


def test_a_failed_overlay_boots_read_only_and_says_why(tmp_path, fake_nfs_root):
    report = _boot(
        tmp_path, fake_nfs_root, "root=/dev/nfs ro bramble.overlay=1 bramble.overlay_size=lots"
    )
    assert report["rc"] == "0", report["output"]
    assert "cannot mount tmpfs (size=lots)" in report["output"]
    assert "booting with the read-only root" in report["output"]
    assert report["root"] != "overlay"
    assert report["edit"] == "refused"
    _lower_unchanged(fake_nfs_root)


@pytest.mark.slow
def test_image_roles_stop_when_the_image_is_not_on_the_controller(tmp_path):
    # the chroot connection runs where Ansible runs: an image elsewhere (a remote head) is
    # named, with what to do, before any task tries to enter it
    play = [
        {
            "name": "Offer the image as a chroot host",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "pi_image_root": str(tmp_path / "elsewhere" / "root"),
                "pi_image_roles": ["pi_agent"],
            },
            "roles": [{"role": "pi_image"}],
        },
        {
            "name": "Configure the image from inside",
            "hosts": "pi_images",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Apply pi_image_roles inside the image",
                    "ansible.builtin.include_role": {
                        "name": "pi_image",
                        "tasks_from": "image_roles",
                    },
                    "tags": ["pi_image", "pi_image_roles"],
                }
            ],
        },
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    result = run_tool(
        "ansible-playbook",
        "-i",
        ROOT / "inventory" / "desk",
        path,
        "--tags",
        "pi_image_roles",
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{tmp_path / 'elsewhere' / 'root'} holds no bramble image on the machine" in output
    assert "Run the pi_image playbook on localhost itself" in output
    assert "is not a directory" not in output  # not the chroot connection's own error
