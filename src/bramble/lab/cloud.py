"""The lab's cloud-side VPN gateway (``lab_vpn: true``, docs/lab.md).

A network namespace ``brl-<lab>-cloud`` linked only to the head's namespace by one veth pair
(``cloud0`` in the head, ``eth0`` here), holding the model's tunnel endpoints (``vpn.tunnels[].
remote``) and, on its loopback, the first address of each cloud subnet (``vpn.remote_subnets``).
A real strongSwan (charon-systemd, its own strongswan.conf, vici socket, log and PID file in
``<state>/<lab>/cloud/``) answers the head as the model's cloud peer: one connection per tunnel
endpoint, the model's profile, the lab's pre-shared key, user-space ESP (kernel-libipsec: this
kernel has no ESP). It never initiates; the head's vpn role does.

Nothing is routed out: the namespace has only link routes (the head's IKE address on the veth)
and the tunnel's own routes that charon installs; the head gets one link route per endpoint.

    python -m bramble.lab.cloud up --config cloud.json [--state-root /run/bramble/lab]
    python -m bramble.lab.cloud down --name LAB [--state-root /run/bramble/lab]

``up`` reads the gateway's configuration (JSON, written by roles/lab/tasks/vpn.yml; see
``CloudConfig``), changes nothing when the same gateway runs, otherwise rebuilds it; ``down``
stops charon by its PID (or, when the PID file is lost, the charon processes inside the
namespace) and deletes the namespace, which deletes the veth. Both print one JSON line
``{"changed": ...}``. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bramble.lab.plan import STATE_ROOT
from bramble.labnet import ip, list_netns, pid_running

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "/usr/sbin/swanctl"
# User-space ESP (this kernel has no ESP): libcharon-extra-plugins.
LIBIPSEC = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
HEAD_INTERFACE = "cloud0"
CLOUD_INTERFACE = "eth0"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Tunnel:
    """One tunnel of the model: the cloud endpoint the head dials and its pre-shared key."""

    name: str
    endpoint: str
    psk: str


@dataclass
class CloudConfig:
    """What the cloud gateway is: the head's IKE address, the tunnels, subnets and proposals."""

    lab: str
    head_address: str
    tunnels: list[Tunnel]
    cloud_subnets: list[str]
    cluster_subnets: list[str]
    version: int = 2
    ike: list[str] = field(default_factory=lambda: ["aes256gcm16-prfsha384-ecp384"])
    esp: list[str] = field(default_factory=lambda: ["aes256gcm16-ecp384"])

    @classmethod
    def from_json(cls, text: str) -> CloudConfig:
        data: dict[str, Any] = json.loads(text)
        data["tunnels"] = [Tunnel(**t) for t in data["tunnels"]]
        data["version"] = int(data.get("version", 2))
        config = cls(**data)
        config.check()
        return config

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def check(self) -> None:
        """Refuse what would not make a lab-only gateway."""
        if not self.tunnels or not self.cloud_subnets or not self.cluster_subnets:
            raise ValueError("the cloud gateway needs tunnels, cloud and cluster subnets")
        endpoints = [t.endpoint for t in self.tunnels]
        for address in [self.head_address, *endpoints]:
            ipaddress.ip_address(address)
        if self.head_address in endpoints:
            raise ValueError(f"the head's address {self.head_address} is a tunnel endpoint")
        for subnet in self.cloud_subnets + self.cluster_subnets:
            if ipaddress.ip_network(subnet, strict=False).prefixlen == 0:
                raise ValueError(f"{subnet}: the lab never routes a default network")

    @property
    def netns(self) -> str:
        return f"brl-{self.lab}-cloud"

    @property
    def head_netns(self) -> str:
        return f"brl-{self.lab}-head"

    @property
    def endpoints(self) -> list[str]:
        return list(dict.fromkeys(t.endpoint for t in self.tunnels))

    @property
    def cloud_addresses(self) -> list[str]:
        """The first host of each cloud subnet: what the head pings through the tunnel."""
        return [
            str(next(ipaddress.ip_network(s, strict=False).hosts())) for s in self.cloud_subnets
        ]


