"""The Makefile's lab options: what `make run` would run (``make -n``, nothing is run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VPN_PACKAGES = (
    "strongswan-swanctl charon-systemd libstrongswan-standard-plugins libcharon-extra-plugins"
)


def dry_run(*options: str) -> str:
    """``make -n run`` with ``options``; the QEMU image counts as made (-o lab-qemu-image)."""
    # not the flags of the `make test` this may run under (its jobserver, its -n or -s)
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    result = subprocess.run(
        ["make", "-n", "-o", "lab-qemu-image", "run", *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def playbook_line(text: str) -> str:
    """The ansible-playbook command, its continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return next(line for line in joined.splitlines() if "ansible-playbook" in line)


def test_make_run_is_the_plain_site_playbook() -> None:
    out = dry_run()
    line = playbook_line(out)
    assert line.split()[-1] == "site.yml"
    assert "-e" not in line.split()
    assert VPN_PACKAGES not in out


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_lab_vpn_installs_strongswan_and_turns_the_gateway_on(value: str) -> None:
    out = dry_run(f"LAB_VPN={value}")
    assert VPN_PACKAGES in out  # the gateway's charon runs on this machine
    assert "-e lab_vpn=true" in " ".join(playbook_line(out).split())


def test_lab_options_combine() -> None:
    line = " ".join(playbook_line(dry_run("LAB_VPN=1", "LAB_QEMU=1")).split())
    assert "-e lab_qemu_node=true -e lab_vpn=true site.yml" in line
    assert "-e lab_vpn" not in " ".join(playbook_line(dry_run("LAB_VPN=0")).split())
