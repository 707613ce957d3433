"""playbooks/bank.yml end to end: a simulated rack, a real dnsmasq, waiting and retries.

Bank 1 hangs on PoE ports of the SNMP simulator (one port per slot) wired to a rack of three
simulated Pis: a good one, one that hangs on its first boot with reservations, and one that
is dead (harvested long ago, in the MAC file). Bank 2's relay board cannot be reached.
The playbook harvests bank 1 sequentially (slot by slot, DHCP capture in the head's
namespace), writes the reservations into dnsmasq's hosts folder and reloads it (SIGHUP, no
restart), boots the bank, waits for DHCP, re-cycles the stragglers slot by slot within the
retry bound, and prints the summary; bank 2 fails naming its controller. Check mode switches
and writes nothing; a second run changes no MAC and no reservation.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.labnet import LabNet
from bramble.sim import bootserver
from bramble.sim.bootserver import Dnsmasq
from bramble.sim.power import Outlets
from bramble.sim.rack import Rack, RackPi
from bramble.sim.snmpagent import SnmpSim
from cluster_helpers import BIN, ROOT, mac_of, serial_of
from integration.conftest import HEAD_IP, missing_requirements
from test_bank_playbook import named, run_bank

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMUNITY = "poe-wr1te"  # the simulator's write community (a test secret)
GOOD, LATE, DEAD = "pi-01-01", "pi-01-02", "pi-01-03"


def cluster_yml(snmp_port: int) -> dict[str, Any]:
    return {
        "plugin": "bramble",
        "cluster": {"name": "racklab", "domain": "racklab.internal"},
        "network": {"cidr": "10.42.0.0/16", "bank_stride": 256},
        "head": {"name": "racklab-head", "address": HEAD_IP, "interfaces": {"cluster": "eth0"}},
        "banks": {"count": 2, "size": 3, "model": "pi3bplus"},
        "controllers": [
            {
                "name": "poe1",
                "driver": "poe_snmp",
                "address": "127.0.0.1",
                "port": snmp_port,
                "credentials": "vault_poe1_community",
            },
            {
                "name": "relay1",
                "driver": "http_relay",
                "address": "127.0.0.3",
                "port": 9,
                "credentials": "vault_relay1_token",
            },
        ],
        "power": {
            "budget": 6,
            "groups": [
                {"id": 1, "controller": "poe1", "outlet": 1, "banks": [1]},
                {"id": 2, "controller": "relay1", "outlet": 1, "banks": [2]},
            ],
        },
        "switches": [
            {"name": "sw1", "address": "127.0.0.2", "banks": [{"bank": 1, "first_port": 1}]}
        ],
    }


@dataclass
class Site:
    inventory: Path
    work: Path
    rack: Rack
    ports: Outlets
    dnsmasq: Dnsmasq
    extra: dict[str, Any]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    ports = Outlets(8)
    with SnmpSim(write_community=COMMUNITY) as snmp:
        snmp.add_poe_ports(ports)
        inventory = tmp_path / "inventory"
        inventory.mkdir()
        (inventory / "cluster.yml").write_text("---\n" + yaml.safe_dump(cluster_yml(snmp.port)))
        dead = f"  - {{bank: 1, slot: 3, mac: '{mac_of(1, 3)}', serial: '{serial_of(1, 3)}'}}\n"
        (inventory / "macs.yml").write_text(f"---\nmacs:\n{dead}")
        work = tmp_path / "work"
        boot = work / "boot"
        bootserver.make_boot_files(boot, bootserver.SMALL_SIZES)
        (boot / "bootcode.bin").write_bytes(b"bootcode" * 1000)
        hostsdir = work / "hosts.d"
        hostsdir.mkdir()
        role_vars = {
            "dhcp_tftp_boot_dir": str(boot),
            "dhcp_tftp_dns": False,
            "dhcp_tftp_extra_options": [f"dhcp-hostsdir={hostsdir}"],
        }
        conf, root = bootserver.role_conf(
            ROOT, work, interface="eth0", inventory=inventory, extra_vars=role_vars
        )
        pis = [
            RackPi(GOOD, 1, 1, serial_of(1, 1)),
            RackPi(LATE, 1, 2, serial_of(1, 2), hang_on=frozenset({2})),
            RackPi(DEAD, 1, 3, serial_of(1, 3), dead=True),
        ]
        with LabNet() as net:
            head = net.add_head(f"{HEAD_IP}/16")
            dnsmasq = Dnsmasq(net, head, conf, work / "dnsmasq.log", log_dhcp=True)
            with dnsmasq, Rack(net, pis, work / "rack") as rack:
                rack.wire(ports, {1: [GOOD], 2: [LATE], 3: [DEAD]})
                assert dnsmasq.process is not None
                extra = role_vars | {
                    "vault_poe1_community": COMMUNITY,
                    "vault_relay1_token": "relay-t0ken",
                    "ansible_python_interpreter": str(BIN / "python"),
                    "bank_head_host": "localhost",
                    "bank_power_host": "localhost",
                    "bank_harvest_sources": ["dhcp"],
                    "bank_harvest_sequential": [1],
                    "bank_harvest_sequential_timeout": 4,
                    "bank_harvest_capture_interface": head.interface,
                    "bank_harvest_capture_netns": head.netns,
                    "bank_dhcp_log": str(dnsmasq.log),
                    "bank_dhcp_leases": str(work / "leases"),
                    "bank_dhcp_hostsdir": str(hostsdir),
                    "bank_dhcp_reload_argv": ["kill", f"-{signal.SIGHUP.value}",
                                              str(dnsmasq.process.pid)],
                    "bank_wait_for": "dhcp_seen",
                    "bank_wait_timeout": 5,
                    "bank_retries": 2,
                    "bank_settle": 0,
                    "bank_cycle_delay": 0.3,
                    "dhcp_tftp_manage_service": False,
                    "dhcp_tftp_conf_file": str(conf),
                    "dhcp_tftp_tftp_root": str(root),
                    "dhcp_tftp_lease_file": str(work / "leases"),
                    "dhcp_tftp_interface": "eth0",
                }  # fmt: skip
                yield Site(inventory, work, rack, ports, dnsmasq, extra)


def play(site: Site, limit: str, *flags: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_bank(site.inventory, site.extra, "--limit", limit, *flags)


def results(tasks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The non-skipped results of the named task."""
    return [
        dict(res)
        for task in tasks
        if named(task, name)
        for res in task["hosts"].values()
        if not res.get("skipped")
    ]


