"""The vpn role's strongSwan configuration, run for real: two gateways in network namespaces.

The head gateway (cluster 192.168.3.0/24) and a cloud gateway (10.0.0.0/24, two IKE
addresses: the cloud's two tunnel endpoints) each run charon-systemd with the files the role
rendered (render-only mode), their own strongswan.conf, vici socket and log. The kernel here
has no ESP, so the role picks kernel-libipsec (user-space ESP in UDP 4500, see TESTLAB.md).
A host behind each gateway pings the other through the tunnel. Every address is inside the
namespaces of the test; EdgeNet removes them and stops the daemons, also on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bramble.edgenet import EdgeNet
from edge_helpers import edge_model, run_role, vault_encrypt

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "/usr/sbin/swanctl"
PSK = 'test-only psk: "quoted" and long enough'
CLOUD_ENDPOINTS = ("172.30.0.2", "172.30.0.3")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in (CHARON, SWANCTL, "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"):
        if not Path(tool).exists():
            return (
                f"needs {tool} (apt: strongswan-swanctl charon-systemd "
                "libstrongswan-standard-plugins libcharon-extra-plugins)"
            )
    if shutil.which("ip") is None:
        return "needs ip (apt: iproute2)"
    return None


if _missing():
    pytestmark.append(pytest.mark.skip(reason=str(_missing())))


@dataclass
class Gateway:
    """What the role rendered for one gateway."""

    etc: Path
    output: str

    @property
    def swanctl_conf(self) -> Path:
        return self.etc / "swanctl" / "conf.d" / "bramble.conf"


class Renderer:
    """Runs the vpn role in render-only mode for the head or the cloud side."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.password = tmp / "vault-pass"
        self.password.write_text("test-only\n", encoding="utf-8")
        self.count = 0

    def __call__(self, side: str, **variables: Any) -> Gateway:
        self.count += 1
        folder = self.tmp / f"{side}{self.count}"
        inventory = folder / "inventory"
        (inventory / "group_vars" / "all").mkdir(parents=True)
        psk = "vault_test_vpn_psk"
        if side == "head":
            tunnels = [{"name": f"cloud{i}", "remote": a, "psk": psk} for i, a in
                       enumerate(CLOUD_ENDPOINTS, 1)]  # fmt: skip
            vpn = {"remote_subnets": ["10.0.0.0/24"], "tunnels": tunnels}
            text = edge_model("site", "192.168.3.0/24", "192.168.3.1", vpn=vpn)
        else:
            tunnels = [{"name": "site", "remote": "172.30.0.1", "psk": psk}]
            vpn = {"remote_subnets": ["192.168.3.0/24"], "tunnels": tunnels}
            text = edge_model("cloud", "10.0.0.0/24", "10.0.0.1", vpn=vpn)
            # The cloud answers on both endpoints: one connection per local address.
            variables.setdefault(
                "vpn_tunnels",
                [{"name": f"site{i}", "remote": "172.30.0.1", "local_address": a, "psk": psk}
                 for i, a in enumerate(CLOUD_ENDPOINTS, 1)],
            )  # fmt: skip
            variables.setdefault("vpn_initiate", False)
            variables.setdefault("vpn_tunnel_mode", "both")
        (inventory / "cluster.yml").write_text(text, encoding="utf-8")
        (inventory / "group_vars" / "all" / "vault.yml").write_text(
            vault_encrypt(self.password, psk, PSK), encoding="utf-8"
        )
        etc = folder / "etc"
        extra = {
            "vpn_manage_service": False,
            "vpn_config_dir": str(etc),
            "vpn_check_script": str(folder / "bin" / "swanctl-check"),
            **variables,
        }
        result = run_role("vpn", inventory, extra, "--vault-password-file", self.password)
        assert result.returncode == 0, result.stdout + result.stderr
        return Gateway(etc=etc, output=result.stdout)


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(tmp_path_factory.mktemp("vpn"))


