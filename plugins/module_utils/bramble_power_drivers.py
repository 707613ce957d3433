# Copyright: bramble contributors
# Apache License 2.0 (see LICENSE)
"""bank_power drivers: one class per kind of power controller, behind one interface.

Every driver switches *units*: a power group's outlet, or (drivers with ``per_slot``) one
Pi's own port. ``read(units)`` returns which are on, ``switch(unit, on)`` switches one and
checks the result where the device can tell; any failure raises ``PowerError`` naming the
controller. Drivers never log or return the secret they are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

PETH_ADMIN_ENABLE = "1.3.6.1.2.1.105.1.1.1.3"


class PowerError(Exception):
    """A controller failed; ``controller`` names it."""

    def __init__(self, controller: str, message: str) -> None:
        super().__init__(f"controller {controller}: {message}")
        self.controller = controller


@dataclass(frozen=True)
class PiRef:
    name: str
    bank: int
    slot: int
    mac: str | None = None


@dataclass
class Unit:
    """What one switch request powers: a group's outlet or one Pi's port."""

    controller: str
    outlet: int | str
    key: str
    group: int | None = None  # power group id; None for a switch's outlet
    switch: str | None = None  # the network switch this outlet powers
    location: str | None = None  # uhubctl hub location
    pis: list[PiRef] = field(default_factory=list)


class Driver:
    """The interface. ``per_slot``: can switch each Pi alone (targets ``slots``)."""

    per_slot = False

    def __init__(self, controller: dict[str, Any], secret: str | None, timeout: float) -> None:
        self.name = str(controller["name"])
        self.address = controller.get("address")
        self.port = controller.get("port")
        self.options: dict[str, Any] = dict(controller.get("options") or {})
        self.secret = secret
        self.timeout = timeout

    def fail(self, message: str) -> PowerError:
        text = message
        if self.secret:
            text = text.replace(self.secret, "********")
        return PowerError(self.name, text)

    def outlet_of(self, unit: Unit) -> int:
        try:
            return int(unit.outlet)
        except (TypeError, ValueError):
            raise self.fail(
                f"outlet {unit.outlet!r} is not a number this driver can switch"
            ) from None

    def read(self, units: list[Unit]) -> dict[str, bool]:
        raise NotImplementedError

    def switch(self, unit: Unit, on: bool) -> None:
        raise NotImplementedError

    def verify(self, unit: Unit, on: bool) -> None:
        """Read the unit back; a relay that did not follow is reported as stuck."""
        state = self.read([unit]).get(unit.key)
        if state is not None and state != on:
            raise self.fail(
                f"outlet {unit.outlet} did not switch {'on' if on else 'off'} (the relay "
                "reads back unchanged: stuck?); check the controller before retrying"
            )


# --- http_relay ---------------------------------------------------------------------------


class HttpRelay(Driver):
    """Arduino-style relay board: ``GET /relays``, ``PUT /relay/<n>`` with a bearer token."""

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        scheme = "https" if self.options.get("https") else "http"
        port = self.port or (443 if scheme == "https" else 80)
        url = f"{scheme}://{self.address}:{port}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if self.secret:
            request.add_header("Authorization", f"Bearer {self.secret}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                return json.loads(answer.read(65536) or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise self.fail("refused the token (HTTP 401): check the vault secret") from None
            raise self.fail(f"{method} {path} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise self.fail(f"unreachable at {url} ({exc})") from None

    def read(self, units: list[Unit]) -> dict[str, bool]:
        answer = self._request("GET", "/relays")
        relays = answer.get("relays", {}) if isinstance(answer, dict) else {}
        states = {}
        for unit in units:
            word = relays.get(str(self.outlet_of(unit)))
            if word not in ("on", "off"):
                raise self.fail(f"has no relay {unit.outlet}")
            states[unit.key] = word == "on"
        return states

    def switch(self, unit: Unit, on: bool) -> None:
        answer = self._request(
            "PUT", f"/relay/{self.outlet_of(unit)}", {"state": "on" if on else "off"}
        )
        if not isinstance(answer, dict) or answer.get("state") != ("on" if on else "off"):
            raise self.fail(
                f"relay {unit.outlet} did not switch {'on' if on else 'off'} (it reads back "
                f"{answer.get('state') if isinstance(answer, dict) else answer!r}: stuck?)"
            )


# --- synaccess (telnet) -------------------------------------------------------------------

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class _Telnet:
    """The smallest telnet client that talks to a netBooter: IAC refused, text collected."""

    def __init__(self, driver: Driver, host: str, port: int, timeout: float) -> None:
        self.driver = driver
        self.timeout = timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise driver.fail(f"unreachable at {host}:{port} ({exc})") from None
        self.buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            byte = data[i]
            if byte == IAC and i + 1 < len(data):
                command = data[i + 1]
                if command in (DO, DONT, WILL, WONT) and i + 2 < len(data):
                    option = data[i + 2]
                    if command == DO:
                        self.sock.sendall(bytes([IAC, WONT, option]))
                    elif command == WILL:
                        self.sock.sendall(bytes([IAC, DO if option in (1, 3) else DONT, option]))
                    i += 3
                    continue
                if command == IAC:
                    self.buffer.append(IAC)
                i += 2
                continue
            if byte:
                self.buffer.append(byte)
            i += 1

    def expect(self, *markers: bytes, end: bool = False) -> tuple[bytes, bytes]:
        """Read until one marker appears (``end``: the text ends with it); (text, marker)."""
        deadline = time.monotonic() + self.timeout
        while True:
            text = bytes(self.buffer)
            for marker in markers:
                if (text.rstrip(b" ").endswith(marker)) if end else (marker in text):
                    self.buffer.clear()
                    return text, marker
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.driver.fail(
                    f"no {' or '.join(m.decode() for m in markers)!r} within {self.timeout} s "
                    f"(last text: {text[-60:].decode('ascii', 'replace')!r})"
                )
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError as exc:
                raise self.driver.fail(f"connection lost ({exc})") from None
            if not data:
                raise self.driver.fail(
                    f"closed the connection (last text: {text[-60:].decode('ascii', 'replace')!r})"
                )
            self._feed(data)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("ascii") + b"\r\n")


class Synaccess(Driver):
    """Synaccess netBooter (NP-05B...) over telnet: login, ``pshow``, ``pset <n> 0|1``."""

    _ROW = re.compile(r"^\s*(\d+)\s*\|[^|]*\|\s*(ON|OFF)\s*\|?\s*$", re.MULTILINE)

    def _session(self) -> _Telnet:
        session = _Telnet(self, str(self.address), int(self.port or 23), self.timeout)
        try:
            session.expect(b"User ID:")
            session.send(str(self.options.get("username", "admin")))
            session.expect(b"Password:")
            session.send(self.secret or "")
            _, marker = session.expect(b">", b"Login Failed", end=False)
            if marker != b">":
                raise self.fail("refused the login: check the username option and vault secret")
        except BaseException:
            session.close()
            raise
        return session

    def _pshow(self, session: _Telnet) -> dict[int, bool]:
        session.send("pshow")
        text, _ = session.expect(b">", end=True)
        rows = self._ROW.findall(text.decode("ascii", "replace"))
        if not rows:
            raise self.fail(f"pshow gave no outlet table ({text[-80:]!r})")
        return {int(n): word == "ON" for n, word in rows}

    def _logout(self, session: _Telnet) -> None:
        with contextlib.suppress(OSError):
            session.send("logout")
        session.close()

    def read(self, units: list[Unit]) -> dict[str, bool]:
        session = self._session()
        try:
            table = self._pshow(session)
        finally:
            self._logout(session)
        return {unit.key: self._state(table, unit) for unit in units}

    def _state(self, table: dict[int, bool], unit: Unit) -> bool:
        if str(unit.outlet) == "all":
            return all(table.values())
        outlet = self.outlet_of(unit)
        if outlet not in table:
            raise self.fail(f"has no outlet {outlet} (pshow lists {sorted(table)})")
        return table[outlet]

    def switch(self, unit: Unit, on: bool) -> None:
        session = self._session()
        try:
            if str(unit.outlet) == "all":
                session.send(f"ps {1 if on else 0}")
            else:
                session.send(f"pset {self.outlet_of(unit)} {1 if on else 0}")
            text, _ = session.expect(b">", end=True)
            if b"Invalid" in text:
                raise self.fail(f"refused the command: {text.decode('ascii', 'replace').strip()}")
            state = self._state(self._pshow(session), unit)
        finally:
            self._logout(session)
        if state != on:
            raise self.fail(
                f"outlet {unit.outlet} did not switch {'on' if on else 'off'} (pshow still shows "
                f"it {'ON' if state else 'OFF'}: stuck relay?)"
            )


# --- SNMP (snmp_pdu, poe_snmp) ------------------------------------------------------------


class _Snmp(Driver):
    """Shared SNMP v1/v2c get/set (pysnmp 7); the community is the vault secret."""

    def _community(self) -> str:
        return self.secret or str(self.options.get("community", "private"))

    async def _op(self, oids: list[str], value: int | None) -> dict[str, int]:
        from pysnmp.hlapi.v3arch.asyncio import (  # type: ignore[import-untyped]  # noqa: PLC0415
            CommunityData,
            ContextData,
            Integer,
            ObjectIdentity,
            ObjectType,
            SnmpEngine,
            UdpTransportTarget,
            get_cmd,
            set_cmd,
        )

        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create(
                (str(self.address), int(self.port or 161)), timeout=self.timeout, retries=1
            )
            model = 0 if str(self.options.get("version", "2c")) == "1" else 1
            auth = CommunityData(self._community(), mpModel=model)
            if value is None:
                objects = [ObjectType(ObjectIdentity(oid)) for oid in oids]
                result = await get_cmd(engine, auth, target, ContextData(), *objects)
            else:
                objects = [ObjectType(ObjectIdentity(oid), Integer(value)) for oid in oids]
                result = await set_cmd(engine, auth, target, ContextData(), *objects)
        finally:
            engine.close_dispatcher()
        error_indication, error_status, _, binds = result
        if error_indication:
            raise self.fail(
                f"no SNMP answer from {self.address}:{self.port or 161} ({error_indication}): "
                "unreachable, or the community was refused"
            )
        if error_status:
            raise self.fail(
                f"SNMP {'SET' if value is not None else 'GET'} failed: {error_status.prettyPrint()}"
            )
        values: dict[str, int] = {}
        for oid, val in binds:
            try:
                values[str(oid)] = int(val)
            except (TypeError, ValueError):
                raise self.fail(f"{oid} is not an integer object ({val.prettyPrint()})") from None
        return values

    def _run(self, oids: list[str], value: int | None = None) -> dict[str, int]:
        try:
            return asyncio.run(self._op(oids, value))
        except ImportError:
            raise self.fail("needs pysnmp 7 (pip install 'pysnmp>=7.1,<8')") from None

    def oid_of(self, unit: Unit, state: bool = False) -> str:
        raise NotImplementedError

    def on_value(self, state: bool = False) -> int:
        raise NotImplementedError

    def off_value(self, state: bool = False) -> int:
        raise NotImplementedError

    def read(self, units: list[Unit]) -> dict[str, bool]:
        oids = {unit.key: self.oid_of(unit, state=True) for unit in units}
        values = self._run(list(oids.values()))
        states = {}
        for key, oid in oids.items():
            value = values.get(oid)
            if value not in (self.on_value(True), self.off_value(True)):
                raise self.fail(f"{oid} reads {value}, neither on nor off")
            states[key] = value == self.on_value(True)
        return states

    def switch(self, unit: Unit, on: bool) -> None:
        self._run([self.oid_of(unit)], self.on_value() if on else self.off_value())
        self.verify(unit, on)


class SnmpPdu(_Snmp):
    """PDU outlets by OID: options ``oid`` (control column), ``on_value``/``off_value``,
    optional ``state_oid`` with ``state_on``/``state_off``, ``version`` (1 or 2c)."""

    def oid_of(self, unit: Unit, state: bool = False) -> str:
        base = self.options.get("state_oid") if state else None
        base = base or self.options.get("oid")
        if not base:
            raise self.fail("options.oid (the outlet control column) is required for snmp_pdu")
        return f"{str(base).strip('.')}.{self.outlet_of(unit)}"

    def on_value(self, state: bool = False) -> int:
        if state and self.options.get("state_oid"):
            return int(self.options.get("state_on", 1))
        return int(self.options.get("on_value", 1))

    def off_value(self, state: bool = False) -> int:
        if state and self.options.get("state_oid"):
            return int(self.options.get("state_off", 2))
        return int(self.options.get("off_value", 2))


class PoeSnmp(_Snmp):
    """RFC 3621 pethPsePortAdminEnable.<group>.<port>: true(1) on, false(2) off, per port."""

    per_slot = True

    def oid_of(self, unit: Unit, state: bool = False) -> str:
        return f"{PETH_ADMIN_ENABLE}.{int(self.options.get('pse_group', 1))}.{self.outlet_of(unit)}"

    def on_value(self, state: bool = False) -> int:
        return 1

    def off_value(self, state: bool = False) -> int:
        return 2


# --- uhubctl and command (local programs, argv lists, never a shell) ---------------------


class _Program(Driver):
    def run(self, argv: list[str], extra_env: dict[str, str] | None = None) -> str:
        env = dict(os.environ)
        env.update(extra_env or {})
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, env=env, check=False
            )
        except FileNotFoundError:
            raise self.fail(f"{argv[0]} is not installed (not found on PATH)") from None
        except subprocess.TimeoutExpired:
            raise self.fail(f"{argv[0]} did not finish within {self.timeout} s") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise self.fail(
                f"{shlex.join(argv[:1])} exited {done.returncode}: {detail[0] if detail else ''}"
            )
        return done.stdout


class Uhubctl(_Program):
    """USB hubs with per-port power: ``uhubctl -l <location> -p <port> -a on|off``."""

    per_slot = True
    _STATUS = re.compile(r"^\s*Port (\d+): ([0-9a-f]{4})\s*(.*)$", re.MULTILINE)
    _HUB = re.compile(r"status for hub (\S+)")

    def _binary(self) -> str:
        return str(self.options.get("binary", "uhubctl"))

    def read(self, units: list[Unit]) -> dict[str, bool]:
        states: dict[str, bool] = {}
        for location in sorted({str(u.location) for u in units}):
            out = self.run([self._binary(), "-l", location])
            ports = {
                int(port): "off" not in rest.split() and int(bits, 16) & 0x0100 != 0
                for port, bits, rest in self._STATUS.findall(out)
            }
            for unit in units:
                if str(unit.location) == location:
                    port = self.outlet_of(unit)
                    if port not in ports:
                        raise self.fail(f"hub {location} has no port {port}")
                    states[unit.key] = ports[port]
        return states

    def switch(self, unit: Unit, on: bool) -> None:
        port = str(self.outlet_of(unit))
        out = self.run(
            [self._binary(), "-l", str(unit.location), "-p", port, "-a", "on" if on else "off"]
        )
        new = out.split("New status", 1)[-1] if "New status" in out else ""
        for found, bits, rest in self._STATUS.findall(new):
            state = "off" not in rest.split() and int(bits, 16) & 0x0100 != 0
            if found == port and state != on:
                raise self.fail(f"hub {unit.location} port {port} did not switch (stuck?)")


class Command(_Program):
    """Any tool: options ``on``/``off`` (and ``status``) are argv templates, never a shell.

    Placeholders: ``{outlet}``, ``{address}``, ``{port}``, ``{bank}``, ``{slot}``; the secret is
    passed in the environment as ``BRAMBLE_POWER_SECRET``, never on the command line. A
    template using ``{slot}`` switches Pis one by one. ``status`` prints ``on`` or ``off``.
    """

    def __init__(self, controller: dict[str, Any], secret: str | None, timeout: float) -> None:
        super().__init__(controller, secret, timeout)
        self.per_slot = "{slot}" in str(self.options.get("on", ""))

    def _argv(self, template_key: str, unit: Unit) -> list[str]:
        template = self.options.get(template_key)
        if not template:
            raise self.fail(f"options.{template_key} (an argv template) is required")
        pi = unit.pis[0] if unit.pis and self.per_slot else None
        values = {
            "outlet": unit.outlet,
            "address": self.address or "",
            "port": self.port or "",
            "bank": pi.bank if pi else "",
            "slot": pi.slot if pi else "",
        }
        try:
            return [part.format(**values) for part in shlex.split(str(template))]
        except (KeyError, IndexError, ValueError) as exc:
            raise self.fail(f"options.{template_key} has a bad placeholder ({exc})") from None

    def _env(self) -> dict[str, str]:
        return {"BRAMBLE_POWER_SECRET": self.secret} if self.secret else {}

    def read(self, units: list[Unit]) -> dict[str, bool]:
        if not self.options.get("status"):
            return {}  # state unknown: switching is always done
        states = {}
        for unit in units:
            word = self.run(self._argv("status", unit), self._env()).strip().lower()
            if word not in ("on", "off"):
                raise self.fail(f"status printed {word[:40]!r}, not 'on' or 'off'")
            states[unit.key] = word == "on"
        return states

    def switch(self, unit: Unit, on: bool) -> None:
        self.run(self._argv("on" if on else "off", unit), self._env())


DRIVERS: dict[str, type[Driver]] = {
    "http_relay": HttpRelay,
    "synaccess": Synaccess,
    "snmp_pdu": SnmpPdu,
    "poe_snmp": PoeSnmp,
    "poe": PoeSnmp,
    "uhubctl": Uhubctl,
    "command": Command,
}


def make_driver(controller: dict[str, Any], secret: str | None, timeout: float) -> Driver:
    """The driver of one model controller (``controllers[]`` entry)."""
    kind = str(controller.get("driver"))
    if kind not in DRIVERS:
        raise PowerError(
            str(controller.get("name")), f"unknown driver {kind!r} (one of {', '.join(DRIVERS)})"
        )
    return DRIVERS[kind](controller, secret, timeout)