def test_bank_boots_with_waiting_retries_and_a_failed_controller(site: Site) -> None:
    mac_file = site.inventory / "macs.yml"
    before = mac_file.read_text()

    code, tasks, failures = play(site, "bank01,bank02", "--check")
    assert "controller relay1" in failures, failures
    assert site.ports.requests == []  # check mode switched nothing
    assert mac_file.read_text() == before
    assert list((site.work / "hosts.d").iterdir()) == []

    code, tasks, failures = play(site, "bank01,bank02")
    log = f"{failures}\n{site.rack.log()}"
    # bank 2 fails, naming its controller; bank 1 is still done
    assert code != 0
    assert "Power the bank on" in failures, log
    assert "controller relay1: unreachable" in failures, log
    assert "bank(s) 2" in failures, log
    harvest = results(tasks, "Harvest the bank's MACs")
    assert len(harvest) == 1, log
    assert not harvest[0].get("failed"), log
    assert [(e["slot"], e["mac"], e["serial"]) for e in harvest[0]["new"]] == [
        (1, mac_of(1, 1), serial_of(1, 1)),
        (2, mac_of(1, 2), serial_of(1, 2)),
    ], log
    assert [m["slot"] for m in harvest[0]["missing"]] == [3]

    boot = results(tasks, "Boot the bank with its reservations, re-cycling stragglers")[0]
    outcome = {p["name"]: (p["outcome"], p["cycles"]) for p in boot["pis"]}
    assert outcome == {GOOD: ("booted", 0), LATE: ("booted", 1), DEAD: ("missing", 2)}, log
    assert (boot["booted"], boot["expected"], boot["cycles"]) == (2, 3, 2)
    # stragglers were cycled per slot (PoE port), the good Pi only by the boot itself
    ons = [site.rack.power_ons(n) for n in (GOOD, LATE, DEAD)]
    assert ons == [2, 3, 4], log
    report = results(tasks, "Report the bank")[0]["msg"]
    assert report.startswith("bank01: 2/3 booted, 2 cycle(s), missing slots: 3;"), report

    # the running dnsmasq took the reservations without a restart, and the Pis really booted
    assert site.dnsmasq.process is not None
    assert site.dnsmasq.process.poll() is None
    assert f"read {site.work / 'hosts.d' / 'bank01'}" in site.dnsmasq.log_text()
    assert site.rack.wait_finished([GOOD, LATE], 30) == [], log
    assert site.rack.booted(GOOD), log
    assert site.rack.booted(LATE), log
    assert site.rack.outcomes(GOOD)[-1].address == "10.42.1.1"

    text = mac_file.read_text()
    hosts = (site.work / "hosts.d" / "bank01").read_text()
    assert f"{mac_of(1, 2)},pi-01-02,10.42.1.2" in hosts

    # harvest and reservations again (no boot: its waits were shown above)
    code, tasks, failures = play(site, "bank01", "--tags", "bank_harvest,bank_reserve")
    assert code == 0, f"{failures}\n{site.rack.log()}"
    assert results(tasks, "Harvest the bank's MACs")[0]["changed"] is False
    assert (
        results(tasks, "Write the bank's reservations into dnsmasq's hosts folder")[0]["changed"]
        is False
    )
    assert mac_file.read_text() == text
    assert (site.work / "hosts.d" / "bank01").read_text() == hosts
