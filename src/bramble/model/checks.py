"""Relations between model entries that a schema cannot express.

Each check appends one message per problem, naming the entries and the file to fix. The
validate_inventory role stops the run when any message exists; the inventory plugin warns.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TypeVar

import netaddr

from bramble.model import net
from bramble.model.schema import ClusterModel, MacEntry

#: Groups the inventory plugin creates besides bankNN and powerNN.
GROUP_NAMES = frozenset({"all", "ungrouped", "head", "pis", "bridges", "vpn_gateways"})


def _slot(bank: int, slot: int) -> str:
    return f"bank {bank} slot {slot}"


def check(
    model: ClusterModel, entries: Iterable[MacEntry], model_file: Path, mac_file: Path
) -> tuple[list[str], dict[tuple[int, int], MacEntry]]:
    """All problems of the model and MAC file, and the usable MAC entries by (bank, slot)."""
    problems: list[str] = []
    harvested = _check_macs(model, entries, mac_file, problems)
    _check_addresses(model, model_file, problems)
    _check_power(model, model_file, problems)
    _check_switches(model, model_file, problems)
    _check_edge(model, harvested, model_file, mac_file, problems)
    return problems, harvested


def _check_macs(
    model: ClusterModel, entries: Iterable[MacEntry], mac_file: Path, problems: list[str]
) -> dict[tuple[int, int], MacEntry]:
    banks = model.banks
    harvested: dict[tuple[int, int], MacEntry] = {}
    seen_slot: dict[tuple[int, int], int] = {}
    by_mac: dict[str, list[str]] = defaultdict(list)
    for index, entry in enumerate(entries):
        where = f"{mac_file}: macs[{index}] ({_slot(entry.bank, entry.slot)})"
        if entry.bank > banks.count or entry.slot > banks.size:
            problems.append(
                f"{where}: beyond the model ({banks.count} banks of {banks.size}); remove the "
                f"entry or grow banks in {mac_file.with_name('cluster.yml')}"
            )
            continue
        key = (entry.bank, entry.slot)
        if key in seen_slot:
            problems.append(
                f"{where}: the slot is listed twice (also macs[{seen_slot[key]}]); keep one entry"
            )
            continue
        seen_slot[key] = index
        try:
            mac = net.normalize_mac(entry.mac)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        serial = None
        if entry.serial is not None:
            try:
                serial = net.normalize_serial(entry.serial)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            suffix = net.serial_suffix_from_mac(mac, banks.model)
            if suffix and not serial.endswith(suffix):
                problems.append(
                    f"{where}: serial {serial} does not match MAC {mac} (a {banks.model}'s MAC "
                    f"ends in its serial's last 6 hex digits, {suffix}); one of them is wrong"
                )
                continue
        by_mac[mac].append(_slot(entry.bank, entry.slot))
        harvested[key] = entry.model_copy(update={"mac": mac, "serial": serial})
    for mac, slots in by_mac.items():
        if len(slots) > 1:
            problems.append(
                f"{mac_file}: MAC {mac} is claimed by {' and '.join(slots)}; a MAC belongs to "
                "one Pi: re-harvest those slots or remove the wrong entries"
            )
    return harvested


def _check_addresses(model: ClusterModel, model_file: Path, problems: list[str]) -> None:
    network = netaddr.IPNetwork(model.network.cidr)
    stride = model.network.bank_stride
    banks = model.banks
    if stride <= banks.size:
        problems.append(
            f"{model_file}: network.bank_stride {stride} leaves no room for {banks.size} Pis "
            f"per bank (slots 1..{banks.size}); use a stride above {banks.size}"
        )
        return
    last = int(network.network) + (banks.count + 1) * stride - 1
    if last >= int(network.broadcast or network.last):
        top = netaddr.IPAddress(last)
        problems.append(
            f"{model_file}: {banks.count} banks with bank_stride {stride} reach {top}, outside "
            f"network {network.cidr} (or its broadcast address); use a larger network.cidr or "
            "a smaller bank_stride"
        )
        return
    pi_first = netaddr.IPAddress(int(network.network) + stride)
    pi_range = netaddr.IPRange(pi_first, netaddr.IPAddress(last))
    owners: dict[str, list[str]] = defaultdict(list)
    fixed = [(f"head {model.head_name}", model.head_address)]
    fixed += [(f"controller {c.name}", c.address) for c in model.controllers if c.address]
    fixed += [(f"switch {s.name}", s.address) for s in model.switches if s.address]
    if model.bridges:
        fixed += [(f"bridge board {b.name}", b.address) for b in model.bridges.boards]
        if model.bridges.sound:
            fixed.append((f"sound Pi {model.bridges.sound.name}", model.bridges.sound.address))
    for owner, address in fixed:
        try:
            ip = netaddr.IPAddress(address)
        except (netaddr.AddrFormatError, ValueError):
            continue  # a host name, resolved elsewhere
        owners[str(ip)].append(owner)
        if ip in pi_range:
            problems.append(
                f"{model_file}: {owner} address {ip} is inside the Pi range {pi_range} "
                "(banks 1.. use whole bank_stride blocks); move it below "
                f"{pi_first} or beyond {netaddr.IPAddress(pi_range.last)}"
            )
    head_ip = netaddr.IPAddress(model.head_address)
    if head_ip not in network or head_ip in (network.network, network.broadcast):
        problems.append(
            f"{model_file}: head address {head_ip} is not a host address of the cluster "
            f"network {network.cidr}; set head.address inside it"
        )
    for address, names in owners.items():
        if len(names) > 1:
            problems.append(
                f"{model_file}: address {address} is given to {' and '.join(names)}; each needs "
                "its own"
            )


def _check_power(model: ClusterModel, model_file: Path, problems: list[str]) -> None:
    for name in _duplicates(c.name for c in model.controllers):
        problems.append(f"{model_file}: controller name {name!r} is used twice; rename one")
    for group_id in _duplicates(g.id for g in model.power.groups):
        problems.append(f"{model_file}: power group id {group_id} is used twice; renumber one")
    outlets = _Outlets(model, model_file, problems)
    owner: dict[int, list[int]] = defaultdict(list)
    for group in model.power.groups:
        label = f"power group {group.id} ({net.power_group_name(group.id)})"
        outlets.use(group.controller, group.outlet, label)
        for bank in _duplicates(group.banks):
            problems.append(f"{model_file}: {label} lists bank {bank} twice; list it once")
        for bank in dict.fromkeys(group.banks):
            if bank > model.banks.count:
                problems.append(
                    f"{model_file}: {label} lists bank {bank}, but the model has "
                    f"{model.banks.count} banks"
                )
            else:
                owner[bank].append(group.id)
        pis = len(set(group.banks)) * model.banks.size
        if pis > model.power.budget:
            problems.append(
                f"{model_file}: {label} powers {pis} Pis at once, over the power budget of "
                f"{model.power.budget}; split it or raise power.budget if the supply allows"
            )
    for switch in model.switches:
        if switch.power is not None:
            outlets.use(switch.power.controller, switch.power.outlet, f"switch {switch.name}")
    outlets.report_shared()
    _check_bank_owners(model.banks.count, owner, model_file, problems)


def _check_bank_owners(
    count: int, owner: dict[int, list[int]], model_file: Path, problems: list[str]
) -> None:
    for bank in range(1, count + 1):
        groups = owner.get(bank, [])
        if not groups:
            problems.append(
                f"{model_file}: bank {bank} is in no power group; add it to one in power.groups"
            )
        elif len(groups) > 1:
            ids = " and ".join(str(g) for g in groups)
            problems.append(
                f"{model_file}: bank {bank} is in power groups {ids}; a bank hangs on one outlet"
            )


class _Outlets:
    """Controller outlets in use: unknown controllers, outlets out of range, shared outlets."""

    def __init__(self, model: ClusterModel, model_file: Path, problems: list[str]) -> None:
        self.controllers = {c.name: c for c in model.controllers}
        self.model_file = model_file
        self.problems = problems
        self.users: dict[tuple[str, str], list[str]] = defaultdict(list)

    def use(self, controller_name: str, outlet: int | str, label: str) -> None:
        controller = self.controllers.get(controller_name)
        if controller is None:
            known = ", ".join(sorted(self.controllers)) or "none"
            self.problems.append(
                f"{self.model_file}: {label} names controller {controller_name!r}, which is not "
                f"defined; known controllers: {known}"
            )
        elif controller.outlets and isinstance(outlet, int) and outlet > controller.outlets:
            self.problems.append(
                f"{self.model_file}: {label} uses outlet {outlet}, but controller "
                f"{controller_name} has {controller.outlets} outlets"
            )
        self.users[(controller_name, str(outlet))].append(label)

    def report_shared(self) -> None:
        for (controller_name, outlet), users in self.users.items():
            if len(users) > 1:
                self.problems.append(
                    f"{self.model_file}: outlet {outlet} of controller {controller_name} is "
                    f"used by {' and '.join(users)}; one outlet switches one thing"
                )


def _check_switches(model: ClusterModel, model_file: Path, problems: list[str]) -> None:
    for name in _duplicates(s.name for s in model.switches):
        problems.append(f"{model_file}: switch name {name!r} is used twice; rename one")
    mapped: dict[int, str] = {}
    for switch in model.switches:
        used: dict[int, str] = {}
        for mapping in switch.banks:
            bank = mapping.bank
            if bank > model.banks.count:
                problems.append(
                    f"{model_file}: switch {switch.name} maps bank {bank}, but the model has "
                    f"{model.banks.count} banks"
                )
                continue
            if bank in mapped:
                problems.append(
                    f"{model_file}: bank {bank} is mapped on switch {mapped[bank]} and on "
                    f"{switch.name}; map it once"
                )
                continue
            mapped[bank] = switch.name
            if mapping.ports is not None and len(mapping.ports) != model.banks.size:
                problems.append(
                    f"{model_file}: switch {switch.name} bank {bank} lists {len(mapping.ports)} "
                    f"ports for {model.banks.size} slots; give one port per slot"
                )
            ports = mapping.ports or [
                (mapping.first_port or 1) + i for i in range(model.banks.size)
            ]
            for slot, port in enumerate(ports, start=1):
                here = _slot(bank, slot)
                if port in used:
                    problems.append(
                        f"{model_file}: port {port} of switch {switch.name} is given to "
                        f"{used[port]} and {here}"
                    )
                used[port] = here


def _check_edge(
    model: ClusterModel,
    harvested: dict[tuple[int, int], MacEntry],
    model_file: Path,
    mac_file: Path,
    problems: list[str],
) -> None:
    names = [model.head_name]
    if model.bridges:
        _check_boards(model, harvested, model_file, mac_file, problems)
        if model.bridges.sound:
            names.append(model.bridges.sound.name)
    for name in names:
        if re.fullmatch(r"pi-[0-9]+-[0-9]+", name):
            problems.append(
                f"{model_file}: host name {name!r} looks like a Pi name (pi-BANK-SLOT); "
                "choose another"
            )
        if name in GROUP_NAMES or re.fullmatch(r"(bank|power)[0-9]+", name):
            problems.append(
                f"{model_file}: host name {name!r} is also the name of an inventory group; "
                "choose another (the head defaults to <cluster>-head)"
            )
    for name in _duplicates(names):
        problems.append(f"{model_file}: host name {name!r} is used twice; rename one")
    if model.vpn:
        cluster = netaddr.IPNetwork(model.network.cidr)
        for name in _duplicates(t.name for t in model.vpn.tunnels):
            problems.append(f"{model_file}: VPN tunnel name {name!r} is used twice")
        for subnet in model.vpn.remote_subnets:
            remote = netaddr.IPNetwork(subnet)
            if remote in cluster or cluster in remote:
                problems.append(
                    f"{model_file}: VPN remote subnet {subnet} overlaps the cluster network "
                    f"{cluster.cidr}; traffic to it could not be routed"
                )


def _check_boards(
    model: ClusterModel,
    harvested: dict[tuple[int, int], MacEntry],
    model_file: Path,
    mac_file: Path,
    problems: list[str],
) -> None:
    boards = model.bridges.boards if model.bridges else []
    for name in _duplicates(b.name for b in boards):
        problems.append(f"{model_file}: bridge board name {name!r} is used twice")
    pi_macs = {str(e.mac): _slot(*key) for key, e in harvested.items()}
    board_macs: dict[str, str] = {}
    for board in boards:
        if board.mac is None:
            continue
        if board.mac in board_macs:
            problems.append(
                f"{model_file}: bridge boards {board_macs[board.mac]} and {board.name} share "
                f"MAC {board.mac}; give every board its own (they clash on one LAN)"
            )
        elif board.mac in pi_macs:
            problems.append(
                f"{model_file}: bridge board {board.name} has MAC {board.mac}, which "
                f"{mac_file} gives to {pi_macs[board.mac]}"
            )
        board_macs[board.mac] = board.name


T = TypeVar("T", bound=Hashable)


def _duplicates(values: Iterable[T]) -> list[T]:
    seen: set[T] = set()
    repeated: list[T] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated
