"""The nfs_root role in a systemd container: NFS-Ganesha exports the desk model's Pi root."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONF = "/etc/ganesha/ganesha.conf"
ROOT = "/srv/bramble/root"
SHARED = "/srv/bramble/shared"
HEAD = "192.168.3.1"  # the desk head, on eth1 (inside the cluster network 192.168.3.0/24)
VERSIONS = [pytest.param(3, id="nfsv3"), pytest.param(4, id="nfsv4")]
ROLE_VARS = Path(__file__).resolve().parents[3] / "roles" / "nfs_root" / "vars" / "main.yml"


def _url(server: str, path: str, version: int) -> str:
    return f"'nfs://{server}{path}?version={version}'"


def test_ganesha_and_rpcbind_run_and_start_at_boot(host):
    ganesha = host.service("nfs-ganesha")
    assert ganesha.is_running
    assert ganesha.is_enabled
    assert host.service("rpcbind.socket").is_enabled
    assert not host.service("nfs-server").is_running


def test_nfs_mount_and_rpcbind_listen(host):
    tcp = {line.split()[3] for line in host.check_output("ss -ltnH").splitlines() if line}
    assert {"*:2049", "*:20048"} <= tcp
    assert any(addr.endswith(":111") for addr in tcp)
    services = host.check_output("rpcinfo -p 127.0.0.1")
    for program, version, proto, port in [
        ("100003", "3", "tcp", "2049"),
        ("100003", "4", "tcp", "2049"),
        ("100005", "3", "tcp", "20048"),
        ("100005", "3", "udp", "20048"),
    ]:
        assert any(
            line.split()[:4] == [program, version, proto, port] for line in services.splitlines()
        )


def test_the_rendered_export_is_read_only_for_the_cluster_network(host):
    config = host.file(CONF).content_string
    root_export = config.split("EXPORT {")[1]
    assert f'Path = "{ROOT}";' in root_export
    assert "Clients = 192.168.3.0/24;" in root_export
    assert "Access_Type = RO;" in root_export
    assert "Access_Type = RW;" not in root_export
    assert "RPC_Ioq_ThrdMax = 8;" in config
    shared_export = config.split("EXPORT {")[2]
    assert f'Path = "{SHARED}";' in shared_export
    assert "Access_Type = RW;" in shared_export
    assert host.file(SHARED).mode == 0o1777


@pytest.mark.parametrize("version", VERSIONS)
def test_the_head_address_reads_the_root(host, version):
    out = host.run(f"nfs-cat {_url(HEAD, ROOT + '/etc/hostname', version)}")
    assert out.rc == 0, out.stderr
    # (testinfra's ansible backend strips the trailing newline; byte-exact reads are checked
    # in tests/integration/test_nfs_root.py)
    assert out.stdout.rstrip("\n") == "bramble-pi"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_write_to_the_root_is_refused(host, version):
    out = host.run(f"nfs-cp /etc/hostname {_url(HEAD, ROOT + '/etc/new', version)}")
    assert out.rc != 0
    assert "ROFS" in out.stderr
    assert not host.file(f"{ROOT}/etc/new").exists


def test_loopback_is_outside_the_cluster_network_and_refused(host):
    out = host.run(f"nfs-cat {_url('127.0.0.1', ROOT + '/etc/hostname', 3)}")
    assert out.rc != 0
    assert "MNT3ERR_ACCES" in out.stderr


def test_a_restart_serves_again(host):
    # the handler's path: a restart (Graceless) serves v4 at once, without a 90 s grace period
    host.check_output("systemctl restart nfs-ganesha")
    out = host.run(
        "for i in $(seq 1 50); do "
        f"nfs-cat {_url(HEAD, ROOT + '/etc/hostname', 4)} && exit 0; sleep 0.2; done; exit 1"
    )
    assert out.rc == 0, out.stderr


def test_the_config_check_rejects_a_bad_file_and_leaves_the_server_alone(host):
    check = yaml.safe_load(ROLE_VARS.read_text(encoding="utf-8"))["_nfs_root_ganesha_check"]
    pid = host.check_output("systemctl show --property MainPID --value nfs-ganesha")
    bad = "/tmp/ganesha-bad.conf"  # noqa: S108 - inside the throwaway test container
    host.check_output(f"sed 's/Access_Type = RO;/Access_Type = RX;/' {CONF} > {bad}")
    rejected = host.run(check % bad)
    assert rejected.rc != 0
    assert "Unknown token (RX)" in rejected.stderr
    accepted = host.run(check % CONF)
    assert accepted.rc == 0, accepted.stderr
    # the live server kept running, with its pid file and exports
    assert host.check_output("systemctl show --property MainPID --value nfs-ganesha") == pid
    out = host.run(f"nfs-cat {_url(HEAD, ROOT + '/etc/hostname', 3)}")
    assert out.rc == 0, out.stderr
