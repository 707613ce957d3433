"""The real image for the lab's QEMU node: a copy of the controller's cached image with the agent.

The lab's head has no route out, so the image is not built there (pi_image runs mmdebstrap,
which fetches Debian packages). ``tests/integration/qemu_image.py`` builds it on this machine
once (the image of test_pi_image with the pi_agent role applied) and keeps it under
``/var/cache/bramble/qemu-node/<key>/`` (``root``, ``boot``, a ``ready`` mark). ``install``
copies the newest ready one into the head's /srv/bramble (the lab's state folder, mounted in
the head), without the test's SSH key: ``root`` (the export that nfs_root serves) and the
kernel, initramfs and a ``cmdline.txt`` naming that export in ``boot`` (dhcp_tftp's grub.cfg
is made from it). The lab then writes its own agent configuration and secrets over the copy's
(roles/lab, standin.yml), so the node's agent registers with the lab's server. Idempotent: a
copy of the same key is kept.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

#: The controller-side cache of the image with the agent (tests/integration/qemu_image.py).
CACHE = Path("/var/cache/bramble/qemu-node")
#: The boot files the QEMU node takes over TFTP (GRUB loads them; grub.cfg reads cmdline.txt).
BOOT_FILES = ("vmlinuz", "initrd.img")
#: Where the head exports the root (nfs_root_export_path).
EXPORT = "/srv/bramble/root"
STAMP = "qemu-image.json"
#: What the cache's copy has for the QEMU node's own test and a lab's copy must not: that
#: test's SSH key (root may log in with it).
TEST_ONLY = ("root/.ssh/authorized_keys",)
COPY_TIMEOUT = 30 * 60
MAKE_IT = (
    "the QEMU node's image is made on this machine once, by the QEMU node's test (about 10 "
    "minutes, plus the Pi image's build when that is not cached): make lab-qemu-image "
    "(make run LAB_QEMU=1 runs it first)"
)


def newest_ready(cache: Path = CACHE) -> Path | None:
    """The newest complete copy in ``cache`` (a folder with root, boot and a ready mark)."""
    ready = [d for d in cache.glob("*/ready") if (d.parent / "root" / "etc").is_dir()]
    if not ready:
        return None
    return max(ready, key=lambda mark: mark.stat().st_mtime).parent


def nfs_cmdline(cmdline: str, head: str, export: str = EXPORT) -> str:
    """The image's kernel command line with its NFS root on ``head:export``."""
    made, count = re.subn(r"nfsroot=[^:\s]+:[^,\s]+", f"nfsroot={head}:{export}", cmdline)
    if count != 1:
        raise ValueError(f"no single nfsroot= in the image's cmdline.txt: {cmdline.strip()}")
    return made


def install(srv: Path, head: str, cache: Path = CACHE, export: str = EXPORT) -> dict[str, Any]:
    """Copy the newest ready image of ``cache`` into ``srv`` (root, boot files); what changed."""
    source = newest_ready(cache)
    if source is None:
        raise RuntimeError(f"no ready image with the agent in {cache}: {MAKE_IT}")
    wanted = {"key": source.name, "head": head, "export": export}
    stamp = srv / STAMP
    root, boot = srv / "root", srv / "boot"
    try:
        same = json.loads(stamp.read_text(encoding="utf-8")) == wanted
    except (OSError, ValueError):
        same = False
    if same and (root / "etc" / "os-release").exists():
        removed = _remove_test_only(root)  # a copy made before they were left out
        return {"changed": removed, **wanted, "root": str(root)}
    srv.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    if root.exists():  # the stand-in, or a copy of an older image
        shutil.rmtree(root)
    partial = srv / "root.partial"
    if partial.exists():
        shutil.rmtree(partial)
    subprocess.run(
        ["cp", "-a", "--reflink=auto", str(source / "root"), str(partial)],
        check=True, timeout=COPY_TIMEOUT,
    )  # fmt: skip
    _remove_test_only(partial)
    partial.rename(root)
    boot.mkdir(parents=True, exist_ok=True)
    for name in BOOT_FILES:
        shutil.copy2(source / "boot" / name, boot / name)
    cmdline = (source / "boot" / "cmdline.txt").read_text(encoding="utf-8")
    (boot / "cmdline.txt").write_text(nfs_cmdline(cmdline, head, export), encoding="utf-8")
    stamp.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
    return {"changed": True, **wanted, "root": str(root)}


def _remove_test_only(root: Path) -> bool:
    """Delete TEST_ONLY's files from a copy; whether there were any."""
    found = [root / name for name in TEST_ONLY if (root / name).exists()]
    for path in found:
        path.unlink()
    return bool(found)
