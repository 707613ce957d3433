"""A real dnsmasq boot server for simulated Pis: TFTP tree, config, and the daemon in a namespace.

Used by the integration tests and the boot-storm benchmark (and later the lab). The config is
either hand-written here (``hand_written_conf``, the settings the ``dhcp_tftp`` role is meant
to render) or rendered by the role itself (``role_conf``); both give a ``dnsmasq.conf`` path
and a TFTP root.

dnsmasq runs in the foreground as our child (``--keep-in-foreground``, no PID file, its log in
a file), is stopped by PID, and never becomes a host-wide service.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bramble.labnet import LabNet, Node

#: Realistic Pi 3B+ boot file sizes in bytes (DESIGN.md "Bytes per Pi over TFTP").
REAL_SIZES: Mapping[str, int] = {
    "bootcode.bin": 52_456,
    "start.elf": 2_952_960,
    "fixup.dat": 7_278,
    "config.txt": 1_784,
    "cmdline.txt": 180,
    "bcm2710-rpi-3-b-plus.dtb": 25_973,
    "kernel8.img": 6_000_000,
}
#: Small but real transfers (hundreds of KB) for tests.
SMALL_SIZES: Mapping[str, int] = {
    "bootcode.bin": 52_456,
    "start.elf": 300_000,
    "fixup.dat": 7_278,
    "config.txt": 1_784,
    "cmdline.txt": 180,
    "bcm2710-rpi-3-b-plus.dtb": 25_973,
    "kernel8.img": 400_000,
}


@dataclass(frozen=True)
class Reservation:
    """One Pi as the head knows it: MAC, serial (TFTP folder), host name, address."""

    mac: str
    serial: str
    name: str
    ip: str


@dataclass(frozen=True)
class ServerSettings:
    """What differs between configs: the PXE answer, reply delay, TFTP limit, pool."""

    pxe_service: bool = True
    dhcp_reply_delay: int | None = 1
    tftp_max: int | None = None
    extra: tuple[str, ...] = ()


#: dnsmasq as it comes (no reply delay, tftp-max 50), with the PXE answer a Pi needs.
DEFAULT_SETTINGS = ServerSettings(dhcp_reply_delay=None, tftp_max=None)


def _pattern(seed: bytes, size: int) -> bytes:
    """Deterministic incompressible-looking bytes (sha256 counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def make_boot_files(directory: Path, sizes: Mapping[str, int], seed: str = "bramble") -> None:
    """Fake boot files of the given sizes (bootcode.bin is kept for the TFTP root)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        if name == "bootcode.bin":
            continue
        (directory / name).write_bytes(_pattern(f"{seed}/{name}".encode(), size))


def make_tftp_tree(
    root: Path,
    serials: Iterable[str],
    sizes: Mapping[str, int] = SMALL_SIZES,
    *,
    boot_dir: Path | None = None,
) -> dict[str, str]:
    """``root/bootcode.bin`` and one ``root/<serial>/`` folder per Pi linking the boot files.

    The boot files live once in ``boot_dir`` (default ``root/../boot``) and every serial
    folder links to them, as the dhcp_tftp role lays it out. Returns name -> sha256.
    """
    boot = boot_dir or root.parent / "boot"
    make_boot_files(boot, sizes)
    root.mkdir(parents=True, exist_ok=True)
    (root / "bootcode.bin").write_bytes(_pattern(b"bramble/bootcode.bin", sizes["bootcode.bin"]))
    for serial in serials:
        folder = root / serial
        folder.mkdir(exist_ok=True)
        for file in boot.iterdir():
            link = folder / file.name
            if not link.exists():
                link.symlink_to(file)
    digests = {p.name: sha256_file(p) for p in boot.iterdir()}
    digests["bootcode.bin"] = sha256_file(root / "bootcode.bin")
    return digests


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hand_written_conf(
    path: Path,
    *,
    interface: str,
    network: str,
    netmask: str,
    tftp_root: Path,
    lease_file: Path,
    reservations: Sequence[Reservation],
    settings: ServerSettings,
) -> Path:
    """A dnsmasq config with the settings the dhcp_tftp role renders (a stand-in for it)."""
    lines = [
        "# bramble boot server (hand-written stand-in for the dhcp_tftp role)",
        "port=0",
        f"interface={interface}",
        "bind-interfaces",
        f"dhcp-range={network},static,{netmask}",
        f"dhcp-leasefile={lease_file}",
        "dhcp-vendorclass=set:pxe,PXEClient",
        "enable-tftp",
        f"tftp-root={tftp_root}",
    ]
    if settings.pxe_service:
        lines.append('pxe-service=tag:pxe,0,"Raspberry Pi Boot"')
    if settings.dhcp_reply_delay is not None:
        lines.append(f"dhcp-reply-delay=tag:pxe,{settings.dhcp_reply_delay}")
    if settings.tftp_max is not None:
        lines.append(f"tftp-max={settings.tftp_max}")
    lines += [f"dhcp-host={r.mac},{r.name},{r.ip}" for r in reservations]
    lines += list(settings.extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class ModelPi:
    """A Pi of a test cluster: bank, slot, MAC (b8:27:eb + serial's low 3 bytes), serial."""

    bank: int
    slot: int
    serial: str

    @property
    def mac(self) -> str:
        low = self.serial[2:]
        return "b8:27:eb:" + ":".join(low[i : i + 2] for i in range(0, 6, 2))


def write_inventory(
    directory: Path,
    pis: Sequence[ModelPi],
    *,
    name: str = "simlab",
    cidr: str = "10.42.0.0/16",
    head_address: str = "10.42.0.1",
    interface: str = "eth0",
    bank_count: int = 1,
    bank_size: int = 42,
    power_budget: int = 42,
) -> list[Reservation]:
    """A bramble inventory folder (cluster.yml + macs.yml) for a simulated cluster.

    Returns the reservations the model derives (name and address per harvested Pi).
    """
    from bramble.model import load_cluster  # noqa: PLC0415 - pydantic; only this helper needs it

    directory.mkdir(parents=True, exist_ok=True)
    banks = ", ".join(str(b) for b in range(1, bank_count + 1))
    (directory / "cluster.yml").write_text(
        f"""---
plugin: bramble
cluster:
  name: {name}
  domain: {name}.internal
network:
  cidr: {cidr}
head:
  name: {name}-head
  address: {head_address}
  interfaces:
    cluster: {interface}
banks:
  count: {bank_count}
  size: {bank_size}
  model: pi3bplus
controllers:
  - name: pdu
    driver: command
power:
  budget: {power_budget}
  groups:
    - {{id: 1, controller: pdu, outlet: 1, banks: [{banks}]}}
""",
        encoding="utf-8",
    )
    entries = "".join(
        f"  - {{bank: {p.bank}, slot: {p.slot}, mac: '{p.mac}', serial: '{p.serial}'}}\n"
        for p in pis
    )
    body = entries or "  []\n"
    (directory / "macs.yml").write_text(f"---\nmacs:\n{body}", encoding="utf-8")
    cluster = load_cluster(directory)
    if cluster.problems:
        raise ValueError(f"test cluster model is invalid: {cluster.problems}")
    return [
        Reservation(mac=p.mac, serial=p.serial, name=p.name, ip=p.ip)
        for p in cluster.pis
        if p.mac and p.serial
    ]


def role_available(repo: Path) -> bool:
    """True once roles/dhcp_tftp exists in the repository."""
    return (repo / "roles" / "dhcp_tftp" / "tasks" / "main.yml").is_file()


def role_conf(
    repo: Path,
    workdir: Path,
    *,
    interface: str,
    extra_vars: Mapping[str, Any],
    inventory: Path | None = None,
) -> tuple[Path, Path]:
    """Render dnsmasq's config and TFTP tree with the dhcp_tftp role (no packages, no service).

    Runs ``ansible-playbook`` against localhost with the agreed variables; returns (config
    file, TFTP root). ``extra_vars`` carries the cluster (Pis, network, ...) the role needs.
    """
    conf = workdir / "bramble.conf"
    tftp_root = workdir / "tftp"
    playbook = workdir / "render.yml"
    playbook.write_text(
        "- name: Render the boot server\n"
        "  hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  vars:\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  roles:\n"
        "    - role: dhcp_tftp\n",
        encoding="utf-8",
    )
    variables = {
        "dhcp_tftp_manage_service": False,
        "dhcp_tftp_conf_file": str(conf),
        "dhcp_tftp_tftp_root": str(tftp_root),
        "dhcp_tftp_boot_dir": str(workdir / "boot"),
        "dhcp_tftp_interface": interface,
        "dhcp_tftp_lease_file": str(workdir / "leases"),
        **extra_vars,
    }
    vars_file = workdir / "vars.json"
    vars_file.write_text(json.dumps(variables), encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(repo / "roles"), PATH=path)
    env.setdefault("ANSIBLE_CONFIG", str(repo / "ansible.cfg"))
    argv = ["ansible-playbook", str(playbook), "-e", f"@{vars_file}"]
    if inventory is not None:
        argv += ["-i", str(inventory)]
    else:
        argv += ["-i", "localhost,"]
    result = subprocess.run(
        argv, cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode:
        raise RuntimeError(f"dhcp_tftp role failed:\n{result.stdout[-4000:]}{result.stderr}")
    return conf, tftp_root


@dataclass
class Dnsmasq:
    """A dnsmasq running in the foreground inside a namespace of a LabNet."""

    lab: LabNet
    node: Node
    conf: Path
    log: Path
    log_dhcp: bool = False
    process: subprocess.Popen[Any] | None = None
    argv: list[str] = field(default_factory=list)

    def start(self, timeout: float = 10.0) -> Dnsmasq:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.argv = [
            binary,
            "--keep-in-foreground",
            f"--conf-file={self.conf}",
            "--pid-file=",
            "--user=root",
            "--group=root",
            "--log-facility=-",
        ]
        if self.log_dhcp:
            self.argv.append("--log-dhcp")
        handle = self.log.open("ab")
        try:
            self.process = self.lab.popen(
                self.node.netns, self.argv, stdout=handle, stderr=subprocess.STDOUT
            )
        finally:
            handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dnsmasq exited with {self.process.returncode}: {self.log_text()[-2000:]}"
                )
            if "TFTP root is" in self.log_text() or "started, version" in self.log_text():
                time.sleep(0.1)
                return self
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq did not start within {timeout} s: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            self.lab.stop(self.process)
            self.process = None

    def __enter__(self) -> Dnsmasq:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_config(conf: Path) -> None:
    """``dnsmasq --test`` on a config; RuntimeError with its message when it is wrong."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    result = subprocess.run(
        [binary, "--test", f"--conf-file={conf}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"dnsmasq --test {conf}: {result.stderr.strip()}")
