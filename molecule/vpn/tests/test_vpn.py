"""The vpn role in a systemd container: charon runs the tunnels the role wrote.

The container has no network (the cloud endpoints are unreachable): the tunnels are loaded and
tried, never up. tests/integration/test_vpn.py brings them up between namespaces.
"""

from __future__ import annotations

from bramble.converge_check import check_converge

SWANCTL_CONF = "/etc/swanctl/conf.d/bramble.conf"
SUMMARY = "/etc/bramble/vpn-cloud-side.txt"


def test_strongswan_is_running_and_enabled(host):
    service = host.service("strongswan")
    assert service.is_running
    assert service.is_enabled


def test_the_running_charon_holds_both_tunnels(host):
    conns = host.check_output("swanctl --list-conns 2>/dev/null")
    for tunnel, remote in (("cloud1", "192.0.2.1"), ("cloud2", "192.0.2.2")):
        assert f"bramble-{tunnel}: IKEv2" in conns, conns
        assert f"remote: {remote}" in conns, conns
    assert conns.count("local:  192.168.3.0/24") == 2, conns
    assert conns.count("remote: 10.0.0.0/24") == 2, conns


def test_active_standby_the_second_tunnel_waits_as_a_trap_policy(host):
    conns = host.check_output("swanctl --list-conns 2>/dev/null")
    assert "bramble-cloud1: TUNNEL, rekeying every 3600s, dpd action is start" in conns, conns
    assert "bramble-cloud2: TUNNEL, rekeying every 3600s, dpd action is trap" in conns, conns
    policies = host.check_output("swanctl --list-pols 2>/dev/null")
    assert "bramble-cloud2" in policies, policies


def test_the_psks_are_loaded_and_the_file_is_private(host):
    secrets = host.check_output(
        "swanctl --list-conns --raw 2>/dev/null; swanctl --load-creds --noprompt"
    )
    assert "loaded ike secret 'ike-cloud1'" in secrets
    assert "loaded ike secret 'ike-cloud2'" in secrets
    conf = host.file(SWANCTL_CONF)
    assert (conf.user, conf.mode) == ("root", 0o600)


def test_user_space_ipsec_where_the_kernel_has_no_esp(host):
    # This kernel holds no ESP state (TESTLAB.md): the role chose kernel-libipsec, charon loaded it.
    reason = host.file("/etc/strongswan.d/bramble.conf").content_string
    plugins = host.check_output("swanctl --stats 2>/dev/null")
    if "user-space IPsec" in reason:
        assert " kernel-libipsec " in plugins, plugins
        assert host.interface("ipsec0").exists
    else:
        assert " kernel-libipsec " not in plugins, plugins


def test_the_cloud_side_summary_holds_what_the_console_needs_and_no_secret(host):
    summary = host.file(SUMMARY)
    text = summary.content_string
    for line in ("ike_version: IKEv2", "ike_proposals: aes256gcm16-prfsha384-ecp384",
                 "esp_proposals: aes256gcm16-ecp384",
                 "perfect_forward_secrecy: on, DH group ecp384",
                 "customer_subnets: 192.168.3.0/24", "cloud_subnets: 10.0.0.0/24",
                 "cloud_endpoint: 192.0.2.1", "cloud_endpoint: 192.0.2.2",
                 "psk_vault_variable: vault_desk_vpn_psk"):  # fmt: skip
        assert line in text, text
    assert "molecule-only pre-shared key" not in text
    assert summary.mode == 0o644


def test_nothing_leaves_the_container(host):
    # network none: the only links are prepare.yml's veth pairs (both ends in the container) and
    # charon's TUN device; no default route.
    names = host.check_output("ip -o link show | cut -d: -f2 | cut -d@ -f1").split()
    assert set(names) - {"ipsec0"} == {"lo", "eth0", "eth0-peer", "eth1", "eth1-peer"}
    assert "default" not in host.check_output("ip route show")


def test_check_diff_after_converge_predicts_no_change():
    run = check_converge()
    assert (run.returncode, run.changed) == (0, 0), run.output[-3000:]
