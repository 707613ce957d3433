"""The firewall role through playbooks/edge.yml in a systemd container: nftables holds the ruleset.

The verifier also probes it: the cluster veth's peer goes into a namespace inside the container
(a Pi at 192.168.3.10) that connects to the head; the namespace is removed again.
"""

from __future__ import annotations

import json
import shlex

import pytest

from bramble.converge_check import check_converge

PI_NETNS = "brt-fw-pi"
#: Connects with a one-second timeout: "accepted" (an answer, even a refusal) or "dropped".
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
    print("accepted")
except ConnectionRefusedError:
    print("accepted")
except OSError:
    print("dropped")
"""


def _rules(host) -> dict[str, list[dict]]:
    """The loaded rules of table inet bramble, per chain."""
    ruleset = json.loads(host.check_output("nft -j list table inet bramble"))["nftables"]
    chains: dict[str, list[dict]] = {}
    for item in ruleset:
        if "chain" in item:
            chains[item["chain"]["name"]] = [item["chain"]]
        elif "rule" in item:
            chains[item["rule"]["chain"]].append(item["rule"])
    return chains


def _comments(rules: list[dict]) -> list[str]:
    return [rule["comment"] for rule in rules[1:] if "comment" in rule]


def test_nftables_is_enabled_and_has_loaded_the_file(host):
    service = host.service("nftables")
    assert service.is_enabled
    assert host.check_output("systemctl is-active nftables") == "active"
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_default_deny_on_input_and_forward(host):
    chains = _rules(host)
    assert chains["input"][0]["policy"] == "drop"
    assert chains["forward"][0]["policy"] == "drop"


def test_the_service_roles_openings_are_composed_on_the_cluster_side(host):
    input_rules = _comments(_rules(host)["input"])
    for comment in ("DHCP from the Pis", "TFTP from the Pis", "NTP from the Pis", "NFS",
                    "cluster server API"):  # fmt: skip
        assert comment in input_rules, input_rules
    text = host.check_output("nft list chain inet bramble input")
    assert 'iifname "eth1" ip saddr 192.168.3.0/24 udp dport 123 accept' in text, text
    assert 'iifname "eth1" udp dport 67 accept' in text, text


def test_the_admin_side_and_the_three_reference_rules(host):
    chains = _rules(host)
    assert {"SSH from the admin networks", "dashboard", "IKE from VPN peer", "ESP from VPN peer",
            "cluster -> gateway"} <= set(_comments(chains["input"]))  # fmt: skip
    assert {"LAN -> cluster", "cluster -> LAN", "cluster -> VPN", "VPN -> cluster",
            "cluster -> outside (NAT)"} <= set(_comments(chains["forward"]))  # fmt: skip
    assert _comments(chains["postrouting"]) == ["no NAT into the VPN", "the cluster is one address"]
    text = host.check_output("nft list chain inet bramble input")
    assert 'iifname "eth0" ip saddr 192.168.1.0/24 tcp dport 22 accept' in text, text


@pytest.fixture(scope="module")
def pi(host):
    """A Pi namespace on the cluster side: eth1's peer moved into it (and back afterwards)."""
    host.run_expect([0], f"ip netns add {PI_NETNS}")
    try:
        host.run_expect(
            [0],
            f"ip link set eth1-peer netns {PI_NETNS} && "
            f"ip -n {PI_NETNS} addr add 192.168.3.10/24 dev eth1-peer && "
            f"ip -n {PI_NETNS} link set eth1-peer up && ip -n {PI_NETNS} link set lo up",
        )
        yield PI_NETNS
    finally:
        host.run(f"ip -n {PI_NETNS} link set eth1-peer netns 1")
        host.run(f"ip netns del {PI_NETNS}")


@pytest.mark.parametrize(
    ("port", "expected"),
    [(2049, "accepted"), (8470, "accepted"), (53, "accepted"), (22, "dropped"), (8443, "dropped")],
)
def test_a_pi_reaches_only_the_services(host, pi, port, expected):
    probe = f"ip netns exec {pi} timeout 10 python3 -c {shlex.quote(PROBE)} 192.168.3.1 {port}"
    assert host.check_output(probe) == expected


def test_check_diff_after_converge_predicts_no_change():
    run = check_converge()
    assert (run.returncode, run.changed) == (0, 0), run.output[-3000:]
