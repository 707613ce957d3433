"""pi_agent in a plain Debian systemd container: installed offline, configured, enabled."""

from __future__ import annotations

import json

VENV = "/opt/bramble-agent"
CONF = "/etc/bramble/agent.toml"
SECRETS = "/etc/bramble/secrets"


def _toml(host, path: str) -> dict:
    script = f"import json, tomllib; print(json.dumps(tomllib.load(open({path!r}, 'rb'))))"
    return json.loads(host.check_output(f"python3 -c {json.dumps(script)}"))


def test_the_agent_runs_from_its_venv_as_its_user(host):
    cmd = host.run(f"runuser -u bramble-agent -- {VENV}/bin/bramble-agent --help")
    assert cmd.rc == 0, cmd.stderr
    assert "--config" in cmd.stdout


def test_installed_from_the_wheelhouse_without_an_index(host):
    imported = host.check_output(
        f"{VENV}/bin/python -c 'import bramble, aiohttp, psutil; print(1)'"
    )
    assert imported == "1"
    # the venv carries the stamp of the wheelhouse tarball it was installed from (the wheels
    # themselves are removed after the install; the tarball stays for the next comparison)
    installed = host.file(f"{VENV}/.bramble-wheelhouse.json").content_string
    shipped = host.check_output(
        "tar -xOf /var/cache/bramble-agent/wheels.tar .bramble-wheelhouse.json"
    )
    assert json.loads(installed) == json.loads(shipped)
    assert json.loads(installed)["arch"] == host.check_output("uname -m")
    assert not host.file("/var/cache/bramble-agent/wheels").exists


def test_unit_is_enabled_at_boot_and_hardened(host):
    assert host.service("bramble-agent").is_enabled
    assert host.check_output("systemctl is-enabled bramble-agent") == "enabled"
    link = host.file("/etc/systemd/system/multi-user.target.wants/bramble-agent.service")
    assert link.linked_to == "/etc/systemd/system/bramble-agent.service"
    wanted = (
        "User=bramble-agent",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "MemoryMax=268435456",
    )
    shown = host.check_output(
        "systemctl show bramble-agent -p User -p Restart -p NoNewPrivileges -p ProtectSystem "
        "-p MemoryMax"
    ).splitlines()
    for line in wanted:
        assert line in shown, shown
    verify = host.run("systemd-analyze verify /etc/systemd/system/bramble-agent.service")
    assert verify.rc == 0, verify.stderr


def test_config_is_the_models(host):
    config = _toml(host, CONF)
    assert config["agent"]["cluster"] == "desk"
    assert config["agent"]["port"] == 8471
    assert config["beacon"] == {"port": 47470, "max_skew": 30.0}
    assert config["auth"] == {
        "cluster_key_file": f"{SECRETS}/cluster.key",
        "agent_token_file": f"{SECRETS}/agent.token",
    }
    assert config["telemetry"]["interval"] == 5.0


def test_secrets_are_readable_by_the_agent_only(host):
    key = host.file(f"{SECRETS}/cluster.key")
    assert key.content_string == "molecule-cluster-key-0123456789abcdef\n"
    for name in ("cluster.key", "agent.token"):
        secret = host.file(f"{SECRETS}/{name}")
        assert (secret.user, secret.group, secret.mode) == ("root", "bramble-agent", 0o640)
        assert host.run(f"runuser -u bramble-agent -- cat {SECRETS}/{name}").rc == 0
        assert host.run(f"runuser -u nobody -- cat {SECRETS}/{name}").rc != 0


def test_agent_check_reads_its_config_and_secrets(host):
    # --check also looks for this node's address: the container has no network (lo only), so
    # only a failure that names the identity is accepted, never one about the config or secrets.
    cmd = host.run(f"runuser -u bramble-agent -- {VENV}/bin/bramble-agent --check --config {CONF}")
    output = cmd.stdout + cmd.stderr
    assert "auth." not in output, output
    assert "agent.toml" not in output or cmd.rc == 0, output
