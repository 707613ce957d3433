"""Shared by the tests of the edge roles (vpn, firewall): a small model, a vaulted secret, and the
role run on the model's head in render-only mode (the callers pass the render-only variables)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cluster_helpers import BIN, run_tool

PLAYBOOK = """\
---
- name: Render the {role} role
  hosts: head
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  roles:
    - role: {role}
"""


def edge_model(name: str, network: str, head: str, **sections: Any) -> str:
    """cluster.yml text: one bank of 4 on a hub, the head at ``head`` (cluster side eth1,
    admin side eth0), plus ``sections`` (e.g. vpn=...)."""
    model = {
        "plugin": "bramble",
        "cluster": {"name": name},
        "network": {"cidr": network, "bank_stride": 16},
        "head": {"name": f"{name}-head", "address": head,
                 "interfaces": {"cluster": "eth1", "admin": "eth0"}},
        "banks": {"count": 1, "size": 4},
        "controllers": [{"name": "hub", "driver": "uhubctl"}],
        "power": {"budget": 4,
                  "groups": [{"id": 1, "controller": "hub", "outlet": 1, "banks": [1]}]},
        **sections,
    }  # fmt: skip
    return "---\n" + yaml.safe_dump(model, sort_keys=False)


def vault_encrypt(password_file: Path, name: str, value: str) -> str:
    """``name: !vault |...`` YAML for a vars file (ansible-vault encrypt_string)."""
    return subprocess.run(
        [BIN / "ansible-vault", "encrypt_string", "--vault-password-file", password_file,
         "--name", name, value],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def run_role(
    role: str,
    inventory: Path,
    extra: dict[str, Any],
    *options: str | Path,
    workdir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook: ``role`` on the head of ``inventory`` with extra vars ``extra``; the
    playbook is written to ``workdir`` (default: beside the inventory folder)."""
    playbook = (workdir or inventory.parent) / f"render-{role}.yml"
    playbook.write_text(PLAYBOOK.format(role=role), encoding="utf-8")
    return run_tool(
        "ansible-playbook",
        "-i",
        inventory,
        *options,
        playbook,
        "-e",
        json.dumps(extra),
        timeout=180,
    )
