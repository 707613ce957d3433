"""The bramble_progress stdout callback: per-bank stages from results, and a real run on the lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cluster_helpers import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "callback"))
from bramble_progress import CallbackModule


def group(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)


def result(action: str, args: dict[str, Any], data: dict[str, Any], bank: int) -> Any:
    host = SimpleNamespace(get_groups=lambda: [group("pis"), group(f"bank{bank:02d}")])
    task = SimpleNamespace(action=action, args=args, tags=[])
    return SimpleNamespace(_task=task, _result=data, _host=host)


def test_stages_come_from_bank_power_and_mac_harvest_results():
    callback = CallbackModule()
    callback.bank(1).size = 4
    callback.bank(2).size = 4
    callback.learn(result("bank_power", {"state": "on", "banks": [1, 2]}, {"pis": []}, 1))
    harvest = {
        "new": [{"bank": 1, "slot": 1}, {"bank": 1, "slot": 2}],
        "moved": [],
        "unchanged": [],
    }
    callback.learn(result("mac_harvest", {}, harvest, 1))
    rows = [
        {"bank": 1, "slot": s, "outcome": "booted" if s < 4 else "missing"} for s in (1, 2, 3, 4)
    ]
    boot = {"pis": rows, "booted": 3, "expected": 4, "failed_banks": [2]}
    callback.learn(
        result(
            "bank_power",
            {"state": "cycle", "wait_for": "agent_registered", "banks": [1, 2]},
            boot,
            1,
        )
    )
    table = {line.split()[0]: line.split() for line in callback.bank_table()[1:]}
    assert table["1"] == ["1", "4", "yes", "3/4", "3/4", "3/4"]
    assert table["2"] == ["2", "4", "NO", "-", "-", "-"]


def test_failed_power_task_leaves_the_bank_unpowered():
    callback = CallbackModule()
    callback.learn(result("bank_power", {"state": "on", "banks": [3]}, {"failed": True}, 3))
    assert callback.bank_table()[1:] == []


@pytest.mark.slow
def test_site_on_the_lab_prints_tasks_not_hosts_and_ends_with_the_report(tmp_path: Path):
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "bramble_progress",
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "plugins" / "callback"),
        "ANSIBLE_NOCOLOR": "1",
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "playbooks/model.yml",
            "-e",
            f"cluster_report_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "ok: [localhost]" not in out
    assert "✓ cluster_report : Render the reservations, hosts file and report: 1 changed" in out
    report = out.split("CLUSTER REPORT", 1)[1]
    assert "Cluster lab: 2 bank(s) of 4" in report
    assert report.index("bank02") < report.index("PLAY RECAP")
