"""The lab supervisor: one long-running process per lab that owns its namespaces and simulators.

It builds the lab's networks (``LabPlan``): a bridge namespace (the cluster switch), the head's
namespace (the head container joins it), a devices namespace holding the power controllers'
and switches' addresses, and one namespace per simulated Pi with the Pi's MAC. It runs the
power controller simulators and the bridge boards' simulators (``bramble.sim.boards``, with
the boards' secrets) on their lab addresses, gives the sound Pi's namespace (its container joins
it) the model's sound address, and wires the controllers to the Pis: an outlet
switched on starts the boot ROM simulator of every Pi its power group feeds; a Pi whose ROM
booted reads its agent configuration from the head's NFS export (``nfs-cat``, a real NFS read
from the Pi's namespace) and runs the real ``bramble-agent`` there. Switching the outlet off
stops the ROMs and agents and takes the Pis' addresses away.

State lives under ``/run/bramble/lab/<lab>/``: ``plan.json`` (what exists), ``supervisor.pid``
and ``status.json`` (per Pi: power, boots, last power-on time, booted, agent). On SIGTERM the
supervisor stops every process it started (by PID) and deletes every namespace of the plan, also
after an error half-way through building. Nothing is routed: no namespace gets a route beyond
its link.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bramble.lab.plan import LabBoard, LabController, LabPi, LabPlan, LabQemu
from bramble.lab.qemu_node import FAILURES, GRUB, KERNEL, OVERLAY, QemuNode, QemuNodeError
from bramble.labnet import LabNetError, enter_netns, ip, list_netns, stop_process
from bramble.sim import pirom
from bramble.sim.power import Outlets, ThreadedSim

LOG = logging.getLogger("bramble.lab")
ROM_TIMEOUT = 180.0  # seconds one simulated power-on may take before it counts as failed


def rom_timeout(dhcp_tries: int) -> float:
    """Seconds one simulated power-on may take: its DHCP rounds (about 5 s each), the TFTP
    reads after them, and never less than ``ROM_TIMEOUT``."""
    return max(ROM_TIMEOUT, dhcp_tries * 5.0 + 60.0)


#: The QEMU node: power-ons before it counts as failed, seconds from power-on to GRUB's first
#: line before a power cycle (UEFI PXE gives up when the head did not answer yet).
QEMU_TRIES = 4
QEMU_GRUB_TIMEOUT = 240.0
#: What the head serves the QEMU node, under the lab's state folder (the head's /srv/bramble).
QEMU_NEEDS = ("srv/tftp/efi-arm64/grub.cfg", "srv/tftp/efi-arm64/bootaa64.efi", "srv/boot/vmlinuz")
NFS_TRIES = 10  # attempts to read the agent configuration over NFS, 2 s apart
AGENT_CONFIG = "etc/bramble/agent.toml"  # inside the exported root
AGENT_SECRETS = ("etc/bramble/secrets/cluster.key", "etc/bramble/secrets/agent.token")


def _veth(plan: LabPlan, netns: str, port: str, interface: str, bridge: str) -> None:
    """A veth from ``bridge`` in the bridge namespace to ``interface`` in ``netns``."""
    ip(
        "-n",
        plan.cluster_netns,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        interface,
        "netns",
        netns,
    )
    ip("-n", plan.cluster_netns, "link", "set", port, "master", bridge, "up")
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "link", "set", interface, "up")


def build_networks(plan: LabPlan) -> None:
    """Namespaces, bridges and links of the plan (idempotent only on a clean slate)."""
    cidr = f"/{plan.prefix_length}"
    for netns in plan.namespaces:
        ip("netns", "add", netns)
    net = plan.cluster_netns
    ip("-n", net, "link", "set", "lo", "up")
    for bridge in ("br-cluster", "br-admin"):
        ip("-n", net, "link", "add", bridge, "type", "bridge", "stp_state", "0")
        ip("-n", net, "link", "set", bridge, "up")
    _veth(plan, plan.head_netns, "v-head", plan.cluster_interface, "br-cluster")
    ip(
        "-n",
        plan.head_netns,
        "addr",
        "add",
        plan.head_address + cidr,
        "dev",
        plan.cluster_interface,
    )
    _veth(plan, plan.head_netns, "v-head-adm", plan.admin_interface, "br-admin")
    ip("-n", plan.head_netns, "addr", "add", plan.admin_address, "dev", plan.admin_interface)
    _veth(plan, plan.devices_netns, "v-dev", "eth0", "br-cluster")
    for address in plan.device_addresses:
        ip("-n", plan.devices_netns, "addr", "add", address + cidr, "dev", "eth0")
    if plan.sound_netns and plan.sound_address:
        _veth(plan, plan.sound_netns, "v-sound", "eth0", "br-cluster")
        ip("-n", plan.sound_netns, "addr", "add", plan.sound_address + cidr, "dev", "eth0")
    _control_leg(plan)
    for index, pi in enumerate(plan.pis, 1):
        _veth(plan, pi.netns, f"v-p{index:04d}", "eth0", "br-cluster")
        ip("-n", pi.netns, "link", "set", "eth0", "address", pi.mac)


def _control_leg(plan: LabPlan) -> None:
    """The control node's leg on the cluster switch: a veth from this machine's namespace.

    Ansible's localhost (bank_power, mac_harvest, the registration wait) reaches the lab's
    controllers, switches and server through it, as an admin laptop plugged into the cluster
    switch would. Only the link's own route exists (the lab's network, to the lab's
    namespaces): nothing is routed beyond it, and IPv6 is off on it.
    """
    ip(
        "link",
        "add",
        plan.control_interface,
        "type",
        "veth",
        "peer",
        "name",
        "v-ctl",
        "netns",
        plan.cluster_netns,
    )
    ip("-n", plan.cluster_netns, "link", "set", "v-ctl", "master", "br-cluster", "up")
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{plan.control_interface}/disable_ipv6").write_text("1")
    ip("addr", "add", plan.control_address, "dev", plan.control_interface)
    ip("link", "set", plan.control_interface, "up")


def delete_networks(plan: LabPlan) -> list[str]:
    """Delete the plan's namespaces (bridge namespace last); the names that are left."""
    ip("link", "del", plan.control_interface, check=False)
    present = set(list_netns())
    for netns in reversed(plan.namespaces):
        if netns in present:
            ip("netns", "del", netns, check=False)
    deadline = time.monotonic() + 10
    left = [n for n in plan.namespaces if n in list_netns()]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [n for n in plan.namespaces if n in list_netns()]
    if Path(f"/sys/class/net/{plan.control_interface}").exists():
        left.append(f"interface {plan.control_interface}")
    return left


