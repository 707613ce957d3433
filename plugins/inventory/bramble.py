"""Inventory plugin: the bramble cluster model (cluster.yml + macs.yml) as Ansible hosts."""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.template import trust_as_template
from ansible.utils.display import Display

DOCUMENTATION = r"""
name: bramble
short_description: Hosts and groups of a bramble Raspberry Pi cluster
description:
  - Reads a cluster model (C(cluster.yml)) and the harvested MACs beside it (C(macs.yml)) and
    adds the head, every Pi of every bank (harvested or not), the sound Pi, and the groups
    C(head), C(pis), C(bankNN), C(powerNN), C(bridges) and C(vpn_gateways).
  - The model is validated against its schema; a schema error stops Ansible with a message
    naming the file, line and key. Relations between entries (duplicate MACs, power budget,
    address ranges) are warned about here and enforced by the C(validate_inventory) role.
  - The schema and the derivation rules are documented in docs/cluster-model.md.
options:
  plugin:
    description: Marks the file as a bramble cluster model.
    required: true
    choices: [bramble]
"""

EXAMPLES = r"""
# inventory/desk/cluster.yml
plugin: bramble
cluster: {name: desk}
head: {interfaces: {cluster: eth1}}
banks: {count: 1, size: 4}
controllers: [{name: hub, driver: uhubctl}]
power: {budget: 4, groups: [{id: 1, controller: hub, outlet: all, banks: [1]}]}
"""

try:
    from bramble.model import ModelError, load_cluster_cached
except ImportError as _exc:  # reported by parse(), with what to do
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

display = Display()


class InventoryModule(BaseInventoryPlugin):  # type: ignore[misc]
    """Adds the hosts and groups derived from a bramble cluster model."""

    NAME = "bramble"

    def verify_file(self, path: str) -> bool:
        return bool(super().verify_file(path)) and os.path.basename(path) in (
            "cluster.yml",
            "cluster.yaml",
        )

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        if _IMPORT_ERROR is not None:
            raise AnsibleParserError(
                f"{path}: the bramble Python package is not importable by the Python that runs "
                f"Ansible ({_IMPORT_ERROR}); run `make venv` and use .venv/bin/ansible-playbook"
            )
        try:
            cluster = load_cluster_cached(path)
        except ModelError as exc:
            raise AnsibleParserError(str(exc)) from None
        for problem in cluster.problems:
            display.warning(f"bramble model: {problem}")
        self._populate(cluster)

    def _populate(self, cluster: Any) -> None:
        inv = self.inventory
        model = cluster.model
        for group in ("head", "pis", "bridges", "vpn_gateways"):
            inv.add_group(group)
        # Fleet-sized data stays out of the inventory itself: a group variable is copied into
        # every host by `ansible-inventory --list`, which would grow with hosts x Pis. These
        # two are templates that fetch the data from the model (loaded once, cached) when used.
        all_vars: dict[str, Any] = {
            "bramble_cluster": cluster.summary(),
            "bramble_model_errors": list(cluster.problems),
            "bramble_pis": trust_as_template("{{ query('bramble', 'pis') }}"),
            "bramble_model": trust_as_template("{{ lookup('bramble', 'model') }}"),
        }
        for key, value in all_vars.items():
            inv.set_variable("all", key, value)

        head = model.head_name
        inv.add_host(head, group="head")
        inv.set_variable(head, "bramble_address", model.head_address)
        inv.set_variable(head, "bramble_interfaces", model.head.interfaces.model_dump())
        if model.head.admin_address:
            inv.set_variable(head, "ansible_host", model.head.admin_address)
        inv.add_child("bridges", head)
        if model.vpn is not None:
            inv.add_child("vpn_gateways", head)
        sound = model.bridges.sound if model.bridges else None
        if sound is not None:
            inv.add_host(sound.name, group="bridges")
            inv.set_variable(sound.name, "ansible_host", sound.address)
            inv.set_variable(sound.name, "bramble_address", sound.address)

        for pi in cluster.pis:
            inv.add_group(pi.bank_group)
            inv.add_host(pi.name, group=pi.bank_group)
            inv.add_child("pis", pi.name)
            if pi.power_group:
                inv.add_group(pi.power_group)
                inv.add_child(pi.power_group, pi.name)
            for key, value in pi.as_vars().items():
                inv.set_variable(pi.name, key, value)
            if pi.ip:
                inv.set_variable(pi.name, "ansible_host", pi.ip)
