# Copyright: bramble contributors
# Apache License 2.0 (see LICENSE)
"""bank_power's logic: what to switch (plan), the power budget, the order, wait and retry.

Pure functions compute the plan from the cluster model (``bramble_model``); ``execute`` runs
it through the drivers of ``bramble_power_drivers``. The module (library/bank_power.py) only
maps Ansible parameters to ``Request`` and the result back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.bramble_power_drivers import (
    Driver,
    PiRef,
    PowerError,
    Unit,
    make_driver,
)
from ansible.module_utils.bramble_power_wait import (
    AgentRegistered,
    DhcpSeen,
    WaitError,
    wait_until,
)

STATES = ("on", "off", "cycle")
WAIT_KINDS = ("none", "dhcp_seen", "agent_registered")


class PlanError(Exception):
    """The request cannot be carried out as asked; nothing was switched."""


@dataclass
class Request:
    model: dict[str, Any]
    state: str
    banks: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    pis: list[dict[str, Any]] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)
    switches: bool = True
    settle: float = 5.0
    cycle_delay: float = 3.0
    budget_count: str = "cluster"
    wait_for: str = "none"
    expected: int | None = None
    timeout: float = 300.0
    poll: float = 2.0
    retries: int = 0
    dhcp_log: str | None = None
    dhcp_leases: str | None = None
    server_url: str | None = None
    server_token: str | None = None
    controller_timeout: float = 5.0


# --- the plan (pure) ----------------------------------------------------------------------


def _width(count: int) -> int:
    return max(2, len(str(count)))


def pi_refs(model: dict[str, Any], pis: list[dict[str, Any]]) -> dict[tuple[int, int], PiRef]:
    """Every Pi of the model by (bank, slot), with name and MAC from ``bramble_pis`` when given."""
    banks = model["banks"]
    given = {(int(p["bank"]), int(p["slot"])): p for p in pis}
    refs = {}
    for bank in range(1, int(banks["count"]) + 1):
        for slot in range(1, int(banks["size"]) + 1):
            pi = given.get((bank, slot), {})
            name = pi.get("name") or (
                f"pi-{bank:0{_width(banks['count'])}d}-{slot:0{_width(banks['size'])}d}"
            )
            mac = pi.get("mac")
            refs[(bank, slot)] = PiRef(str(name), bank, slot, str(mac).lower() if mac else None)
    return refs


def select_groups(
    model: dict[str, Any], banks: list[int], groups: list[int]
) -> list[dict[str, Any]]:
    """The power groups holding ``banks`` or named in ``groups``, in the model's power-on order."""
    if not banks and not groups:
        raise PlanError("name what to power: banks (e.g. [7]) or groups (power group ids)")
    known = {int(g["id"]) for g in model["power"]["groups"]}
    unknown = sorted(set(groups) - known)
    if unknown:
        raise PlanError(f"no power group {unknown} in the model (groups: {sorted(known)})")
    by_bank = {int(b): g for g in model["power"]["groups"] for b in g["banks"]}
    missing = sorted(set(banks) - set(by_bank))
    if missing:
        raise PlanError(
            f"bank(s) {missing} are in no power group "
            f"(the model has {model['banks']['count']} banks)"
        )
    wanted = set(groups) | {int(by_bank[b]["id"]) for b in banks}
    return [g for g in model["power"]["groups"] if int(g["id"]) in wanted]


def _controller(model: dict[str, Any], name: str) -> dict[str, Any]:
    for controller in model["controllers"]:
        if controller["name"] == name:
            return dict(controller)
    raise PlanError(f"controller {name!r} is not in the model's controllers")


def switch_port(model: dict[str, Any], bank: int, slot: int) -> tuple[str, int] | None:
    """(switch name, port) of a Pi from ``switches[].banks`` (first_port or ports)."""
    for switch in model.get("switches") or []:
        for entry in switch.get("banks") or []:
            if int(entry["bank"]) != bank:
                continue
            if entry.get("ports"):
                ports = entry["ports"]
                return (switch["name"], int(ports[slot - 1])) if slot <= len(ports) else None
            return switch["name"], int(entry["first_port"]) + slot - 1
    return None


