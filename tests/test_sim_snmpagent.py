"""The SNMP agent simulator (PDU outlets, PoE ports, MAC table), queried with pysnmp 7."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    Integer,
    ObjectIdentity,
    ObjectType,
    OctetString,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
    set_cmd,
    walk_cmd,
)

from bramble.sim.power import Outlets
from bramble.sim.snmpagent import SnmpSim

APC = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
ADMIN = "1.3.6.1.2.1.105.1.1.1.3.1"
FDB_PORT = "1.3.6.1.2.1.17.4.3.1.2"
QFDB_PORT = "1.3.6.1.2.1.17.7.1.2.2.1.2"
IFINDEX = "1.3.6.1.2.1.17.1.4.1.2"


@pytest.fixture
def agent() -> Iterator[SnmpSim]:
    sim = SnmpSim(read_community="public", write_community="private")
    sim.add_pdu_outlets(Outlets(4), APC, cycle_value=3, cycle_s=0.1)
    sim.add_poe_ports(Outlets(8, on=[8]))
    sim.set_fdb({"b8:27:eb:00:01:01": 1, "B8-27-EB-00-01-02": 2}, ifindex_base=1000)
    with sim:
        yield sim


def snmp(
    port: int, op: str, oid: str, value: Any = None, *, community: str = "private", v1: bool = False
) -> Any:
    async def run() -> Any:
        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=0.5, retries=0)
            auth = CommunityData(community, mpModel=0 if v1 else 1)
            if op == "walk":
                rows = []
                async for err, status, _, binds in walk_cmd(
                    engine,
                    auth,
                    target,
                    ContextData(),
                    ObjectType(ObjectIdentity(oid)),
                    lexicographicMode=False,
                ):
                    assert not err
                    assert not status
                    rows += [(str(o), v) for o, v in binds]
                return rows
            if op == "get":
                result = await get_cmd(
                    engine, auth, target, ContextData(), ObjectType(ObjectIdentity(oid))
                )
            else:
                result = await set_cmd(
                    engine, auth, target, ContextData(), ObjectType(ObjectIdentity(oid), value)
                )
            return result
        finally:
            engine.close_dispatcher()

    return asyncio.run(run())


def test_pdu_outlet_get_and_set(agent: SnmpSim) -> None:
    err, status, _, binds = snmp(agent.port, "get", f"{APC}.2")
    assert not err
    assert not status
    assert int(binds[0][1]) == 2  # off
    err, status, _, binds = snmp(agent.port, "set", f"{APC}.2", Integer(1))
    assert not err
    assert not status
    assert int(binds[0][1]) == 1
    assert int(snmp(agent.port, "get", f"{APC}.2", v1=True)[3][0][1]) == 1


def test_pdu_reboot_value_cycles_the_outlet() -> None:
    outlets = Outlets(2, on=[1])
    events: list[tuple[int, bool]] = []
    outlets.subscribe(lambda n, on: events.append((n, on)))
    sim = SnmpSim()
    sim.add_pdu_outlets(outlets, APC, cycle_value=3, cycle_s=0.05)
    with sim:
        assert not snmp(sim.port, "set", f"{APC}.1", Integer(3))[1]
        for _ in range(100):
            if len(events) == 2:
                break
            asyncio.run(asyncio.sleep(0.02))
    assert events == [(1, False), (1, True)]


def test_poe_admin_enable(agent: SnmpSim) -> None:
    assert int(snmp(agent.port, "get", f"{ADMIN}.8")[3][0][1]) == 1
    snmp(agent.port, "set", f"{ADMIN}.3", Integer(1))
    detection = snmp(agent.port, "get", "1.3.6.1.2.1.105.1.1.1.6.1.3")
    assert int(detection[3][0][1]) == 3  # deliveringPower


def test_set_errors_like_an_agent(agent: SnmpSim) -> None:
    assert snmp(agent.port, "set", f"{APC}.1", Integer(1), community="public")[1]  # noAccess
    assert str(snmp(agent.port, "set", f"{APC}.1", Integer(7))[1]) == "wrongValue"
    assert str(snmp(agent.port, "set", f"{APC}.1", OctetString("on"))[1]) == "wrongType"
    assert str(snmp(agent.port, "set", "1.3.6.1.2.1.1.1.0", Integer(1))[1]) == "notWritable"
    assert str(snmp(agent.port, "set", f"{APC}.1", Integer(7), v1=True)[1]) == "badValue"
    assert str(snmp(agent.port, "get", f"{APC}.99", v1=True)[1]) == "noSuchName"


def test_wrong_community_gets_no_answer(agent: SnmpSim) -> None:
    before = agent.answered
    err = snmp(agent.port, "get", "1.3.6.1.2.1.1.1.0", community="guess")[0]
    assert "No SNMP response" in str(err)
    assert agent.answered == before


def test_mac_table_in_bridge_and_q_bridge_mib(agent: SnmpSim) -> None:
    rows = snmp(agent.port, "walk", FDB_PORT, community="public")
    assert [(o, int(v)) for o, v in rows] == [
        (f"{FDB_PORT}.184.39.235.0.1.1", 1),
        (f"{FDB_PORT}.184.39.235.0.1.2", 2),
    ]
    rows = snmp(agent.port, "walk", QFDB_PORT, community="public")
    assert [o for o, _ in rows] == [
        f"{QFDB_PORT}.1.184.39.235.0.1.1",
        f"{QFDB_PORT}.1.184.39.235.0.1.2",
    ]
    assert [int(v) for _, v in snmp(agent.port, "walk", IFINDEX)] == [1001, 1002]
    name = snmp(agent.port, "get", "1.3.6.1.2.1.31.1.1.1.1.1002")[3][0][1]
    assert str(name) == "ge-0/0/2"


def test_set_fdb_replaces_and_can_serve_malformed_entries(agent: SnmpSim) -> None:
    agent.set_fdb({"b8:27:eb:00:02:01": 5, b"\x01\x02\x03": 6})
    rows = snmp(agent.port, "walk", "1.3.6.1.2.1.17.4.3.1.1")
    assert [bytes(v.asOctets()) for _, v in rows] == [
        b"\x01\x02\x03",
        bytes.fromhex("b827eb000201"),
    ]


def test_faults_silence_the_agent(agent: SnmpSim) -> None:
    agent.faults.hang = True
    assert "No SNMP response" in str(snmp(agent.port, "get", f"{APC}.1")[0])
    agent.faults.hang = False
    agent.faults.refuse_auth = True
    assert "No SNMP response" in str(snmp(agent.port, "get", f"{APC}.1")[0])
