"""The fleet simulator's lean agent client (``bramble.sim.fleet_http.LeanClient``) against a
real bramble-server: the same answers as the agent's aiohttp client, errors mapped the same
way (404 -> register again, refused -> unreachable), one kept-alive connection per agent."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from test_server import AGENT, MACS, Client, Running, run, settings

from bramble.services.agent.client import ServerError, UnknownNode
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample
from bramble.sim.fleet_http import LeanClient

IDENTITY = Identity(mac=MACS[0], ip="127.0.0.1", hostname="pi", serial="00000001")


def sample() -> Sample:
    return Sample(time.time(), 12.0, 30.0, 600_000_000, 40.0, 48.0)


def test_registers_posts_and_keeps_one_connection(tmp_path: Path) -> None:
    latencies: list[float] = []
    registered: list[tuple[str, float]] = []
    client = LeanClient(AGENT, 5.0, latencies, registered)

    async def scenario(server: Running, api: Client) -> None:
        base = f"http://127.0.0.1:{server.port}"
        try:
            with pytest.raises(UnknownNode):
                await client.post_samples(base, MACS[0], [sample()])
            answer = await client.register(base, IDENTITY, 8471)
            assert (answer.node, answer.trusted) == ("bank01-pi01", True)
            stream = client._stream
            assert await client.post_samples(base, MACS[0], [sample(), sample()]) == 2
            assert client._stream is stream  # the same kept-alive connection
            assert [mac for mac, _ in registered] == [MACS[0]]
            assert len(latencies) == 1
            wrong = LeanClient("not-the-token", 5.0, [], [])
            with pytest.raises(ServerError, match="HTTP 401") as refused:
                await wrong.register(base, IDENTITY, 8471)
            assert not refused.value.unreachable
            wrong.close()
        finally:
            client.close()

    run(settings(tmp_path), scenario)


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    async def scenario() -> None:
        client = LeanClient(AGENT, 2.0, [], [])
        with pytest.raises(ServerError) as error:
            await client.register(f"http://127.0.0.1:{port}", IDENTITY, 8471)
        assert error.value.unreachable

    asyncio.run(scenario())
