"""The agent's loops: hear beacons, register, sample every interval, post with back-off.

Sampling never waits for the server: a sample goes into the bounded buffer every interval.
The sender posts the buffer's oldest samples (at most ``max_samples_per_post`` at a time, so
a back-fill after an outage goes out in a few posts) and removes them once accepted. On a
failure it backs off (exponential, jitter, up to ``max_backoff``) and keeps sampling; after a
success it is back to one post per sample.

The agent registers again when the server forgets it (404 on telemetry), when a beacon
announces another address or port, and after it lost the server: a failed request, or a gap
in the beacons longer than twice their usual spacing (the server was down and restarted). A
beacon heard after the server was found gone (a connection refused, or a request cut off by a
reset or a close before the answer: ``ServerError.unreachable``) cuts the back-off short, so a
restarted server sees its fleet come back within a beacon interval or two; a server that
answers with errors (overloaded) or does not answer in time is still backed off from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass, field

from bramble.services.agent import AGENT_VERSION
from bramble.services.agent.backoff import Backoff
from bramble.services.agent.buffer import SampleBuffer
from bramble.services.agent.client import Registration, ServerClient, ServerError, UnknownNode
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sampler
from bramble.services.beacon import Beacon, BeaconVerifier

log = logging.getLogger("bramble.agent")

MAX_SAMPLES_PER_POST = 1000  # the server's default limits.max_samples_per_post
REGISTER_SPREAD = 1.0  # seconds: a fleet woken by one beacon registers spread over this


@dataclass
class AgentSettings:
    """What the loops need from agent.toml (``main`` builds it from the config file)."""

    agent_port: int = 8471
    interval: float = 5.0
    max_backoff: float = 60.0
    buffer_samples: int = 720
    max_samples_per_post: int = MAX_SAMPLES_PER_POST
    register_spread: float = REGISTER_SPREAD
    sample_in_thread: bool = True  # SystemSampler may run vcgencmd: keep it off the loop


@dataclass
class AgentStats:
    """Counters shown on ``GET /health`` and used by tests and the fleet benchmark."""

    sampled: int = 0
    posted: int = 0
    accepted: int = 0
    posts: int = 0
    failures: int = 0
    registrations: int = 0
    last_registered: float | None = None  # time.monotonic() of the last registration
    last_error: str | None = None
    beacons: int = 0


@dataclass
class Agent:
    """One node's agent. ``run()`` runs the sampling and sending loops until cancelled."""

    identity: Identity
    client: ServerClient
    sampler: Sampler
    settings: AgentSettings = field(default_factory=AgentSettings)
    rng: random.Random = field(default_factory=random.Random)
    stats: AgentStats = field(default_factory=AgentStats)
    server: str | None = None  # http://ADDRESS:PORT from the last beacon
    registration: Registration | None = None
    verifier: BeaconVerifier | None = None  # only to show its counters on /health
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.buffer = SampleBuffer(self.settings.buffer_samples)
        self.backoff = Backoff(self.settings.interval, self.settings.max_backoff, rng=self.rng)
        self.interval = self.settings.interval
        self._registered = False
        self._lost_at: float | None = None  # monotonic time of the first failure in a row
        self._gone_at: float | None = None  # the last attempt found the server gone
        self._beacon_times: list[float] = []
        self._wake = asyncio.Event()
        self._have_server = asyncio.Event()
        self._spread_once = False

    # --- beacons ---------------------------------------------------------------------------

    def on_beacon(self, beacon: Beacon, received: float | None = None) -> None:
        """A verified beacon arrived (``received`` in ``time.monotonic()`` terms)."""
        received = time.monotonic() if received is None else received
        self.stats.beacons += 1
        base = f"http://{beacon.server}:{beacon.port}"
        gap = self._beacon_gap(received)
        if base != self.server:
            if self.server is not None:
                log.info("%s: the server moved from %s to %s", self.name, self.server, base)
            self.server = base
            self._forget_registration(spread=self.registration is not None)
        elif gap:
            log.info("%s: beacons resumed after %.1f s: registering again", self.name, gap)
            self._forget_registration(spread=True)
        elif self._gone_at is not None and self._gone_at < received:
            # a beacon after the server refused or cut off a request: it is back, try now
            # rather than after the back-off (the register spread keeps the fleet apart; an
            # overloaded server that answers errors or times out is still backed off from)
            self._gone_at = None
            self._forget_registration(spread=True)
        self._have_server.set()

    def _beacon_gap(self, received: float) -> float | None:
        """The silence before this beacon when it is longer than twice the usual spacing."""
        times = self._beacon_times
        gap = None
        if len(times) >= 2:
            usual = times[-1] - times[-2]
            silence = received - times[-1]
            if usual > 0 and silence > 2 * usual + 0.5:
                gap = silence
        times.append(received)
        del times[:-2]
        return gap

    def _forget_registration(self, *, spread: bool) -> None:
        self._registered = False
        self._spread_once = spread
        self._wake.set()

    @property
    def name(self) -> str:
        """How log lines name this node: its model name, bank and slot once known."""
        reg = self.registration
        if reg is not None and reg.node:
            return f"{reg.node} (bank {reg.bank}, slot {reg.slot}, {self.identity.mac})"
        return f"{self.identity.mac} ({self.identity.ip})"

    # --- loops -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample and send until cancelled."""
        sampling = asyncio.create_task(self.sample_loop())
        try:
            await self.send_loop()
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling

    async def sample_loop(self) -> None:
        """One sample per interval into the buffer, on a fixed schedule."""
        next_at = time.monotonic()
        while True:
            try:
                if self.settings.sample_in_thread:
                    sample = await asyncio.to_thread(self.sampler.sample)
                else:
                    sample = self.sampler.sample()
            except Exception as exc:  # a broken sensor must not stop telemetry
                log.warning("%s: sampling failed: %s", self.name, exc)
            else:
                self.buffer.add(sample)
                self.stats.sampled += 1
                if self.backoff.failures == 0:
                    self._wake.set()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # suspended or overloaded: skip missed slots, do not burst
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)

    async def send_loop(self) -> None:
        """Register when needed, post what the buffer holds, back off on failure."""
        await self._have_server.wait()
        while True:
            delay = await self.step()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def step(self) -> float:
        """One attempt; the longest wait before the next (a sample or beacon may cut it)."""
        server = self.server
        if server is None:
            return self.interval
        try:
            if not self._registered:
                if self._spread_once:
                    self._spread_once = False
                    await asyncio.sleep(self.rng.uniform(0, self.settings.register_spread))
                await self.register(server)
            if not len(self.buffer):
                return self.interval
            batch = self.buffer.peek(self.settings.max_samples_per_post)
            accepted = await self.client.post_samples(server, self.identity.mac, batch)
        except UnknownNode:
            log.info("%s: the server does not know this node: registering again", self.name)
            self._registered = False
            return 0
        except ServerError as exc:
            delay = self._failed(exc)
            return 0 if self.server != server else delay  # a beacon moved us meanwhile
        self.buffer.commit(batch)
        self.stats.posts += 1
        self.stats.posted += len(batch)
        self.stats.accepted += accepted
        if self._lost_at is not None:
            log.info(
                "%s: server back after %.1f s; %d samples still buffered, %d dropped so far",
                self.name, time.monotonic() - self._lost_at, len(self.buffer), self.buffer.dropped,
            )  # fmt: skip
            self._lost_at = None
        self._gone_at = None
        self.backoff.succeeded()
        return 0 if len(self.buffer) else self.interval

    async def register(self, server: str) -> None:
        registration = await self.client.register(server, self.identity, self.settings.agent_port)
        self.registration = registration
        self._registered = True
        self.stats.registrations += 1
        self.stats.last_registered = time.monotonic()
        if registration.telemetry_interval and registration.telemetry_interval != self.interval:
            self.interval = registration.telemetry_interval
            self.backoff.interval = registration.telemetry_interval
        trust = "trusted" if registration.trusted else "NOT trusted (MAC not in the model)"
        log.info("%s: registered with %s, %s", self.name, server, trust)

    def _failed(self, exc: ServerError) -> float:
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        if exc.unreachable:
            self._gone_at = time.monotonic()
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("%s: server unreachable (%s); buffering", self.name, exc)
        self._registered = False  # it may have restarted: introduce ourselves again
        # a sample taken during the failed attempt does not cut the back-off short; only
        # what comes after the failure does (a beacon after the server was found gone)
        self._wake.clear()
        return self.backoff.failed()

    def health(self) -> dict[str, object]:
        """The body of ``GET /health``."""
        reg = self.registration
        return {
            "status": "ok",
            "mac": self.identity.mac,
            "version": AGENT_VERSION,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "node": reg.node if reg else None,
            "registered": self._registered,
            "server": self.server,
            "buffered": len(self.buffer),
            "dropped": self.buffer.dropped,
            "failures_in_a_row": self.backoff.failures,
            "sampled": self.stats.sampled,
            "accepted": self.stats.accepted,
            "beacons": {
                "accepted": self.verifier.accepted if self.verifier else self.stats.beacons,
                "rejected": dict(self.verifier.rejected) if self.verifier else {},
            },
        }


class BeaconListener(asyncio.DatagramProtocol):
    """Feeds verified beacons from a UDP socket to agents (one, or a whole simulated fleet)."""

    def __init__(self, verifier: BeaconVerifier, agents: list[Agent]) -> None:
        self.verifier = verifier
        self.agents = agents

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        beacon = self.verifier.verify(data)
        if beacon is None:
            log.debug("beacon from %s ignored (%s)", addr[0], dict(self.verifier.rejected))
            return
        now = time.monotonic()
        for agent in self.agents:
            agent.on_beacon(beacon, now)


def beacon_socket(port: int, address: str = "") -> socket.socket:
    """A UDP socket that hears broadcasts on ``port`` (SO_BROADCAST, SO_REUSEADDR)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def listen_for_beacons(
    verifier: BeaconVerifier, agents: list[Agent], port: int, address: str = ""
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: BeaconListener(verifier, agents), sock=beacon_socket(port, address)
    )
    return transport
