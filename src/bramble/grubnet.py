"""A GRUB netboot image for UEFI arm64 machines, made on the controller from Debian packages.

``python -m bramble.grubnet --cache DIR`` makes ``DIR/bootaa64.efi``: GRUB for ``arm64-efi``
with the network, TFTP and Linux loader modules built in, that reads ``grub.cfg`` from the
TFTP folder it was loaded from (``$cmdpath``). The dhcp_tftp role serves it to DHCP clients of
architecture 11 (ARM64 UEFI, e.g. QEMU's ``virt`` machine with Debian's AAVMF firmware).

Debian ships GRUB's arm64 modules only in the arm64 package ``grub-efi-arm64-bin``; on an
amd64 controller it is fetched with apt (``apt-get download``, using private lists under
``DIR/apt``: the system's apt state and architectures stay untouched), unpacked with
``dpkg-deb``, and ``grub-mkimage`` (package ``grub-common``) of this machine builds the image.
The package is fetched once and kept (``--refresh`` asks apt for a newer version); the image is
made again only when the package or the module list changes. Prints one JSON line:
``changed``, ``image``, ``version``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE = "grub-efi-arm64-bin"
IMAGE = "bootaa64.efi"
STAMP = "bootaa64.json"
#: Built into the image: no module is read over the network.
MODULES = (
    "efinet", "net", "tftp", "linux", "gzio", "normal", "configfile", "echo", "test", "sleep",
)  # fmt: skip
#: The early configuration: grub.cfg next to the image, on the server it came from.
EARLY_CONFIG = 'set prefix="$cmdpath"\nconfigfile "$cmdpath/grub.cfg"\n'
TIMEOUT = 300


class GrubError(RuntimeError):
    """What is missing or failed, and what to do."""


def _run(argv: Sequence[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise GrubError(f"{argv[0]} is missing: {exc}") from exc
    if result.returncode:
        raise GrubError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _apt_options(cache: Path) -> list[str]:
    """apt-get options for arm64 packages with private lists (the system's apt is untouched)."""
    state = cache / "apt"
    return [
        "-q",
        "-o", "APT::Architecture=arm64",
        "-o", "APT::Architectures::=arm64",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip


def fetch_package(cache: Path) -> Path:
    """The arm64 .deb of GRUB's EFI modules, downloaded into ``cache`` (newest version)."""
    for folder in ("apt/lists/partial", "apt/cache/archives/partial", "deb"):
        (cache / folder).mkdir(parents=True, exist_ok=True)
    options = _apt_options(cache)
    _run(["apt-get", *options, "update"])
    _run(["apt-get", *options, "download", f"{PACKAGE}:arm64"], cwd=cache / "deb")
    debs = sorted((cache / "deb").glob(f"{PACKAGE}_*_arm64.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise GrubError(f"apt-get download {PACKAGE}:arm64 left no .deb in {cache / 'deb'}")
    for old in debs[:-1]:
        old.unlink()
    return debs[-1]


def _recipe(deb: Path) -> str:
    text = "\n".join([deb.name, *MODULES, EARLY_CONFIG])
    return hashlib.sha256(text.encode()).hexdigest()


def build(cache: Path, deb: Path) -> tuple[bool, Path]:
    """Make ``cache/bootaa64.efi`` from ``deb`` unless it is already made from the same recipe."""
    image, stamp = cache / IMAGE, cache / STAMP
    recipe = _recipe(deb)
    made = json.loads(stamp.read_text(encoding="utf-8")) if stamp.exists() else {}
    if image.exists() and made.get("recipe") == recipe:
        return False, image
    mkimage = shutil.which("grub-mkimage")
    if mkimage is None:
        raise GrubError("grub-mkimage is missing: apt-get install grub-common (on the controller)")
    unpacked = cache / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    modules = unpacked / "usr" / "lib" / "grub" / "arm64-efi"
    early = cache / "early.cfg"
    early.write_text(EARLY_CONFIG, encoding="utf-8")
    partial = cache / f"{IMAGE}.part"
    _run([mkimage, "-d", str(modules), "-O", "arm64-efi", "-c", str(early), "-p", "",
          "-o", str(partial), *MODULES])  # fmt: skip
    partial.replace(image)
    stamp.write_text(json.dumps({"recipe": recipe, "package": deb.name}) + "\n", encoding="utf-8")
    shutil.rmtree(unpacked, ignore_errors=True)
    return True, image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="folder of the image and apt")
    parser.add_argument(
        "--refresh", action="store_true", help="ask apt for a newer package than the cached one"
    )
    args = parser.parse_args(argv)
    cache: Path = args.cache
    try:
        debs = sorted((cache / "deb").glob(f"{PACKAGE}_*_arm64.deb"))
        deb = debs[-1] if debs and not args.refresh else fetch_package(cache)
        changed, image = build(cache, deb)
    except GrubError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    version = deb.name.split("_")[1]
    print(json.dumps({"changed": changed, "image": str(image), "version": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
