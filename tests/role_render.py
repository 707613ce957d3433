"""Render a role's templates and derived variables on localhost, without running its tasks.

For roles whose tasks need root-level changes (podman images, system users) the files they
write can still be tested: the role's defaults and vars are loaded as the role loads them,
each template is rendered into a scratch folder, and the named variables are dumped as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cluster_helpers import ROOT, run_tool


def render_role(
    role: str,
    inventory: Path,
    out: Path,
    *,
    templates: list[str],
    derived: list[str],
    extra: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Render ``templates`` (paths below the role's templates/) into ``out``; return the run
    and the values of the ``derived`` variables."""
    role_dir = ROOT / "roles" / role
    derived_file = out / "derived.json"
    tasks: list[dict[str, Any]] = [
        {
            "name": f"Render {name}",
            "ansible.builtin.template": {
                "src": str(role_dir / "templates" / name),
                "dest": str(out / Path(name).name.removesuffix(".j2")),
                "mode": "0644",
            },
        }
        for name in templates
    ]
    tasks.append(
        {
            "name": "Write the derived variables",
            "ansible.builtin.copy": {
                "content": "{{ {" + ", ".join(f"'{v}': {v}" for v in derived) + "} | to_json }}",
                "dest": str(derived_file),
                "mode": "0644",
            },
        }
    )
    play = [
        {
            "name": f"Render {role}",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [
                str(role_dir / "defaults" / "main.yml"),
                str(role_dir / "vars" / "main.yml"),
            ],
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "tasks": tasks,
        }
    ]
    out.mkdir(parents=True, exist_ok=True)
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    result = run_tool(
        "ansible-playbook", "-i", inventory, playbook, "-e", json.dumps(extra or {}), timeout=300
    )
    values = json.loads(derived_file.read_text(encoding="utf-8")) if derived_file.exists() else {}
    return result, values
