"""The bridges role's input checks: a board secret that is missing or cannot go into the
firmware stops the run before anything is installed or rendered."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_helpers import BASE_MODEL, BIN, ROOT, ansible_env

pytestmark = pytest.mark.slow

PLAYBOOK = """\
---
- name: Run the bridges role
  hosts: head
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: bridges
"""
BOARD = {"name": "buttons", "kind": "buttons", "address": "10.42.0.30"}


def run(tmp: Path, board: dict[str, Any], secrets: dict[str, str]) -> str:
    inventory = tmp / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    model = dict(BASE_MODEL, bridges={"boards": [board]})
    (inventory / "cluster.yml").write_text("---\n" + yaml.safe_dump(model), encoding="utf-8")
    (inventory / "group_vars" / "all" / "vault.yml").write_text(
        "---\n" + yaml.safe_dump(secrets), encoding="utf-8"
    )
    (tmp / "run.yml").write_text(PLAYBOOK, encoding="utf-8")
    variables = {
        "bridges_secrets_dir": str(tmp / "secrets"),
        "bridges_install_dir": str(tmp / "opt"),
        "bridges_config_dir": str(tmp / "etc"),
        "bridges_firmware_dir": str(tmp / "firmware"),
        "bridges_manage_packages": False,
        "bridges_manage_service": False,
        # the model's board addresses are not on this machine: never contact them
        "bridges_check_boards": False,
    }
    result = subprocess.run(
        [BIN / "ansible-playbook", "-i", inventory, tmp / "run.yml", "-e", json.dumps(variables)],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    written = any((tmp / name).exists() for name in ("opt", "etc", "firmware"))
    # the failed task's result (not the task source Ansible prints around an error)
    failures = [
        line for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))
    ]
    return f"rc={result.returncode} written={written}\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        pytest.param(
            {},
            "Bridge board buttons: its secret, the variable vault_test_buttons named by "
            "credentials, is not defined",
            id="missing-vault-variable",
        ),
        pytest.param(
            {"vault_test_buttons": 'sixteen-chars-and-a-"quote'},
            "a secret of 16 to 64 letters, digits or ._~+/=- (it is compiled into the firmware)",
            id="secret-breaks-the-sketch",
        ),
        pytest.param(
            {"vault_test_buttons": "short"}, "a secret of 16 to 64 letters", id="short-secret"
        ),
    ],
)
def test_bad_board_secrets_stop_before_any_change(
    tmp_path: Path, secrets: dict[str, str], message: str
) -> None:
    output = run(tmp_path, dict(BOARD, credentials="vault_test_buttons"), secrets)
    assert output.startswith("rc=2 written=False"), output
    assert message in output, output
