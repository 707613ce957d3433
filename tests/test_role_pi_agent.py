"""The pi_agent role: agent.toml checked by the agent's own config loader, the unit, refusals.

Installing into an image and enabling the unit is tested by molecule/pi_agent (a Debian
systemd container); here the files are rendered on localhost (tests/role_render.py).
"""

from __future__ import annotations

import json

import pytest

from bramble.services.config import load_agent_config
from cluster_helpers import run_tool
from role_render import render_role

pytestmark = pytest.mark.slow

SECRETS = {"cluster_server_cluster_key": "k" * 32, "cluster_server_agent_token": "a" * 16}
TEMPLATES = ["etc/bramble/agent.toml.j2", "etc/systemd/system/bramble-agent.service.j2"]


def test_agent_config_loads_with_the_agents_loader(model_dir, tmp_path):
    out = tmp_path / "out"
    extra = {**SECRETS, "pi_agent_settings": {"telemetry": {"interval": 10.0}}}
    result, _ = render_role(
        "pi_agent", model_dir(), out, templates=TEMPLATES, derived=[], extra=extra
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_agent_config(out / "agent.toml")
    assert config.agent.cluster == "test"
    assert config.agent.port == 8471
    assert config.beacon.port == 47470
    assert config.telemetry.interval == 10.0
    assert config.auth.agent_token_file == "/etc/bramble/secrets/agent.token"  # noqa: S105


def test_unit_starts_at_boot_restarts_and_is_confined(model_dir, tmp_path):
    out = tmp_path / "out"
    result, _ = render_role(
        "pi_agent", model_dir(), out, templates=TEMPLATES, derived=[], extra=SECRETS
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (out / "bramble-agent.service").read_text(encoding="utf-8").splitlines()
    for wanted in (
        "User=bramble-agent",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "MemoryMax=256M",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
        "ExecStart=/opt/bramble-agent/bin/bramble-agent --config /etc/bramble/agent.toml",
    ):
        assert wanted in lines


def test_missing_cluster_key_names_the_servers_variable(model_dir, tmp_path):
    playbook = tmp_path / "agent.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  vars: {ansible_python_interpreter: '{{ ansible_playbook_python }}'}\n"
        "  roles: [pi_agent]\n",
        encoding="utf-8",
    )
    extra = {
        "pi_agent_wheelhouse_cache": str(tmp_path / "wheelhouse"),
        "pi_agent_venv": str(tmp_path / "venv"),
    }
    result = run_tool("ansible-playbook", "-i", model_dir(), playbook, "-e", json.dumps(extra))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "pi_agent_cluster_key is missing or shorter than 32" in output
    assert "cluster_server_cluster_key" in output
    assert not (tmp_path / "venv").exists()
