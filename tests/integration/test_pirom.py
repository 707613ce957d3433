"""The boot server (dnsmasq with the dhcp_tftp role's config) against simulated and real clients.

Every test runs in network namespaces made by the fixtures (tests/integration/conftest.py):
a bridge, the head with dnsmasq, and one namespace per Pi. Traffic stays inside them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from bramble.labnet import LabNet, list_netns
from bramble.sim import bootserver
from bramble.sim.pirom import ROM_ORDER, BootOutcome

from .conftest import HEAD_IP, UNKNOWN_MAC, Lab, missing_requirements

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

#: Timings for tests: the role delays OFFERs by 1 s, so a DISCOVER round must be longer.
BOOT = ("--dhcp-interval", "2", "--tftp-timeout", "0.5", "--tftp-retries", "3")
#: When nothing will answer: 5 tries, 0.2 s apart.
QUICK = ("--dhcp-interval", "0.2", "--tftp-timeout", "0.3", "--tftp-retries", "2")


def outcome_of(lab: Lab, mac: str, serial: str, *args: str) -> tuple[int, BootOutcome]:
    code, text = lab.pirom(mac, serial, *args)
    log = lab.dnsmasq.log_text()[-3000:]
    assert text, f"no outcome from the simulator (exit {code}); dnsmasq log:\n{log}"
    return code, BootOutcome.from_json(text)


def test_reserved_pi_boots_through_every_step_byte_exact(lab: Lab, tmp_path: Path):
    pi = lab.server.reservations[0]
    code, outcome = outcome_of(lab, pi.mac, pi.serial, *BOOT, "--save-dir", str(tmp_path))
    assert outcome.failure is None
    assert outcome.booted
    assert code == 0
    assert outcome.address == pi.ip
    assert outcome.tftp_server == HEAD_IP
    assert outcome.serial_folder is True
    assert outcome.offers_missed == 0
    assert all(delay >= 0.9 for delay in outcome.offer_delays)  # the role's dhcp-reply-delay
    # ROM, then bootcode.bin's own DHCP round, then the files in the ROM's order
    kinds = [s.kind for s in outcome.steps]
    assert kinds[:4] == ["dhcp", "address", "read", "read"]
    assert kinds[4:6] == ["dhcp", "address"]
    requested = [s.step for s in outcome.steps if s.kind in ("read", "probe")]
    expected = ["bootcode.bin", "bootsig.bin"] + [
        f"{pi.serial}/{step.name}" for step in ROM_ORDER[2:]
    ]
    assert requested == expected
    found = {s.step: s.found for s in outcome.steps if s.kind in ("read", "probe")}
    assert found["bootsig.bin"] is False  # absent, and that is fine
    # byte-exact: what the Pi read is what the boot folder holds
    for step in outcome.steps:
        if step.kind == "read" and step.found:
            name = step.step.rsplit("/", 1)[-1]
            assert step.sha256 == lab.server.digests[name], step.step
            saved = tmp_path / step.step
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == lab.server.digests[name]
    assert outcome.bytes == sum(s.bytes for s in outcome.steps)
    sizes = bootserver.SMALL_SIZES  # config.txt is read four times, the others once
    assert outcome.bytes == sum(sizes.values()) + 3 * sizes["config.txt"]
    assert [s.step for s in outcome.steps].count(f"{pi.serial}/config.txt") == 4
    # the simulator configured the address and never a route beyond the link
    node = lab.pis[pi.mac]
    routes = lab.net.run(node.netns, ["ip", "-4", "route", "show"]).stdout
    assert "default" not in routes
    assert f"dev {node.interface} proto kernel scope link src {pi.ip}" in routes


def test_mac_without_reservation_gets_nothing(lab: Lab):
    code, outcome = outcome_of(lab, UNKNOWN_MAC, "12998877", *QUICK)
    assert code == 1
    assert not outcome.booted
    assert outcome.dhcp_discovers == 5
    assert outcome.offer_delays == []
    assert outcome.failure is not None
    assert "no OFFER at all" in outcome.failure
    assert outcome.address is None
    assert "DHCPDISCOVER(eth0) b8:27:eb:99:88:77 no address available" in lab.dnsmasq.log_text()


def test_wrong_serial_folder_stops_the_pi(lab: Lab):
    pi = lab.server.reservations[1]
    wrong = "ff" + pi.serial[2:]  # the MAC shows only the low 3 bytes: a wrong top byte
    code, outcome = outcome_of(lab, pi.mac, wrong, *BOOT)
    assert code == 1
    assert not outcome.booted
    assert outcome.serial_folder is False
    probe = next(s for s in outcome.steps if s.kind == "probe")
    assert probe.step == f"{wrong}/start.elf"
    assert probe.found is False
    assert outcome.failure is not None
    assert "start.elf not found" in outcome.failure
    assert f"no {wrong}/start.elf either" in outcome.failure


def test_without_the_pxe_service_the_pi_ignores_the_offer(lab_with):
    lab = lab_with(lambda text: re.sub(r"(?m)^pxe-service=.*$", "", text))
    pi = lab.server.reservations[0]
    code, outcome = outcome_of(lab, pi.mac, pi.serial, "--dhcp-tries", "2", *BOOT)
    assert code == 1
    assert not outcome.booted
    assert outcome.offers_refused == 2  # dnsmasq did answer, twice, without option 43
    assert outcome.failure is not None
    assert "Raspberry Pi Boot" in outcome.failure
    assert outcome.address is None


def test_offers_without_reply_delay_are_missed_by_the_rom(lab_with):
    lab = lab_with(lambda text: re.sub(r"(?m)^dhcp-reply-delay=.*$", "", text))
    pi = lab.server.reservations[0]
    code, outcome = outcome_of(lab, pi.mac, pi.serial, "--dhcp-tries", "3", *QUICK)
    assert code == 1
    assert outcome.offers_missed == 3
    assert max(outcome.offer_delays) < 0.5
    assert outcome.failure is not None
    assert "fast-reply" in outcome.failure
    # the same server is fine for a ROM without the quirk: the delay is what the Pi needs
    code, outcome = outcome_of(
        lab, pi.mac, pi.serial, "--offer-quirk-window", "0", "--dhcp-interval", "2"
    )
    assert outcome.booted, outcome.failure


def test_tftp_timeout_stops_the_pi(lab_with):
    lab = lab_with(lambda text: re.sub(r"(?m)^(enable-tftp|tftp-root|tftp-max).*$", "", text))
    pi = lab.server.reservations[0]
    code, outcome = outcome_of(lab, pi.mac, pi.serial, *BOOT)
    assert code == 1
    assert outcome.address == pi.ip  # DHCP worked
    assert outcome.failure is not None
    assert outcome.failure.startswith("TFTP timeout reading bootcode.bin")
    read = outcome.steps[-1]
    assert read.step == "bootcode.bin"
    assert read.retransmits == 3


def test_busybox_udhcpc_with_the_rom_options_gets_option_43_and_the_reservation(
    lab: Lab, tmp_path: Path
):
    pi = lab.server.reservations[1]
    node = lab.pis[pi.mac]
    env_file = tmp_path / "udhcpc.env"
    script = tmp_path / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {env_file}\nexit 0\n')
    script.chmod(0o755)
    result = lab.net.run(
        node.netns,
        [
            "busybox",
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            node.interface,
            "-t",
            "3",
            "-T",
            "3",
            "-s",
            str(script),
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-x",
            "0x5d:0000",
            "-O",
            "43",
            "-O",
            "66",
        ],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert env["ip"] == pi.ip
    assert env["mask"] == "16"
    assert b"Raspberry Pi Boot" in bytes.fromhex(env["opt43"])


def test_curl_tftp_fetches_a_serial_file_byte_exact(lab: Lab, tmp_path: Path):
    pi = lab.server.reservations[1]
    node = lab.pis[pi.mac]
    lab.net.run(node.netns, ["ip", "addr", "replace", f"{pi.ip}/16", "dev", node.interface])
    target = tmp_path / "start.elf"
    result = lab.net.run(
        node.netns,
        [
            "curl",
            "--silent",
            "--show-error",
            "--tftp-no-options",
            "--output",
            str(target),
            f"tftp://{HEAD_IP}/{pi.serial}/start.elf",
        ],
    )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == lab.server.digests["start.elf"]
    missing = lab.net.run(
        node.netns,
        ["curl", "--silent", "--output", "/dev/null", f"tftp://{HEAD_IP}/00000000/start.elf"],
    )
    assert missing.returncode != 0


def test_two_pis_power_on_together(lab: Lab):
    processes = []
    for pi in lab.server.reservations:
        node = lab.pis[pi.mac]
        argv = [sys.executable, "-m", "bramble.sim.pirom", "--interface", node.interface,
                "--mac", pi.mac, "--serial", pi.serial, "--json", *BOOT]  # fmt: skip
        processes.append(lab.net.popen(node.netns, argv, stdout=-1, text=True))
    outcomes = [BootOutcome.from_json(p.communicate(timeout=120)[0].strip()) for p in processes]
    assert [o.booted for o in outcomes] == [True, True]
    assert {o.address for o in outcomes} == {r.ip for r in lab.server.reservations}


def test_the_boot_server_config_comes_from_the_role(lab: Lab):
    if not lab.server.rendered_by_role:
        pytest.skip("roles/dhcp_tftp is not in this tree yet: hand-written config in use")
    text = lab.server.conf.read_text()
    assert "dhcp-range=10.42.0.0,static,255.255.0.0" in text
    for pi in lab.server.reservations:
        assert f"dhcp-host={pi.mac},{pi.name},{pi.ip}" in text


def test_labnet_removes_everything_it_made():
    with LabNet() as net:
        net.add_head("10.99.0.1/24")
        net.add_pis(["b8:27:eb:00:00:01", "b8:27:eb:00:00:02"])
        made = [n for n in list_netns() if n.startswith(net.prefix)]
        assert len(made) == 4  # lab, head, two Pis
        link = net.run(net.pis[0].netns, ["ip", "-j", "link", "show", "eth0"]).stdout
        assert json.loads(link)[0]["address"] == "b8:27:eb:00:00:01"
        ping = net.run(net.pis[0].netns, ["ip", "-4", "route", "show"]).stdout
        assert ping.strip() == ""  # no address, no route
        prefix = net.prefix
    assert not [n for n in list_netns() if n.startswith(prefix)]
