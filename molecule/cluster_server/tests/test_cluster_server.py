"""runtime + cluster_server on localhost, in a scratch podman store: the built image serves."""

from __future__ import annotations

import json
import re
import shlex
import time
import tomllib
import uuid

import pytest

SCRATCH = "/var/tmp/brt-molecule-cluster-server"  # noqa: S108 - the scenario's own folder
CONF_DIR = f"{SCRATCH}/etc/bramble"
IMAGE = "localhost/bramble/server:latest"
ENV = (
    f"CONTAINERS_CONF={SCRATCH}/containers/containers.conf "
    f"CONTAINERS_REGISTRIES_CONF={SCRATCH}/containers/registries.conf "
    f"CONTAINERS_STORAGE_CONF={SCRATCH}/containers/storage.conf"
)
ADMIN = "molecule-admin-token-0123"
NOFILE = 4096  # cluster_server_nofile for the scenario's small model (below this host's 20000)


def _podman(host, args: str):
    return host.run(f"env {ENV} podman {args}")


def test_podman_reads_the_runtime_configuration(host):
    info = json.loads(_podman(host, "info --format json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "runc"
    assert info["store"]["graphRoot"] == f"{SCRATCH}/storage"
    # podman itself reports: no registry searched for short names, public ones blocked
    assert not info["registries"].get("search")
    assert info["registries"]["docker.io"]["Blocked"] is True
    containers = host.file(f"{SCRATCH}/containers/containers.conf").content_string
    assert 'netns = "none"' in containers
    assert 'pull_policy = "never"' in containers


def test_images_carry_their_input_hash(host):
    for image in ("localhost/bramble/python:3.11", IMAGE):
        label = _podman(
            host, f"image inspect --format '{{{{index .Labels \"bramble.image.hash\"}}}}' {image}"
        )
        assert label.rc == 0, label.stderr
        assert len(label.stdout.strip()) == 16


def test_the_image_holds_the_server_and_no_pip_cache(host):
    cmd = _podman(host, f"run --rm --network none {IMAGE} --help")
    assert cmd.rc == 0, cmd.stderr
    assert "--check-config" in cmd.stdout
    listing = _podman(host, f"run --rm --network none --entrypoint ls {IMAGE} /tmp")
    assert listing.stdout.strip() == ""


def test_server_toml_comes_from_the_model(host):
    config = tomllib.loads(host.file(f"{CONF_DIR}/server.toml").content_string)
    assert config["server"] == {
        "cluster": "desk",
        "listen": "0.0.0.0",  # noqa: S104 - the configured value, not a bind
        "port": 8470,
        "advertise": "192.168.3.1",
    }
    assert config["beacon"]["broadcast"] == "192.168.3.255"
    assert config["model"]["nodes_file"] == "/etc/bramble/nodes.json"
    assert config["store"] == {"sqlite": "/var/lib/bramble/server.db", "postgres_dsn_file": ""}


def test_nodes_json_lists_the_harvested_pis(host):
    nodes = json.loads(host.file(f"{CONF_DIR}/nodes.json").content_string)
    assert [(n["name"], n["mac"], n["ip"], n["serial"]) for n in nodes] == [
        ("pi-01-01", "b8:27:eb:3c:f5:58", "192.168.3.17", "993cf558"),
        ("pi-01-02", "b8:27:eb:b3:46:90", "192.168.3.18", "4db34690"),
        ("pi-01-03", "b8:27:eb:12:34:56", "192.168.3.19", None),
    ]


def test_secrets_are_private(host):
    for name in ("cluster.key", "agent.token", "admin.token"):
        secret = host.file(f"{CONF_DIR}/secrets/{name}")
        assert (secret.user, secret.mode) == ("root", 0o600)
    assert host.file(f"{CONF_DIR}/secrets/admin.token").content_string == ADMIN + "\n"
    assert not host.file(f"{CONF_DIR}/secrets/postgres.dsn").exists


def test_unit_runs_the_image_on_the_host_network(host):
    unit = host.file(f"{SCRATCH}/etc/systemd/system/bramble-server.service").content_string
    assert "--network=host" in unit
    assert "--read-only --cap-drop=all --security-opt=no-new-privileges" in unit
    assert f"--volume={CONF_DIR}:/etc/bramble:ro" in unit
    assert "Restart=always" in unit
    assert f"Environment=CONTAINERS_STORAGE_CONF={SCRATCH}/containers/storage.conf" in unit
    # open files: the container's and podman's, one kept-alive connection per agent and more
    nofile = re.search(r"--ulimit=nofile=(\d+):\1 ", unit)
    assert nofile, unit
    assert int(nofile.group(1)) >= 4096
    assert f"\nLimitNOFILE={nofile.group(1)}\n" in unit
    assert "--ulimit=nproc=1024:1024 " in unit  # cluster_server_ulimits


@pytest.fixture
def server(host):
    """The server image run as the unit runs it, but without network (loopback only)."""
    name = f"brt-cs-{uuid.uuid4().hex[:8]}"
    started = _podman(
        host,
        f"run -d --rm --name {name} --network none --read-only --cap-drop=all "
        f"--security-opt=no-new-privileges --ulimit=nofile={NOFILE}:{NOFILE} "
        "--ulimit=nproc=1024:1024 "  # as the unit: cluster_server_ulimits
        f"--volume={CONF_DIR}:/etc/bramble:ro "
        f"--volume={SCRATCH}/lib/bramble:/var/lib/bramble:rw {IMAGE} "
        "--config /etc/bramble/server.toml",
    )
    assert started.rc == 0, started.stderr
    try:
        yield name
    finally:
        _podman(host, f"rm --force --time 5 {name}")


def _get(host, name: str, path: str, token: str = "", body: str | None = None) -> tuple[int, str]:
    """GET ``path`` in the container (POST ``body`` when given): (status, answer)."""
    data = "None" if body is None else repr(body.encode())
    script = (
        "import sys, urllib.request, urllib.error\n"
        f"req = urllib.request.Request('http://127.0.0.1:8470{path}', data={data})\n"
        "req.add_header('Content-Type', 'application/json')\n"
        f"if {bool(token)}: req.add_header('Authorization', 'Bearer {token}')\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=3)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    cmd = _podman(host, f"exec {name} python3 -c {shlex.quote(script)}")
    if cmd.rc != 0:
        return 0, cmd.stderr
    status, _, body = cmd.stdout.partition("\n")
    return int(status), body


def test_the_built_server_answers_and_wants_the_admin_token(host, server):
    deadline = time.monotonic() + 30
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = _get(host, server, "/healthz")
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200, body
    # the server process runs with the open-file limit the unit gives the container
    limits = _podman(host, f"exec {server} cat /proc/1/limits").stdout
    assert re.search(rf"Max open files\s+{NOFILE}\s+{NOFILE}\s", limits), limits
    assert _get(host, server, "/api/v1/nodes")[0] == 401
    status, body = _get(host, server, "/api/v1/nodes", ADMIN)
    assert status == 200, body
    assert host.file(f"{SCRATCH}/lib/bramble/server.db").exists
    # [power] is on: the image carries bank_power's code; this host has no uhubctl in the image
    power = '{"group": 1, "action": "on"}'
    assert _get(host, server, "/api/v1/power", body=power)[0] == 401
    status, body = _get(host, server, "/api/v1/power", ADMIN, body=power)
    assert status == 502, body
    assert "controller hub" in body
    assert "uhubctl is not installed" in body


def test_power_files_come_from_the_model(host):
    power = json.loads(host.file(f"{CONF_DIR}/power.json").content_string)
    assert power["power"] == {
        "budget": 4,
        "groups": [{"id": 1, "controller": "hub", "outlet": "all", "banks": [1]}],
    }
    assert [c["name"] for c in power["controllers"]] == ["hub"]
    config = tomllib.loads(host.file(f"{CONF_DIR}/server.toml").content_string)
    assert config["power"]["enabled"] is True
    assert config["power"]["secrets_file"] == ""  # no controller of the model has credentials
    assert not host.file(f"{CONF_DIR}/secrets/power.json").exists
