"""The vpn role's input checks: bad VPN input stops the run before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_helpers import BASE_MODEL
from edge_helpers import run_role, vault_encrypt

pytestmark = pytest.mark.slow


def run(tmp: Path, vpn: dict[str, Any], psk: str | None = "vault", **extra: Any) -> str:
    """Render with ``vpn`` in the model; psk 'vault' (encrypted), 'clear' or None (absent)."""
    inventory = tmp / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    model = dict(BASE_MODEL, vpn=vpn)
    (inventory / "cluster.yml").write_text("---\n" + yaml.safe_dump(model), encoding="utf-8")
    password = tmp / "pass"
    password.write_text("test-only\n", encoding="utf-8")
    if psk == "vault":
        (inventory / "group_vars" / "all" / "vault.yml").write_text(
            vault_encrypt(password, "vault_test_psk", "s3cret"), encoding="utf-8"
        )
    elif psk == "clear":
        (inventory / "group_vars" / "all" / "vpn.yml").write_text(
            "vault_test_psk: s3cret\n", encoding="utf-8"
        )
    variables = {"vpn_manage_service": False, "vpn_config_dir": str(tmp / "etc"),
                 "vpn_check_script": str(tmp / "bin" / "check"), **extra}  # fmt: skip
    result = run_role("vpn", inventory, variables, "--vault-password-file", password)
    written = (tmp / "etc" / "swanctl" / "conf.d" / "bramble.conf").exists()
    return f"rc={result.returncode} written={written}\n{result.stdout}{result.stderr}"


TUNNELS = [{"name": "cloud1", "remote": "192.0.2.1", "psk": "vault_test_psk"}]


@pytest.mark.parametrize(
    ("vpn", "psk", "extra", "message"),
    [
        pytest.param({"local_subnets": ["10.0.0.0/16"], "remote_subnets": ["10.0.5.0/24"]},
                     "vault", {}, "VPN remote subnet 10.0.5.0/24 overlaps local subnet 10.0.0.0/16",
                     id="overlapping-local-and-remote"),
        pytest.param({"remote_subnets": ["10.0.0.0/24"]}, "vault",
                     {"vpn_remote_subnets": ["10.42.0.0/16"]},
                     "overlaps the cluster network 10.42.0.0/16", id="remote-is-the-cluster"),
        pytest.param({"remote_subnets": ["10.0.0.0/24"]}, None, {},
                     "the pre-shared key vault_test_psk is not defined", id="missing-psk"),
        pytest.param({"remote_subnets": ["10.0.0.0/24"]}, "clear", {},
                     "is in clear text in the inventory", id="clear-text-psk"),
        pytest.param({"remote_subnets": ["10.0.0.0/24"]}, "vault", {"vpn_profile": "fast"},
                     "unknown VPN profile fast: use legacy or modern", id="unknown-profile"),
    ],
)  # fmt: skip
def test_bad_vpn_input_stops_before_any_change(tmp_path, vpn, psk, extra, message):
    output = run(tmp_path, {**vpn, "tunnels": TUNNELS}, psk, **extra)
    assert output.startswith("rc=2 written=False"), output
    assert message in " ".join(output.split()), output


def test_a_clear_text_psk_is_deployed_only_when_allowed(tmp_path):
    vpn = {"remote_subnets": ["10.0.0.0/24"], "tunnels": TUNNELS}
    output = run(tmp_path, vpn, "clear", vpn_allow_plaintext_psk=True)
    assert output.startswith("rc=0 written=True"), output