class BoardSim(ThreadedSim):
    """A bridge board simulator (``bramble.sim.boards``) in a thread of its own."""

    def __init__(self, board: LabBoard, secret: str) -> None:
        super().__init__(board.address, board.port)
        from bramble.sim import boards  # noqa: PLC0415 - only labs with boards need it

        self.board: boards.Board = (
            boards.ButtonsBoard(board.name, secret)
            if board.kind == "buttons"
            else boards.LightsBoard(board.name, secret, board.pixels, board.pixel_type)
        )

    async def _serve(self) -> int:
        return await self.board.start(self.host, self.port)

    async def _shutdown(self) -> None:
        await self.board.stop()


@dataclass
class PiState:
    """What one simulated Pi is doing."""

    pi: LabPi
    powered: bool = False
    generation: int = 0
    boots: int = 0
    powered_at: float = 0.0  # time.time() of the last power-on: registrations before it are stale
    booted: bool = False
    failure: str | None = None
    agent_pid: int | None = None
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)


class QemuRunner:
    """The lab's QEMU node (``plan.qemu``), in a thread of the supervisor.

    It waits until the head serves the node (GRUB, grub.cfg and the image's kernel in the lab's
    /srv/bramble: dhcp_tftp with ``dhcp_tftp_uefi_arm64`` ran), then powers it on, and powers it
    on again (at most ``QEMU_TRIES`` times) when GRUB did not load within ``QEMU_GRUB_TIMEOUT``
    (the head's dnsmasq did not serve it yet) or QEMU exited (a panic reboots, and QEMU runs
    with -no-reboot). The agent's registration is the server's to tell (the lab report asks).
    """

    def __init__(
        self, qemu: LabQemu, plan: LabPlan, stopping: threading.Event, changed: Any
    ) -> None:
        self.qemu = qemu
        self.state_dir = Path(plan.state_dir)
        self.stopping = stopping
        self.changed = changed  # called when the status changed
        self.node = QemuNode(
            name=qemu.name, netns=plan.cluster_netns, bridge="br-cluster",
            console=Path(qemu.console), mac=qemu.mac, tap=qemu.tap, pid_file=Path(qemu.pid_file),
        )  # fmt: skip
        self.lock = threading.Lock()
        self.powered_at = 0.0  # time.time() of the last power-on
        self.power_ons = 0
        self.marks: dict[str, float] = {}  # stage -> seconds from power-on
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"qemu-{qemu.name}")

    def start(self) -> None:
        self.thread.start()

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.qemu.name,
                "mac": self.qemu.mac,
                "ip": self.qemu.ip,
                "powered": self.node.running(),
                "powered_at": self.powered_at,
                "power_ons": self.power_ons,
                "boot": dict(self.marks),
                "failure": self.failure,
                "pid": process.pid if (process := self.node.process) else None,
            }

    def _served(self) -> bool:
        return all((self.state_dir / need).exists() for need in QEMU_NEEDS)

    def _run(self) -> None:
        while not self._served():
            if self.stopping.wait(2):
                return
        LOG.info("%s: the head serves it; powering on", self.qemu.name)
        for attempt in range(1, QEMU_TRIES + 1):
            outcome = self._boot_once()
            if outcome is None:
                return
            LOG.info("%s: power-on %d of %d: %s", self.qemu.name, attempt, QEMU_TRIES, outcome)
            with self.lock:
                self.failure = outcome
            self.node.stop()
            self.changed()
        LOG.error("%s: gave up after %d power-ons", self.qemu.name, QEMU_TRIES)

    def _boot_once(self) -> str | None:
        """Power on and watch; None when the lab stops, else why the node needs a power cycle."""
        try:
            self.node.start()
        except (QemuNodeError, LabNetError, OSError) as exc:
            return str(exc)
        with self.lock:
            self.powered_at = time.time()
            self.power_ons += 1
            self.marks = {}
            self.failure = None
        self.changed()
        stages = {"grub": GRUB, "kernel": KERNEL, "overlay": OVERLAY}
        while not self.stopping.wait(2):
            text = self.node.console_text()
            seconds = time.time() - self.powered_at
            new = {k: round(seconds, 1) for k, mark in stages.items()
                   if k not in self.marks and mark in text}  # fmt: skip
            if new:
                with self.lock:
                    self.marks.update(new)
                self.changed()
            failed = [line for line in FAILURES if line in text]
            if failed:
                return f"the console showed {failed[0]!r}"
            if not self.node.running():
                return "QEMU exited (see qemu/console.log and console.qemu.log)"
            if "grub" not in self.marks and seconds > QEMU_GRUB_TIMEOUT:
                return f"no GRUB within {QEMU_GRUB_TIMEOUT:.0f} s (UEFI PXE got no answer)"
        return None

    def stop(self) -> None:
        self.node.stop()
        self.thread.join(timeout=10)
        self.node.stop()  # a power-on that raced the stop


