"""The lab end to end: a copy of inventory/lab (own name and network) provisioned by the real
playbooks, checked through its report, run twice, then torn down.

What a user of ``make run`` cares about: every simulated Pi booted from the head (DHCP
reservation, TFTP serial folder) and its agent registered with the server; the reservations
are the harvested MACs; a second run changes nothing; ``make lab-down`` leaves no namespace,
interface, container or process behind. Needs root, podman and the image of
tests/images/build (built by the lab when missing). Slow: about 10 minutes on an idle
2-core machine, several times that under load.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bramble.lab import sizes
from bramble.lab.cli import supervisor_pid
from bramble.lab.plan import STATE_ROOT, build_plan
from bramble.labnet import list_netns, pid_running
from cluster_helpers import BIN, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.long,
]

SITE = ROOT / "site.yml"
CONTAINERS_CONF = ROOT / "tests" / "images" / "containers.conf"
RUN_TIMEOUT = 3600


@dataclass
class Lab:
    name: str
    inventory: Path
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def container(self) -> str:
        return f"brl-{self.name}-head"

    def playbook(self, playbook: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )

    def exec(self, container: str, *argv: str) -> str:
        """``podman exec`` in one of the lab's containers; its output."""
        return subprocess.run(
            ["podman", "exec", container, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout

    def bridge(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """bramble-bridge's API on the head (127.0.0.1 there), with the token the role deployed."""
        token = self.exec(self.container, "cat", "/etc/bramble/bridge-secrets/api-token").strip()
        data = ["-H", "Content-Type: application/json", "-d", json.dumps(body)] if body else []
        url = f"http://127.0.0.1:8472/api/v1/{path}"
        auth = f"Authorization: Bearer {token}"
        out = self.exec(
            self.container,
            "curl",
            "-sS",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "-H",
            auth,
            *data,
            url,
        )
        answer, status = out.rsplit("\n", 1)
        assert status == "200", f"{method} {path}: {status} {answer}"
        return json.loads(answer)

    def diagnostics(self) -> str:
        """What the lab's own files say: the supervisor's per-Pi state and log, the agents'
        logs (printed when a run fails, so a failure in CI can be understood)."""
        parts = []
        status = self.state_dir / "status.json"
        if status.exists():
            pis = json.loads(status.read_text()).get("pis", {})
            for name, pi in sorted(pis.items()):
                parts.append(f"{name}: {json.dumps(pi, sort_keys=True)}")
        log = self.state_dir / "supervisor.log"
        if log.exists():
            parts.append("supervisor.log:\n" + log.read_text(errors="replace")[-6000:])
        for agent_log in sorted(self.state_dir.glob("pis/*/agent.log")):
            tail = agent_log.read_text(errors="replace")[-1500:]
            parts.append(f"{agent_log.parent.name}/agent.log:\n{tail}")
        return "\n".join(parts)

    def site(self) -> dict[str, Any]:
        run = self.playbook(SITE)
        assert run.returncode == 0, (
            run.stdout[-6000:] + run.stderr[-3000:] + "\n== lab state\n" + self.diagnostics()
        )
        result: dict[str, Any] = json.loads(run.stdout[run.stdout.index("{") :])
        return result


def _requirements() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, podman)"
    for tool in ("podman", "ip", "nfs-cat"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Makefile APT_TEST: podman, iproute2, libnfs-utils)"
    return None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    name = f"brt{random.randrange(16**5):05x}"  # noqa: S311 - a name, not a secret
    octet = random.randrange(100, 200)  # noqa: S311
    # The lab's own size (2 x 4) under its own name and network, by the sizes' generator.
    inventory = sizes.write_inventory(
        sizes.DEFAULT_BANKS,
        sizes.DEFAULT_BANK_SIZE,
        out=tmp_path / "inventory",
        name=name,
        network=f"10.{octet}.0.0/16",
    ).inventory
    (inventory / "macs.yml").write_text("---\nmacs: []\n")
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FORCE_COLOR="0",
        CONTAINERS_CONF=str(CONTAINERS_CONF),
    )
    the_lab = Lab(name, inventory, env)
    try:
        yield the_lab
    finally:
        the_lab.playbook(ROOT / "playbooks" / "lab_destroy.yml")
        # Whatever the playbook could not remove (it failed, or never ran far enough).
        subprocess.run(
            ["podman", "rm", "-f", "-t", "5", the_lab.container, f"brl-{name}-sound"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        subprocess.run(
            [str(BIN / "python"), "-m", "bramble.lab", "down", "--name", name],
            capture_output=True,
            timeout=120,
            check=False,
        )


def changed_tasks(result: dict[str, Any]) -> list[str]:
    """``host: task`` for every task that reported a change."""
    found = []
    for play in result["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("changed"):
                    found.append(f"{host}: {task['task']['name']}")
    return found


def test_lab_end_to_end(lab: Lab) -> None:
    plan = build_plan(lab.inventory / "cluster.yml", lab.name)
    first = lab.site()

    report = json.loads((lab.state_dir / "report.json").read_text())
    assert report["expected"] == len(plan.pis) == 8
    assert report["booted"] == report["expected"], report
    assert report["registered"] == report["expected"], report
    assert [b["booted"] for b in report["banks"]] == [4, 4]

    # The MAC file holds what the switch and the ROMs' DISCOVERs showed: MAC and serial per slot.
    macs = yaml.safe_load((lab.inventory / "macs.yml").read_text())["macs"]
    harvested = {(m["bank"], m["slot"]): (m["mac"], m.get("serial")) for m in macs}
    assert harvested == {(p.bank, p.slot): (p.mac, p.serial) for p in plan.pis}
    # ... and the head's dnsmasq reserves exactly those MACs, at the model's addresses.
    conf = lab.exec(lab.container, "cat", "/etc/dnsmasq.d/bramble.conf")
    reserved = {
        line.split("=", 1)[1].split(",")[0]
        for line in conf.splitlines()
        if line.startswith("dhcp-host=")
    }
    assert reserved == {p.mac for p in plan.pis}
    for pi in plan.pis:
        assert f"dhcp-host={pi.mac}" in conf
        assert pi.ip in conf
    assert changed_tasks(first)

    # The bridges: bramble-bridge on the head reaches the board simulators (with the secrets the
    # role generated) and bramble-sound in the sound Pi's container (the volume makes the trip).
    lab.bridge("POST", "power", {"action": "press", "ms": 50, "confirm": True})
    assert lab.bridge("GET", "power")["presses"] == 1
    lab.bridge("POST", "lights/fill", {"r": 10, "g": 20, "b": 30})
    lab.bridge("POST", "lights/brightness", {"value": 17})
    assert lab.bridge("GET", "lights")["brightness"] == 17
    assert lab.bridge("POST", "sound/volume", {"percent": 30})["volume"] == 30
    assert lab.bridge("GET", "sound")["volume"] == 30
    sound = f"brl-{lab.name}-sound"
    assert lab.exec(sound, "systemctl", "is-active", "bramble-sound").strip() == "active"

    second = lab.site()
    assert changed_tasks(second) == [], "the second run changed something"
    report = json.loads((lab.state_dir / "report.json").read_text())
    assert report["registered"] == report["expected"] == 8, report

    pid = supervisor_pid(lab.state_dir)
    assert pid is not None
    lab.playbook(ROOT / "playbooks" / "lab_destroy.yml")
    assert [n for n in list_netns() if n.startswith(f"brl-{lab.name}-")] == []
    assert not Path(f"/sys/class/net/{plan.control_interface}").exists()
    assert not pid_running(pid), f"the lab supervisor (pid {pid}) still runs"
    assert not lab.state_dir.exists()
    assert not (lab.inventory / "macs.yml").exists()  # the lab's harvest is forgotten too
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert [line for line in ps.stdout.splitlines() if lab.name in line] == []
    for container in (lab.container, sound):
        exists = subprocess.run(
            ["podman", "container", "exists", container],
            env=lab.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert exists.returncode == 1, f"{container} is left"
