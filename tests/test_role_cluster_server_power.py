"""The cluster_server role's power files, read back by the server's own ``[power]`` loader."""

from __future__ import annotations

import json

import pytest

from bramble.services.config import PowerSection, load_server_config
from bramble.services.server.power import load_power
from role_render import render_role
from test_role_cluster_server import SECRETS

pytestmark = pytest.mark.slow

DERIVED = ["_cluster_server_power_model", "_cluster_server_power_secrets"]


def test_power_files_load_with_the_servers_loader(model_dir, tmp_path):
    out = tmp_path / "out"
    extra = {
        **SECRETS,
        "cluster_server_power_enabled": True,
        "vault_test_pdu1_password": " pdu-secret ",
    }
    result, derived = render_role(
        "cluster_server",
        model_dir(),
        out,
        templates=["etc/bramble/server.toml.j2"],
        derived=DERIVED,
        extra=extra,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_server_config(out / "server.toml")
    assert config.power.enabled
    assert config.power.model_file == "/etc/bramble/power.json"
    assert config.power.secrets_file == "/etc/bramble/secrets/power.json"
    assert derived["_cluster_server_power_secrets"] == {"vault_test_pdu1_password": "pdu-secret"}
    # what the role writes, as the server reads it (same names, mode 0600)
    (tmp_path / "power.json").write_text(json.dumps(derived["_cluster_server_power_model"]))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps(derived["_cluster_server_power_secrets"]))
    secrets.chmod(0o600)
    section = config.power.model_copy(
        update={"model_file": str(tmp_path / "power.json"), "secrets_file": str(secrets)}
    )
    setup = load_power(section)
    assert setup is not None
    assert setup.summary() == "power on: 2 group(s) on 1 controller(s), budget 8 Pis"
    assert setup.credentials == {"vault_test_pdu1_password": "pdu-secret"}


def test_power_is_off_by_default(model_dir, tmp_path):
    out = tmp_path / "out"
    result, derived = render_role(
        "cluster_server",
        model_dir(),
        out,
        templates=["etc/bramble/server.toml.j2"],
        derived=["_cluster_server_power_secrets"],
        extra=SECRETS,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_server_config(out / "server.toml")
    assert config.power == PowerSection(enabled=False, model_file="/etc/bramble/power.json")
    assert derived["_cluster_server_power_secrets"] == {}