class Supervisor:
    """Runs one lab until told to stop (see the module doc)."""

    def __init__(self, plan: LabPlan, secrets: dict[str, str]) -> None:
        self.plan = plan
        self.secrets = secrets
        self.state_dir = Path(plan.state_dir)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sims: list[ThreadedSim] = []
        self.switches: dict[str, Any] = {}
        self.pis = {pi.name: PiState(pi) for pi in plan.pis}
        self.by_group: dict[int, list[PiState]] = {}
        for state in self.pis.values():
            self.by_group.setdefault(state.pi.power_group, []).append(state)
        self.qemu = (
            QemuRunner(plan.qemu, plan, self.stopping, self.write_status) if plan.qemu else None
        )

    # ---- power controllers -------------------------------------------------------------------
    def _sim(self, controller: LabController, outlets: Outlets) -> ThreadedSim:
        secret = self.secrets.get(controller.credentials or "", "")
        if controller.driver == "http_relay":
            from bramble.sim.relay import RelayBoardSim  # noqa: PLC0415 - aiohttp when used

            return RelayBoardSim(outlets, secret or "lab", controller.address, controller.port)
        if controller.driver == "synaccess":
            from bramble.sim.synaccess import SynaccessSim  # noqa: PLC0415

            return SynaccessSim(
                outlets, "admin", secret or "admin", controller.address, controller.port
            )
        raise ValueError(
            f"controller {controller.name}: the lab simulates http_relay and synaccess, "
            f"not {controller.driver}"
        )

    def start_controllers(self) -> None:
        """Each controller's simulator, listening in the devices namespace."""
        enter_netns(self.plan.devices_netns)  # threads started from here on live there
        for controller in self.plan.controllers:
            outlets = Outlets(controller.outlets)
            outlets.subscribe(self._outlet_callback(controller.name))
            sim = self._sim(controller, outlets)
            sim.start()
            self.sims.append(sim)
            LOG.info(
                "%s (%s) on %s:%s", controller.name, controller.driver, controller.address, sim.port
            )

    def start_boards(self) -> None:
        """Each bridge board's simulator, with its secret, in the devices namespace."""
        for board in self.plan.boards:
            secret = self.secrets.get(f"board-{board.name}", "")
            if not secret:
                LOG.warning("board %s: no secret in the lab's secrets, using 'lab'", board.name)
            sim = BoardSim(board, secret or "lab")
            sim.start()
            self.sims.append(sim)
            LOG.info("%s (%s board) on %s:%s", board.name, board.kind, board.address, sim.port)

    def start_switches(self) -> None:
        """Each switch's SNMP agent (MAC table of the powered Pis), in the devices namespace."""
        from bramble.sim.snmpagent import SnmpSim  # noqa: PLC0415 - pysnmp when used

        for switch in self.plan.switches:
            community = self.secrets.get(switch.community or "", "") or "public"
            sim = SnmpSim(community, "private", switch.address, 161, sys_name=switch.name)
            sim.start()
            self.sims.append(sim)
            self.switches[switch.name] = sim
            LOG.info("%s (snmp) on %s:%s", switch.name, switch.address, sim.port)

    def _learn(self) -> None:
        """Switch MAC tables: a powered Pi's MAC on its port (it sent frames)."""
        for name, sim in self.switches.items():
            with self.lock:
                table = {
                    s.pi.mac: int(s.pi.switch_port)
                    for s in self.pis.values()
                    if s.powered and s.pi.switch == name and s.pi.switch_port
                }
            sim.set_fdb(table)

    def _outlet_callback(self, controller: str) -> Any:
        def changed(outlet: int, on: bool) -> None:
            for group, where in self.plan.groups.items():
                if where == (controller, outlet):
                    for state in self.by_group.get(group, []):
                        self.power(state, on)
            self._learn()

        return changed

    # ---- the Pis -----------------------------------------------------------------------------
    def power(self, state: PiState, on: bool) -> None:
        """Power one Pi on (its ROM starts) or off (ROM and agent stop, address gone)."""
        with self.lock:
            state.generation += 1
            generation = state.generation
            processes, state.processes = state.processes, []
            state.powered = on
            state.booted = False
            state.agent_pid = None
            state.failure = None
        for process in processes:
            stop_process(process)
        ip("-n", state.pi.netns, "-4", "addr", "flush", "dev", "eth0", check=False)
        if on:
            with self.lock:
                state.boots += 1
                state.powered_at = time.time()
            threading.Thread(
                target=self._boot,
                args=(state, generation),
                daemon=True,
                name=f"boot-{state.pi.name}",
            ).start()
        self.write_status()

    def _current(self, state: PiState, generation: int) -> bool:
        return state.generation == generation and not self.stopping.is_set()

    def _spawn(self, state: PiState, generation: int, argv: list[str], **kw: Any) -> Any:
        with self.lock:
            if not self._current(state, generation):
                return None
            process = subprocess.Popen(["ip", "netns", "exec", state.pi.netns, *argv], **kw)
            state.processes.append(process)
            return process

    def _boot(self, state: PiState, generation: int) -> None:
        pi = state.pi
        rom = self._spawn(
            state,
            generation,
            pirom.cli_argv(
                "eth0", pi.mac, pi.serial, "--dhcp-tries", str(self.plan.rom_dhcp_tries)
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if rom is None:
            return
        try:
            output, _ = rom.communicate(timeout=rom_timeout(self.plan.rom_dhcp_tries))
        except subprocess.TimeoutExpired:
            stop_process(rom)
            output = ""
        if not self._current(state, generation):
            return
        outcome = _outcome(output)
        if not outcome.get("booted"):
            with self.lock:
                state.failure = str(outcome.get("failure") or "the ROM gave up")
            LOG.info(
                "%s bank %s slot %s: boot failed: %s", pi.name, pi.bank, pi.slot, state.failure
            )
            self.write_status()
            return
        LOG.info(
            "%s bank %s slot %s: booted as %s", pi.name, pi.bank, pi.slot, outcome.get("address")
        )
        with self.lock:
            state.booted = True
        self.write_status()
        self._start_agent(state, generation)

    def _nfs_read(self, state: PiState, generation: int, path: str) -> bytes | None:
        """One file of the exported root, read over NFS from the Pi's namespace."""
        url = f"nfs://{self.plan.head_address}{self.export_path}/{path}"
        for _ in range(NFS_TRIES):
            reader = self._spawn(
                state,
                generation,
                ["nfs-cat", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            if reader is None:
                return None
            try:
                data, _ = reader.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(reader)
                data = b""
            if reader.returncode == 0:
                return bytes(data)
            if self.stopping.wait(2):
                return None
        return None

    @property
    def export_path(self) -> str:
        return os.environ.get("BRAMBLE_LAB_EXPORT", "/srv/bramble/root")

    def _start_agent(self, state: PiState, generation: int) -> None:
        pi = state.pi
        folder = self.state_dir / "pis" / pi.name
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self._nfs_read(state, generation, AGENT_CONFIG)
        if config is None:
            with self.lock:
                if self._current(state, generation):
                    state.failure = f"no agent configuration at {AGENT_CONFIG} over NFS"
            self.write_status()
            return
        (folder / "agent.toml").write_bytes(config)
        env = dict(os.environ, BRAMBLE_AGENT__AGENT__INTERFACE="eth0")
        for path in AGENT_SECRETS:
            data = self._nfs_read(state, generation, path)
            if data is not None:
                target = folder / Path(path).name
                target.write_bytes(data)
                target.chmod(0o600)
                key = "CLUSTER_KEY_FILE" if target.suffix == ".key" else "AGENT_TOKEN_FILE"
                env[f"BRAMBLE_AGENT__AUTH__{key}"] = str(target)
        log = (folder / "agent.log").open("ab")
        agent = self._spawn(
            state,
            generation,
            [
                str(Path(sys.executable).with_name("bramble-agent")),
                "--config",
                str(folder / "agent.toml"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        if agent is not None:
            with self.lock:
                state.agent_pid = agent.pid
            LOG.info(
                "%s bank %s slot %s: agent started (pid %s)", pi.name, pi.bank, pi.slot, agent.pid
            )
        self.write_status()

    # ---- state -------------------------------------------------------------------------------
    def write_status(self) -> None:
        target = self.state_dir / "status.json"
        temporary = target.with_suffix(".tmp")
        with self.lock:
            temporary.write_text(json.dumps(self.status_unlocked(), indent=2, sort_keys=True))
            temporary.replace(target)

    def status_unlocked(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "ready": True,
            "qemu": self.qemu.status() if self.qemu else None,
            "pis": {
                name: {
                    "bank": s.pi.bank,
                    "slot": s.pi.slot,
                    "mac": s.pi.mac,
                    "serial": s.pi.serial,
                    "netns": s.pi.netns,
                    "powered": s.powered,
                    "boots": s.boots,
                    "powered_at": s.powered_at,
                    "booted": s.booted,
                    "failure": s.failure,
                    "agent_pid": s.agent_pid,
                }
                for name, s in self.pis.items()
            },
        }

    def shutdown(self) -> list[str]:
        """Stop everything started, delete every namespace; what could not be removed."""
        self.stopping.set()
        with self.lock:
            processes = [p for s in self.pis.values() for p in s.processes]
            for state in self.pis.values():
                state.processes = []
        for process in processes:
            stop_process(process)
        if self.qemu:
            self.qemu.stop()
        for sim in self.sims:
            with contextlib.suppress(Exception):
                sim.close()
        return delete_networks(self.plan)


def _outcome(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data: dict[str, Any] = json.loads(line)
                return data
    return {}


def run(plan: LabPlan, secrets: dict[str, str]) -> int:
    """Build the lab, serve until SIGTERM/SIGINT, tear it down; 0 when all was removed."""
    supervisor = Supervisor(plan, secrets)
    done = threading.Event()

    def handler(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    state_dir = Path(plan.state_dir)
    try:
        build_networks(plan)
        supervisor.start_controllers()
        supervisor.start_switches()
        supervisor.start_boards()
        if supervisor.qemu:
            supervisor.qemu.start()
        supervisor.write_status()
        (state_dir / "supervisor.pid").write_text(f"{os.getpid()}\n")
        LOG.info(
            "lab %s up: %d Pis, %d controllers", plan.name, len(plan.pis), len(plan.controllers)
        )
        while not done.wait(1.0):
            pass
    except Exception:
        LOG.exception("lab %s failed", plan.name)
        left = supervisor.shutdown()
        if left:
            LOG.error("namespaces left: %s", ", ".join(left))
        return 1
    left = supervisor.shutdown()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "supervisor.pid").unlink()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "status.json").unlink()
    if left:
        LOG.error("namespaces left: %s", ", ".join(left))
        return 1
    LOG.info("lab %s down", plan.name)
    return 0
