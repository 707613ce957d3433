"""The lab's secrets: none in the repository; each made on first use in the lab's secrets folder
(outside the repository, mode 0600) and the same on every later run (a second run changes
nothing), different per lab."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bramble.lab import sizes
from cluster_helpers import ANSIBLE_TIMEOUT, BIN, INVENTORIES, ROOT

NAMES = (
    "vault_lab_relay1_token",
    "vault_lab_pdu1_password",
    "vault_lab_vpn_psk",
    "cluster_server_cluster_key",
    "cluster_server_agent_token",
    "cluster_server_admin_token",
)


def resolve(inventory: Path, host: str, home: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The variables as a play on ``host`` sees them (templated), with HOME at ``home``."""
    message = "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"
    run = subprocess.run(
        [str(BIN / "ansible"), "-i", str(inventory), host, "-m", "ansible.builtin.debug",
         "-a", f"msg={message}", "-o"],
        cwd=ROOT,
        env=dict(os.environ, HOME=str(home), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")),
        capture_output=True,
        text=True,
        timeout=ANSIBLE_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout[run.stdout.index("{") :])
    values: dict[str, str] = (
        json.loads(answer["msg"]) if isinstance(answer["msg"], str) else answer["msg"]
    )
    return values


def test_no_lab_secret_is_written_in_the_repository() -> None:
    text = (INVENTORIES / "lab" / "group_vars" / "all" / "lab.yml").read_text()
    for name in NAMES:
        line = next(line for line in text.splitlines() if line.startswith(f"{name}:"))
        assert line == f"{name}: >-", f"{name} is not a generated secret: {line}"


@pytest.mark.slow
def test_secrets_are_made_once_per_lab_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = resolve(INVENTORIES / "lab", "lab-head", home, NAMES)
    folder = home / ".bramble" / "secrets" / "lab"
    for name, value in first.items():
        assert len(value) >= 24, (name, value)
        assert value.isalnum(), (name, value)
    assert len(first["cluster_server_cluster_key"]) >= 32  # the server's minimum
    assert len(set(first.values())) == len(NAMES)
    files = sorted(folder.iterdir())
    assert len(files) == len(NAMES)
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    assert resolve(INVENTORIES / "lab", "lab-head", home, NAMES) == first  # kept
    # A scaled lab (its own name) has its own, also for its extra controllers.
    made = sizes.write_inventory(9, 2, out=tmp_path / "lab9x2")
    scaled = resolve(
        made.inventory,
        "lab9x2-head",
        home,
        (*NAMES, "vault_lab_relay2_token", "vault_lab_pdu2_password"),
    )
    assert scaled["cluster_server_admin_token"] != first["cluster_server_admin_token"]
    assert (home / ".bramble" / "secrets" / "lab9x2" / "lab-relay2-token").read_text().strip() == (
        scaled["vault_lab_relay2_token"]
    )
