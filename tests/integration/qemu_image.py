"""The shared Pi image with the real agent in it, for the QEMU node tests: a cached copy.

The image test (test_pi_image) builds and caches the arm64 image without the agent. The QEMU
node needs one that starts bramble-agent at boot, as a cluster's image would (pi_image_roles:
[pi_agent]); the image cache is not changed in place: a copy of its root gets the pi_agent role
through the chroot connection (pi_image's own image_roles entry point, the agent's arm64
wheelhouse made on this machine), a test SSH key for root, and a boot folder whose cmdline.txt
names the copy as NFS root. The copy is kept under /var/cache/bramble/qemu-node and made again
only when the image, the agent's sources or this recipe change (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster_helpers import BIN, ROOT, ansible_env
from integration.test_pi_image import _cache_lock

CACHE = Path(os.environ.get("BRAMBLE_QEMU_NODE_CACHE", "/var/cache/bramble/qemu-node"))
#: What the test's server must be configured with to accept the image's agent.
CLUSTER = "qemu"
CLUSTER_KEY = "qemu-node-cluster-key-0123456789abcdef"
AGENT_TOKEN = "qemu-node-agent-token-0123"  # noqa: S105 - a test secret baked into a test image
#: Bump when the recipe below changes: the cached copy is made again.
RECIPE = 1
PREPARE_TIMEOUT = 40 * 60
BOOT_FILES = ("vmlinuz", "initrd.img", "cmdline.txt", "config.txt", "bootcode.bin", "start.elf")

PLAYBOOK = """\
---
- name: Add the image copy as a chroot host
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Add the copy to group pi_images
      ansible.builtin.add_host:
        name: pi-image
        groups: [pi_images]
        ansible_connection: community.general.chroot
        ansible_host: "{{ pi_image_root }}"
        ansible_python_interpreter: /usr/bin/python3
      changed_when: false

- name: Install the agent inside the copy (pi_image's image_roles, as site.yml does)
  hosts: pi_images
  gather_facts: false
  tasks:
    - name: Apply pi_agent inside the image
      ansible.builtin.include_role:
        name: pi_image
        tasks_from: image_roles
"""


@dataclass(frozen=True)
class AgentImage:
    """A copy of the shared image with the agent: its root, boot folder and SSH key."""

    root: Path
    boot: Path
    ssh_key: Path


#: What the agent in the image is made of: a change there makes the copy again.
AGENT_SOURCES = (
    "src/bramble/__init__.py", "src/bramble/services/*.py", "src/bramble/services/agent/**/*.py",
    "src/bramble/warble/**/*.py", "pyproject.toml", "requirements/run.txt", "roles/pi_agent/**/*",
)  # fmt: skip


def _agent_sources_hash() -> str:
    digest = hashlib.sha256()
    for pattern in AGENT_SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(ROOT).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _key(image_root: Path) -> str:
    stamp = json.loads((image_root / "etc" / "bramble-image.json").read_text(encoding="utf-8"))
    boot = hashlib.sha256()
    for name in BOOT_FILES:
        boot.update((image_root.parent / "boot" / name).read_bytes())
    parts = [str(RECIPE), stamp["inputs_hash"], boot.hexdigest(), _agent_sources_hash()]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _install_agent(root: Path, work: Path) -> None:
    (work / "play.yml").write_text(PLAYBOOK, encoding="utf-8")
    settings = {
        "pi_image_root": str(root),
        "pi_image_roles": ["pi_agent"],
        "pi_agent_wheelhouse_cache": "/var/cache/bramble/wheelhouse",
        "pi_agent_smoke_test": False,  # the boot is the test; --help under qemu-user is slow
        "pi_agent_cluster_name": CLUSTER,
        "pi_agent_cluster_key": CLUSTER_KEY,
        "pi_agent_agent_token": AGENT_TOKEN,
        "pi_agent_interface": "eth0",
    }
    (work / "vars.json").write_text(json.dumps(settings), encoding="utf-8")
    env = ansible_env()
    env["ANSIBLE_ROLES_PATH"] = str(ROOT / "roles")
    argv = [str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventory" / "desk"),
            str(work / "play.yml"), "-e", f"@{work / 'vars.json'}"]  # fmt: skip
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=PREPARE_TIMEOUT,
        check=False,
    )  # fmt: skip
    if result.returncode:
        raise RuntimeError(f"pi_agent in the image copy failed:\n{result.stdout[-6000:]}")


def _add_ssh_key(root: Path, key: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bramble-qemu-test", "-f", str(key)],
        check=True, timeout=60,
    )  # fmt: skip
    ssh = root / "root" / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    authorized = ssh / "authorized_keys"
    shutil.copyfile(key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)


def _boot_folder(image_boot: Path, image_root: Path, root: Path, boot: Path) -> None:
    boot.mkdir()
    for name in BOOT_FILES:
        shutil.copy2(image_boot / name, boot / name)
    cmdline = (boot / "cmdline.txt").read_text(encoding="utf-8")
    if f":{image_root}," not in cmdline:
        raise RuntimeError(f"{image_boot / 'cmdline.txt'} does not name {image_root}: {cmdline}")
    (boot / "cmdline.txt").write_text(cmdline.replace(f":{image_root},", f":{root},"), "utf-8")


def _remove(folder: Path) -> None:
    """Delete an old copy, never through a mount left in it (its /dev is the host's)."""
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    below = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{folder}/")]
    if below:
        raise RuntimeError(f"{folder} still has mounts, not deleting it: {below}")
    shutil.rmtree(folder)


def agent_image(image_root: Path, image_boot: Path) -> AgentImage:
    """The cached copy of ``image_root`` with the agent, made when missing or stale."""
    CACHE.mkdir(parents=True, exist_ok=True)
    # the image's own lock: no copy of an image that is being rebuilt, one copy at a time
    with _cache_lock():
        key = _key(image_root)
        final = CACHE / key
        image = AgentImage(final / "root", final / "boot", final / "id_ed25519")
        if (final / "ready").exists():
            return image
        for old in CACHE.iterdir():
            if old.is_dir():
                _remove(old)
        work = CACHE / f"{key}.tmp"
        # the NFS root path is baked into cmdline.txt: build at the final path
        final.mkdir()
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(image_root), str(image.root)],
            check=True, timeout=PREPARE_TIMEOUT,
        )  # fmt: skip
        work.mkdir()
        try:
            _install_agent(image.root, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _add_ssh_key(image.root, image.ssh_key)
        _boot_folder(image_boot, image_root, image.root, image.boot)
        (final / "ready").write_text(key + "\n", encoding="utf-8")
        return image
