"""The lab report's counting (roles/lab/vars/main.yml), rendered by Ansible from a supervisor
status and a server node list: an agent counts as registered only when the server heard from
it since its Pi's last power-on and does not call it down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cluster_helpers import ROOT, run_tool

NOW = 1_800_000_000.0


def _pi(
    mac: str, bank: int, *, booted: bool = True, powered_at: float = NOW - 100
) -> dict[str, Any]:
    return {"mac": mac, "bank": bank, "boots": 1, "booted": booted, "powered_at": powered_at}


def render(tmp_path: Path, pis: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """``_lab_report`` for this supervisor status and node list."""
    play = [
        {
            "name": "Render the lab report",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROOT / "roles" / "lab" / "vars" / "main.yml")],
            "vars": {
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "lab_name": "t",
                "lab_run_started": NOW - 200,
                "__lab_status": {"stdout": json.dumps({"pis": pis})},
                "__lab_nodes": {"status": 200, "json": {"nodes": nodes}},
            },
            "tasks": [
                {
                    "name": "Write the report",
                    "ansible.builtin.copy": {
                        "content": "{{ _lab_report | to_json }}",
                        "dest": str(tmp_path / "report.json"),
                        "mode": "0644",
                    },
                }
            ],
        }
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    result: subprocess.CompletedProcess[str] = run_tool(
        "ansible-playbook", "-i", "localhost,", str(playbook)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    return report


def test_only_agents_heard_since_their_power_on_count(tmp_path: Path) -> None:
    pis = {
        "pi-01-01": _pi("b8:27:eb:00:00:01", 1),
        "pi-01-02": _pi("b8:27:eb:00:00:02", 1),
        "pi-02-01": _pi("b8:27:eb:00:00:03", 2),
        "pi-02-02": _pi("b8:27:eb:00:00:04", 2, booted=False),
    }
    fresh = NOW - 50
    nodes = [
        {"mac": "b8:27:eb:00:00:01", "health": "up", "registered_at": fresh, "last_seen": fresh},
        # registered before the last power-on: left over from an earlier boot
        {
            "mac": "b8:27:eb:00:00:02",
            "health": "up",
            "registered_at": NOW - 900,
            "last_seen": NOW - 400,
        },
        # re-registered since (the server keeps the first registered_at, moves last_seen)
        {
            "mac": "b8:27:eb:00:00:03",
            "health": "up",
            "registered_at": NOW - 900,
            "last_seen": fresh,
        },
        # heard from, but the server's health checks call it down
        {"mac": "b8:27:eb:00:00:04", "health": "down", "registered_at": fresh, "last_seen": fresh},
    ]
    report = render(tmp_path, pis, nodes)
    assert (report["expected"], report["booted"], report["registered"]) == (4, 3, 2)
    assert [(b["bank"], b["booted"], b["registered"]) for b in report["banks"]] == [
        (1, 2, 1),
        (2, 1, 1),
    ]
    assert report["missing"] == ["pi-01-02", "pi-02-02"]


def test_all_up_is_all_registered(tmp_path: Path) -> None:
    pis = {f"pi-01-0{i}": _pi(f"b8:27:eb:00:01:0{i}", 1) for i in range(1, 5)}
    nodes = [
        {"mac": p["mac"], "health": "up", "registered_at": NOW - 10, "last_seen": NOW - 1}
        for p in pis.values()
    ]
    report = render(tmp_path, pis, nodes)
    assert (report["booted"], report["registered"], report["missing"]) == (4, 4, [])
