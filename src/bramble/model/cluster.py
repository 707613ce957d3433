"""Loads cluster.yml and macs.yml into the derived cluster: every Pi, its name, address, group."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import netaddr

from bramble.model import net
from bramble.model.checks import check
from bramble.model.errors import ModelError
from bramble.model.macfile import read_mac_file
from bramble.model.schema import ClusterModel, MacEntry
from bramble.model.validation import validate
from bramble.model.yamlio import load_yaml

MODEL_FILE = "cluster.yml"
MAC_FILE = "macs.yml"


@dataclass(frozen=True)
class Pi:
    """One bank slot of the cluster, harvested or not."""

    name: str
    bank: int
    slot: int
    ip: str
    pi_model: str
    bank_group: str
    power_group: str | None
    mac: str | None
    serial: str | None
    serial_suffix: str | None
    switch: str | None
    switch_port: int | None

    @property
    def state(self) -> str:
        return "harvested" if self.mac else "unharvested"

    def as_vars(self) -> dict[str, Any]:
        """The host variables of this Pi (prefixed ``bramble_``)."""
        data = asdict(self)
        data["state"] = self.state
        return {f"bramble_{key}": value for key, value in data.items()}


@dataclass(frozen=True)
class Cluster:
    """The validated model, the derived Pis and the problems found (empty when valid)."""

    model: ClusterModel
    model_file: Path
    mac_file: Path
    mac_entries: tuple[MacEntry, ...]
    pis: tuple[Pi, ...]
    problems: tuple[str, ...]
    _pi_dicts: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def pi_dicts(self) -> list[dict[str, Any]]:
        """Every Pi as a dict of its variables without the ``bramble_`` prefix (bramble_pis)."""
        if self._pi_dicts is None:
            object.__setattr__(
                self,
                "_pi_dicts",
                [{k.removeprefix("bramble_"): v for k, v in p.as_vars().items()} for p in self.pis],
            )
        return list(self._pi_dicts or [])

    def summary(self) -> dict[str, Any]:
        """Cluster-wide facts for templates (the ``bramble_cluster`` variable)."""
        model = self.model
        network = netaddr.IPNetwork(model.network.cidr)
        return {
            "name": model.cluster.name,
            "domain": model.cluster.fqdn_domain,
            "network": model.network.cidr,
            "netmask": str(network.netmask),
            "prefix": network.prefixlen,
            "bank_stride": model.network.bank_stride,
            "head_name": model.head_name,
            "head_address": model.head_address,
            "bank_count": model.banks.count,
            "bank_size": model.banks.size,
            "pi_model": model.banks.model,
            "pi_count": len(self.pis),
            "harvested": sum(1 for pi in self.pis if pi.mac),
            "power_budget": model.power.budget,
            "model_file": str(self.model_file),
            "mac_file": str(self.mac_file),
        }


def load_cluster(path: str | Path) -> Cluster:
    """Read a cluster: ``path`` is cluster.yml or the inventory folder that holds it.

    Raises ModelError when a file is missing or does not match the schema; relations between
    entries that are wrong (duplicates, budget, ranges) are returned in ``Cluster.problems``.
    """
    model_file = Path(path)
    if model_file.is_dir():
        model_file = model_file / MODEL_FILE
    if not model_file.is_file():
        raise ModelError(
            f"{model_file}: file not found; an inventory folder holds the cluster model as "
            f"{MODEL_FILE} (see docs/cluster-model.md)"
        )
    model: ClusterModel = validate(ClusterModel, load_yaml(model_file), model_file)
    mac_file = model_file.with_name(MAC_FILE)
    entries = tuple(read_mac_file(mac_file))
    problems, harvested = check(model, entries, model_file, mac_file)
    return Cluster(
        model=model,
        model_file=model_file,
        mac_file=mac_file,
        mac_entries=entries,
        pis=tuple(_derive_pis(model, harvested)),
        problems=tuple(problems),
    )


_CACHE: dict[Path, tuple[tuple[object, ...], Cluster]] = {}


def _stamp(*files: Path) -> tuple[object, ...]:
    stamp: list[object] = []
    for file in files:
        try:
            info = file.stat()
        except FileNotFoundError:
            stamp.append(None)
        else:
            stamp.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(stamp)


def load_cluster_cached(path: str | Path) -> Cluster:
    """load_cluster, remembered per process while neither file changes.

    The inventory plugin loads the model in Ansible's main process; lookups in the forked
    workers then find it here instead of parsing the files again.
    """
    model_file = Path(path)
    if model_file.is_dir():
        model_file = model_file / MODEL_FILE
    model_file = model_file.absolute()
    stamp = _stamp(model_file, model_file.with_name(MAC_FILE))
    cached = _CACHE.get(model_file)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    cluster = load_cluster(model_file)
    _CACHE[model_file] = (stamp, cluster)
    return cluster


def _derive_pis(model: ClusterModel, harvested: dict[tuple[int, int], MacEntry]) -> list[Pi]:
    banks = model.banks
    power_of_bank: dict[int, str] = {}
    for group in model.power.groups:
        for bank in group.banks:
            power_of_bank.setdefault(bank, net.power_group_name(group.id))
    ports: dict[tuple[int, int], tuple[str | None, int | None]] = {}
    for switch in model.switches:
        for mapping in switch.banks:
            for slot, number in enumerate(_switch_ports(mapping, banks.size), start=1):
                ports.setdefault((mapping.bank, slot), (switch.name, number))
    pis = []
    for bank in range(1, banks.count + 1):
        for slot in range(1, banks.size + 1):
            entry = harvested.get((bank, slot))
            mac = str(entry.mac) if entry else None
            switch_name, port = ports.get((bank, slot), (None, None))
            try:
                ip = net.slot_ip(model.network.cidr, bank, slot, model.network.bank_stride)
            except ValueError:
                ip = ""  # reported by the checks; such a model never gets past validation
            pis.append(
                Pi(
                    name=net.pi_name(bank, slot, banks.count, banks.size),
                    bank=bank,
                    slot=slot,
                    ip=ip,
                    pi_model=banks.model,
                    bank_group=net.bank_group_name(bank, banks.count),
                    power_group=power_of_bank.get(bank),
                    mac=mac,
                    serial=str(entry.serial) if entry and entry.serial else None,
                    serial_suffix=net.serial_suffix_from_mac(mac, banks.model) if mac else None,
                    switch=switch_name,
                    switch_port=port,
                )
            )
    return pis


def _switch_ports(mapping: Any, size: int) -> list[int]:
    if mapping.ports is not None:
        return list(mapping.ports)
    return [mapping.first_port + offset for offset in range(size)]
