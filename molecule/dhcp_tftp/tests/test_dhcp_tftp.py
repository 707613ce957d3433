"""The dhcp_tftp role in a systemd container: dnsmasq serves the desk model's Pis."""

from __future__ import annotations

import hashlib
import re
import shlex

import pytest

CONF = "/etc/dnsmasq.d/bramble.conf"
TFTP = "/srv/bramble/tftp"
BOOT = "/srv/bramble/boot"
ROM_VENDOR = "PXEClient:Arch:00000:UNDI:002001"
PI_01_01 = ("b8:27:eb:3c:f5:58", "192.168.3.17")
OVERRIDE = "console=serial0,115200 root=/dev/nfs nfsroot=192.168.3.1:/srv/bramble/root ro\n"


def _listening(host, proto: str) -> set[str]:
    out = host.check_output(f"ss -l{proto[0]}nH")
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_dnsmasq_is_running_and_enabled(host):
    service = host.service("dnsmasq")
    assert service.is_running
    assert service.is_enabled


def test_dhcp_tftp_and_dns_listen_on_the_cluster_side(host):
    udp = _listening(host, "udp")
    assert "0.0.0.0%eth1:67" in udp
    assert "192.168.3.1:69" in udp
    assert "192.168.3.1:53" in udp
    assert not any(addr.startswith("127.0.0.1:") for addr in udp if addr.endswith((":53", ":69")))


def test_the_whole_configuration_passes_dnsmasq_test(host):
    cmd = host.run(
        "dnsmasq --test --conf-file=/etc/dnsmasq.conf "
        "--conf-dir=/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new"
    )
    assert cmd.rc == 0, cmd.stderr


def test_one_reservation_per_harvested_pi(host):
    lines = host.file(CONF).content_string.splitlines()
    reservations = [line for line in lines if line.startswith("dhcp-host=")]
    assert reservations == [
        "dhcp-host=b8:27:eb:3c:f5:58,pi-01-01,192.168.3.17",
        "dhcp-host=b8:27:eb:b3:46:90,pi-01-02,192.168.3.18",
        "dhcp-host=b8:27:eb:12:34:56,pi-01-03,192.168.3.19",
    ]
    assert [line for line in lines if line.startswith("dhcp-range=")] == [
        "dhcp-range=192.168.3.0,static,255.255.255.0,12h"
    ]
    assert "tftp-max=50" in lines
    assert 'pxe-service=tag:pxe,0,"Raspberry Pi Boot"' in lines


def test_tftp_tree_links_each_serial_folder_to_the_boot_files(host):
    root_link = host.file(f"{TFTP}/bootcode.bin")
    assert root_link.is_symlink
    assert root_link.linked_to == f"{BOOT}/bootcode.bin"
    for serial in ("993cf558", "4db34690"):
        for name in ("start.elf", "fixup.dat", "kernel8.img", "config.txt", "overlays"):
            link = host.file(f"{TFTP}/{serial}/{name}")
            assert link.is_symlink, f"{serial}/{name}"
            assert link.linked_to == f"{BOOT}/{name}"
    assert host.file(f"{TFTP}/993cf558/cmdline.txt").is_symlink
    own = host.file(f"{TFTP}/4db34690/cmdline.txt")
    assert own.is_file
    assert not own.is_symlink
    assert own.sha256sum == hashlib.sha256(OVERRIDE.encode()).hexdigest()


def test_stale_folders_are_removed_and_foreign_ones_kept(host):
    assert not host.file(f"{TFTP}/deadbeef").exists
    assert host.file(f"{TFTP}/cafebabe/start.elf").exists
    entries = set(host.check_output(f"ls {TFTP}").split())
    assert entries == {"bootcode.bin", "993cf558", "4db34690", "cafebabe"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("bootcode.bin", "stand-in bootcode.bin\n"),
        ("993cf558/start.elf", "stand-in start.elf\n"),
        ("4db34690/cmdline.txt", OVERRIDE),
    ],
)
def test_files_come_over_tftp(host, path, expected):
    assert host.check_output(f"curl -sS --max-time 10 tftp://192.168.3.1/{path}") + "\n" == expected


def _udhcpc(host, mac: str) -> dict[str, str] | None:
    """The ROM's DISCOVER (option 60, 93) from eth1's peer with ``mac``; the lease's variables."""
    host.run_expect([0], f"ip link set eth1-peer address {mac}")
    host.run_expect(
        [0],
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && env > /root/udhcpc.env\\nexit 0\\n' "
        "> /root/udhcpc.sh && chmod +x /root/udhcpc.sh && rm -f /root/udhcpc.env",
    )
    cmd = host.run(
        "timeout 20 busybox udhcpc -f -q -n -t 3 -T 2 -i eth1-peer -s /root/udhcpc.sh "
        f"-V {shlex.quote(ROM_VENDOR)} -x 0x5d:0000 -O 43 -O 66"
    )
    if cmd.rc != 0:
        return None
    env = host.file("/root/udhcpc.env").content_string
    return dict(line.split("=", 1) for line in env.splitlines() if "=" in line)


def test_a_reserved_pi_gets_its_address_and_the_pxe_answer(host):
    lease = _udhcpc(host, PI_01_01[0])
    assert lease is not None, "no lease for pi-01-01"
    assert lease["ip"] == PI_01_01[1]
    assert lease["hostname"] == "pi-01-01"
    assert "Raspberry Pi Boot" in bytes.fromhex(lease["opt43"]).decode("latin-1")


def test_an_unknown_mac_gets_nothing(host):
    assert _udhcpc(host, "b8:27:eb:77:77:77") is None


def test_dns_answers_every_pi_name(host):
    out = host.check_output("busybox nslookup pi-01-04.desk.internal 192.168.3.1")
    assert re.search(r"Address:\s*192\.168\.3\.20\b", out), out


def test_open_files_fit_tftp_max(host):
    assert host.check_output("systemctl show dnsmasq -p LimitNOFILE") == "LimitNOFILE=1024"


def test_sysctls_are_left_to_the_container_host(host):
    # /proc/sys is read-only in the container: the role reports instead of failing.
    assert not host.file("/etc/sysctl.d/60-bramble-neigh.conf").exists
