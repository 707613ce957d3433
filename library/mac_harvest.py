#!/usr/bin/python
"""Ansible module mac_harvest: learn which MAC (and serial) sits in which bank slot."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.bramble_harvest import (
        Tally,
        claim,
        merge,
        port_slots,
        sighting_from_frame,
        sightings_from_fdb,
        sightings_from_leases,
        sightings_from_log,
    )
    from ansible.module_utils.bramble_power import PlanError, Request, Runner
    from ansible.module_utils.bramble_snmp_fdb import SnmpError, read_fdb

    from bramble.model import ModelError, load_cluster
    from bramble.model.macfile import dump_mac_file, read_mac_file, write_mac_file
    from bramble.model.net import normalize_mac
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None

DOCUMENTATION = r"""
---
module: mac_harvest
short_description: Learn which Raspberry Pi MAC (and serial) sits in which bank slot
description:
  - Collects the MACs of a bramble cluster's Pis from one or more sources and records them in
    the cluster's MAC file (C(inventory/<cluster>/macs.yml)), one entry per bank slot.
  - "Sources: C(dhcp) captures the DHCPDISCOVERs of Pi boot ROMs on an interface for a bounded
    window; C(log) reads a dnsmasq log (C(log-dhcp) adds the vendor class, TFTP lines give
    serials); C(leases) reads a dnsmasq lease file; C(snmp) walks a switch's MAC table
    (BRIDGE-MIB and Q-BRIDGE-MIB), whose ports give the slots through the model's
    C(switches[].banks)."
  - The C(dhcp), C(log) and C(leases) sources do not know slots. A MAC they see that the file
    already has keeps its slot; a new one is reported as C(unplaced), or with
    I(unplaced=fill) takes the next free slot in the order the MACs were first seen.
  - Malformed MACs (in logs, lease files or SNMP answers) are skipped and counted in
    C(rejected), never written. With I(pi_only) MACs outside the Raspberry Pi OUIs are skipped.
  - The serial is recorded when a source reveals it and it fits the MAC (Pi 3B/3B+, whose MAC
    ends in the serial's low three bytes).
  - Writes only when an entry changes, atomically, keeping the file's mode. Never overwrites a
    conflicting entry unless I(force); fails on conflicts unless I(fail_on_conflict=false).
  - "Sequential mode (I(sequential)): for banks without a switch MAC table, powers the
    harvested slots off, then on one at a time through the bank_power drivers, and takes the
    first new MAC the C(dhcp) capture or the C(log) shows after each power-on for that slot.
    Only controllers that switch single Pis can do it (C(poe_snmp), C(uhubctl), a C(command)
    whose templates use C({slot})); for a whole-outlet controller the module fails, naming it.
    The slots stay on afterwards."
  - Runs on the control node (delegate to localhost), which holds the MAC file and the bramble
    Python package.
version_added: "0.1.0"
author: bramble
options:
  model:
    description: The cluster model, C(cluster.yml) or the inventory folder that holds it.
    type: path
    required: true
  mac_file:
    description: The MAC file to update; default C(macs.yml) beside the model.
    type: path
  banks:
    description: Banks to harvest; default every bank of the model. Other banks are untouched.
    type: list
    elements: int
  slots:
    description: Slots (within I(banks)) to harvest; default every slot of those banks.
    type: list
    elements: int
  sources:
    description: Where to look for MACs, combined in this order.
    type: list
    elements: str
    choices: [dhcp, log, leases, snmp]
    required: true
  capture_interface:
    description: Interface to capture DHCPDISCOVERs on (source C(dhcp)).
    type: str
  capture_seconds:
    description: Longest capture window in seconds (source C(dhcp)); 1 to 600.
    type: float
    default: 30
  capture_netns:
    description: Named network namespace holding I(capture_interface) (the lab's head).
    type: str
  capture_until_complete:
    description: End the capture as soon as every harvested slot has a MAC.
    type: bool
    default: true
  log_file:
    description: dnsmasq log to read (source C(log)).
    type: path
  lease_file:
    description: dnsmasq lease file to read (source C(leases)).
    type: path
  switches:
    description: Switches to walk (source C(snmp)); default those the model maps to I(banks).
    type: list
    elements: str
  snmp_community:
    description: SNMP v2c community of every switch without one in I(snmp_communities).
    type: str
    default: public
  snmp_communities:
    description: SNMP community per switch name (from the Vault variable the model names).
    type: dict
    default: {}
  snmp_addresses:
    description: Address per switch name, instead of the model's (e.g. a simulator).
    type: dict
    default: {}
  snmp_port:
    description: UDP port of the switches' SNMP agents.
    type: int
    default: 161
  snmp_timeout:
    description: Seconds per SNMP request.
    type: float
    default: 2
  snmp_retries:
    description: Retries per SNMP request.
    type: int
    default: 1
  snmp_port_index:
    description: >-
      What the model's switch ports count: C(bridge_port) (dot1dBasePort, the front-panel
      number on most switches) or C(if_index).
    type: str
    choices: [bridge_port, if_index]
    default: bridge_port
  pxe_only:
    description: Keep only DHCP clients with vendor class C(PXEClient) (the Pi boot ROM).
    type: bool
    default: true
  pi_only:
    description: >-
      Keep only MACs of the Raspberry Pi OUIs (b8:27:eb, dc:a6:32, e4:5f:01, d8:3a:dd,
      2c:cf:67).
    type: bool
    default: true
  unplaced:
    description: >-
      What to do with new MACs whose slot no source knows: C(report) them, or C(fill) the
      bank's free slots in the order they were first seen (right when the Pis came up in
      slot order).
    type: str
    choices: [report, fill]
    default: report
  sequential:
    description: >-
      Power the slots one at a time (through the model's power controllers) and give each
      the first new MAC that source C(dhcp) or C(log) shows; see the description.
    type: bool
    default: false
  sequential_timeout:
    description: Seconds to wait for a slot's MAC after its power-on (sequential mode); 1 to 600.
    type: float
    default: 30
  power_credentials:
    description: >-
      Secrets of the power controllers by the Vault variable names the model's
      C(controllers[].credentials) give (sequential mode), as for bank_power. Never logged.
    type: dict
    default: {}
  power_budget_count:
    description: Budget counting of sequential power-ons (bank_power's C(budget_count)).
    type: str
    choices: [cluster, request]
    default: cluster
  controller_timeout:
    description: Seconds to wait for a power controller's answer (sequential mode).
    type: float
    default: 5
  force:
    description: Let what was seen replace a conflicting entry of the MAC file.
    type: bool
    default: false
  fail_on_conflict:
    description: Fail (writing nothing) when conflicts remain.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: In sequential mode nothing is switched in check mode, so nothing is learnt.
  diff_mode:
    support: full
notes:
  - The C(dhcp) source needs root (a raw packet socket) on the host that sees the Pis' DHCP.
seealso:
  - name: docs/harvest.md
    description: Sources, slot placement, conflicts and the per-bank playbook.
    link: https://example.invalid/bramble/docs/harvest.md
"""

EXAMPLES = r"""
- name: Harvest bank 7 from its switch's MAC table
  mac_harvest:
    model: "{{ bramble_cluster.model_file }}"
    banks: [7]
    sources: [snmp]
    snmp_communities: {sw1: "{{ vault_sw1_community }}"}
  delegate_to: localhost

- name: Take the MACs of a powered bank from 60 s of DHCP traffic, filling slots in order
  mac_harvest:
    model: inventory/desk
    banks: [1]
    sources: [dhcp]
    capture_interface: eth1
    capture_seconds: 60
    unplaced: fill
  become: true

- name: Power the slots of bank 2 one at a time (PoE switch) and capture each new MAC
  mac_harvest:
    model: inventory/desk
    banks: [2]
    sources: [dhcp]
    sequential: true
    sequential_timeout: 20
    capture_interface: eth1
    power_credentials: {vault_sw1_community: "{{ vault_sw1_community }}"}
  become: true

- name: Learn serials from dnsmasq's log (log-dhcp) and leases
  mac_harvest:
    model: inventory/lab
    sources: [log, leases]
    log_file: /var/log/dnsmasq.log
    lease_file: /var/lib/misc/dnsmasq.leases
"""

RETURN = r"""
new:
  description: Entries added (bank, slot, mac, serial).
  type: list
  elements: dict
  returned: always
unchanged:
  description: Entries seen again in the same slot.
  type: list
  elements: dict
  returned: always
moved:
  description: MACs seen in another slot than the file said (mac, from, to as [bank, slot]).
  type: list
  elements: dict
  returned: always
missing:
  description: Harvested slots no source saw a MAC for (bank, slot).
  type: list
  elements: dict
  returned: always
conflicts:
  description: >-
    One MAC at two slots, two MACs at one slot, two serials for one MAC (kind C(seen)), or a
    slot or serial the file gives to another (kind C(file)); each with a C(reason).
  type: list
  elements: dict
  returned: always
unplaced:
  description: New MACs whose slot is unknown (with unplaced=report, or when no slot was free).
  type: list
  elements: str
  returned: always
serials:
  description: Serials learnt for entries (bank, slot, mac, serial).
  type: list
  elements: dict
  returned: always
rejected:
  description: >-
    Input left out, counted by reason (malformed, foreign, not_pxe, bad_serial, unmapped_port,
    bad_frame), with a few examples each.
  type: dict
  returned: always
summary:
  description: One line for an operator.
  type: str
  returned: always
  sample: "bank 7: 20 new, 0 unchanged, 0 moved, 1 missing (slot 13), 0 conflicts"
mac_file:
  description: The MAC file.
  type: str
  returned: always
"""

ETH_P_IP = 0x0800
MAX_CAPTURE_SECONDS = 600


def placed_macs(
    targets: list[Any], existing: list[Any], sightings: list[Any]
) -> tuple[set[str], set[str]]:
    """MACs already placed in the wanted slots, and MACs placed in other slots (by the MAC
    file or by an earlier source of this run, e.g. the switch's table)."""
    wanted = set(targets)
    placed = [(normalize_mac(e.mac), (e.bank, e.slot)) for e in existing]
    placed += [(normalize_mac(s.mac), s.position) for s in sightings if s.position]
    known = {mac for mac, slot in placed if slot in wanted}
    return known, {mac for mac, slot in placed if slot not in wanted} - known


def capture(
    module: AnsibleModule,
    tally: Any,
    model: str,
    *,
    known: set[str],
    foreign: set[str],
    expected: int,
) -> list[Any]:
    """DHCPDISCOVERs on capture_interface for at most capture_seconds (a raw socket).

    With capture_until_complete it ends early once every MAC known for the wanted slots was
    seen and, when some wanted slots have no known MAC yet, as many new MACs as there are wanted
    slots, not counting MACs placed in other slots (other banks powered at the same time send
    DISCOVERs too)."""
    params = module.params
    seconds = float(params["capture_seconds"])
    if not 0 < seconds <= MAX_CAPTURE_SECONDS:
        module.fail_json(msg=f"capture_seconds must be between 1 and {MAX_CAPTURE_SECONDS}")
    sock = open_capture(module)
    found: list[Any] = []
    macs: set[str] = set()
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], min(left, 0.5))
            if not ready:
                continue
            frame = sock.recv(4096)
            sighting = sighting_from_frame(
                frame, tally, pxe_only=params["pxe_only"], pi_only=params["pi_only"], model=model
            )
            if sighting is None:
                continue
            found.append(sighting)
            macs.add(sighting.mac)
            enough = len(known) >= expected or len(macs - foreign) >= expected
            if params["capture_until_complete"] and enough and known <= macs:
                break
    finally:
        sock.close()
    return found


def open_capture(module: AnsibleModule) -> socket.socket:
    """A raw socket on capture_interface, made inside capture_netns when given (the module's
    other connections, e.g. to power controllers, stay in its own namespace)."""
    params = module.params
    where: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if params["capture_netns"]:
        from bramble.labnet import in_netns  # noqa: PLC0415 - only the lab needs it

        where = in_netns(params["capture_netns"])
    try:
        with where:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            sock.bind((params["capture_interface"], ETH_P_IP))
    except OSError as exc:
        module.fail_json(
            msg=f"cannot capture on {params['capture_interface']}: {exc}; the dhcp source needs "
            "root (become: true) on the host whose interface sees the Pis' DHCP"
        )
    return sock


class Listener:
    """Sequential mode's eyes: what the capture or the dnsmasq log shows from ``start()`` on."""

    def __init__(self, module: AnsibleModule, tally: Any, model: str) -> None:
        params = module.params
        self.module = module
        self.tally = tally
        self.flags = {"pxe_only": params["pxe_only"], "pi_only": params["pi_only"], "model": model}
        self.sock = open_capture(module) if "dhcp" in params["sources"] else None
        self.log = None if self.sock else Path(params["log_file"])
        self.offset = 0

    def start(self) -> None:
        """Forget what came before (queued frames, the log so far)."""
        if self.sock is not None:
            for _ in range(10_000):
                if not select.select([self.sock], [], [], 0)[0]:
                    break
                self.sock.recv(4096)
        elif self.log is not None:
            try:
                self.offset = os.path.getsize(self.log)
            except OSError:
                self.offset = 0

    def poll(self, seconds: float) -> list[Any]:
        """Sightings that arrived within ``seconds`` (in arrival order)."""
        if self.sock is not None:
            found = []
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([self.sock], [], [], left)[0]:
                    break
                seen = sighting_from_frame(self.sock.recv(4096), self.tally, **self.flags)
                if seen is not None:
                    found.append(seen)
            return found
        time.sleep(seconds)
        try:
            with open(str(self.log), "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(8 * 1024 * 1024)
        except OSError as exc:
            self.module.fail_json(msg=f"cannot read the dnsmasq log {self.log}: {exc.strerror}")
        complete = chunk.rfind(b"\n") + 1
        self.offset += complete
        lines = chunk[:complete].decode("utf-8", "replace").splitlines()
        return list(sightings_from_log(lines, self.tally, **self.flags))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def switch_slots(
    module: AnsibleModule, cluster: Any, bank: int, slots: list[int], state: str
) -> None:
    """Switch slots of one bank through the bank_power drivers; fail naming the controller."""
    params = module.params
    request = Request(
        model=cluster.model.model_dump(mode="json"),
        state=state,
        banks=[bank],
        slots=slots,
        pis=[{"name": p.name, "bank": p.bank, "slot": p.slot, "mac": p.mac} for p in cluster.pis],
        credentials={str(k): str(v) for k, v in params["power_credentials"].items() if v},
        switches=state == "on",
        settle=0,
        budget_count=params["power_budget_count"],
        controller_timeout=params["controller_timeout"],
    )
    try:
        out = Runner(request).run()
    except PlanError as exc:
        module.fail_json(msg=f"sequential mode powers one slot at a time, but {exc}")
    if out.failed:
        module.fail_json(
            msg=f"sequential mode: switching bank {bank} slot(s) {slots} {state} failed: "
            + "; ".join(out.failed.values())
        )


@contextlib.contextmanager
def listening(module: AnsibleModule, tally: Any, model: str) -> Iterator[Listener]:
    listener = Listener(module, tally, model)
    try:
        yield listener
    finally:
        listener.close()


def sequential(
    module: AnsibleModule, cluster: Any, banks: list[int], targets: list[Any], existing: list[Any]
) -> tuple[list[Any], Any]:
    """Power the target slots off, then on one at a time, each taking the first new MAC."""
    params = module.params
    tally = Tally()
    if not {"dhcp", "log"} & set(params["sources"]):
        module.fail_json(msg="sequential mode needs source dhcp (capture) or log (dnsmasq log)")
    seconds = float(params["sequential_timeout"])
    if not 0 < seconds <= MAX_CAPTURE_SECONDS:
        module.fail_json(msg=f"sequential_timeout must be between 1 and {MAX_CAPTURE_SECONDS}")
    needs = {"dhcp": "capture_interface", "log": "log_file"}
    source = "dhcp" if "dhcp" in params["sources"] else "log"
    if not params[needs[source]]:
        module.fail_json(msg=f"source {source} needs {needs[source]}")
    if module.check_mode:
        module.warn("check mode: sequential mode switches nothing, so it learns no MAC")
        return [], tally
    # MACs the file places in other banks are never this bank's (those Pis may be booting)
    ignore = {normalize_mac(e.mac) for e in existing if e.bank not in banks}
    found: list[Any] = []
    with listening(module, tally, cluster.model.banks.model) as listener:
        for bank in banks:
            switch_slots(module, cluster, bank, [s for b, s in targets if b == bank], "off")
        for bank, slot in targets:
            listener.start()
            switch_slots(module, cluster, bank, [slot], "on")
            deadline = time.monotonic() + seconds
            for _ in range(int(seconds / 0.25) + 2):  # bounded in count as well as in time
                left = deadline - time.monotonic()
                mine = claim(listener.poll(min(0.25, max(left, 0))), bank, slot, ignore)
                if mine is not None:
                    found.append(mine)
                    ignore.add(mine.mac)
                    break
                if left <= 0:
                    break
    return found, tally


def snmp_sightings(module: AnsibleModule, cluster: Any, banks: set[int], tally: Any) -> list[Any]:
    params = module.params
    slots = port_slots(cluster.pis)
    by_name = {switch.name: switch for switch in cluster.model.switches}
    names = params["switches"] or [
        s.name for s in cluster.model.switches if any(m.bank in banks for m in s.banks)
    ]
    if not names:
        module.fail_json(
            msg=f"source snmp: no switch of {cluster.model_file} serves bank(s) "
            f"{sorted(banks)}; add switches[].banks to the model or use another source"
        )
    found: list[Any] = []
    for name in names:
        if name not in by_name:
            module.fail_json(msg=f"switch {name!r} is not in {cluster.model_file}")
        switch = by_name[name]
        address = params["snmp_addresses"].get(name) or switch.address
        if not address:
            module.fail_json(msg=f"switch {name} has no address in {cluster.model_file}")
        try:
            table = read_fdb(
                address,
                port=params["snmp_port"],
                community=params["snmp_communities"].get(name, params["snmp_community"]),
                timeout=params["snmp_timeout"],
                retries=params["snmp_retries"],
            )
        except SnmpError as exc:
            module.fail_json(
                msg=f"switch {name}: its MAC table could not be read over SNMP ({exc}); check "
                "its address, community and that SNMP is enabled"
            )
        for example in table.malformed_examples:
            tally.skip("malformed", f"switch {name}: {example}")
        for _ in range(table.malformed - len(table.malformed_examples)):
            tally.counts["malformed"] = tally.counts.get("malformed", 0) + 1
        found += sightings_from_fdb(
            name,
            table.rows,
            slots,
            tally,
            pi_only=params["pi_only"],
            use_if_index=params["snmp_port_index"] == "if_index",
        )
    return found


def read_text(module: AnsibleModule, path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        module.fail_json(msg=f"cannot read the {what} {path}: {exc.strerror}")
    return ""


def summary_line(result: dict[str, Any], banks: list[int]) -> str:
    missing = ", ".join(f"{m['bank']}/{m['slot']}" for m in result["missing"][:10])
    more = " ..." if len(result["missing"]) > 10 else ""
    return (
        f"bank(s) {', '.join(map(str, banks))}: {len(result['new'])} new, "
        f"{len(result['unchanged'])} unchanged, {len(result['moved'])} moved, "
        f"{len(result['missing'])} missing{f' ({missing}{more})' if missing else ''}, "
        f"{len(result['conflicts'])} conflicts, {len(result['unplaced'])} unplaced, "
        f"{sum(result['rejected']['counts'].values())} rejected"
    )


def targets_of(module: AnsibleModule, model: Any, model_file: Any) -> tuple[list[int], list[Any]]:
    """The banks and the (bank, slot) pairs being harvested, checked against the model."""
    params = module.params
    banks = params["banks"] or list(range(1, model.banks.count + 1))
    slots = params["slots"] or list(range(1, model.banks.size + 1))
    bad_banks = [b for b in banks if not 1 <= b <= model.banks.count]
    bad_slots = [s for s in slots if not 1 <= s <= model.banks.size]
    if bad_banks or bad_slots:
        module.fail_json(
            msg=f"{model_file} has banks 1-{model.banks.count} of slots 1-{model.banks.size}; "
            f"not bank(s) {bad_banks} slot(s) {bad_slots}"
        )
    return banks, [(b, s) for b in banks for s in slots]


def collect(
    module: AnsibleModule, cluster: Any, banks: list[int], targets: list[Any], existing: list[Any]
) -> tuple[list[Any], Any]:
    """Sightings from every source named, in order, and the tally of what was skipped."""
    params = module.params
    tally = Tally()
    pi_model = cluster.model.banks.model
    flags = {"pxe_only": params["pxe_only"], "pi_only": params["pi_only"], "model": pi_model}
    needs = {"dhcp": "capture_interface", "log": "log_file", "leases": "lease_file"}
    sightings: list[Any] = []
    for source in dict.fromkeys(params["sources"]):
        if source in needs and not params[needs[source]]:
            module.fail_json(msg=f"source {source} needs {needs[source]}")
        if source == "dhcp":
            known, foreign = placed_macs(targets, existing, sightings)
            sightings += capture(
                module, tally, pi_model, known=known, foreign=foreign, expected=len(targets)
            )
        elif source == "log":
            text = read_text(module, params["log_file"], "dnsmasq log")
            sightings += sightings_from_log(text.splitlines(), tally, **flags)
        elif source == "leases":
            text = read_text(module, params["lease_file"], "lease file")
            sightings += sightings_from_leases(text, tally, pi_only=params["pi_only"])
        elif source == "snmp":
            sightings += snmp_sightings(module, cluster, set(banks), tally)
    return sightings, tally


def run(module: AnsibleModule) -> None:
    params = module.params
    try:
        cluster = load_cluster(params["model"])
    except ModelError as exc:
        module.fail_json(msg=str(exc))
    banks, targets = targets_of(module, cluster.model, cluster.model_file)
    mac_file = Path(params["mac_file"] or cluster.mac_file)
    existing = list(cluster.mac_entries)
    if mac_file != cluster.mac_file:
        existing = read_mac_file(mac_file)
    if params["sequential"]:
        sightings, tally = sequential(module, cluster, banks, targets, existing)
    else:
        sightings, tally = collect(module, cluster, banks, targets, existing)
    plan = merge(
        existing, sightings, targets, fill=params["unplaced"] == "fill", force=params["force"]
    )
    result: dict[str, Any] = {
        "changed": plan.changed,
        "mac_file": str(mac_file),
        "new": plan.new,
        "unchanged": plan.unchanged,
        "moved": plan.moved,
        "missing": plan.missing,
        "conflicts": plan.conflicts,
        "unplaced": plan.unplaced,
        "serials": plan.serials,
        "rejected": tally.as_dict(),
    }
    result["summary"] = summary_line(result, banks)
    unresolved = [c for c in plan.conflicts if not (params["force"] and c["kind"] == "file")]
    if unresolved and params["fail_on_conflict"]:
        result["changed"] = False
        reasons = "; ".join(c["reason"] for c in unresolved[:10])
        module.fail_json(
            msg=f"{len(unresolved)} conflict(s), {mac_file} left as it was: {reasons}. Check "
            "the cabling and the MAC file; force=true lets what was seen replace what the file "
            "says.",
            **result,
        )
    if plan.changed:
        before = mac_file.read_text(encoding="utf-8") if mac_file.exists() else ""
        result["diff"] = {
            "before": before,
            "after": dump_mac_file(plan.entries),
            "before_header": str(mac_file),
            "after_header": str(mac_file),
        }
        if not module.check_mode:
            write_mac_file(mac_file, plan.entries)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "model": {"type": "path", "required": True},
            "mac_file": {"type": "path"},
            "banks": {"type": "list", "elements": "int"},
            "slots": {"type": "list", "elements": "int"},
            "sources": {
                "type": "list",
                "elements": "str",
                "required": True,
                "choices": ["dhcp", "log", "leases", "snmp"],
            },
            "capture_interface": {"type": "str"},
            "capture_seconds": {"type": "float", "default": 30},
            "capture_netns": {"type": "str"},
            "capture_until_complete": {"type": "bool", "default": True},
            "log_file": {"type": "path"},
            "lease_file": {"type": "path"},
            "switches": {"type": "list", "elements": "str"},
            "snmp_community": {"type": "str", "default": "public", "no_log": True},
            "snmp_communities": {"type": "dict", "default": {}, "no_log": True},
            "snmp_addresses": {"type": "dict", "default": {}},
            "snmp_port": {"type": "int", "default": 161},
            "snmp_timeout": {"type": "float", "default": 2},
            "snmp_retries": {"type": "int", "default": 1},
            "snmp_port_index": {
                "type": "str",
                "default": "bridge_port",
                "choices": ["bridge_port", "if_index"],
            },
            "pxe_only": {"type": "bool", "default": True},
            "pi_only": {"type": "bool", "default": True},
            "unplaced": {"type": "str", "default": "report", "choices": ["report", "fill"]},
            "sequential": {"type": "bool", "default": False},
            "sequential_timeout": {"type": "float", "default": 30},
            "power_credentials": {"type": "dict", "default": {}, "no_log": True},
            "power_budget_count": {
                "type": "str",
                "default": "cluster",
                "choices": ["cluster", "request"],
            },
            "controller_timeout": {"type": "float", "default": 5},
            "force": {"type": "bool", "default": False},
            "fail_on_conflict": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(
            msg="mac_harvest runs on the control node with the bramble package (run `make venv`, "
            "delegate_to: localhost with the venv's Python)",
            exception=IMPORT_ERROR,
        )
    run(module)


if __name__ == "__main__":
    main()