def group_units(
    model: dict[str, Any],
    group: dict[str, Any],
    refs: dict[tuple[int, int], PiRef],
    per_slot: bool,
    slots: list[int] | None = None,
) -> list[Unit]:
    """What to switch for one group: its outlet, or one port per Pi (``per_slot`` drivers)."""
    controller = _controller(model, group["controller"])
    banks = [int(b) for b in group["banks"]]
    members = [ref for (bank, _), ref in sorted(refs.items()) if bank in banks]
    if slots:
        members = [ref for ref in members if ref.slot in slots]
    if not per_slot:
        if slots:
            raise PlanError(
                f"controller {controller['name']} ({controller['driver']}) switches power group "
                f"{group['id']} as a whole: slots cannot be targeted (drop slots, or use a "
                "poe_snmp, uhubctl or per-slot command controller)"
            )
        key = f"{controller['name']}:{group['outlet']}"
        return [Unit(controller["name"], group["outlet"], key, int(group["id"]), pis=members)]
    options = controller.get("options") or {}
    units = []
    for ref in members:
        location = None
        if controller["driver"] == "uhubctl":
            outlet = group["outlet"]
            location = str(
                options.get(f"location_bank{ref.bank}")
                or (outlet if isinstance(outlet, str) and outlet != "all" else None)
                or options.get("location", "")
            )
            if not location:
                raise PlanError(
                    f"controller {controller['name']}: no hub location for bank {ref.bank} "
                    f"(set options.location, options.location_bank{ref.bank} or the group's outlet)"
                )
            port = int(options.get("first_port", 1)) + ref.slot - 1
        elif controller["driver"] in ("poe_snmp", "poe"):
            found = switch_port(model, ref.bank, ref.slot)
            if found is None:
                raise PlanError(
                    f"controller {controller['name']} (PoE): bank {ref.bank} is on no switch "
                    "port in switches[].banks, so slot -> port is unknown"
                )
            port = found[1]
        else:
            port = ref.slot
        key = f"{controller['name']}:{location + ':' if location else ''}{port}"
        units.append(
            Unit(controller["name"], port, key, int(group["id"]), location=location, pis=[ref])
        )
    return units


def switch_units(model: dict[str, Any], banks: set[int]) -> list[Unit]:
    """The outlets that power the network switches these banks hang on (powered first)."""
    units = []
    for switch in model.get("switches") or []:
        power = switch.get("power")
        served = {int(entry["bank"]) for entry in switch.get("banks") or []}
        if power and served & banks:
            key = f"{power['controller']}:{power['outlet']}"
            units.append(Unit(power["controller"], power["outlet"], key, switch=switch["name"]))
    return units


def pis_on(units: list[Unit], states: dict[str, bool | None]) -> int:
    """Pis behind units that are on; a state that could not be read counts as on (safe side)."""
    return sum(len(u.pis) for u in units if states.get(u.key) is not False)


def check_budget(
    budget: int, target: list[Unit], others: list[Unit], states: dict[str, bool | None]
) -> int:
    """Pis on at once after powering ``target`` on; PlanError above ``budget``."""
    total = sum(len(u.pis) for u in target) + pis_on(others, states)
    if total > budget:
        already = pis_on(others, states)
        unknown = sorted({u.controller for u in others if states.get(u.key) is None})
        raise PlanError(
            f"refused: this would put {total} Pis on at once, over the power budget of {budget} "
            f"({sum(len(u.pis) for u in target)} requested + {already} already on"
            + (f", counting unreadable controllers {unknown} as on" if unknown else "")
            + "); nothing was switched. Power other groups off first, or power fewer banks."
        )
    return total


# --- running it ---------------------------------------------------------------------------


@dataclass
class Outcome:
    changed: bool = False
    actions: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # controller -> message
    failed_banks: list[int] = field(default_factory=list)
    pis: list[dict[str, Any]] = field(default_factory=list)
    cycles: int = 0
    booted: int | None = None
    expected: int | None = None
    pis_on: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "actions": self.actions,
            "failed_controllers": self.failed,
            "failed_banks": self.failed_banks,
            "pis": self.pis,
            "cycles": self.cycles,
            "booted": self.booted,
            "expected": self.expected,
            "pis_on": self.pis_on,
        }


