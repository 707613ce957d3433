"""The server's health sweep: connections kept between sweeps, dead nodes checked first so
their timeouts do not hold the sweep, every check bounded; and the fleet simulator's agent
side (``bramble.sim.fleet_http.HealthResponder``) answering like an agent.

Agents here are asyncio servers on ephemeral 127.0.0.1 ports; hung ones accept and never
answer. The whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from test_server import AGENT, MACS, Client, FakeAgent, Running, run, settings

from bramble.services.server import health
from bramble.sim.fleet_http import HealthResponder

TIMEOUT = 0.5


class Fleet:
    """Agents on 127.0.0.1: live ones (``HealthResponder``) and hung ones; which agent
    accepted a connection, and in what order."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.targets: list[tuple[str, str]] = []
        self.accepted: list[str] = []  # MAC per accepted connection, in order
        self.requests: list[str] = []  # MAC per answered request

    async def add(self, mac: str, *, hung: bool = False) -> None:
        fleet = self

        class Agent(HealthResponder):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                fleet.accepted.append(mac)
                super().connection_made(transport)

            def data_received(self, data: bytes) -> None:
                if not hung:
                    fleet.requests.append(mac)
                    super().data_received(data)

        def body() -> dict[str, object]:
            return {"status": "ok", "mac": mac}

        server = await asyncio.get_running_loop().create_server(
            lambda: Agent(AGENT, body), "127.0.0.1", 0
        )
        self.servers.append(server)
        port = server.sockets[0].getsockname()[1]
        self.targets.append((mac, f"http://127.0.0.1:{port}/health"))

    def close(self) -> None:
        for server in self.servers:
            server.close()


@asynccontextmanager
async def fleet_and_session(concurrency: int) -> AsyncIterator[tuple[Fleet, aiohttp.ClientSession]]:
    fleet = Fleet()
    session = aiohttp.ClientSession(connector=health.connector(concurrency, interval=10.0))
    try:
        yield fleet, session
    finally:
        await session.close()
        fleet.close()


async def timed_sweep(
    fleet: Fleet,
    session: aiohttp.ClientSession,
    live: list[str],
    hung: list[str],
    *,
    concurrency: int,
    suspects: set[str] | None = None,
) -> tuple[dict[str, bool], float]:
    """Agents ``live`` then ``hung`` added to ``fleet``, swept once: (results, seconds)."""
    for each in live:
        await fleet.add(each)
    for each in hung:
        await fleet.add(each, hung=True)
    began = time.monotonic()
    results = await health.sweep(
        session, fleet.targets, AGENT, TIMEOUT, concurrency, suspects=suspects or set()
    )
    return results, time.monotonic() - began


def mac(number: int) -> str:
    return f"b8:27:eb:22:00:{number:02x}"


