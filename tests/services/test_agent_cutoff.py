"""After a server restart: an agent whose request was cut off comes back on the next beacon.

A real socket server on loopback plays the server's first answer: it resets the connection,
closes it without answering (the server went away mid-request, as when it is restarted), answers
503 (overloaded) or never answers (hung). Then it serves normally. The agent's back-off after
that failure is 5 to 10 s (interval 5 s); a beacon 0.2 s later must bring a cut-off agent back
at once, as a refused connection does, while a server that answered an error or timed out is
still backed off from. Both transports are checked: the agent's own aiohttp ``ServerClient``
and the fleet simulator's ``LeanClient`` (bench/fleet).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
from dataclasses import dataclass, field

import aiohttp
import pytest

from bramble.services.agent.agent import Agent, AgentSettings
from bramble.services.agent.client import ServerClient, ServerError
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample
from bramble.services.beacon import Beacon
from bramble.sim.fleet_http import LeanClient

TOKEN = "agent-token-0123456789abcdef"  # noqa: S105 - test secret
IDENTITY = Identity(mac="b8:27:eb:46:90:02", ip="127.0.0.1", hostname="pi-cut", serial="4db34691")
REQUEST_TIMEOUT = 0.5


class FixedSampler:
    def sample(self) -> Sample:
        return Sample(time.time(), 10.0, 30.0, 1, 5.0, None)


@dataclass
class FlakyServer:
    """HTTP/1.1 on loopback: the first requests get ``first`` (reset, eof, 503, hang), the
    others a normal answer (register: a registration; telemetry: every sample accepted)."""

    first: list[str]
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, what it got)
    port: int = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length) or b"{}")
                path = head.split(" ", 2)[1]
                what = self.first.pop(0) if self.first else "ok"
                self.requests.append((path, what))
                if what == "reset":  # RST: SO_LINGER with a zero timeout, then close
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.close()
                    return
                if what == "eof":  # FIN before any answer
                    writer.close()
                    return
                if what == "hang":
                    await asyncio.sleep(30)  # the client times out first; cancelled at the end
                answer: dict[str, object] = {"accepted": len(body.get("samples", []))}
                status = "200 OK"
                if what == "503":
                    status, answer = "503 Service Unavailable", {"error": "overloaded"}
                elif path.endswith("/register"):
                    answer = {"node": "b01-s02", "bank": 1, "slot": 2, "trusted": True}
                data = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def beacon(self) -> Beacon:
        return Beacon("lab", "127.0.0.1", self.port, time.time(), "0" * 16)


async def _first_registration_after_failure(first: str, lean: bool) -> float | None:
    """Seconds from a beacon (sent 0.2 s after the failed first request) to the agent's
    registration (negative: it registered before the beacon, without backing off); None
    when it did not register within 1.5 s of that beacon."""
    flaky = FlakyServer([first])
    server = await flaky.start()
    async with aiohttp.ClientSession() as session:
        client: ServerClient = (
            LeanClient(TOKEN, REQUEST_TIMEOUT, [], [])
            if lean
            else ServerClient(session, TOKEN, timeout=REQUEST_TIMEOUT)
        )
        settings = AgentSettings(
            interval=5.0, max_backoff=60.0, register_spread=0.0, sample_in_thread=False
        )
        agent = Agent(IDENTITY, client, FixedSampler(), settings, rng=random.Random(3))  # noqa: S311
        task = asyncio.create_task(agent.run())
        try:
            agent.on_beacon(flaky.beacon())
            deadline = time.monotonic() + 5
            while not agent.stats.failures and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert agent.stats.failures == 1, flaky.requests
            assert agent.backoff.delay() >= 5.0  # backed off: the next attempt is 5-10 s away
            await asyncio.sleep(0.2)
            beacon_at = time.monotonic()
            agent.on_beacon(flaky.beacon())
            deadline = beacon_at + 1.5
            while not agent.stats.registrations and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            at = agent.stats.last_registered
            return None if at is None else at - beacon_at
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if isinstance(client, LeanClient):
                client.close()
            server.close()


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
@pytest.mark.parametrize("first", ["reset", "eof"])
def test_a_request_cut_off_by_the_server_is_retried_on_the_next_beacon(
    first: str, lean: bool
) -> None:
    took = asyncio.run(_first_registration_after_failure(first, lean))
    # backed off until the beacon, then at once
    assert took is not None, "not registered within 1.5 s of the beacon"
    assert 0 <= took < 1.0, f"registered {took} s after the beacon"


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
@pytest.mark.parametrize("first", ["503", "hang"])
def test_a_server_that_answers_errors_or_hangs_is_still_backed_off_from(
    first: str, lean: bool
) -> None:
    assert asyncio.run(_first_registration_after_failure(first, lean)) is None


@pytest.mark.parametrize("first", ["reset", "eof", "503", "hang"])
def test_which_failures_count_as_the_server_gone(first: str) -> None:
    """ServerError.unreachable: refused or cut off, not an error answer nor a timeout."""

    async def scenario() -> bool:
        flaky = FlakyServer([first])
        server = await flaky.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = ServerClient(session, TOKEN, timeout=REQUEST_TIMEOUT)
                with pytest.raises(ServerError) as error:
                    await client.register(f"http://127.0.0.1:{flaky.port}", IDENTITY, 8471)
                return error.value.unreachable
        finally:
            server.close()

    assert asyncio.run(scenario()) is (first in ("reset", "eof"))