class Runner:
    """Carries out one Request; ``sleep`` and ``clock`` are injectable for tests."""

    def __init__(
        self,
        request: Request,
        check_mode: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.req = request
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock
        self.out = Outcome()
        self._drivers: dict[str, Driver] = {}
        #: units already in the requested state (not switched, not waited for)
        self.already: set[str] = set()

    def driver(self, name: str) -> Driver:
        if name not in self._drivers:
            controller = _controller(self.req.model, name)
            secret = None
            if controller.get("credentials"):
                secret = self.req.credentials.get(controller["credentials"])
                if not secret:
                    raise PlanError(
                        f"controller {name} needs the secret {controller['credentials']}: define "
                        "it (Ansible Vault) and pass it in credentials"
                    )
            self._drivers[name] = make_driver(controller, secret, self.req.controller_timeout)
        return self._drivers[name]

    def read(self, units: list[Unit]) -> dict[str, bool | None]:
        """States by unit key; None where the controller failed (recorded in ``failed``)."""
        states: dict[str, bool | None] = {}
        for name in dict.fromkeys(u.controller for u in units):
            mine = [u for u in units if u.controller == name]
            try:
                states.update(self.driver(name).read(mine))
            except PowerError as exc:
                self.out.failed.setdefault(name, str(exc))
                states.update({u.key: None for u in mine})
        return states

    def _switch(self, unit: Unit, on: bool, reason: str) -> bool:
        """Switch one unit (not in check mode); False when its controller failed."""
        if unit.controller in self.out.failed:
            return False
        self.out.actions.append(
            {
                "controller": unit.controller,
                "outlet": unit.outlet
                if unit.location is None
                else f"{unit.location}:{unit.outlet}",
                "group": unit.group,
                "switch": unit.switch,
                "action": "on" if on else "off",
                "pis": [p.name for p in unit.pis],
                "reason": reason,
            }
        )
        self.out.changed = True
        if self.check_mode:
            return True
        try:
            self.driver(unit.controller).switch(unit, on)
        except PowerError as exc:
            self.out.failed[unit.controller] = str(exc)
            return False
        return True

    def cycle(self, units: list[Unit], reason: str) -> None:
        live = [u for u in units if self._switch(u, False, reason)]
        if live and not self.check_mode:
            self.sleep(self.req.cycle_delay)
        for unit in live:
            self._switch(unit, True, reason)

    def plan(self) -> tuple[list[list[Unit]], list[Unit], list[Unit]]:
        """(units per target group in order, switch units, every other group's units)."""
        req = self.req
        if req.state not in STATES:
            raise PlanError(f"state must be one of {', '.join(STATES)}")
        refs = pi_refs(req.model, req.pis)
        groups = select_groups(req.model, req.banks, req.groups)
        if req.banks and req.slots:
            # slots with banks: only those banks' slots
            for ref in list(refs):
                if ref[0] not in req.banks:
                    del refs[ref]
        per_group = []
        for group in groups:
            driver = self.driver(group["controller"])
            per_group.append(
                group_units(req.model, group, refs, driver.per_slot, req.slots or None)
            )
        target_keys = {u.key for units in per_group for u in units}
        all_refs = pi_refs(req.model, req.pis)
        others = []
        for group in req.model["power"]["groups"]:
            try:
                per_slot = self.driver(group["controller"]).per_slot
            except PlanError:
                per_slot = False  # its secret is missing: counted as on (unreadable)
            others += [
                u
                for u in group_units(req.model, group, all_refs, per_slot)
                if u.key not in target_keys
            ]
        banks = {int(b) for g in groups for b in g["banks"]}
        switches = switch_units(req.model, banks) if req.switches and req.state != "off" else []
        return per_group, switches, others

    def _budget(self, targets: list[Unit], others: list[Unit]) -> None:
        """Refuse (PlanError) before anything is switched when the budget would be exceeded."""
        other_states: dict[str, bool | None] = {u.key: False for u in others}
        if self.req.budget_count == "cluster" and others:
            failed_before = dict(self.out.failed)
            other_states = self.read(others)
            for name in set(self.out.failed) - set(failed_before):
                self.out.warnings.append(
                    f"controller {name} could not be read for the budget; its Pis count as on"
                )
                del self.out.failed[name]
        budget = int(self.req.model["power"]["budget"])
        self.out.pis_on = check_budget(budget, targets, others, other_states)

    def _power_group(self, units: list[Unit], states: dict[str, bool | None]) -> bool:
        """Bring one group's units to the requested state; whether anything was switched."""
        if self.req.state == "cycle":
            self.cycle(units, "cycle")
            return bool(units)
        want = self.req.state == "on"
        acted = False
        for unit in units:
            if states.get(unit.key) is not want:
                acted = self._switch(unit, want, self.req.state) or acted
            else:
                self.already.add(unit.key)
        return acted

    def run(self) -> Outcome:
        req = self.req
        per_group, switches, others = self.plan()
        targets = [u for units in per_group for u in units]
        states = self.read(targets + switches)
        if req.state != "off":
            self._budget(targets, others)
        watcher = None
        if req.state != "off" and req.wait_for != "none" and not self.check_mode:
            watcher = self.watcher()
            watcher.start()  # before switching: every DHCP/registration from now on counts
        # switches before banks
        switched = [
            self._switch(unit, True, "switch before its banks")
            for unit in switches
            if states.get(unit.key) is not True
        ]
        if any(switched) and not self.check_mode:
            self.sleep(req.settle)
        for index, units in enumerate(per_group):
            acted = self._power_group(units, states)
            if acted and index < len(per_group) - 1 and not self.check_mode:
                self.sleep(req.settle)
        self._fail_banks(per_group)
        if watcher is not None:
            self.wait_and_retry(watcher, per_group)
        else:
            self.out.pis = [_row(p, self._plain(u)) for u in targets for p in u.pis]
        return self.out

    def _plain(self, unit: Unit) -> str:
        if unit.controller in self.out.failed:
            return "controller_failed"
        if unit.key in self.already:
            return "already_" + self.req.state
        return "would_switch" if self.check_mode else "switched"

    def _fail_banks(self, per_group: list[list[Unit]]) -> None:
        banks = {
            p.bank
            for units in per_group
            for u in units
            for p in u.pis
            if u.controller in self.out.failed
        }
        self.out.failed_banks = sorted(banks)

    def watcher(self) -> DhcpSeen | AgentRegistered:
        try:
            if self.req.wait_for == "dhcp_seen":
                return DhcpSeen(self.req.dhcp_log, self.req.dhcp_leases)
            if self.req.wait_for == "agent_registered":
                return AgentRegistered(str(self.req.server_url or ""), self.req.server_token)
        except WaitError as exc:
            raise PlanError(str(exc)) from None
        raise PlanError(f"wait_for must be one of {', '.join(WAIT_KINDS)}")

    def wait_and_retry(
        self, watcher: DhcpSeen | AgentRegistered, per_group: list[list[Unit]]
    ) -> None:
        """Wait for the Pis, then cycle stragglers (per slot, else per group) up to ``retries``.

        Pis behind outlets that were already on are not waited for (outcome ``already_on``).
        """
        req = self.req
        units_all = [u for units in per_group for u in units]
        live = [
            u
            for u in units_all
            if u.controller not in self.out.failed and u.key not in self.already
        ]
        pis = [p for u in live for p in u.pis]
        wanted = {p.mac for p in pis if p.mac}
        needed = min(req.expected if req.expected is not None else len(pis), len(wanted))
        self.out.expected = req.expected if req.expected is not None else len(pis)
        cycles = {p.name: 0 for p in pis}
        try:
            seen = wait_until(
                watcher, wanted, needed, req.timeout, req.poll, self.sleep, self.clock
            )
            for _ in range(req.retries):
                if len(seen) >= needed:
                    break
                stragglers = {p.name for p in pis if p.mac not in seen}
                units = [u for u in live if any(p.name in stragglers for p in u.pis)]
                for unit in units:
                    for pi in unit.pis:
                        cycles[pi.name] += 1
                self.out.cycles += 1
                watcher.start()
                self.cycle(units, "straggler")
                seen |= wait_until(
                    watcher, wanted, needed, req.timeout, req.poll, self.sleep, self.clock
                )
        except WaitError as exc:
            raise PlanError(str(exc)) from None
        self.out.booted = len(seen)
        self.out.pis = [_row(p, _seen_outcome(p, seen), cycles[p.name]) for p in pis]
        self.out.pis += [_row(p, self._plain(u)) for u in units_all if u not in live for p in u.pis]


def _row(pi: PiRef, outcome: str, cycles: int = 0) -> dict[str, Any]:
    """One Pi of the module's ``pis`` result."""
    return {
        "name": pi.name,
        "bank": pi.bank,
        "slot": pi.slot,
        "mac": pi.mac,
        "outcome": outcome,
        "cycles": cycles,
    }


def _seen_outcome(pi: PiRef, seen: set[str]) -> str:
    if not pi.mac:
        return "unharvested"
    return "booted" if pi.mac in seen else "missing"


def summary(out: Outcome) -> str:
    """One line for the log: booted/expected, cycles, missing Pis, failed controllers."""
    parts = []
    if out.booted is not None:
        parts.append(f"{out.booted}/{out.expected} booted")
        parts.append(f"{out.cycles} straggler cycle(s)")
        missing = [p["name"] for p in out.pis if p["outcome"] in ("missing", "unharvested")]
        if missing:
            parts.append("missing: " + ", ".join(missing))
    else:
        parts.append(f"{len(out.actions)} switch action(s)")
    for _, message in sorted(out.failed.items()):
        parts.append(f"FAILED {message} (banks {out.failed_banks})")
    return "; ".join(parts)
