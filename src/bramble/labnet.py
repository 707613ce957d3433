"""Private lab networks in Linux network namespaces, for tests, benchmarks and the lab.

A ``LabNet`` is one namespace holding a bridge (the cluster switch), a head namespace and any
number of Pi namespaces, each joined to the bridge by a veth pair whose Pi end is ``eth0``
with the Pi's MAC. Nothing touches the host's own namespace: every link is created inside the
lab namespace, no route is ever added (so no default route), and ``close()`` (or leaving the
``with`` block, also on error) stops the processes it started, by PID, and deletes every
namespace it made; deleting a namespace deletes its veths.

Names carry a unique prefix (``brt-<6 hex>`` by default) so parallel tests do not collide.
Needs root and ``ip`` from iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


class LabNetError(RuntimeError):
    """A namespace or link could not be made or removed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; LabNetError with ip's message when it fails and ``check`` is set."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode:
        raise LabNetError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``: one process we started, by its PID."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)
    return process.returncode


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs: gone, or exited and waiting to be reaped (a zombie, whose
    adopting parent, often PID 1, collects it in its own time), does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def enter_netns(name: str) -> None:
    """Move the calling thread into a named namespace (setns(2); other threads stay put)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise LabNetError(f"setns into network namespace {name}: {os.strerror(error)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name``, then go back.

    Sockets opened inside keep the namespace they were made in; a subprocess started inside
    runs in it too.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter_netns(name)
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise LabNetError("could not return to the original network namespace")
    finally:
        os.close(home)


@dataclass(frozen=True)
class Node:
    """A host on the lab bridge: its namespace, its interface there, MAC and address."""

    netns: str
    interface: str
    mac: str | None = None
    address: str | None = None  # with prefix: 10.42.0.1/16


@dataclass
class LabNet:
    """A bridge namespace plus head and Pi namespaces; a context manager that cleans up."""

    prefix: str = field(default_factory=lambda: f"brt-{secrets.token_hex(3)}")
    bridge: str = "br0"
    head: Node | None = None
    pis: list[Node] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)
    _processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    _created: bool = False

    @property
    def lab(self) -> str:
        """Name of the namespace that holds the bridge."""
        return f"{self.prefix}-lab"

    def __enter__(self) -> LabNet:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def create(self) -> None:
        """The lab namespace with its bridge, up. No address on the bridge: it is a switch."""
        if self._created:
            return
        self._created = True
        self._add_netns(self.lab)
        ip("-n", self.lab, "link", "set", "lo", "up")
        ip("-n", self.lab, "link", "add", self.bridge, "type", "bridge", "stp_state", "0")
        ip("-n", self.lab, "link", "set", self.bridge, "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)

    def _attach(self, netns: str, port: str, mac: str | None, address: str | None) -> Node:
        """A veth from the bridge (``port`` in the lab namespace) to ``eth0`` in ``netns``."""
        self._add_netns(netns)
        ip("-n", self.lab, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", netns)  # fmt: skip
        ip("-n", self.lab, "link", "set", port, "master", self.bridge, "up")
        if mac:
            ip("-n", netns, "link", "set", "eth0", "address", mac)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "set", "eth0", "up")
        if address:
            ip("-n", netns, "addr", "add", address, "dev", "eth0")
        return Node(netns=netns, interface="eth0", mac=mac, address=address)

    def add_head(self, address: str, mac: str | None = None) -> Node:
        """The head server's namespace with ``address`` (CIDR, e.g. ``10.42.0.1/16``)."""
        if self.head is not None:
            raise LabNetError(f"{self.prefix} already has a head")
        self.create()
        self.head = self._attach(f"{self.prefix}-head", "v-head", mac, address)
        return self.head

    def add_pi(self, mac: str) -> Node:
        """One more Pi namespace whose ``eth0`` has ``mac`` and no address (as at power-on)."""
        self.create()
        index = len(self.pis) + 1
        node = self._attach(f"{self.prefix}-p{index:03d}", f"v-p{index:03d}", mac, None)
        self.pis.append(node)
        return node

    def add_pis(self, macs: Sequence[str]) -> list[Node]:
        return [self.add_pi(mac) for mac in macs]

    def add_address(self, node: Node, address: str) -> None:
        """A further address on a node's interface (e.g. a second head address)."""
        ip("-n", node.netns, "addr", "add", address, "dev", node.interface)

    @staticmethod
    def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``netns`` (``ip netns exec``)."""
        return ["ip", "netns", "exec", netns, *argv]

    def run(
        self, netns: str, argv: Sequence[str], *, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside ``netns``; output captured as text."""
        return subprocess.run(
            self.exec_argv(netns, argv), capture_output=True, text=True, timeout=timeout,
            check=check,
        )  # fmt: skip

    def popen(self, netns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside ``netns``; ``close()`` stops it (by PID) if still running."""
        process: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(netns, argv), **kwargs)
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        stop_process(process, timeout)
        if process in self._processes:
            self._processes.remove(process)
        return process.returncode

    def close(self) -> None:
        """Stop our processes and delete our namespaces; raise if any is left behind."""
        problems: list[str] = []
        for process in list(self._processes):
            try:
                self.stop(process)
            except (OSError, subprocess.SubprocessError) as exc:
                problems.append(f"process {process.pid}: {exc}")
        for name in reversed(self._namespaces):
            result = ip("netns", "del", name, check=False)
            if result.returncode and name in list_netns():
                problems.append(f"netns {name}: {result.stderr.strip()}")
        self._namespaces.clear()
        deadline = time.monotonic() + 5
        left = [n for n in list_netns() if n.startswith(self.prefix + "-")]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [n for n in list_netns() if n.startswith(self.prefix + "-")]
        if left:
            problems.append(f"namespaces left: {', '.join(left)}")
        self.head = None
        self.pis = []
        self._created = False
        if problems:
            raise LabNetError("lab teardown incomplete: " + "; ".join(problems))
