"""A switch's MAC address table over SNMP: BRIDGE-MIB and Q-BRIDGE-MIB (for mac_harvest).

Tables read (RFC 4188 BRIDGE-MIB, RFC 4363 Q-BRIDGE-MIB):

- ``dot1dTpFdbTable`` (1.3.6.1.2.1.17.4.3.1): index = the MAC's six octets; column 1 the
  address, 2 the bridge port, 3 the status (1 other, 2 invalid, 3 learned, 4 self, 5 mgmt);
- ``dot1qTpFdbTable`` (1.3.6.1.2.1.17.7.1.2.2.1): index = FDB id + the MAC's six octets;
  column 2 the bridge port, 3 the status (same values);
- ``dot1dBasePortIfIndex`` (1.3.6.1.2.1.17.1.4.1.2): bridge port -> ifIndex.

Decoding (``fdb_from_varbinds``) is pure and tested on recorded answers; ``read_fdb`` walks a
live agent with pysnmp 7 (SNMP v2c, bounded by timeout and retries, and by ``max_rows``).
An entry whose MAC is not six octets is skipped and counted, never returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DOT1D_FDB = "1.3.6.1.2.1.17.4.3.1"
DOT1Q_FDB = "1.3.6.1.2.1.17.7.1.2.2.1"
DOT1D_BASE_PORT_IFINDEX = "1.3.6.1.2.1.17.1.4.1.2"
#: The columns walked: dot1d address, port, status; dot1q port, status; port -> ifIndex.
WALKED = (
    f"{DOT1D_FDB}.1",
    f"{DOT1D_FDB}.2",
    f"{DOT1D_FDB}.3",
    f"{DOT1Q_FDB}.2",
    f"{DOT1Q_FDB}.3",
    DOT1D_BASE_PORT_IFINDEX,
)
STATUS_LEARNED = 3
STATUS_NAMES = {1: "other", 2: "invalid", 3: "learned", 4: "self", 5: "mgmt"}

Varbind = tuple[str, Any]


class SnmpError(RuntimeError):
    """The agent did not answer, or answered with an error."""


@dataclass(frozen=True)
class FdbRow:
    """One forwarding entry: MAC on a bridge port (and its ifIndex when the agent says)."""

    mac: str
    port: int
    status: int
    vlan: int | None = None
    if_index: int | None = None


@dataclass
class FdbTable:
    """The decoded table and what was skipped while decoding it."""

    rows: list[FdbRow] = field(default_factory=list)
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)


def _mac_from_octets(octets: Iterable[int]) -> str | None:
    values = list(octets)
    if len(values) != 6 or any(not 0 <= v <= 255 for v in values):
        return None
    return ":".join(f"{v:02x}" for v in values)


def _index(oid: str, column: str) -> list[int] | None:
    prefix = column + "."
    if not oid.startswith(prefix):
        return None
    try:
        return [int(part) for part in oid[len(prefix) :].split(".")]
    except ValueError:
        return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _split(
    varbinds: Iterable[Varbind],
) -> tuple[
    dict[tuple[int, ...], dict[int, Any]], dict[tuple[int, ...], dict[int, Any]], dict[int, int]
]:
    """Rows of dot1dTpFdbTable and dot1qTpFdbTable by index, and bridge port -> ifIndex."""
    dot1d: dict[tuple[int, ...], dict[int, Any]] = {}
    dot1q: dict[tuple[int, ...], dict[int, Any]] = {}
    if_index: dict[int, int] = {}
    for name, value in varbinds:
        oid = name.lstrip(".")
        for prefix, store in ((DOT1D_FDB, dot1d), (DOT1Q_FDB, dot1q)):
            index = _index(oid, prefix)
            if index is not None and len(index) >= 2:
                store.setdefault(tuple(index[1:]), {})[index[0]] = value
                break
        else:
            index = _index(oid, DOT1D_BASE_PORT_IFINDEX)
            number = _as_int(value)
            if index and len(index) == 1 and number is not None:
                if_index[index[0]] = number
    return dot1d, dot1q, if_index


def _dot1d_mac(key: tuple[int, ...], address: Any) -> str | None:
    """The MAC of a dot1d row: its index, which the address column (if walked) must repeat."""
    mac = _mac_from_octets(key)
    if mac is None or address is None:
        return mac
    raw = bytes(address) if isinstance(address, (bytes, bytearray)) else None
    return mac if raw is not None and _mac_from_octets(raw) == mac else None


def fdb_from_varbinds(varbinds: Iterable[Varbind]) -> FdbTable:
    """Decode walked (OID, value) pairs of the tables in WALKED into FDB rows.

    Q-BRIDGE rows win over BRIDGE rows for the same MAC and port. The dot1d address column,
    when present, must agree with the index; a MAC that is not six octets (in the index or
    the address column) is counted in ``malformed`` and left out.
    """
    table = FdbTable()
    dot1d, dot1q, if_index = _split(varbinds)

    def bad(what: str, key: tuple[int, ...]) -> None:
        table.malformed += 1
        if len(table.malformed_examples) < 5:
            table.malformed_examples.append(f"{what} index {'.'.join(map(str, key))}")

    seen: set[tuple[str, int]] = set()
    for key, columns in dot1q.items():
        mac = _mac_from_octets(key[1:])
        port, status = _as_int(columns.get(2)), _as_int(columns.get(3))
        if mac is None:
            bad("dot1qTpFdb", key)
        elif port is not None:
            seen.add((mac, port))
            table.rows.append(FdbRow(mac, port, status or 0, key[0], if_index.get(port)))
    for key, columns in dot1d.items():
        mac = _dot1d_mac(key, columns.get(1))
        port, status = _as_int(columns.get(2)), _as_int(columns.get(3))
        if mac is None:
            bad("dot1dTpFdb", key)
        elif port is not None and (mac, port) not in seen:
            table.rows.append(FdbRow(mac, port, status or 0, None, if_index.get(port)))
    table.rows.sort(key=lambda row: (row.port, row.mac))
    return table


def _plain(value: Any) -> Any:
    """A pysnmp value as bytes (OCTET STRING) or int (INTEGER, Counter...)."""
    if hasattr(value, "asOctets"):
        return bytes(value.asOctets())
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


async def _walk(
    address: str,
    *,
    port: int,
    community: str,
    timeout: float,
    retries: int,
    max_rows: int,
) -> list[Varbind]:
    from pysnmp.hlapi.v3arch.asyncio import (  # type: ignore[import-untyped]  # noqa: PLC0415
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        walk_cmd,
    )

    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create((address, port), timeout=timeout, retries=retries)
        found: list[Varbind] = []
        for column in WALKED:
            rows = 0
            async for indication, status, index, binds in walk_cmd(
                engine,
                # SNMP v2c: what switches' BRIDGE-MIB agents commonly offer (read-only).
                CommunityData(community, mpModel=1),  # noqa: S508
                target,
                ContextData(),
                ObjectType(ObjectIdentity(column)),
                lexicographicMode=False,
                lookupMib=False,
            ):
                if indication:
                    raise SnmpError(f"{address}:{port}: {indication}")
                if status:
                    where = binds[int(index) - 1][0] if index and binds else column
                    raise SnmpError(f"{address}:{port}: {status.prettyPrint()} at {where}")
                for name, value in binds:
                    found.append((str(name), _plain(value)))
                rows += 1
                if rows >= max_rows:
                    raise SnmpError(
                        f"{address}:{port}: more than {max_rows} rows in {column}; raise "
                        "snmp_max_rows if the switch really holds that many"
                    )
        return found
    finally:
        engine.close_dispatcher()


def read_fdb(
    address: str,
    *,
    port: int = 161,
    community: str = "public",
    timeout: float = 2.0,
    retries: int = 1,
    max_rows: int = 20000,
) -> FdbTable:
    """Walk a switch's forwarding tables (SNMP v2c) and decode them; SnmpError on failure."""
    try:
        varbinds = asyncio.run(
            _walk(
                address,
                port=port,
                community=community,
                timeout=timeout,
                retries=retries,
                max_rows=max_rows,
            )
        )
    except SnmpError:
        raise
    except Exception as exc:  # pysnmp raises many kinds: name the switch in one error
        raise SnmpError(f"{address}:{port}: {type(exc).__name__}: {exc}") from exc
    return fdb_from_varbinds(varbinds)
