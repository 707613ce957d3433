"""The firewall role's nftables ruleset, loaded in a gateway namespace and probed for real.

Namespaces: a cluster host (192.168.3.10) - the head gateway (cluster side 192.168.3.1, admin
side 192.168.1.1) - a LAN host (192.168.1.10, also the LAN's router) - an outside host
(198.51.100.10 behind the LAN router). The role renders the ruleset (render-only mode, checked
with nft -c); the test loads it in the gateway namespace (the host's ruleset is untouched) and
makes real TCP connections: allowed ones answer, dropped ones time out after one second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bramble.edgenet import EdgeNet
from edge_helpers import edge_model, run_role

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if os.geteuid() != 0 or shutil.which("nft") is None:
    pytestmark.append(pytest.mark.skip(reason="needs root and nft (apt: nftables)"))

#: Accepts TCP connections and answers each with the peer's address.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
#: Connects with a one-second timeout; prints what the server saw as our address, or "timeout".
CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
    print(c.recv(64).decode())
except OSError as exc:
    print("timeout" if isinstance(exc, TimeoutError) else f"refused {exc}")
"""
PORTS = (22, 2049, 8080)
SERVICE_RULES = [
    {"proto": "tcp", "port": 2049, "interface": "eth1", "sources": ["192.168.3.0/24"],
     "comment": "NFS from the Pis"},
]  # fmt: skip


def render(tmp: Path, **variables: object) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory"
    inventory.mkdir(exist_ok=True)
    (inventory / "cluster.yml").write_text(
        edge_model("site", "192.168.3.0/24", "192.168.3.1"), encoding="utf-8"
    )
    extra = {
        "firewall_manage_service": False,
        "firewall_conf_file": str(tmp / "nftables.conf"),
        "firewall_lan_network": "192.168.1.0/24",
        "firewall_admin_ssh_sources": ["192.168.1.0/24"],
        "firewall_service_rules": [SERVICE_RULES],
        **variables,
    }
    return run_role("firewall", inventory, extra)


class Edge:
    def __init__(self, net: EdgeNet, ruleset: Path) -> None:
        self.net = net
        self.pi, self.gw, self.lan, self.out = (
            net.add_host(name, forward=name in ("gw", "lan")) for name in ("pi", "gw", "lan", "out")
        )
        net.wire(
            [((self.pi, "eth0", "192.168.3.10/24"), (self.gw, "eth1", "192.168.3.1/24")),
             ((self.gw, "eth0", "192.168.1.1/24"), (self.lan, "eth0", "192.168.1.10/24")),
             ((self.lan, "eth1", "198.51.100.1/24"), (self.out, "eth0", "198.51.100.10/24"))],
            [(self.pi, "192.168.1.0/24", "192.168.3.1"),
             (self.pi, "198.51.100.0/24", "192.168.3.1"),
             (self.gw, "198.51.100.0/24", "192.168.1.10"),
             (self.lan, "192.168.3.0/24", "192.168.1.1"),
             (self.out, "192.168.1.0/24", "198.51.100.1")],
        )  # fmt: skip
        loaded = net.run(self.gw, ["nft", "-f", str(ruleset)])
        assert loaded.returncode == 0, loaded.stderr
        for netns in (self.pi, self.gw, self.lan, self.out):
            for port in PORTS:
                server = net.popen(netns, [sys.executable, "-c", SERVER, str(port)],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
                assert server.stdout is not None
                assert server.stdout.readline().strip() == "ready"

    def connect(self, netns: str, address: str, port: int) -> str:
        result = self.net.run(netns, [sys.executable, "-c", CLIENT, address, str(port)], timeout=10)
        return result.stdout.strip()


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("firewall")
    result = render(tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp / "nftables.conf"


@pytest.fixture(scope="module")
def edge(ruleset: Path) -> Iterator[Edge]:
    with EdgeNet() as net:
        yield Edge(net, ruleset)


# (from, to address, port, expected: the address the server saw, or "timeout")
MATRIX = [
    pytest.param("lan", "192.168.3.10", 8080, "192.168.1.10", id="rule2-lan-to-cluster-accepted"),
    pytest.param("pi", "192.168.1.10", 8080, "timeout", id="rule3-cluster-to-lan-dropped"),
    pytest.param("pi", "192.168.3.1", 8080, "timeout", id="rule1-cluster-to-gateway-dropped"),
    pytest.param("pi", "192.168.3.1", 2049, "192.168.3.10", id="exported-service-accepted"),
    pytest.param("pi", "192.168.3.1", 22, "timeout", id="ssh-from-cluster-dropped"),
    pytest.param("lan", "192.168.1.1", 22, "192.168.1.10", id="ssh-from-admin-lan-accepted"),
    pytest.param("out", "192.168.1.1", 22, "timeout", id="ssh-from-outside-dropped"),
    pytest.param("lan", "192.168.1.1", 8080, "timeout", id="unconfigured-admin-port-dropped"),
    pytest.param("lan", "192.168.1.1", 2049, "timeout", id="cluster-service-not-on-admin-side"),
    pytest.param("pi", "198.51.100.10", 8080, "192.168.1.1", id="nat-cluster-is-one-address"),
]


@pytest.mark.parametrize(("source", "address", "port", "expected"), MATRIX)
def test_connection_matrix(edge: Edge, source: str, address: str, port: int, expected: str) -> None:
    started = time.monotonic()
    assert edge.connect(getattr(edge, source), address, port) == expected
    assert time.monotonic() - started < 5


def test_lan_connections_into_the_cluster_get_their_replies(edge: Edge) -> None:
    # rule 3 drops only new cluster -> LAN connections: replies (established) pass
    assert edge.connect(edge.lan, "192.168.3.10", 22) == "192.168.1.10"


def test_a_ruleset_that_cuts_the_ssh_session_is_refused(tmp_path: Path) -> None:
    result = render(
        tmp_path,
        firewall_admin_ssh_sources=["10.99.0.0/16"],
        ansible_env={"SSH_CONNECTION": "192.168.1.50 50000 192.168.1.1 22"},
    )
    assert result.returncode != 0
    assert "accepts no new SSH connection from 192.168.1.50" in result.stdout
    assert not (tmp_path / "nftables.conf").exists()
