"""bramble.lab.cloud alone: the cloud gateway's configuration, and (root) its namespace and
charon brought up, found running, and removed, also after a lost PID file or a failed start.

The end-to-end tunnel with the head's vpn role is tests/lab/test_lab_vpn.py. The root tests
here take about 5 s: one throw-away "head" namespace (brt-<random>-head, no container).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bramble.lab.cloud import CHARON, CloudConfig, CloudGateway, swanctl_conf
from bramble.labnet import ip, list_netns, pid_running


def config(lab: str = "brtcloud", **changes: object) -> CloudConfig:
    data: dict[str, object] = {
        "lab": lab,
        "head_address": "198.51.100.1",
        "tunnels": [
            {"name": "cloud1", "endpoint": "192.0.2.1", "psk": 'lab "key"'},
            {"name": "cloud2", "endpoint": "192.0.2.2", "psk": 'lab "key"'},
        ],
        "cloud_subnets": ["10.0.0.0/24"],
        "cluster_subnets": ["10.42.0.0/16"],
        **changes,
    }
    return CloudConfig.from_json(json.dumps(data))


def test_the_cloud_answers_each_endpoint_with_the_models_proposals_and_key() -> None:
    conf = swanctl_conf(config(version=1, ike=["aes256-sha1-modp1536"], esp=["aes256-sha1"]))
    assert conf.count("local_addrs = ") == 2
    for endpoint in ("192.0.2.1", "192.0.2.2"):
        assert f"local_addrs = {endpoint}" in conf
        assert f"id = {endpoint}" in conf
    assert "remote_addrs = 198.51.100.1" in conf
    assert "id-1 = 198.51.100.1" in conf
    assert "version = 1" in conf
    assert "proposals = aes256-sha1-modp1536" in conf
    assert "esp_proposals = aes256-sha1" in conf
    assert "local_ts = 10.0.0.0/24" in conf
    assert "remote_ts = 10.42.0.0/16" in conf
    assert 'secret = "lab \\"key\\""' in conf  # quoted as swanctl.conf reads it
    assert "start_action = none" in conf  # the head initiates
    assert config().cloud_addresses == ["10.0.0.1"]
    assert config().endpoints == ["192.0.2.1", "192.0.2.2"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cloud_subnets": ["0.0.0.0/0"]}, "default"),
        ({"head_address": "192.0.2.1"}, "tunnel endpoint"),
        ({"tunnels": []}, "needs tunnels"),
        ({"head_address": "not-an-address"}, "does not appear to be"),
    ],
)
def test_a_gateway_that_would_route_out_or_clash_is_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config(**changes)


def _root_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not Path(CHARON).exists():
        return f"needs {CHARON} (apt: charon-systemd, strongswan-swanctl, libcharon-extra-plugins)"
    return None


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    reason = _root_missing()
    if reason:
        pytest.skip(reason)
    lab = f"brt{random.randrange(16**5):05x}"  # noqa: S311 - a name, not a secret
    ip("netns", "add", f"brl-{lab}-head")
    try:
        yield lab, tmp_path
    finally:
        CloudGateway(lab, tmp_path).down()
        ip("netns", "del", f"brl-{lab}-head", check=False)
        assert [n for n in list_netns() if n.startswith(f"brl-{lab}-")] == []


@pytest.mark.integration
def test_up_is_idempotent_and_down_removes_charon_and_namespace(head: tuple[str, Path]) -> None:
    lab, root = head
    gateway = CloudGateway(lab, root)
    first = gateway.up(config(lab))
    assert first["changed"] is True
    pid = gateway.pid()
    assert pid == first["pid"]
    assert "lab-cloud1" in gateway.swanctl("--list-conns").stdout
    assert gateway.up(config(lab))["changed"] is False
    # The head's end: its IKE address and a link route to each endpoint, nothing more.
    routes = ip("-n", f"brl-{lab}-head", "route").stdout
    assert "default" not in routes
    assert "192.0.2.1 dev cloud0" in routes
    assert "192.0.2.2 dev cloud0" in routes
    cloud_routes = ip("-n", gateway.netns, "route").stdout
    assert "default" not in cloud_routes
    # A changed configuration rebuilds the gateway (a new charon).
    assert gateway.up(config(lab, cloud_subnets=["10.9.0.0/24"]))["changed"] is True
    assert gateway.pid() not in (None, pid)
    assert "10.9.0.1/32" in ip("-n", gateway.netns, "addr", "show", "lo").stdout
    # A lost PID file: down still finds charon in the namespace.
    pid = gateway.pid()
    assert pid is not None
    gateway.pid_file.unlink()
    assert gateway.down()["changed"] is True
    assert gateway.netns not in list_netns()
    assert not pid_running(pid)
    assert "cloud0" not in ip("-n", f"brl-{lab}-head", "link").stdout
    assert gateway.down()["changed"] is False


@pytest.mark.integration
def test_a_failed_start_leaves_nothing(head: tuple[str, Path]) -> None:
    lab, root = head
    gateway = CloudGateway(lab, root)
    broken = config(lab, ike=["no-such-alg"])
    with pytest.raises(RuntimeError, match="refused its tunnels"):
        gateway.up(broken)
    assert gateway.netns not in list_netns()
    assert gateway.pid() is None
    assert "cloud0" not in ip("-n", f"brl-{lab}-head", "link").stdout


def test_up_needs_the_labs_head_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with pytest.raises(RuntimeError, match="bring the lab up first"):
        CloudGateway("brtnohead", tmp_path).up(config("brtnohead"))
