"""A simulated rack: power-controller outlets wired to Pi boot ROM simulators in namespaces.

Each Pi of the rack gets its own network namespace on a ``LabNet`` bridge (its ``eth0`` has
the Pi's MAC) for the rack's whole life, like a cabled Pi. Its boot ROM simulator
(``bramble.sim.pirom``, run as a child with ``cli_argv``) runs only while the Pi has power:
``wire(outlets, feeds)`` subscribes to a simulator's ``Outlets`` (an HTTP relay, a Synaccess
PDU, SNMP PDU outlets or PoE ports, see ``bramble.sim.power``), so switching an outlet on
starts the ROM of every Pi it feeds, switching it off stops them (by PID), and a cycle
restarts them. A ROM that finished (booted, or gave up after its DHCP tries) stays finished
until its power is cycled, as on a real Pi.

Quirks, per Pi, as seen on the reference cluster ("37 of 42 booted"):

- ``dead``: never sends a DHCP packet, whatever is done to it;
- ``hang_on``: the power-ons (counted from 1) on which the Pi hangs before its ROM sends
  anything (silent, as a Pi stuck at power-on); ``RackPi.fails_first`` is ``{1}``: the Pi
  boots only after a power cycle.

Every power-on is counted (``power_ons``) and every finished ROM run's outcome kept
(``outcomes``), so tests can tell which Pis were cycled and which really booted (DHCP, then
TFTP from their serial folder). ``close()`` stops every ROM still running; the ``LabNet``
(which the caller owns) removes the namespaces.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bramble.labnet import LabNet, Node
from bramble.sim.pirom import BootOutcome, cli_argv
from bramble.sim.power import Outlets

#: ROM settings that keep tests short: three DHCP tries 2 s apart (longer than the 1 s
#: dhcp-reply-delay the dhcp_tftp role renders, or every OFFER answers an older DISCOVER),
#: short TFTP retransmission timers.
FAST_ROM_ARGS: tuple[str, ...] = (
    "--dhcp-interval", "2", "--dhcp-tries", "3", "--tftp-timeout", "0.5", "--tftp-retries", "3",
)  # fmt: skip


def pi3bplus_mac(serial: str) -> str:
    """A Pi 3B+ MAC: b8:27:eb + the serial's low three bytes."""
    low = serial[-6:].lower()
    return "b8:27:eb:" + ":".join(low[i : i + 2] for i in range(0, 6, 2))


@dataclass(frozen=True)
class RackPi:
    """One Pi of the rack: name, bank, slot, serial (8 hex digits), MAC and quirks."""

    name: str
    bank: int
    slot: int
    serial: str
    mac: str = ""
    dead: bool = False
    hang_on: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not self.mac:
            object.__setattr__(self, "mac", pi3bplus_mac(self.serial))

    @classmethod
    def fails_first(cls, name: str, bank: int, slot: int, serial: str) -> RackPi:
        """A Pi that hangs on its first power-on and boots after a cycle."""
        return cls(name, bank, slot, serial, hang_on=frozenset({1}))


@dataclass
class _Slot:
    pi: RackPi
    node: Node
    powered: bool = False
    power_ons: int = 0
    process: subprocess.Popen[Any] | None = None
    output: Path | None = None
    outcomes: list[BootOutcome] = field(default_factory=list)


