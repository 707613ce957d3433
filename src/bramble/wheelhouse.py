"""A wheelhouse of bramble and its dependencies, for machines that install without network.

``python -m bramble.wheelhouse --dest DIR --arch aarch64`` builds the bramble wheel from the
project folder and downloads the wheels of its dependencies (pinned by a constraints file,
``requirements/run.txt``) for a target architecture and Python version, plus pip itself (the
target installs with ``python pip.whl/pip install --no-index --find-links DIR bramble``), and
packs them into ``DIR.tar`` (one file to copy). Only
binary wheels are taken: nothing is compiled on the target (a Pi image under qemu, a container
build without network).

The folder is rebuilt only when its inputs change (the project's sources, the constraints,
the target); a stamp file records them and their hash, which the roles use as a version
(container image label, installed-venv stamp). Prints one JSON line: ``changed``, ``hash``,
``wheels``. With ``--interpreter`` (GraalPy) the dependency wheels are built by that
interpreter's own pip for itself, on this machine: its architecture must be the target's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAMP = ".bramble-wheelhouse.json"
# Debian bookworm's glibc is 2.36; older manylinux tags are accepted too.
MANYLINUX = ("manylinux_2_36", "manylinux2014")
SOURCE_SUFFIXES = (".py", ".typed", ".toml", ".json", ".yml", ".yaml", ".txt", ".md")


class WheelhouseError(RuntimeError):
    """A wheelhouse that cannot be made; the message says what failed and what to do."""


@dataclass(frozen=True)
class Target:
    """What the wheels are for."""

    arch: str
    python: str
    interpreter: str = ""

    def platforms(self) -> list[str]:
        return [f"{tag}_{self.arch}" for tag in MANYLINUX]


def project_root() -> Path:
    """The project folder of this (editable) bramble: the one holding pyproject.toml."""
    return Path(__file__).resolve().parents[2]


def _digest(paths: Sequence[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_hash(project: Path) -> str:
    """Hash of what goes into the bramble wheel: pyproject.toml and the package sources."""
    files = [project / "pyproject.toml"]
    files += sorted(
        path
        for path in (project / "src").rglob("*")
        if path.is_file()
        and path.suffix in SOURCE_SUFFIXES
        and "__pycache__" not in path.parts
        and not any(part.endswith(".egg-info") for part in path.parts)
    )
    return _digest(files, project)


def wanted_stamp(project: Path, constraints: Path, target: Target) -> dict[str, Any]:
    """The stamp a wheelhouse built from these inputs carries; ``hash`` sums it up."""
    stamp: dict[str, Any] = {
        "source": source_hash(project),
        "constraints": hashlib.sha256(constraints.read_bytes()).hexdigest(),
        "arch": target.arch,
        "python": target.python,
        "interpreter": target.interpreter,
    }
    stamp["hash"] = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]
    return stamp


def tar_of(dest: Path) -> Path:
    """The tarball beside the wheelhouse folder."""
    return dest.with_name(dest.name + ".tar")


def read_stamp(dest: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((dest / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pip(python: str, *args: str) -> None:
    argv = [python, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise WheelhouseError(f"{' '.join(argv)} failed ({result.returncode}):\n{tail}")


def fill(folder: Path, project: Path, constraints: Path, target: Target) -> None:
    """Put the bramble wheel, its dependencies and pip into ``folder``."""
    _pip(sys.executable, "wheel", "--no-deps", "-q", "-w", str(folder), str(project))
    wheels = sorted(folder.glob("bramble-*.whl"))
    if len(wheels) != 1:
        raise WheelhouseError(f"expected one bramble wheel in {folder}, found {wheels}")
    if target.interpreter:
        _pip(target.interpreter, "wheel", "-q", "-w", str(folder), "-c", str(constraints),
             str(wheels[0]), "pip")  # fmt: skip
        return
    platform_args = [arg for tag in target.platforms() for arg in ("--platform", tag)]
    _pip(
        sys.executable,
        "download",
        "-q",
        "-d",
        str(folder),
        "--only-binary=:all:",
        *platform_args,
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "-c",
        str(constraints),
        str(wheels[0]),
        "pip",
    )


def write_tar(folder: Path, tar_path: Path) -> None:
    """One reproducible tarball of the wheelhouse (sorted, no times or owners): the roles copy
    this single file (one transfer, compared by checksum) instead of a folder of wheels."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o644
        return info

    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name, filter=clean)


def build(
    dest: Path, project: Path, constraints: Path, target: Target, *, dry_run: bool = False
) -> dict[str, Any]:
    """Make ``dest`` the wheelhouse of these inputs, unless it already is."""
    stamp = wanted_stamp(project, constraints, target)
    changed = read_stamp(dest) != stamp or not tar_of(dest).is_file()
    if changed and not dry_run:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            fill(work, project, constraints, target)
            (work / STAMP).write_text(json.dumps(stamp, sort_keys=True) + "\n", encoding="utf-8")
            tar_tmp = dest.parent / f".{dest.name}.tar.partial"
            write_tar(work, tar_tmp)
            os.chmod(work, 0o755)  # noqa: S103 - wheels are public; installers read them
            old = dest.with_name(f".{dest.name}.old")
            if dest.exists():
                shutil.rmtree(old, ignore_errors=True)
                dest.rename(old)
            work.rename(dest)
            tar_tmp.replace(tar_of(dest))
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    wheels = sorted(path.name for path in dest.glob("*.whl")) if dest.is_dir() else []
    return {
        "changed": changed,
        "hash": stamp["hash"],
        "dest": str(dest),
        "tar": str(tar_of(dest)),
        "wheels": wheels,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bramble.wheelhouse",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--dest", type=Path, required=True, help="the wheelhouse folder")
    parser.add_argument("--arch", default=os.uname().machine, help="aarch64, x86_64, ...")
    parser.add_argument("--python", default="3.11", help="target Python version (3.11)")
    parser.add_argument(
        "--interpreter",
        default="",
        help="build the dependency wheels with this interpreter's pip (e.g. graalpy)",
    )
    parser.add_argument("--project", type=Path, default=None, help="bramble's project folder")
    parser.add_argument(
        "--constraints", type=Path, default=None, help="pins (default requirements/run.txt)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="only say whether the wheelhouse would change"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    project = (args.project or project_root()).resolve()
    constraints = args.constraints or project / "requirements" / "run.txt"
    if not (project / "pyproject.toml").is_file():
        print(
            f"bramble.wheelhouse: {project} holds no pyproject.toml: pass --project",
            file=sys.stderr,
        )
        return 2
    target = Target(arch=args.arch, python=args.python, interpreter=args.interpreter)
    try:
        result = build(args.dest.expanduser(), project, constraints, target, dry_run=args.dry_run)
    except (WheelhouseError, OSError) as error:
        print(f"bramble.wheelhouse: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