def go(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_next_sweep_reuses_every_connection() -> None:
    async def scenario() -> None:
        async with fleet_and_session(concurrency=16) as (fleet, session):
            for number in range(12):
                await fleet.add(mac(number))
            for _ in range(3):
                results = await health.sweep(session, fleet.targets, AGENT, TIMEOUT, 16)
                assert list(results.values()) == [True] * 12
            assert len(fleet.requests) == 36
            # one connection per agent, opened by the first sweep and kept alive since
            assert sorted(fleet.accepted) == sorted(mac(n) for n in range(12))

    go(scenario)


def test_the_connector_keeps_connections_from_one_sweep_to_the_next() -> None:
    async def scenario() -> None:
        for interval in (1.0, 10.0, 30.0):
            connector = health.connector(8, interval)
            try:
                assert connector.limit == 8
                assert interval < connector._keepalive_timeout <= health.KEEPALIVE_MAX
            finally:
                await connector.close()

    go(scenario)


def test_suspects_are_checked_first() -> None:
    async def scenario() -> None:
        async with fleet_and_session(concurrency=1) as (fleet, session):
            live = [mac(n) for n in range(4)]
            results, elapsed = await timed_sweep(
                fleet, session, live, [mac(9)], concurrency=1, suspects={mac(9)}
            )
            assert fleet.accepted[0] == mac(9)  # listed last, checked first
            assert results == {**{mac(n): True for n in range(4)}, mac(9): False}
            assert elapsed >= TIMEOUT  # the hung one was given its whole timeout

    go(scenario)


def test_hung_agents_cost_one_timeout_in_parallel_not_one_each() -> None:
    async def scenario() -> None:
        async with fleet_and_session(concurrency=64) as (fleet, session):
            hung = [mac(100 + n) for n in range(10)]
            results, elapsed = await timed_sweep(
                fleet, session, [mac(n) for n in range(20)], hung, concurrency=64
            )
            assert [m for m, ok in results.items() if not ok] == hung
            assert sum(results.values()) == 20
            # one after another the hung ones alone would take 10 * 0.5 s
            assert TIMEOUT <= elapsed < TIMEOUT + 1.5

    go(scenario)


def test_an_agent_answering_with_another_mac_or_refusing_the_token_is_not_up() -> None:
    async def scenario() -> None:
        async with fleet_and_session(concurrency=4) as (fleet, session):
            await fleet.add(mac(1))
            (_, url) = fleet.targets[0]
            assert await health.check_one(session, url, AGENT, TIMEOUT, mac(1))
            assert not await health.check_one(session, url, AGENT, TIMEOUT, mac(2))
            assert not await health.check_one(session, url, "wrong-token", TIMEOUT, mac(1))
            async with session.get(url.replace("/health", "/jobs")) as response:
                assert response.status == 404

    go(scenario)


def test_the_server_checks_the_nodes_that_missed_first(tmp_path: Any) -> None:
    agents = [FakeAgent(m) for m in MACS[:3]]
    agents[0].healthy = False  # the first registered, so the first checked until it misses
    order: list[str] = []

    async def scenario(server: Running, api: Client) -> None:
        try:
            for agent in agents:
                original = agent._health

                async def logged(request: Any, agent: FakeAgent = agent, original: Any = original):
                    order.append(agent.mac)
                    return await original(request)

                agent._health = logged
                await agent.start()
                await api.register(agent.mac, agent.port)
            results = await server.server.sweep()
            assert results == {MACS[0]: False, MACS[1]: True, MACS[2]: True}
            assert order == MACS[:3]
            order.clear()
            agents[0].healthy, agents[2].healthy = True, False
            await server.server.sweep()
            assert order[0] == MACS[0]  # it missed: first in the next sweep
            order.clear()
            await server.server.sweep()
            assert order[0] == MACS[2]  # now MACS[2] missed, MACS[0] is back in line
        finally:
            for agent in agents:
                await agent.stop()

    run(settings(tmp_path, health={"timeout": TIMEOUT, "concurrency": 1}), scenario)


def test_the_first_sweep_after_a_restart_checks_the_nodes_not_heard_from_first(
    tmp_path: Any,
) -> None:
    """Registered before a restart, a hung node (a listening socket nobody accepts on: the
    kernel completes the connection, no answer ever comes) does not register again; the
    restarted server knows no misses yet, but checks it first, so its timeout runs while the
    live nodes are checked (with one check at a time: they wait for it)."""
    config = settings(tmp_path, health={"timeout": TIMEOUT, "concurrency": 1})
    agents = [FakeAgent(m) for m in MACS[:2]]
    checked: list[tuple[str, float]] = []
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)

    async def before(server: Running, api: Client) -> None:
        for number in range(2):
            assert (await api.register(MACS[number], 9))[0] == 200
        # registered last: the last in the registry's order (by MAC)
        assert (await api.register(MACS[2], hung.getsockname()[1]))[0] == 200

    async def after(server: Running, api: Client) -> None:
        try:
            for agent in agents:
                original = agent._health

                async def logged(request: Any, agent: FakeAgent = agent, original: Any = original):
                    checked.append((agent.mac, time.monotonic()))
                    return await original(request)

                agent._health = logged
                await agent.start()
                await api.register(agent.mac, agent.port)  # the live ones come back
            began = time.monotonic()
            results = await server.server.sweep()
            assert results == {MACS[0]: True, MACS[1]: True, MACS[2]: False}
            assert [m for m, _ in checked] == MACS[:2]
            assert checked[0][1] - began >= TIMEOUT * 0.9  # after the hung node's timeout
        finally:
            for agent in agents:
                await agent.stop()

    try:
        run(config, before)
        run(config, after)
    finally:
        hung.close()
