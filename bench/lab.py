"""The lab end to end: ``make run`` from nothing to every simulated Pi registered, then again.

Figures (wall-clock: the lab is processes, namespaces and a container, not one CPU loop):
1. the first ``ansible-playbook site.yml`` on a lab inventory, from no lab at all (the head's
   image cached) to the report with every Pi booted and registered; the report's own time from
   the lab play's start;
2. baseline, same run: the second ``site.yml``, which finds every bank up and changes nothing
   (its changed-task count is printed and must be 0); the ratio first/second is the cost of
   provisioning over the cost of checking.
The lab is torn down before and after (``playbooks/lab_destroy.yml``). Needs root.
Run: ``.venv/bin/python bench/lab.py [--inventory inventory/lab]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TIMEOUT = 3600


def playbook(inventory: Path, name: str) -> tuple[float, dict[str, Any]]:
    """Run one playbook with the JSON callback: (seconds, its JSON report)."""
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FORCE_COLOR="0",
    )
    start = time.monotonic()
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    took = time.monotonic() - start
    if run.returncode != 0:
        sys.exit(f"{name} failed (rc {run.returncode}):\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
    return took, json.loads(run.stdout[run.stdout.index("{") :])


def changed(report: dict[str, Any]) -> int:
    """Changed tasks, summed over the hosts."""
    return sum(int(stats.get("changed", 0)) for stats in report["stats"].values())


def lab_report(inventory: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415 - only needed here

    name = yaml.safe_load((inventory / "cluster.yml").read_text())["cluster"]["name"]
    result: dict[str, Any] = json.loads(Path(f"/run/bramble/lab/{name}/report.json").read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventory" / "lab")
    args = parser.parse_args()
    inventory: Path = args.inventory.resolve()
    load = os.getloadavg()
    playbook(inventory, "playbooks/lab_destroy.yml")
    try:
        first, first_report = playbook(inventory, "site.yml")
        report = lab_report(inventory)
        second, second_report = playbook(inventory, "site.yml")
        again = lab_report(inventory)
    finally:
        playbook(inventory, "playbooks/lab_destroy.yml")
    banks = len(report["banks"])
    after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"lab {inventory.name}: {report['expected']} simulated Pis in {banks} banks")
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, after: {after}")
    print(
        f"first site.yml (from nothing): {first:.0f} s, {changed(first_report)} changed; booted"
        f" {report['booted']}/{report['expected']}, registered {report['registered']}"
    )
    print(
        f"second site.yml (baseline):    {second:.0f} s, {changed(second_report)} changed;"
        f" registered {again['registered']}/{again['expected']}"
    )
    print(f"ratio first/second: {first / second:.2f}")


if __name__ == "__main__":
    main()
