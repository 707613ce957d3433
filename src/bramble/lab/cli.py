"""``bramble-lab``: bring a lab's supervisor up, ask its state, take it down.

    bramble-lab up --model inventory/lab/cluster.yml --name lab --secrets secrets.json
    bramble-lab status --name lab
    bramble-lab down --name lab
    bramble-lab inventory --banks 4 --bank-size 8 [--out build/lab-4x8]
    bramble-lab qemu-image --srv /run/bramble/lab/lab/srv --head 10.42.0.1

``up`` and ``down`` print one JSON line ``{"changed": ..., ...}`` (what Ansible reads): ``up``
changes nothing when the lab's supervisor already runs with the same plan, and restarts it
when the plan differs; ``down`` stops the supervisor by the PID in its state folder
(``/run/bramble/lab/<name>/``), which removes its processes and namespaces, then removes any
namespace of the plan still there and the state folder; a QEMU node (``up --qemu-node``) is
stopped by its PID file, also when its supervisor was lost. ``qemu-image`` copies the cached real
image into a lab's /srv/bramble for the QEMU node (bramble.lab.qemu_image). Needs root.
``inventory`` writes a copy of inventory/lab scaled to N banks of M Pis (bramble.lab.sizes; no
root needed) and prints where.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bramble.lab import cloud, qemu_image, sizes
from bramble.lab.plan import STATE_ROOT, LabPlan, QemuSettings, build_plan
from bramble.lab.qemu_node import LAB_MAC, stop_pid_file
from bramble.lab.supervisor import delete_networks, run
from bramble.labnet import ip, list_netns, pid_running

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def _alive(pid: int) -> bool:
    """``pid`` runs and is a lab supervisor (a reused PID is not)."""
    if not pid_running(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        return b"bramble.lab" in cmdline.read_bytes()
    return False


def supervisor_pid(state_dir: Path) -> int | None:
    """The running supervisor's PID from its state folder, or None."""
    try:
        pid = int((state_dir / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def up(  # noqa: PLR0917 - the CLI's options, one by one
    model: Path,
    name: str,
    secrets: Path | None,
    state_root: Path,
    rom_dhcp_tries: int = 5,
    qemu: QemuSettings | None = None,
) -> dict[str, Any]:
    plan = build_plan(model, name, state_root, rom_dhcp_tries, qemu)
    state_dir = Path(plan.state_dir)
    plan_file = state_dir / "plan.json"
    pid = supervisor_pid(state_dir)
    if pid is not None and plan_file.exists() and plan_file.read_text() == plan.to_json():
        return {"changed": False, "pid": pid, "state_dir": str(state_dir), "plan": plan_dict(plan)}
    if pid is not None or plan_file.exists():
        down(name, state_root)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    plan_file.write_text(plan.to_json())
    argv = [
        sys.executable,
        "-m",
        "bramble.lab",
        "serve",
        "--name",
        name,
        "--state-root",
        str(state_root),
    ]
    if secrets:
        argv += ["--secrets", str(secrets)]
    with (state_dir / "supervisor.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (state_dir / "supervisor.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the lab supervisor exited ({process.returncode}): {tail}")
        if supervisor_pid(state_dir) == process.pid and read_status(state_dir).get("ready"):
            return {
                "changed": True,
                "pid": process.pid,
                "state_dir": str(state_dir),
                "plan": plan_dict(plan),
            }
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    raise RuntimeError(f"the lab supervisor was not ready within {START_TIMEOUT:.0f} s")


def plan_dict(plan: LabPlan) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(plan.to_json())
    return data


def down(name: str, state_root: Path) -> dict[str, Any]:
    state_dir = state_root / name
    # The cloud gateway (lab_vpn) first: its charon, by PID, and its namespace.
    changed = bool(cloud.down(name, state_root)["changed"])
    pid = supervisor_pid(state_dir)
    if pid is not None:
        changed = True
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            # The supervisor leads its own process group (started with start_new_session):
            # its ROMs, agents and NFS readers are in it too, and go with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    # The QEMU node: its supervisor stops it; this finds one whose supervisor was lost.
    if stop_pid_file(state_dir / "qemu.pid"):
        changed = True
    left: list[str] = []
    plan_file = state_dir / "plan.json"
    try:
        plan: LabPlan | None = LabPlan.from_json(plan_file.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        plan = None
    if plan is not None:
        left = delete_networks(plan)
    # What a lost or older plan file does not name: namespaces by the lab's prefix.
    for netns in list_netns():
        if netns.startswith(f"brl-{name}-"):
            changed = True
            ip("netns", "del", netns, check=False)
            if netns in list_netns():
                left.append(netns)
    if state_dir.exists():
        changed = True
        shutil.rmtree(state_dir)
    if left:
        raise RuntimeError(f"namespaces left behind: {', '.join(left)}")
    return {"changed": changed}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bramble-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the lab (or find it running)")
    start.add_argument("--model", type=Path, required=True, help="the lab's cluster.yml")
    start.add_argument("--name", required=True)
    start.add_argument("--secrets", type=Path, help="JSON: vault variable name -> secret")
    start.add_argument("--state-root", type=Path, default=STATE_ROOT)
    start.add_argument(
        "--rom-dhcp-tries", type=int, default=5, help="DHCP rounds of each simulated ROM"
    )
    start.add_argument(
        "--qemu-node", choices=("true", "false"), default="false", help="run the QEMU node too"
    )
    start.add_argument("--qemu-name", default="qemu1")
    start.add_argument("--qemu-mac", default=LAB_MAC)
    start.add_argument("--qemu-address", default="", help="default: host part .0.200")
    image = sub.add_parser("qemu-image", help="copy the QEMU node's image into a lab's srv")
    image.add_argument("--srv", type=Path, required=True, help="the head's /srv/bramble")
    image.add_argument("--head", required=True, help="the head's cluster address")
    image.add_argument("--cache", type=Path, default=qemu_image.CACHE)
    scale = sub.add_parser("inventory", help="write inventory/lab scaled to N banks of M Pis")
    scale.add_argument("--banks", type=int, default=sizes.DEFAULT_BANKS)
    scale.add_argument("--bank-size", type=int, default=sizes.DEFAULT_BANK_SIZE)
    scale.add_argument("--out", type=Path, help="folder to write (default build/lab-<N>x<M>)")
    scale.add_argument("--name", help="the lab's name (default lab<N>x<M>)")
    scale.add_argument("--network", help="the lab's /16 (default 10.<200..249>.0.0/16 by name)")
    scale.add_argument(
        "--path-only", action="store_true", help="print the inventory's path, not JSON"
    )
    for command in ("down", "status", "serve"):
        p = sub.add_parser(command)
        p.add_argument("--name", required=True)
        p.add_argument("--state-root", type=Path, default=STATE_ROOT)
        if command == "serve":
            p.add_argument("--secrets", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            qemu = (
                QemuSettings(args.qemu_name, args.qemu_mac, args.qemu_address or None)
                if args.qemu_node == "true"
                else None
            )
            print(
                json.dumps(
                    up(
                        args.model,
                        args.name,
                        args.secrets,
                        args.state_root,
                        args.rom_dhcp_tries,
                        qemu,
                    )
                )
            )
        elif args.command == "qemu-image":
            print(json.dumps(qemu_image.install(args.srv, args.head, args.cache)))
        elif args.command == "down":
            print(json.dumps(down(args.name, args.state_root)))
        elif args.command == "inventory":
            made = sizes.write_inventory(
                args.banks, args.bank_size, out=args.out, name=args.name, network=args.network
            )
            print(made.inventory if args.path_only else json.dumps(made.as_dict()))
        elif args.command == "status":
            print(json.dumps(read_status(args.state_root / args.name)))
        else:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
            state_dir = args.state_root / args.name
            plan = LabPlan.from_json((state_dir / "plan.json").read_text())
            secrets = json.loads(args.secrets.read_text()) if args.secrets else {}
            return run(plan, secrets)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"bramble-lab: {exc}", file=sys.stderr)
        return 1
    return 0
