"""For the testinfra verifiers of molecule scenarios: is ``--check --diff`` truthful after converge?

``check_converge()`` runs the scenario's converge playbook again with ``--check --diff`` from the
controller, against the instances molecule made (its inventory and the scenario's), in the
verifier's environment (molecule passes the provisioner's: ANSIBLE_CONFIG, vault password...).
After converge and idempotence it must predict no change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckRun:
    """An ``ansible-playbook --check --diff`` run: exit status and output."""

    returncode: int
    output: str

    @property
    def changed(self) -> int:
        """How many tasks would change: the sum of changed=N over the PLAY RECAP lines."""
        return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", self.output))


def check_converge(timeout: float = 900) -> CheckRun:
    """Run the current molecule scenario's converge.yml with --check --diff."""
    try:
        scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
        ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    except KeyError as missing:
        raise RuntimeError(f"not run by molecule verify ({missing} is not set)") from None
    result = subprocess.run(
        [Path(sys.executable).parent / "ansible-playbook", "--check", "--diff",
         "-i", ephemeral / "inventory", "-i", scenario / "inventory", scenario / "converge.yml"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return CheckRun(result.returncode, result.stdout + result.stderr)
