"""The time role in a systemd container: chrony serves the desk model's cluster network."""

from __future__ import annotations

import json
import textwrap

NTP_QUERY = textwrap.dedent(
    """
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.sendto(b"\\x23" + 47 * b"\\0", ("192.168.3.1", 123))
    data = sock.recv(512)
    print(data[0] & 7, data[1], data[12:16].hex())
    """
)


def test_chrony_is_running_and_enabled(host):
    service = host.service("chrony")
    assert service.is_running
    assert service.is_enabled


def test_chronyd_leaves_the_container_clock_alone(host):
    # no CAP_SYS_TIME in this container: the role chose -x
    assert " -x" in host.check_output("ps -o args= -C chronyd")
    assert host.file("/etc/systemd/system/chrony.service.d/bramble.conf").exists


def test_ntp_listens_on_the_cluster_interface_only(host):
    udp = {line.split()[3] for line in host.check_output("ss -lunH").splitlines()}
    assert "0.0.0.0%eth1:123" in udp
    assert not any(addr.endswith(":123") and "%eth1" not in addr for addr in udp)


def test_configuration_serves_the_cluster_from_the_local_clock(host):
    conf = host.file("/etc/chrony/chrony.conf").content_string.splitlines()
    assert "allow 192.168.3.0/24" in conf
    assert "local stratum 10" in conf
    assert "binddevice eth1" in conf
    assert not any(line.startswith(("server ", "pool ")) for line in conf)
    assert host.run("chronyd -p -f /etc/chrony/chrony.conf").rc == 0


def test_chrony_is_its_own_reference_at_stratum_10(host):
    tracking = host.check_output("chronyc -n tracking")
    assert "Reference ID    : 7F7F0101" in tracking
    assert "Stratum         : 10" in tracking


def test_a_client_on_the_cluster_network_gets_time(host):
    mode, stratum, reference = host.check_output(f"python3 -c '{NTP_QUERY}'").split()
    assert (mode, stratum, reference) == ("4", "10", "7f7f0101")


def test_exports_for_the_pi_image_and_the_firewall(host):
    exports = json.loads(host.file("/root/time-exports.json").content_string)
    assert "server 192.168.3.1 iburst" in exports["client_conf"]
    assert "makestep 1 -1" in exports["client_conf"]
    assert exports["firewall_rules"] == [
        {
            "proto": "udp",
            "port": 123,
            "interface": "eth1",
            "sources": ["192.168.3.0/24"],
            "comment": "NTP from the Pis",
        }
    ]
