"""One SNMP v1/v2c agent (pysnmp): a PDU's outlets, a switch's PoE ports and its MAC table.

Python API (used by the tests of bank_power and mac_harvest, and by the lab)::

    sim = SnmpSim(read_community="public", write_community="private")
    sim.add_pdu_outlets(Outlets(8), "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4")   # APC-style, 1 on 2 off
    sim.add_poe_ports(Outlets(24))               # RFC 3621 pethPsePortAdminEnable.1.<port>
    sim.set_fdb({"b8:27:eb:00:01:01": 1, ...})   # BRIDGE-MIB + Q-BRIDGE-MIB MAC table
    port = sim.start()                           # UDP on 127.0.0.1, ephemeral port
    ...
    sim.close()

What it answers, like a managed switch or PDU does:

- ``sysDescr.0``, ``sysName.0``;
- PDU outlets: GET/SET on ``<control_oid>.<outlet>`` with the configured on/off values (and an
  optional reboot value that switches off, then on after ``cycle_s``); a separate read-only
  state column when the device has one (``state_oid``);
- PoE: ``pethPsePortAdminEnable`` (1.3.6.1.2.1.105.1.1.1.3.<group>.<port>, true(1)/false(2),
  read-write) and ``pethPsePortDetectionStatus`` (.6, deliveringPower(3)/disabled(1));
- MAC table: ``dot1dTpFdbAddress/Port/Status`` (1.3.6.1.2.1.17.4.3.1.{1,2,3}.<mac as 6
  numbers>), ``dot1dBasePortIfIndex`` (1.3.6.1.2.1.17.1.4.1.2.<port>, bridge port -> ifIndex,
  which on real switches is not the port number: ``ifindex_base``), ``ifName``
  (1.3.6.1.2.1.31.1.1.1.1.<ifIndex>), and ``dot1qTpFdbPort/Status``
  (1.3.6.1.2.1.17.7.1.2.2.1.{2,3}.<vlan>.<mac>);
- GET, GETNEXT, GETBULK (v2c) and SET; a wrong community gets no answer at all (as real agents
  do), SET with the read community or on a read-only object fails (v1 noSuchName/readOnly,
  v2c notWritable), a wrong value fails with badValue/wrongValue.

``Faults`` (per ``Outlets``; ``sim.faults`` for the whole agent) make it stop answering,
refuse every community, or stick an outlet or port.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import univ  # type: ignore[import-untyped]
from pysnmp.proto import api  # type: ignore[import-untyped]

from bramble.sim.power import Faults, Outlets, ThreadedSim

Oid = tuple[int, ...]

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
PETH_ADMIN_ENABLE = (1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 3)
PETH_DETECTION_STATUS = (1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 6)
DOT1D_BASE_PORT_IFINDEX = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2)
DOT1D_TP_FDB = (1, 3, 6, 1, 2, 1, 17, 4, 3, 1)
DOT1Q_TP_FDB = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
FDB_LEARNED = 3
MAX_BULK = 64

# error-status values (RFC 1157 / RFC 3416)
NO_ERROR, TOO_BIG, NO_SUCH_NAME, BAD_VALUE, READ_ONLY, GEN_ERR = 0, 1, 2, 3, 4, 5
WRONG_TYPE, WRONG_VALUE, NOT_WRITABLE = 7, 10, 17


def parse_oid(text: str | Oid) -> Oid:
    """``"1.3.6.1"`` or ``".1.3.6.1"`` -> ``(1, 3, 6, 1)``."""
    if isinstance(text, tuple):
        return text
    if not re.fullmatch(r"\.?\d+(\.\d+)*", text):
        raise ValueError(f"{text!r} is not a numeric OID such as 1.3.6.1.4.1")
    return tuple(int(part) for part in text.strip(".").split("."))


def mac_index(mac: str | bytes) -> Oid:
    """The table index of a MAC: its bytes as numbers (``b8:27:eb:..`` -> 184.39.235...)."""
    if isinstance(mac, bytes):
        return tuple(mac)
    return tuple(int(part, 16) for part in re.split(r"[:.-]", mac.strip().lower()) if part)


@dataclass
class _Entry:
    """One object instance: how to read it, and how to write it (None: read-only)."""

    kind: str  # "int" or "octets"
    read: Callable[[], int | bytes]
    write: Callable[[int], bool] | None = None  # returns False for a value it refuses


class SnmpSim(ThreadedSim):
    """An SNMP agent over UDP, serving the objects added with the ``add_*``/``set_*`` calls."""

    def __init__(  # noqa: PLR0917 - keyword use is the norm; positional kept for the CLI
        self,
        read_community: str = "public",
        write_community: str = "private",
        host: str = "127.0.0.1",
        port: int = 0,
        sys_descr: str = "bramble-sim SNMP agent",
        sys_name: str = "bramble-sim",
    ) -> None:
        super().__init__(host, port)
        self.read_community = read_community
        self.write_community = write_community
        self.faults = Faults()
        self._objects: dict[Oid, _Entry] = {}
        self._order: list[Oid] = []
        self._lock = threading.Lock()
        self._transport: asyncio.DatagramTransport | None = None
        self._outlet_faults: list[Faults] = []
        #: Requests answered (tests check that a wrong community got no answer).
        self.answered = 0
        self.set_raw(SYS_DESCR, sys_descr.encode())
        self.set_raw(SYS_NAME, sys_name.encode())

    # --- building the MIB ------------------------------------------------------------------

    def _put(self, oid: Oid, entry: _Entry) -> None:
        with self._lock:
            if oid not in self._objects:
                bisect.insort(self._order, oid)
            self._objects[oid] = entry

    def _drop_under(self, prefix: Oid) -> None:
        with self._lock:
            for oid in [o for o in self._order if o[: len(prefix)] == prefix]:
                del self._objects[oid]
            self._order = [o for o in self._order if o[: len(prefix)] != prefix]

    def set_raw(self, oid: str | Oid, value: int | bytes | str) -> None:
        """Serve a read-only object with a fixed value (also to serve deliberately bad data)."""
        data: int | bytes = value.encode() if isinstance(value, str) else value
        self._put(
            parse_oid(oid), _Entry("int" if isinstance(data, int) else "octets", lambda: data)
        )

    def add_pdu_outlets(
        self,
        outlets: Outlets,
        control_oid: str | Oid,
        *,
        on_value: int = 1,
        off_value: int = 2,
        cycle_value: int | None = None,
        cycle_s: float = 0.2,
        state_oid: str | Oid | None = None,
        state_on: int = 1,
        state_off: int = 2,
    ) -> None:
        """PDU outlets at ``<control_oid>.<n>`` (read-write) and ``<state_oid>.<n>`` (read)."""
        control = parse_oid(control_oid)
        self._outlet_faults.append(outlets.faults)
        for n in range(1, outlets.count + 1):

            def write(value: int, n: int = n) -> bool:
                if value == on_value:
                    outlets.set(n, True)
                elif value == off_value:
                    outlets.set(n, False)
                elif cycle_value is not None and value == cycle_value:
                    outlets.set(n, False)
                    timer = threading.Timer(cycle_s, outlets.set, (n, True))
                    timer.daemon = True
                    timer.start()
                else:
                    return False
                return True

            def read(n: int = n) -> int:
                return on_value if outlets.get(n) else off_value

            def read_state(n: int = n) -> int:
                return state_on if outlets.get(n) else state_off

            self._put((*control, n), _Entry("int", read, write))
            if state_oid is not None:
                self._put((*parse_oid(state_oid), n), _Entry("int", read_state))

    def add_poe_ports(self, ports: Outlets, group: int = 1) -> None:
        """RFC 3621 PoE ports 1..count of PSE ``group``: admin enable and detection status."""
        self._outlet_faults.append(ports.faults)
        for n in range(1, ports.count + 1):

            def write(value: int, n: int = n) -> bool:
                if value not in (1, 2):
                    return False
                ports.set(n, value == 1)
                return True

            def admin(n: int = n) -> int:
                return 1 if ports.get(n) else 2

            def detection(n: int = n) -> int:
                return 3 if ports.get(n) else 1

            self._put((*PETH_ADMIN_ENABLE, group, n), _Entry("int", admin, write))
            self._put((*PETH_DETECTION_STATUS, group, n), _Entry("int", detection))

    def set_fdb(
        self,
        table: dict[str, int] | dict[bytes, int] | dict[str | bytes, int],
        *,
        vlan: int = 1,
        ifindex_base: int = 0,
        ifname: str = "ge-0/0/{port}",
    ) -> None:
        """Replace the switch's MAC table: ``{mac: bridge port}``.

        A MAC is ``"b8:27:eb:00:01:02"`` (any separator) or raw ``bytes``; raw bytes of the
        wrong length serve a malformed entry, as buggy switches do. Every port in the table
        gets ``dot1dBasePortIfIndex = ifindex_base + port`` and an ``ifName`` from ``ifname``.
        The table appears in BRIDGE-MIB (dot1dTpFdbTable) and Q-BRIDGE-MIB (dot1qTpFdbTable,
        under ``vlan``).
        """
        self._drop_under(DOT1D_TP_FDB)
        self._drop_under(DOT1Q_TP_FDB)
        self._drop_under(DOT1D_BASE_PORT_IFINDEX)
        self._drop_under(IF_NAME)
        for mac, port in table.items():
            index = mac_index(mac)
            raw = bytes(index) if all(0 <= b <= 255 for b in index) else b""
            self.set_raw((*DOT1D_TP_FDB, 1, *index), raw)
            self.set_raw((*DOT1D_TP_FDB, 2, *index), port)
            self.set_raw((*DOT1D_TP_FDB, 3, *index), FDB_LEARNED)
            self.set_raw((*DOT1Q_TP_FDB, 2, vlan, *index), port)
            self.set_raw((*DOT1Q_TP_FDB, 3, vlan, *index), FDB_LEARNED)
        for port in sorted(set(table.values())):
            self.set_raw((*DOT1D_BASE_PORT_IFINDEX, port), ifindex_base + port)
            self.set_raw((*IF_NAME, ifindex_base + port), ifname.format(port=port))

    # --- answering -------------------------------------------------------------------------

    def _silent(self) -> bool:
        faults = [self.faults, *self._outlet_faults]
        return any(f.hang for f in faults)

    def _refusing(self) -> bool:
        return any(f.refuse_auth for f in [self.faults, *self._outlet_faults])

    def handle(self, data: bytes) -> bytes | None:
        """The answer to one request datagram, or None when the agent stays silent."""
        if self._silent():
            return None
        try:
            version = int(api.decodeMessageVersion(data))
            p_mod = api.PROTOCOL_MODULES[version]
            request, _ = decoder.decode(data, asn1Spec=p_mod.Message())
        except (PyAsn1Error, KeyError, ValueError):
            return None
        community = str(p_mod.apiMessage.get_community(request))
        if self._refusing() or community not in (self.read_community, self.write_community):
            return None
        response = p_mod.apiMessage.get_response(request)
        req_pdu = p_mod.apiMessage.get_pdu(request)
        rsp_pdu = p_mod.apiMessage.get_pdu(response)
        v2c = version == api.SNMP_VERSION_2C
        try:
            if req_pdu.isSameTypeWith(p_mod.GetRequestPDU()):
                binds, error = self._get(p_mod, req_pdu, v2c)
            elif req_pdu.isSameTypeWith(p_mod.GetNextRequestPDU()):
                binds, error = self._next(p_mod, p_mod.apiPDU.get_varbinds(req_pdu), v2c)
            elif v2c and req_pdu.isSameTypeWith(p_mod.GetBulkRequestPDU()):
                binds, error = self._bulk(p_mod, req_pdu)
            elif req_pdu.isSameTypeWith(p_mod.SetRequestPDU()):
                binds, error = self._set(p_mod, req_pdu, community, v2c)
            else:
                return None
        except Exception:
            binds, error = p_mod.apiPDU.get_varbinds(req_pdu), (GEN_ERR, 1)
        p_mod.apiPDU.set_varbinds(rsp_pdu, binds)
        p_mod.apiPDU.set_error_status(rsp_pdu, error[0])
        p_mod.apiPDU.set_error_index(rsp_pdu, error[1])
        self.answered += 1
        return bytes(encoder.encode(response))

    def _value(self, p_mod: Any, entry: _Entry) -> Any:
        value = entry.read()
        return p_mod.Integer(value) if entry.kind == "int" else p_mod.OctetString(value)

    def _get(self, p_mod: Any, pdu: Any, v2c: bool) -> tuple[list[Any], tuple[int, int]]:
        binds: list[Any] = []
        for index, (oid, value) in enumerate(p_mod.apiPDU.get_varbinds(pdu), start=1):
            entry = self._objects.get(tuple(oid))
            if entry is not None:
                binds.append((oid, self._value(p_mod, entry)))
            elif v2c:
                under = any(o[: len(oid)] == tuple(oid) for o in self._order)
                binds.append((oid, p_mod.NoSuchInstance() if under else p_mod.NoSuchObject()))
            else:
                return list(p_mod.apiPDU.get_varbinds(pdu)), (NO_SUCH_NAME, index)
            del value
        return binds, (NO_ERROR, 0)

    def _successor(self, oid: Oid) -> Oid | None:
        with self._lock:
            position = bisect.bisect_right(self._order, oid)
            return self._order[position] if position < len(self._order) else None

    def _next(self, p_mod: Any, binds_in: Any, v2c: bool) -> tuple[list[Any], tuple[int, int]]:
        binds: list[Any] = []
        for index, (oid, _) in enumerate(binds_in, start=1):
            following = self._successor(tuple(oid))
            if following is not None:
                binds.append(
                    (
                        p_mod.ObjectIdentifier(following),
                        self._value(p_mod, self._objects[following]),
                    )
                )
            elif v2c:
                binds.append((oid, p_mod.EndOfMibView()))
            else:
                return list(binds_in), (NO_SUCH_NAME, index)
        return binds, (NO_ERROR, 0)

    def _bulk(self, p_mod: Any, pdu: Any) -> tuple[list[Any], tuple[int, int]]:
        non_repeaters = int(p_mod.apiBulkPDU.get_non_repeaters(pdu))
        repetitions = min(int(p_mod.apiBulkPDU.get_max_repetitions(pdu)), MAX_BULK)
        request = list(p_mod.apiBulkPDU.get_varbinds(pdu))
        binds, _ = self._next(p_mod, request[:non_repeaters], True)
        current = request[non_repeaters:]
        for _ in range(repetitions):
            if not current:
                break
            row, _ = self._next(p_mod, current, True)
            binds.extend(row)
            if all(isinstance(value, type(p_mod.EndOfMibView())) for _, value in row):
                break
            current = row
        return binds, (NO_ERROR, 0)

    def _set(
        self, p_mod: Any, pdu: Any, community: str, v2c: bool
    ) -> tuple[list[Any], tuple[int, int]]:
        binds = list(p_mod.apiPDU.get_varbinds(pdu))
        if community != self.write_community:
            # RFC 3584: a read-only community makes a SET fail as noSuchName / noAccess(6)
            return binds, ((6 if v2c else NO_SUCH_NAME), 1)
        # check every binding first (SET is all or nothing), then write
        for index, (oid, value) in enumerate(binds, start=1):
            entry = self._objects.get(tuple(oid))
            if entry is None or entry.write is None:
                return binds, (
                    (NOT_WRITABLE if v2c else READ_ONLY if entry else NO_SUCH_NAME),
                    index,
                )
            if not isinstance(value, univ.Integer):
                return binds, ((WRONG_TYPE if v2c else BAD_VALUE), index)
        for index, (oid, value) in enumerate(binds, start=1):
            write = self._objects[tuple(oid)].write
            if write is None or not write(int(value)):
                return binds, ((WRONG_VALUE if v2c else BAD_VALUE), index)
        return [(oid, self._value(p_mod, self._objects[tuple(oid)])) for oid, _ in binds], (
            NO_ERROR,
            0,
        )

    # --- UDP -------------------------------------------------------------------------------

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        sim = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                answer = sim.handle(data)
                if answer is not None and sim._transport is not None:
                    sim._transport.sendto(answer, addr)

        transport, _ = await loop.create_datagram_endpoint(
            Protocol, local_addr=(self.host, self.port)
        )
        self._transport = transport
        return int(transport.get_extra_info("sockname")[1])

    async def _shutdown(self) -> None:
        if self._transport is not None:
            self._transport.close()