def swanctl_conf(config: CloudConfig) -> str:
    """The cloud side of every tunnel: answer only, on the tunnel's endpoint, with its key."""
    lines = ["# bramble lab: the cloud-side gateway (bramble.lab.cloud)", "connections {"]
    for tunnel in config.tunnels:
        lines += [
            f"  lab-{tunnel.name} {{",
            f"    version = {config.version}",
            f"    local_addrs = {tunnel.endpoint}",
            f"    remote_addrs = {config.head_address}",
            f"    proposals = {','.join(config.ike)}",
            "    mobike = no",
            "    encap = yes",
            f"    local {{\n      auth = psk\n      id = {tunnel.endpoint}\n    }}",
            f"    remote {{\n      auth = psk\n      id = {config.head_address}\n    }}",
            "    children {",
            f"      lab-{tunnel.name} {{",
            f"        local_ts = {','.join(config.cloud_subnets)}",
            f"        remote_ts = {','.join(config.cluster_subnets)}",
            f"        esp_proposals = {','.join(config.esp)}",
            "        start_action = none",
            "        close_action = none",
            "        dpd_action = clear",
            "      }",
            "    }",
            "  }",
        ]
    lines += ["}", "secrets {"]
    for tunnel in config.tunnels:
        lines += [
            f"  ike-{tunnel.name} {{",
            f"    id-1 = {config.head_address}",
            f"    secret = {json.dumps(tunnel.psk, ensure_ascii=False)}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def strongswan_conf(state: Path) -> str:
    """charon-systemd's settings: user-space ESP, its own vici socket and log, no journal."""
    return (
        "include /etc/strongswan.conf\n"
        "charon-systemd {\n"
        "  install_routes = yes\n"
        "  journal {\n    default = -1\n  }\n"
        f"  filelog {{\n    cloud {{\n      path = {state / 'charon.log'}\n"
        "      default = 1\n      ike = 2\n      flush_line = yes\n    }\n  }\n"
        "  plugins {\n"
        "    kernel-libipsec {\n      load = yes\n    }\n"
        f"    vici {{\n      socket = unix://{state / 'charon.vici'}\n    }}\n"
        "  }\n"
        "}\n"
    )


class CloudGateway:
    """One lab's cloud gateway: its namespace, link, charon and state folder."""

    def __init__(self, lab: str, state_root: Path = STATE_ROOT) -> None:
        self.lab = lab
        self.state = state_root / lab / "cloud"
        self.netns = f"brl-{lab}-cloud"
        self.head_netns = f"brl-{lab}-head"

    @property
    def pid_file(self) -> Path:
        return self.state / "charon.pid"

    @property
    def vici(self) -> Path:
        return self.state / "charon.vici"

    def _ours(self, pid: int) -> bool:
        """``pid`` is the charon this gateway started (its binary and its strongswan.conf)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        conf = f"STRONGSWAN_CONF={self.state / 'strongswan.conf'}".encode()
        return cmdline == CHARON.encode() and conf in environ

    def pid(self) -> int | None:
        """The running charon's PID, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._ours(pid) else None

    def swanctl(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """swanctl against this gateway's charon (its vici socket), in its namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, SWANCTL, *argv, "--uri", f"unix://{self.vici}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def running(self, config: CloudConfig) -> bool:
        """The gateway of ``config`` is up: same configuration, charon alive, link in place."""
        applied = self.state / "applied.json"
        return (
            applied.exists()
            and applied.read_text() == config.to_json()
            and self.pid() is not None
            and self.netns in list_netns()
            and self.head_netns in list_netns()
            and ip("-n", self.head_netns, "link", "show", HEAD_INTERFACE, check=False).returncode
            == 0
        )

    def up(self, config: CloudConfig) -> dict[str, Any]:
        """Bring the gateway of ``config`` up, or find it running; tears down what failed."""
        if config.lab != self.lab:
            raise ValueError(f"configuration of lab {config.lab}, not {self.lab}")
        if self.running(config):
            return {"changed": False, "pid": self.pid(), "netns": self.netns}
        if self.head_netns not in list_netns():
            raise RuntimeError(f"no head namespace {self.head_netns}: bring the lab up first")
        for path in (CHARON, SWANCTL, LIBIPSEC):
            if not Path(path).exists():
                raise RuntimeError(
                    f"{path} is missing (apt: strongswan-swanctl charon-systemd "
                    "libstrongswan-standard-plugins libcharon-extra-plugins)"
                )
        self.down()
        try:
            self._link(config)
            pid = self._start(config)
        except BaseException:
            self.down()
            raise
        (self.state / "applied.json").write_text(config.to_json())
        return {"changed": True, "pid": pid, "netns": self.netns}

    def _link(self, config: CloudConfig) -> None:
        """The namespace, the veth to the head, the addresses and the link routes."""
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip(
            "-n",
            self.netns,
            "link",
            "add",
            CLOUD_INTERFACE,
            "type",
            "veth",
            "peer",
            "name",
            HEAD_INTERFACE,
            "netns",
            self.head_netns,
        )
        for netns, interface in ((self.netns, CLOUD_INTERFACE), (self.head_netns, HEAD_INTERFACE)):
            ip("-n", netns, "link", "set", interface, "up")
        ip("-n", self.head_netns, "addr", "add", f"{config.head_address}/32", "dev", HEAD_INTERFACE)
        for endpoint in config.endpoints:
            ip("-n", self.netns, "addr", "add", f"{endpoint}/32", "dev", CLOUD_INTERFACE)
            ip("-n", self.head_netns, "route", "add", f"{endpoint}/32", "dev", HEAD_INTERFACE)
        ip("-n", self.netns, "route", "add", f"{config.head_address}/32", "dev", CLOUD_INTERFACE)
        for address in config.cloud_addresses:
            ip("-n", self.netns, "addr", "add", f"{address}/32", "dev", "lo")

    def _start(self, config: CloudConfig) -> int:
        """charon-systemd in the namespace with this gateway's files; its tunnels loaded."""
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.state / "strongswan.conf"
        conf.write_text(strongswan_conf(self.state))
        tunnels = self.state / "swanctl.conf"
        tunnels.touch(mode=0o600)
        tunnels.write_text(swanctl_conf(config))
        env = dict(os.environ, STRONGSWAN_CONF=str(conf))
        with (self.state / "charon.out").open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, CHARON],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # ip netns exec execs charon: the child's PID is charon's.
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.vici.exists() and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.05)
        if not self.vici.exists():
            raise RuntimeError(f"charon did not start in {self.netns}: {self._log_tail()}")
        loaded = self.swanctl("--load-all", "--noprompt", "--file", str(tunnels))
        problems = [
            line
            for line in (loaded.stdout + loaded.stderr).splitlines()
            if "failed" in line
            and not line.startswith("opening directory")
            and not line.startswith("plugin '")
        ]
        if loaded.returncode or problems:
            raise RuntimeError(
                f"the cloud gateway refused its tunnels: {loaded.stdout}{loaded.stderr}"
            )
        return process.pid

    def _log_tail(self) -> str:
        for name in ("charon.log", "charon.out"):
            with contextlib.suppress(OSError):
                return (self.state / name).read_text(errors="replace")[-2000:]
        return "(no log)"

    def _charons_in_netns(self) -> list[int]:
        """charon processes inside the gateway's namespace (a lost PID file)."""
        if self.netns not in list_netns():
            return []
        found = []
        for word in ip("netns", "pids", self.netns, check=False).stdout.split():
            with contextlib.suppress(ValueError, OSError):
                pid = int(word)
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == CHARON.encode():
                    found.append(pid)
        return found

    def down(self) -> dict[str, Any]:
        """Stop charon by PID, delete the namespace (and so the veth); safe to run twice."""
        changed = False
        pids = [p for p in [self.pid()] if p is not None] or self._charons_in_netns()
        for pid in pids:
            changed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if pid_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.netns in list_netns():
            changed = True
            ip("netns", "del", self.netns, check=False)
            if self.netns in list_netns():
                raise RuntimeError(f"could not delete {self.netns}")
        if self.head_netns in list_netns():
            # Normally gone with the namespace (a veth dies with its peer).
            ip("-n", self.head_netns, "link", "del", HEAD_INTERFACE, check=False)
        # Its logs stay for diagnosis (bramble.lab down removes the lab's state folder).
        for name in ("charon.pid", "charon.vici", "applied.json", "swanctl.conf"):
            with contextlib.suppress(FileNotFoundError):
                (self.state / name).unlink()
        return {"changed": changed}


def down(lab: str, state_root: Path = STATE_ROOT) -> dict[str, Any]:
    """Remove lab ``lab``'s cloud gateway, if any (``bramble.lab down`` calls this first)."""
    return CloudGateway(lab, state_root).down()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bramble.lab.cloud", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="bring the cloud gateway up (or find it running)")
    start.add_argument("--config", type=Path, required=True, help="the gateway's JSON")
    start.add_argument("--state-root", type=Path, default=STATE_ROOT)
    stop = sub.add_parser("down", help="stop charon, delete the cloud namespace")
    stop.add_argument("--name", required=True)
    stop.add_argument("--state-root", type=Path, default=STATE_ROOT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            config = CloudConfig.from_json(args.config.read_text())
            result = CloudGateway(config.lab, args.state_root).up(config)
        else:
            result = down(args.name, args.state_root)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bramble.lab.cloud: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