class Rack:
    """Simulated Pis whose boot ROMs follow the outlets that feed them."""

    def __init__(
        self,
        net: LabNet,
        pis: Sequence[RackPi],
        work: Path,
        *,
        rom_args: Sequence[str] = FAST_ROM_ARGS,
    ) -> None:
        names = [pi.name for pi in pis]
        if len(set(names)) != len(names):
            raise ValueError(f"rack Pi names must be unique: {names}")
        self.net = net
        self.work = work
        self.rom_args = tuple(rom_args)
        self._lock = threading.RLock()
        self._slots: dict[str, _Slot] = {}
        work.mkdir(parents=True, exist_ok=True)
        for pi in pis:
            self._slots[pi.name] = _Slot(pi, net.add_pi(pi.mac))
        self._wired: list[tuple[Outlets, dict[int, list[str]]]] = []

    # --- wiring -----------------------------------------------------------------------------

    def wire(self, outlets: Outlets, feeds: Mapping[int, Iterable[str]]) -> None:
        """Let ``outlets`` power the Pis named per outlet (or port); outlets on now power them."""
        table = {int(outlet): list(names) for outlet, names in feeds.items()}
        unknown = sorted({n for names in table.values() for n in names} - set(self._slots))
        if unknown:
            raise KeyError(f"no Pi {unknown} in the rack")

        def follow(outlet: int, on: bool) -> None:
            for name in table.get(outlet, []):
                self.power(name, on)

        outlets.subscribe(follow)
        self._wired.append((outlets, table))
        for outlet, on in outlets.snapshot().items():
            if on:
                follow(outlet, True)

    # --- power ------------------------------------------------------------------------------

    def power(self, name: str, on: bool) -> None:
        """Give or take a Pi's power: start its ROM (unless a quirk holds it), or stop it."""
        with self._lock:
            slot = self._slots[name]
            if on == slot.powered:
                return
            slot.powered = on
            if not on:
                self._stop(slot)
                return
            slot.power_ons += 1
            if slot.pi.dead or slot.power_ons in slot.pi.hang_on:
                return  # silent: no ROM runs until the next power-on
            slot.output = self.work / f"{name}-{slot.power_ons}.json"
            argv = cli_argv(slot.node.interface, slot.pi.mac, slot.pi.serial, *self.rom_args)
            with slot.output.open("wb") as handle:
                slot.process = self.net.popen(
                    slot.node.netns, argv, stdout=handle, stderr=subprocess.DEVNULL
                )

    def cycle(self, name: str) -> None:
        """Off, then on (a reset)."""
        self.power(name, False)
        self.power(name, True)

    def _stop(self, slot: _Slot) -> None:
        if slot.process is not None:
            self.net.stop(slot.process)
            self._collect(slot)

    def _collect(self, slot: _Slot) -> None:
        """Keep the outcome of a ROM run that ended (none when it was cut off mid-boot)."""
        if slot.process is None or slot.process.poll() is None:
            return
        slot.process = None
        text = slot.output.read_text(encoding="utf-8").strip() if slot.output else ""
        if text:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                slot.outcomes.append(BootOutcome.from_json(text.splitlines()[-1]))

    # --- what happened ----------------------------------------------------------------------

    @property
    def pis(self) -> list[RackPi]:
        return [slot.pi for slot in self._slots.values()]

    def powered(self, name: str) -> bool:
        return self._slots[name].powered

    def power_ons(self, name: str) -> int:
        """How many times the Pi was given power."""
        return self._slots[name].power_ons

    def outcomes(self, name: str) -> list[BootOutcome]:
        """Outcomes of the Pi's finished ROM runs, oldest first."""
        with self._lock:
            slot = self._slots[name]
            self._collect(slot)
            return list(slot.outcomes)

    def booted(self, name: str) -> bool:
        """Whether the Pi's latest finished power-on booted (DHCP and TFTP)."""
        outcomes = self.outcomes(name)
        return bool(outcomes) and outcomes[-1].booted and self.powered(name)

    def running(self, name: str) -> bool:
        with self._lock:
            slot = self._slots[name]
            return slot.process is not None and slot.process.poll() is None

    def wait_finished(self, names: Iterable[str], timeout: float) -> list[str]:
        """Wait until the named Pis' ROMs have finished (bounded); those still running."""
        wanted = list(names)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 2):
            left = [n for n in wanted if self.running(n)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)
        return [n for n in wanted if self.running(n)]

    def log(self) -> str:
        """One line per Pi: power-ons, running, outcomes (for test failure messages)."""
        lines = []
        for name, slot in self._slots.items():
            results = ", ".join(
                "booted" if o.booted else f"failed ({o.failure})" for o in self.outcomes(name)
            )
            lines.append(
                f"{name} {slot.pi.mac}: {slot.power_ons} power-on(s), "
                f"{'on' if slot.powered else 'off'}, {'running' if self.running(name) else 'idle'}"
                f"{'; ' + results if results else ''}"
            )
        return "\n".join(lines)

    # --- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every ROM still running (by PID). The LabNet removes the namespaces."""
        with self._lock:
            for slot in self._slots.values():
                slot.powered = False
                self._stop(slot)

    def __enter__(self) -> Rack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
