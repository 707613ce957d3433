"""The simulated rack: outlets start and stop Pi boot ROM simulators against a real dnsmasq.

Outlet 1 of a relay board feeds a normal Pi and one that hangs on its first power-on; outlet
2 feeds a dead Pi. Powering, cycling and switching off act on the ROM processes; the normal
Pi really boots (DHCP from dnsmasq, TFTP from its serial folder), the other boots only after
the cycle, the dead one never sends anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bramble.labnet import LabNet
from bramble.sim.bootserver import Dnsmasq
from bramble.sim.power import Outlets
from bramble.sim.rack import Rack, RackPi
from integration.conftest import HEAD_IP, MODEL_PIS, BootServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Setup:
    rack: Rack
    outlets: Outlets
    dnsmasq: Dnsmasq


@pytest.fixture
def setup(boot_server: BootServer, tmp_path: Path) -> Iterator[Setup]:
    normal, straggler = MODEL_PIS  # both reserved in the boot server's config
    pis = [
        RackPi("pi-a", normal.bank, normal.slot, normal.serial),
        RackPi.fails_first("pi-b", straggler.bank, straggler.slot, straggler.serial),
        RackPi("pi-dead", 1, 3, "00998877", dead=True),
    ]
    with LabNet() as net:
        head = net.add_head(f"{HEAD_IP}/16")
        dnsmasq = Dnsmasq(net, head, boot_server.conf, tmp_path / "dnsmasq.log", log_dhcp=True)
        with dnsmasq, Rack(net, pis, tmp_path / "rack") as rack:
            outlets = Outlets(2)
            rack.wire(outlets, {1: ["pi-a", "pi-b"], 2: ["pi-dead"]})
            yield Setup(rack, outlets, dnsmasq)


def test_outlets_start_stop_and_cycle_the_pis(setup: Setup) -> None:
    rack, outlets = setup.rack, setup.outlets
    outlets.set(1, True)
    outlets.set(2, True)
    assert rack.running("pi-a")
    assert not rack.running("pi-b")  # hangs on its first power-on
    assert not rack.running("pi-dead")
    assert rack.wait_finished(["pi-a"], 30) == [], rack.log()
    assert rack.booted("pi-a"), rack.log()
    assert rack.outcomes("pi-a")[-1].serial_folder is True
    assert not rack.booted("pi-b")

    outlets.set(1, False)
    assert not rack.powered("pi-a")
    outlets.set(1, True)  # the cycle: both restart, the straggler boots now
    assert rack.wait_finished(["pi-a", "pi-b"], 30) == [], rack.log()
    assert rack.booted("pi-a")
    assert rack.booted("pi-b"), rack.log()
    assert (rack.power_ons("pi-a"), rack.power_ons("pi-b"), rack.power_ons("pi-dead")) == (2, 2, 1)
    assert rack.outcomes("pi-dead") == []
    assert "b8:27:eb:99:88:77" not in setup.dnsmasq.log_text()  # the dead Pi never spoke


def test_power_off_stops_a_rom_by_pid(setup: Setup) -> None:
    rack, outlets = setup.rack, setup.outlets
    outlets.set(1, True)
    assert rack.running("pi-a")
    outlets.set(1, False)  # cut off mid-boot: stopped, no outcome
    assert not rack.running("pi-a")
    assert rack.outcomes("pi-a") == []
    outlets.set(2, True)
    rack.close()
    assert not any(rack.running(p.name) for p in rack.pis)
