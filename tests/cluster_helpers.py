"""Constants and helpers shared by the cluster-model tests (fixtures are in conftest.py)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ROOT / "inventory"
#: The bin folder of the Python running the tests (.venv/bin): ansible-* and bramble-model.
BIN = Path(sys.executable).parent
ANSIBLE_TIMEOUT = 60

#: A small valid cluster.yml (2 banks of 4 on one PDU) that tests copy and break.
BASE_MODEL: dict[str, Any] = {
    "plugin": "bramble",
    "cluster": {"name": "test", "domain": "test.internal"},
    "network": {"cidr": "10.42.0.0/16", "bank_stride": 256},
    "head": {"name": "test-head", "address": "10.42.0.1", "interfaces": {"cluster": "eth1"}},
    "banks": {"count": 2, "size": 4, "model": "pi3bplus"},
    "controllers": [
        {
            "name": "pdu1",
            "driver": "synaccess",
            "address": "10.42.0.11",
            "outlets": 4,
            "credentials": "vault_test_pdu1_password",
        }
    ],
    "power": {
        "budget": 8,
        "groups": [
            {"id": 1, "controller": "pdu1", "outlet": 1, "banks": [1]},
            {"id": 2, "controller": "pdu1", "outlet": 2, "banks": [2]},
        ],
    },
}


def mac_of(bank: int, slot: int) -> str:
    """A Pi 3B+ MAC unique to a slot: b8:27:eb + 00, bank, slot."""
    return f"b8:27:eb:00:{bank:02x}:{slot:02x}"


def serial_of(bank: int, slot: int) -> str:
    """The serial that matches ``mac_of(bank, slot)``: 10 + the MAC's low three bytes."""
    return f"1000{bank:02x}{slot:02x}"


def line_containing(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not found in {path}")


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_INVENTORY", None)
    return env


def run_tool(*argv: str | Path, timeout: int = ANSIBLE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ansible, ansible-inventory, ansible-playbook or bramble-model from the repository."""
    command = [str(BIN / str(argv[0])), *(str(arg) for arg in argv[1:])]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fleet_model(base: dict[str, Any], banks: int, size: int) -> dict[str, Any]:
    """A copy of ``base`` with ``banks`` banks of ``size`` Pis, one power group (outlet) each."""
    model = copy.deepcopy(base)
    model["banks"].update(count=banks, size=size)
    model["controllers"][0]["outlets"] = banks
    model["power"]["budget"] = banks * size
    model["power"]["groups"] = [
        {"id": bank, "controller": "pdu1", "outlet": bank, "banks": [bank]}
        for bank in range(1, banks + 1)
    ]
    return model


def load_module_utils(name: str) -> ModuleType:
    """A file of plugins/module_utils, imported under the name Ansible gives it (once)."""
    full = f"ansible.module_utils.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(
        full, ROOT / "plugins" / "module_utils" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module
