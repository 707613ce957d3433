"""The Pi agent against a stand-in server on loopback: register, post, back off, back-fill.

The stand-in speaks the server side of docs/services-protocol.md (register, telemetry with a
404 for unknown MACs) and can be stopped and started on the same port, or told to forget
every node, to play a server outage or a restart. Intervals are shortened to tens of ms.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bramble.services.agent.agent import Agent, AgentSettings, listen_for_beacons
from bramble.services.agent.backoff import Backoff
from bramble.services.agent.buffer import SampleBuffer
from bramble.services.agent.client import ServerClient
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample
from bramble.services.beacon import Beacon, BeaconVerifier, make_beacon

TOKEN = "agent-token-0123456789abcdef"  # noqa: S105 - test secret
KEY = b"k" * 32
IDENTITY = Identity(mac="b8:27:eb:46:90:01", ip="127.0.0.1", hostname="pi-test", serial="4db34690")


class CountingSampler:
    """Samples numbered by their ``cpu_percent`` (0, 1, 2, ...), to check order and loss."""

    def __init__(self) -> None:
        self.count = 0

    def sample(self) -> Sample:
        sample = Sample(
            ts=time.time(),
            cpu_percent=float(self.count),
            mem_used_percent=10.0,
            mem_available_bytes=1,
            disk_used_percent=5.0,
            temp_c=None,
        )
        self.count += 1
        return sample


@dataclass
class StandIn:
    """A minimal server: registry by MAC, every accepted sample in order."""

    port: int = 0
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    registrations: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    unauthorized: int = 0
    runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        async def register(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.unauthorized += 1
                return web.json_response({"error": "token"}, status=401)
            body = await request.json()
            self.registered[body["mac"]] = body
            self.registrations += 1
            return web.json_response(
                {"node": "b01-s01", "bank": 1, "slot": 1, "trusted": True,
                 "telemetry_interval": None}
            )  # fmt: skip

        async def telemetry(request: web.Request) -> web.Response:
            body = await request.json()
            if body["mac"] not in self.registered:
                return web.json_response({"error": "unknown node: register again"}, status=404)
            self.samples.extend(body["samples"])
            return web.json_response({"accepted": len(body["samples"])})

        app = web.Application()
        app.router.add_post("/api/v1/register", register)
        app.router.add_post("/api/v1/telemetry", telemetry)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def beacon(self, port: int | None = None) -> Beacon:
        return Beacon("lab", "127.0.0.1", port or self.port, time.time(), "0" * 16)


Scenario = Callable[[StandIn, Agent], Awaitable[None]]


def run_agent(scenario: Scenario, **settings: Any) -> tuple[StandIn, Agent, CountingSampler]:
    """Start the stand-in and an agent, run ``scenario``, stop both (also on failure)."""
    sampler = CountingSampler()

    async def main() -> Agent:
        server = StandIn()
        await server.start()
        async with aiohttp.ClientSession() as session:
            options = {"interval": 0.05, "max_backoff": 0.4, "register_spread": 0.0} | settings
            agent = Agent(
                IDENTITY,
                ServerClient(session, TOKEN, timeout=2.0),
                sampler,
                AgentSettings(sample_in_thread=False, **options),
                rng=random.Random(7),  # noqa: S311 - reproducible jitter
            )
            task = asyncio.create_task(agent.run())
            try:
                await asyncio.wait_for(scenario(server, agent), 20)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await server.stop()
        holder.append(server)
        return agent

    holder: list[StandIn] = []
    agent = asyncio.run(main())
    return holder[0], agent, sampler


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- pure parts ---------------------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_ceiling_and_resets_on_success():
    backoff = Backoff(interval=5.0, ceiling=60.0, rng=random.Random(1))  # noqa: S311
    delays = [backoff.failed() for _ in range(8)]
    caps = [10, 20, 40, 60, 60, 60, 60, 60]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    assert max(delays) <= 60.0
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not lock-step
    assert backoff.succeeded() == 5.0
    assert backoff.delay() == 5.0


def test_buffer_keeps_the_newest_and_counts_what_it_dropped():
    buffer = SampleBuffer(3)
    sampler = CountingSampler()
    for _ in range(5):
        buffer.add(sampler.sample())
    assert len(buffer) == 3
    assert buffer.dropped == 2
    batch = buffer.peek(2)
    assert [s.cpu_percent for s in batch] == [2.0, 3.0]
    buffer.add(sampler.sample())  # overflows while the batch is in flight: sample 2 goes
    buffer.commit(batch)
    assert [s.cpu_percent for s in buffer.peek(10)] == [4.0, 5.0]
    assert buffer.dropped == 3
    with pytest.raises(ValueError, match="at least 1"):
        SampleBuffer(0)


# --- against the stand-in -----------------------------------------------------------------


def test_agent_waits_for_a_beacon_then_registers_and_posts_every_sample():
    async def scenario(server: StandIn, agent: Agent) -> None:
        await asyncio.sleep(0.2)
        assert server.registrations == 0  # no beacon, no server
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 10)

    server, agent, _ = run_agent(scenario)
    assert server.registered[IDENTITY.mac]["ip"] == "127.0.0.1"
    assert server.registered[IDENTITY.mac]["serial"] == "4db34690"
    assert server.registered[IDENTITY.mac]["agent_port"] == 8471
    assert server.unauthorized == 0
    numbers = [s["cpu_percent"] for s in server.samples]
    assert numbers == sorted(numbers)  # in order, none twice
    assert numbers[0] == 0.0  # the samples taken before the beacon were kept and sent
    assert agent.stats.failures == 0
    assert set(server.samples[0]) == {
        "ts", "cpu_percent", "mem_used_percent", "mem_available_bytes", "disk_used_percent",
        "temp_c",
    }  # fmt: skip


def test_agent_registers_again_when_the_server_forgets_it_and_loses_nothing():
    async def scenario(server: StandIn, agent: Agent) -> None:
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 5)
        server.registered.clear()  # a server that lost its registry answers 404
        await until(lambda: server.registrations >= 2 and len(server.samples) >= 15)

    server, agent, _ = run_agent(scenario)
    numbers = [int(s["cpu_percent"]) for s in server.samples]
    assert numbers == list(range(len(numbers)))  # contiguous: the 404'd batch was re-sent
    assert agent.stats.registrations == 2


def test_agent_buffers_through_an_outage_backs_off_and_back_fills_everything():
    async def scenario(server: StandIn, agent: Agent) -> None:
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 3)
        await server.stop()
        await until(lambda: agent.backoff.failures >= 3)  # 0.1, 0.2, 0.4 s (jittered)
        assert agent.backoff.delay() <= 0.4  # never above max_backoff
        await asyncio.sleep(0.3)
        buffered = len(agent.buffer)
        assert buffered >= 10
        await server.start()  # same port; the next beacon cuts the back-off short
        agent.on_beacon(server.beacon())
        await until(lambda: len(agent.buffer) == 0 and agent.backoff.failures == 0, 5)
        await until(lambda: len(server.samples) >= agent.stats.sampled - 1)

    server, agent, sampler = run_agent(scenario)
    numbers = [int(s["cpu_percent"]) for s in server.samples]
    assert numbers == list(range(len(numbers)))  # nothing lost, nothing twice
    assert len(numbers) >= sampler.count - 2
    assert agent.buffer.dropped == 0
    assert agent.stats.registrations >= 2  # it introduced itself again after the outage
    assert agent.health()["dropped"] == 0


def test_back_fill_goes_out_in_posts_of_at_most_the_servers_limit():
    async def scenario(server: StandIn, agent: Agent) -> None:
        await asyncio.sleep(0.6)  # about 12 samples before any server is known
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 12)

    server, agent, _ = run_agent(scenario, max_samples_per_post=4)
    assert agent.stats.posts >= 3
    numbers = [int(s["cpu_percent"]) for s in server.samples]
    assert numbers == list(range(len(numbers)))


def test_an_outage_longer_than_the_buffer_drops_the_oldest_and_reports_the_count():
    async def scenario(server: StandIn, agent: Agent) -> None:
        await asyncio.sleep(0.6)  # 12 samples into a buffer of 5
        assert agent.health()["dropped"] >= 5
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 8)

    server, agent, _ = run_agent(scenario, buffer_samples=5)
    dropped = agent.buffer.dropped
    assert dropped >= 5
    numbers = [int(s["cpu_percent"]) for s in server.samples]
    assert numbers[0] == dropped  # the oldest went, the rest follow without a gap
    assert numbers == list(range(dropped, dropped + len(numbers)))


def test_a_beacon_with_a_new_address_moves_the_agent_to_the_new_server():
    second = StandIn()

    async def scenario(server: StandIn, agent: Agent) -> None:
        agent.on_beacon(server.beacon())
        await until(lambda: len(server.samples) >= 3)
        await second.start()
        try:
            agent.on_beacon(server.beacon(port=second.port))
            await until(lambda: len(second.samples) >= 3)
        finally:
            await second.stop()

    server, agent, _ = run_agent(scenario)
    assert IDENTITY.mac in second.registered
    assert agent.server == f"http://127.0.0.1:{second.port}"
    together = [int(s["cpu_percent"]) for s in server.samples + second.samples]
    assert together == list(range(len(together)))


def test_beacons_resuming_after_a_silence_mean_a_restart_and_a_new_registration():
    async def scenario(server: StandIn, agent: Agent) -> None:
        start = time.monotonic()
        for i in range(3):  # beacons 0.1 s apart
            agent.on_beacon(server.beacon(), start + 0.1 * i)
        await until(lambda: server.registrations == 1 and len(server.samples) >= 2)
        agent.on_beacon(server.beacon(), start + 0.25)  # on time: nothing to do
        await asyncio.sleep(0.1)
        assert server.registrations == 1
        agent.on_beacon(server.beacon(), start + 2.0)  # after a silence of 7 beacons
        await until(lambda: server.registrations == 2)

    run_agent(scenario)


def test_beacon_listener_passes_on_only_verified_beacons():
    async def scenario(server: StandIn, agent: Agent) -> None:
        verifier = BeaconVerifier(KEY, "lab")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        transport = await listen_for_beacons(verifier, [agent], port, "127.0.0.1")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            good = make_beacon(KEY, "lab", "127.0.0.1", server.port)
            for data in (
                make_beacon(b"x" * 32, "lab", "127.0.0.1", server.port),  # forged
                make_beacon(KEY, "other", "127.0.0.1", server.port),  # another cluster
                make_beacon(KEY, "lab", "127.0.0.1", server.port, now=time.time() - 600),
                b"not json",
            ):
                sender.sendto(data, ("127.0.0.1", port))
            await asyncio.sleep(0.3)
            assert agent.server is None
            assert server.registrations == 0
            sender.sendto(good, ("127.0.0.1", port))
            await until(lambda: server.registrations == 1)
            sender.sendto(good, ("127.0.0.1", port))  # replayed
            await until(lambda: verifier.rejected["replay"] == 1)
            assert agent.stats.beacons == 1
            assert set(verifier.rejected) == {"signature", "cluster", "stale", "malformed",
                                              "replay"}  # fmt: skip
        finally:
            sender.close()
            transport.close()

    run_agent(scenario)
