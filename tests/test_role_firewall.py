"""The firewall role on the lab inventory: its admin-side settings pass the SSH pre-flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_helpers import INVENTORIES
from edge_helpers import run_role

pytestmark = pytest.mark.slow


def render_lab(tmp: Path, ssh_client: str) -> tuple[int, str, Path]:
    """The firewall role (render-only) on inventory/lab over an SSH session from ``ssh_client``."""
    conf = tmp / "nftables.conf"
    extra = {
        "firewall_manage_service": False,
        "firewall_conf_file": str(conf),
        "ansible_connection": "local",  # the lab's head is a container: render here instead
        "ansible_env": {"SSH_CONNECTION": f"{ssh_client} 50000 192.168.42.1 22"},
    }
    result = run_role("firewall", INVENTORIES / "lab", extra, workdir=tmp)
    return result.returncode, result.stdout + result.stderr, conf


def test_the_lab_admin_network_may_ssh_and_is_the_lan(tmp_path: Path) -> None:
    rc, output, conf = render_lab(tmp_path, "192.168.42.10")
    assert rc == 0, output
    text = conf.read_text(encoding="utf-8")
    assert 'iifname "eth0" ip saddr { 192.168.42.0/24 } tcp dport 22 accept' in text, text
    assert "ip saddr 192.168.42.0/24 ip daddr 10.42.0.0/16 accept" in text, text
    assert "ip saddr 10.42.0.0/16 ip daddr 192.168.42.0/24 ct state new,invalid drop" in text, text


def test_an_ssh_session_from_elsewhere_is_refused_on_the_lab(tmp_path: Path) -> None:
    rc, output, conf = render_lab(tmp_path, "10.99.0.5")
    assert rc != 0
    assert "accepts no new SSH connection from 10.99.0.5" in " ".join(output.split()), output
    assert not conf.exists()