class Site:
    """The four namespaces: cluster host - head gateway - cloud gateway - cloud host."""

    def __init__(self, net: EdgeNet, work: Path) -> None:
        self.net = net
        self.work = work
        self.cluster, self.head, self.cloud, self.vcn = (
            net.add_host(name, forward=name.startswith("g")) for name in ("c", "g1", "g2", "v")
        )
        net.wire(
            [((self.cluster, "eth0", "192.168.3.10/24"), (self.head, "eth1", "192.168.3.1/24")),
             ((self.head, "eth0", "172.30.0.1/24"), (self.cloud, "eth0", "172.30.0.2/24")),
             ((self.cloud, "eth1", "10.0.0.1/24"), (self.vcn, "eth0", "10.0.0.10/24"))],
            [(self.cluster, "10.0.0.0/24", "192.168.3.1"),
             (self.vcn, "192.168.3.0/24", "10.0.0.1")],
        )  # fmt: skip
        net.add_address_to(self.cloud, "eth0", "172.30.0.3/24")

    def start(self, netns: str, gateway: Gateway) -> Path:
        """charon-systemd in ``netns`` with the rendered files; returns its log."""
        state = self.work / netns
        state.mkdir()
        log, vici = state / "charon.log", state / "charon.vici"
        conf = state / "strongswan.conf"
        conf.write_text(
            f"include /etc/strongswan.conf\n"
            f"include {gateway.etc}/strongswan.d/bramble.conf\n"
            "charon-systemd {\n"
            "  journal {\n    default = -1\n  }\n"
            f"  filelog {{\n    test {{\n      path = {log}\n      default = 1\n"
            "      ike = 2\n      flush_line = yes\n    }\n  }\n"
            f"  plugins {{\n    vici {{\n      socket = unix://{vici}\n    }}\n  }}\n"
            "}\n",
            encoding="utf-8",
        )
        env = dict(os.environ, STRONGSWAN_CONF=str(conf))
        process = self.net.popen(
            netns, [CHARON], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not vici.exists() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(encoding="utf-8")
            time.sleep(0.05)
        assert vici.exists(), "charon did not open its vici socket within 10 s"
        loaded = self.swanctl(
            netns, "--load-all", "--noprompt", "--file", str(gateway.swanctl_conf)
        )
        problems = [
            line for line in loaded.splitlines()
            if "failed" in line and not line.startswith("opening directory")
        ]  # fmt: skip
        assert not problems, loaded
        return log

    def swanctl(self, netns: str, *argv: str) -> str:
        vici = self.work / netns / "charon.vici"
        result = self.net.run(netns, [SWANCTL, *argv, "--uri", f"unix://{vici}"], timeout=20)
        return result.stdout + result.stderr

    def established(self, count: int, timeout: float = 15) -> str:
        """Wait until the head has ``count`` installed CHILD_SAs; the list of SAs."""
        deadline = time.monotonic() + timeout
        sas = ""
        while time.monotonic() < deadline:
            sas = self.swanctl(self.head, "--list-sas")
            if sas.count("INSTALLED") >= count:
                return sas
            time.sleep(0.2)
        return sas

    def ping(self, timeout: int = 10) -> subprocess.CompletedProcess[str]:
        return self.net.run(
            self.cluster, ["busybox", "ping", "-c", "3", "-W", "2", "-w", str(timeout),
                           "10.0.0.10"], timeout=timeout + 5,
        )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with EdgeNet() as net:
        yield Site(net, tmp_path)


def test_modern_profile_brings_up_both_tunnels_and_carries_traffic(
    site: Site, render: Renderer
) -> None:
    head = render("head", vpn_tunnel_mode="both")
    assert "user-space IPsec" in (head.etc / "strongswan.d" / "bramble.conf").read_text()
    site.start(site.cloud, render("cloud"))
    site.start(site.head, head)
    sas = site.established(2)
    assert sas.count("INSTALLED") >= 2, sas
    for text in ("IKEv2", "AES_GCM_16-256", "ECP_384", "172.30.0.2", "172.30.0.3"):
        assert text in sas, sas
    assert site.ping().returncode == 0


def test_legacy_profile_matches_the_seed_router(site: Site, render: Renderer) -> None:
    head = render("head", vpn_profile="legacy")
    site.start(site.cloud, render("cloud", vpn_profile="legacy"))
    site.start(site.head, head)
    sas = site.established(1)
    assert "IKEv1" in sas, sas
    assert "AES_CBC-256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1536" in sas, sas
    # PFS: the CHILD_SA carries its own DH group
    assert "AES_CBC-256/HMAC_SHA1_96/MODP_1536" in sas, sas
    assert site.ping().returncode == 0
    # active/standby: only the first tunnel is up; the second waits (trap)
    assert "bramble-cloud2" not in sas.split("INSTALLED")[0] or sas.count("ESTABLISHED") == 1


def test_mismatched_proposal_fails_with_a_clear_log_line(site: Site, render: Renderer) -> None:
    head = render("head")
    cloud = render("cloud", vpn_ike_proposals=["aes128gcm16-prfsha256-ecp256"])
    site.start(site.cloud, cloud)
    log = site.start(site.head, head)
    deadline = time.monotonic() + 10
    text = ""
    while "NO_PROPOSAL_CHOSEN" not in text and time.monotonic() < deadline:
        time.sleep(0.2)
        text = log.read_text(encoding="utf-8")
    assert "received NO_PROPOSAL_CHOSEN notify error" in text, text[-3000:]
    assert "INSTALLED" not in site.swanctl(site.head, "--list-sas")
    assert site.ping(timeout=2).returncode != 0
