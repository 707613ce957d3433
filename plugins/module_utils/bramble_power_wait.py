# Copyright: bramble contributors
# Apache License 2.0 (see LICENSE)
"""bank_power's ``wait_for``: which Pis showed up since the power went on.

``DhcpSeen`` reads what dnsmasq wrote after ``start()``: new lines of its log (a
``DHCPDISCOVER``/``DHCPOFFER``/``PXE`` line naming the MAC) and lease-file lines that are new or
changed. ``AgentRegistered`` asks the cluster server (``GET /api/v1/nodes`` with the admin
token) which MACs registered since ``start()``. Both return lower-case MACs; both are polled.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from typing import Any

_MAC = re.compile(r"(?<![0-9a-f:])((?:[0-9a-f]{2}:){5}[0-9a-f]{2})(?![0-9a-f:])")
_DHCP_EVENT = re.compile(r"\b(DHCPDISCOVER|DHCPOFFER|DHCPREQUEST|DHCPACK|PXE)\(")
MAX_READ = 8 * 1024 * 1024


class WaitError(Exception):
    """The source of ``wait_for`` cannot be read (names it and what to do)."""


class DhcpSeen:
    """MACs dnsmasq saw after ``start()``, from its log file and/or its lease file."""

    def __init__(self, log_file: str | None = None, lease_file: str | None = None) -> None:
        if not log_file and not lease_file:
            raise WaitError(
                "wait_for=dhcp_seen needs dhcp_log (dnsmasq log-facility) or dhcp_leases"
            )
        self.log_file = log_file
        self.lease_file = lease_file
        self._offset = 0
        self._leases: dict[str, str] = {}
        self.seen: set[str] = set()

    def start(self) -> None:
        self.seen = set()
        if self.log_file:
            try:
                self._offset = os.path.getsize(self.log_file)
            except OSError:
                self._offset = 0
        self._leases = self._read_leases()

    def _read_leases(self) -> dict[str, str]:
        if not self.lease_file:
            return {}
        try:
            with open(self.lease_file, encoding="utf-8", errors="replace") as handle:
                lines = handle.read(MAX_READ).splitlines()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise WaitError(f"cannot read the lease file {self.lease_file}: {exc}") from None
        leases = {}
        for line in lines:
            fields = line.split()
            if len(fields) >= 3 and _MAC.fullmatch(fields[1].lower()):
                leases[fields[1].lower()] = line
        return leases

    def poll(self) -> set[str]:
        if self.log_file:
            try:
                with open(self.log_file, "rb") as handle:
                    if os.fstat(handle.fileno()).st_size < self._offset:
                        self._offset = 0  # rotated
                    handle.seek(self._offset)
                    chunk = handle.read(MAX_READ)
            except FileNotFoundError:
                chunk = b""
            except OSError as exc:
                raise WaitError(f"cannot read the dnsmasq log {self.log_file}: {exc}") from None
            complete = chunk.rfind(b"\n") + 1
            self._offset += complete
            for line in chunk[:complete].decode("utf-8", "replace").lower().splitlines():
                if _DHCP_EVENT.search(line.upper()):
                    self.seen.update(_MAC.findall(line))
        for mac, line in self._read_leases().items():
            if self._leases.get(mac) != line:
                self.seen.add(mac)
        return set(self.seen)


class AgentRegistered:
    """MACs the cluster server lists as registered since ``start()`` (GET /api/v1/nodes).

    A node counts when its ``mac`` is listed, its ``health`` (or ``state``) is not
    ``down``/``offline``, and it registered since ``start()`` (UNIX seconds, 1 s of slack):
    by ``last_registered`` (the agent's latest registration) when the server gives it. A
    booted Pi's agent starts anew and registers; the old agent's telemetry, posted between
    ``start()`` and the power going off, moves ``last_seen`` but not ``last_registered``, so
    it does not count a Pi as booted before it was. A server without ``last_registered``:
    the newer of ``last_seen``/``registered_at``.
    """

    def __init__(self, url: str, token: str | None, timeout: float = 5.0) -> None:
        if not url:
            raise WaitError(
                "wait_for=agent_registered needs server_url (e.g. http://10.42.0.1:8470)"
            )
        self.url = url.rstrip("/") + "/api/v1/nodes"
        self.token = token
        self.timeout = timeout
        self.since = 0.0

    def start(self) -> None:
        self.since = time.time()

    def _nodes(self) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url)  # noqa: S310 - http(s) URL from the playbook
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                data = json.loads(answer.read(MAX_READ))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise WaitError(
                    f"the server refused the admin token at {self.url} (HTTP {exc.code})"
                ) from None
            return []  # 5xx while the server starts: keep polling
        except (OSError, ValueError):
            return []  # not up yet: keep polling until the timeout
        nodes = data.get("nodes", []) if isinstance(data, dict) else data
        return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []

    def poll(self) -> set[str]:
        seen = set()
        for node in self._nodes():
            mac = str(node.get("mac", "")).lower()
            if not _MAC.fullmatch(mac):
                continue
            health = str(node.get("health", node.get("state", ""))).lower()
            if health in ("down", "offline"):
                continue
            keys = (
                ("last_registered",)
                if "last_registered" in node
                else ("last_seen", "registered_at")
            )
            stamps = [node[key] for key in keys if isinstance(node.get(key), (int, float))]
            if "last_registered" in node and not stamps:
                continue  # not registered with this run of the server yet
            if stamps and max(stamps) < self.since - 1:
                continue
            seen.add(mac)
        return seen


def wait_until(  # noqa: PLR0917 - the loop's knobs, each named at the call site
    watcher: DhcpSeen | AgentRegistered,
    wanted: set[str],
    needed: int,
    timeout: float,
    poll: float,
    sleep: Any = time.sleep,
    clock: Any = time.monotonic,
) -> set[str]:
    """Poll until ``needed`` of ``wanted`` MACs are seen or ``timeout`` passes; the seen ones."""
    deadline = clock() + timeout
    rounds = int(timeout / max(poll, 0.01)) + 2  # bounded in count as well as in time
    seen: set[str] = set()
    for _ in range(rounds):
        seen = watcher.poll() & wanted
        if len(seen) >= needed or clock() >= deadline:
            break
        sleep(min(poll, max(0.0, deadline - clock())))
    return seen
