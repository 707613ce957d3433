"""The cluster_server role: its files checked by the server's own config loader, its refusals.

The image build and the running container are tested by molecule/cluster_server (a scratch
podman store on this machine); here the files are rendered on localhost (tests/role_render.py)
and the role's secret checks run before any change.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bramble.model import load_cluster
from bramble.services.config import load_server_config
from bramble.services.server.model import load_model_nodes
from cluster_helpers import BASE_MODEL, ROOT, mac_of, run_tool, serial_of
from role_render import render_role

pytestmark = pytest.mark.slow

SECRETS = {
    "cluster_server_cluster_key": "k" * 32,
    "cluster_server_agent_token": "a" * 16,
    "cluster_server_admin_token": "b" * 16,
}
TEMPLATES = ["etc/bramble/server.toml.j2", "etc/systemd/system/bramble-server.service.j2"]
DERIVED = ["_cluster_server_nodes", "cluster_server_firewall_rules"]


def _harvested(model_dir):
    macs = [{"bank": 1, "slot": s, "mac": mac_of(1, s), "serial": serial_of(1, s)} for s in (1, 2)]
    macs.append({"bank": 2, "slot": 4, "mac": mac_of(2, 4)})
    return model_dir(macs=macs)


def test_server_config_loads_with_the_servers_loader(model_dir, tmp_path):
    inventory = _harvested(model_dir)
    out = tmp_path / "out"
    extra = {**SECRETS, "cluster_server_settings": {"health": {"misses_down": 5}}}
    result, derived = render_role(
        "cluster_server", inventory, out, templates=TEMPLATES, derived=DERIVED, extra=extra
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the server reads what the role wrote: same keys, the model's values
    config = load_server_config(out / "server.toml")
    assert config.server.cluster == "test"
    assert config.server.advertise == "10.42.0.1"
    assert config.beacon.broadcast == "10.42.255.255"
    assert config.health.misses_down == 5
    assert config.auth.cluster_key_file == "/etc/bramble/secrets/cluster.key"
    assert config.model.nodes_file == "/etc/bramble/nodes.json"
    # nodes.json: every harvested Pi, read back by the server's own loader
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps(derived["_cluster_server_nodes"]), encoding="utf-8")
    nodes = load_model_nodes(str(nodes_file))
    pis = {pi.mac: pi for pi in load_cluster(inventory).pis if pi.mac}
    assert set(nodes) == set(pis)
    for mac, node in nodes.items():
        assert (node.name, node.bank, node.slot, node.ip) == (
            pis[mac].name,
            pis[mac].bank,
            pis[mac].slot,
            pis[mac].ip,
        )
    assert derived["cluster_server_firewall_rules"] == [
        {
            "proto": "tcp",
            "port": 8470,
            "interface": "eth1",
            "sources": ["10.42.0.0/16"],
            "comment": "bramble server API from the Pis",
        }
    ]
    unit = (out / "bramble-server.service").read_text(encoding="utf-8")
    assert re.search(r"--network=host .*--read-only --cap-drop=all", unit, re.S)
    # 8 Pis: the floor of 4096 open files, for the container and for podman/conmon
    assert "--ulimit=nofile=4096:4096" in unit
    assert "\nLimitNOFILE=4096\n" in unit


def test_the_open_file_limit_grows_with_the_fleet(model_dir, tmp_path):
    """Keep-alive: an idle connection per agent; 1,260 Pis get 4 open files each."""
    model = copy.deepcopy(BASE_MODEL)
    model["banks"] = {"count": 60, "size": 21, "model": "pi3bplus"}
    model["power"]["budget"] = 1260
    model["power"]["groups"] = [
        {"id": 1, "controller": "pdu1", "outlet": 1, "banks": list(range(1, 31))},
        {"id": 2, "controller": "pdu1", "outlet": 2, "banks": list(range(31, 61))},
    ]
    out = tmp_path / "out"
    result, derived = render_role(
        "cluster_server",
        model_dir(model),
        out,
        templates=TEMPLATES[1:],
        derived=["cluster_server_nofile"],
        extra=SECRETS,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(derived["cluster_server_nofile"]) == 5040
    unit = (out / "bramble-server.service").read_text(encoding="utf-8")
    assert "--ulimit=nofile=5040:5040" in unit
    assert "\nLimitNOFILE=5040\n" in unit


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"cluster_server_cluster_key": "short"},
            "cluster_server_cluster_key is missing or shorter than 32",
        ),
        (
            {"cluster_server_admin_token": ""},
            "cluster_server_admin_token is missing or shorter than 16",
        ),
        ({"cluster_server_admin_token": "a" * 16}, "are the same; give operators their own token"),
    ],
)
def test_bad_secrets_stop_the_role_before_any_change(model_dir, tmp_path, override, message):
    playbook = tmp_path / "server.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  vars: {ansible_python_interpreter: '{{ ansible_playbook_python }}'}\n"
        "  roles: [cluster_server]\n",
        encoding="utf-8",
    )
    config_dir = tmp_path / "etc"
    extra = {
        **SECRETS,
        **override,
        "cluster_server_config_dir": str(config_dir),
        "cluster_server_wheelhouse_cache": str(tmp_path / "wheelhouse"),
    }
    result = run_tool("ansible-playbook", "-i", model_dir(), playbook, "-e", json.dumps(extra))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    assert "k" * 32 not in output
    assert not config_dir.exists()
    assert not (tmp_path / "wheelhouse").exists()


def test_server_playbook_wires_runtime_into_cluster_server():
    text = (ROOT / "playbooks" / "server.yml").read_text(encoding="utf-8")
    assert 'cluster_server_podman_environment: "{{ runtime_podman_environment }}"' in text
    assert Path(ROOT / "roles" / "runtime" / "tasks" / "main.yml").exists()
