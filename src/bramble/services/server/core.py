"""The server's state and background work: registry, telemetry, health, dispatch, beacon."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp

from bramble.services.beacon import make_beacon
from bramble.services.config import ServerConfig, ServerSecrets
from bramble.services.server import health
from bramble.services.server.dispatch import AgentJobError, NodeState, candidates, send_job
from bramble.services.server.forwarder import Forwarder
from bramble.services.server.model import ModelNode
from bramble.services.server.records import Event, JobRecord, NodeRecord, Sample
from bramble.services.server.registry_writer import PendingEvent, RegistryWriter
from bramble.services.server.store import Store
from bramble.services.server.telemetry import BatchWriter
from bramble.services.server.warble import WarbleService

log = logging.getLogger("bramble.server")
T = TypeVar("T")

RETENTION_EVERY = 600.0
JOBS_QUEUED_MAX = 10000
JOB_WORKERS = 16
#: A job is handed to an agent: from then on it cannot be cancelled (the agent API has no cancel).
HAND_OVER = ("waiting", "running")


def describe(node: NodeRecord) -> str:
    """How log lines name a node: name, bank and slot when known, always the MAC."""
    if node.name:
        return f"{node.name} (bank {node.bank} slot {node.slot}, {node.mac})"
    return f"unknown node {node.mac} ({node.ip})"


class ClusterServer:
    """Everything bramble-server does besides HTTP parsing (see api.py)."""

    def __init__(
        self,
        config: ServerConfig,
        secrets: ServerSecrets,
        store: Store,
        model: dict[str, ModelNode],
    ) -> None:
        self.config = config
        self.secrets = secrets
        self.store = store
        self.model = model
        self.nodes: dict[str, NodeState] = {}
        self.started = time.time()
        self.beacons_sent = 0
        self.api_port = config.server.port  # the bound port, when the config says 0
        self.jobs_finished: dict[str, int] = {"done": 0, "failed": 0}
        self.last_sweep_seconds = 0.0
        self._db = ThreadPoolExecutor(1, thread_name_prefix="bramble-store")
        telemetry = config.telemetry
        self.writer = BatchWriter(
            self._write_batch,
            telemetry.batch_max,
            telemetry.batch_seconds,
            pending_max=max(10 * telemetry.batch_max, 100_000),
        )
        self.registry = RegistryWriter(
            self._write_registry, telemetry.batch_max, telemetry.batch_seconds
        )
        self.forwarder = (
            Forwarder(config.forwarder.url, secrets.forwarder_token, config.forwarder.queue_max)
            if config.forwarder.url
            else None
        )
        self._jobs: asyncio.Queue[int] = asyncio.Queue(JOBS_QUEUED_MAX)
        self._cancelled: set[int] = set()  # cancelled jobs a worker may still hold
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.warble = WarbleService(self)

    # -- plumbing --
    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args))

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP client session (health checks, jobs, forwarder)."""
        if self._session is None:
            raise RuntimeError("the server is not started")
        return self._session

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def start(self) -> None:
        """Load the registry, then start the background loops (the beacon: ``start_beacon``,
        once the API listens)."""
        for record in await self.db(self.store.nodes):
            self.nodes[record.mac] = NodeState(record)
        cfg = self.config.health
        self._session = aiohttp.ClientSession(
            connector=health.connector(cfg.concurrency, cfg.interval)
        )
        self._spawn("health", self._health_loop())
        self._spawn("writer", self.writer.run())
        self._spawn("registry", self.registry.run())
        self._spawn("retention", self._retention_loop())
        for number in range(JOB_WORKERS):
            self._spawn(f"jobs{number}", self._job_worker())
        for name, work in self.warble.background():
            self._spawn(name, work)
        if self.forwarder is not None:
            self._spawn("forwarder", self.forwarder.run(self.session))
        for job in await self.db(self.store.unfinished_jobs):
            job.state = "queued"
            await self.db(self.store.update_job, job)
            self._jobs.put_nowait(job.id)
        log.info(
            "bramble-server for cluster %s: %d nodes in the registry, %d in the model",
            self.config.server.cluster,
            len(self.nodes),
            len(self.model),
        )

    async def stop(self) -> None:
        """Stop the loops, write what is pending, close the store."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.writer.flush()
        await self.registry.flush()
        if self._session is not None:
            await self._session.close()
        await self.db(self.store.close)
        self._db.shutdown(wait=True)
        log.info("bramble-server stopped")

    # -- events --
    async def event(self, kind: str, node: NodeRecord | None, message: str) -> None:
        """Log one line and store the event (with the next registry batch)."""
        text = f"{describe(node)}: {message}" if node else message
        log.info("%s: %s", kind, text)
        self.registry.event((time.time(), kind, node.mac if node else None, text))

    async def events(self, limit: int) -> list[Event]:
        """The newest events (those waiting for the store first written)."""
        await self.registry.flush()
        return await self.db(self.store.events, limit)

    async def _write_registry(self, nodes: list[NodeRecord], events: list[PendingEvent]) -> None:
        await self.db(self.store.write_registry, nodes, events)

    # -- registry --
    async def register(
        self,
        *,
        mac: str,
        ip: str,
        hostname: str,
        agent_version: str,
        agent_port: int,
        serial: str | None,
    ) -> NodeRecord:
        """Record an agent; trusted only when its MAC is in the cluster model."""
        now = time.time()
        known = self.model.get(mac)
        old = self.nodes.get(mac)
        record = NodeRecord(
            mac=mac,
            ip=ip,
            hostname=hostname,
            agent_version=agent_version,
            agent_port=agent_port,
            serial=serial,
            name=known.name if known else None,
            bank=known.bank if known else None,
            slot=known.slot if known else None,
            trusted=known is not None,
            registered_at=old.record.registered_at if old else now,
            last_seen=now,
        )
        self.registry.node(record)
        state = NodeState(
            record, health="up", latest=old.latest if old else None, last_registered=now
        )
        self.nodes[mac] = state
        if known is None:
            await self.event("untrusted", record, "MAC is not in the cluster model; flagged")
        else:
            if known.ip != ip:
                await self.event("address", record, f"reports {ip}, the model says {known.ip}")
            await self.event("registered", record, f"agent {agent_version} at {ip}:{agent_port}")
        return record

    # -- telemetry --
    def ingest(self, mac: str, samples: Sequence[Sample]) -> int | None:
        """Take a node's samples; None when the MAC is not registered."""
        node = self.nodes.get(mac)
        if node is None:
            return None
        now = time.time()
        node.record.last_seen = now
        if node.health == "down":
            node.health, node.misses = "up", 0
        newest = max(samples, key=lambda s: s.ts, default=None)
        if newest is not None and (node.latest is None or newest.ts >= node.latest.ts):
            node.latest = newest
        accepted = self.writer.add(samples)
        if self.forwarder is not None and samples:
            record = node.record
            self.forwarder.add(
                [
                    {"mac": mac, "node": record.name, "bank": record.bank, **s.__dict__}
                    for s in samples
                ]
            )
        return accepted

    async def _write_batch(self, samples: list[Sample], seen: dict[str, float]) -> None:
        if samples:
            await self.db(self.store.add_samples, samples)
        if seen:
            await self.db(self.store.touch_nodes, list(seen.items()))

    async def history(self, mac: str, limit: int) -> list[Sample]:
        """The node's newest stored samples."""
        return await self.db(self.store.samples, mac, limit)

    async def _retention_loop(self) -> None:
        while True:
            cutoff = time.time() - self.config.telemetry.retention_hours * 3600
            try:
                removed = await self.db(self.store.prune_samples, cutoff)
            except Exception:
                log.exception("retention: could not prune old samples")
            else:
                if removed:
                    log.info("retention: removed %d samples older than the limit", removed)
            await asyncio.sleep(RETENTION_EVERY)

    # -- health --
    async def sweep(self) -> dict[str, bool]:
        """Check every registered agent once; update states; the results by MAC."""
        cfg = self.config.health
        began = time.monotonic()
        targets = [(mac, f"{n.base_url}/health") for mac, n in self.nodes.items()]
        # first: the nodes that missed their last check, and those not heard from since this
        # server started (the first sweep after a restart knows no misses yet: the nodes that
        # did not register again are the ones that were dead when it stopped, or died since)
        suspects = {
            mac
            for mac, n in self.nodes.items()
            if n.misses or n.health == "down" or n.record.last_seen < self.started
        }
        results = await health.sweep(
            self.session,
            targets,
            self.secrets.agent_token,
            cfg.timeout,
            cfg.concurrency,
            suspects=suspects,
        )
        self.last_sweep_seconds = time.monotonic() - began
        seen = []
        for mac, ok in results.items():
            node = self.nodes.get(mac)
            if node is None:
                continue
            if ok:
                if node.health == "down":
                    await self.event("up", node.record, "answers health checks again")
                node.health, node.misses = "up", 0
                node.record.last_seen = time.time()
                seen.append((mac, node.record.last_seen))
                continue
            node.misses += 1
            if node.misses >= cfg.misses_down and node.health != "down":
                node.health = "down"
                await self.event("down", node.record, f"missed {node.misses} health checks")
        if seen:
            await self.db(self.store.touch_nodes, seen)
        return results

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("health: the sweep failed")

    def banks(self) -> list[dict[str, Any]]:
        """Per-bank summary: Pis in the model, registered, up, down, CPU and temperature."""
        summary: dict[int, dict[str, Any]] = {}

        def bank(number: int) -> dict[str, Any]:
            return summary.setdefault(
                number,
                {
                    "bank": number,
                    "model": 0,
                    "registered": 0,
                    "up": 0,
                    "down": 0,
                    "unknown": 0,
                    "cpu_percent_avg": None,
                    "temp_c_max": None,
                },
            )

        for node in self.model.values():
            bank(node.bank)["model"] += 1
        cpu: dict[int, list[float]] = {}
        for state in self.nodes.values():
            number = state.record.bank
            if number is None:
                continue
            entry = bank(number)
            entry["registered"] += 1
            entry[state.health] += 1
            if state.latest is not None:
                cpu.setdefault(number, []).append(state.latest.cpu_percent)
                temp = state.latest.temp_c
                if temp is not None and (entry["temp_c_max"] is None or temp > entry["temp_c_max"]):
                    entry["temp_c_max"] = temp
        for number, values in cpu.items():
            summary[number]["cpu_percent_avg"] = round(sum(values) / len(values), 1)
        return [summary[n] for n in sorted(summary)]

    # -- jobs --
    async def submit_job(self, kind: str, source: str, user: str) -> JobRecord:
        """Store a job and queue it; QueueFull when too many are waiting."""
        if self._jobs.full():
            raise asyncio.QueueFull
        job = JobRecord(id=0, kind=kind, source=source, user=user, created=time.time())
        job.id = await self.db(self.store.create_job, job)
        self.enqueue(job.id)
        log.info("job %d: queued from %s (%d bytes)", job.id, user, len(source))
        return job

    def enqueue(self, job_id: int) -> None:
        """Queue a stored job for dispatch; QueueFull when too many are waiting."""
        self._jobs.put_nowait(job_id)

    @property
    def jobs_waiting(self) -> int:
        """Jobs queued in memory, not yet taken by a worker."""
        return self._jobs.qsize()

    async def job(self, job_id: int) -> JobRecord | None:
        """A job by id."""
        return await self.db(self.store.job, job_id)

    async def cancel_job(self, job_id: int) -> JobRecord | None:
        """Cancel a job no agent has yet (queued, or waiting for an idle node): it is never
        dispatched. The job as it now is, None when there is no such job. A job running on an
        agent (the agent API cannot stop it) or finished is left as it is."""
        cancelled = await self.db(self.store.cancel_job, job_id, time.time())
        job = await self.db(self.store.job, job_id)
        if cancelled:
            self._cancelled.add(job_id)  # a worker waiting for a node for it gives up
        if cancelled and job is not None:
            await self.event("cancelled", None, f"job {job_id} of {job.user} cancelled")
        return job

    async def _job_worker(self) -> None:
        while True:
            job_id = await self._jobs.get()
            job = await self.db(self.store.job, job_id)
            if job is not None and job.state == "queued":
                try:
                    await self.warble.run(job)
                except Exception:
                    log.exception("job %d: dispatch failed", job_id)
            self._cancelled.discard(job_id)

    async def _wait_for_candidate(
        self, job_id: int, tried: set[str], wait: float
    ) -> NodeState | None:
        cfg = self.config.dispatch
        deadline = time.monotonic() + wait
        while True:
            found = candidates(self.nodes.values(), cfg.cpu_threshold, tried)
            if job_id in self._cancelled:
                return None
            if found or time.monotonic() >= deadline:
                return found[0] if found else None
            await asyncio.sleep(min(1.0, cfg.timeout))

    async def run_job(
        self, job: JobRecord, extra: dict[str, Any] | None = None, wait: float | None = None
    ) -> dict[str, Any] | None:
        """Send the job to a node under the CPU threshold, another one if it fails.

        ``extra`` keys go along with the job; a node is waited for up to ``wait`` seconds
        (default ``dispatch.timeout``). The agent's answer, None when no agent ran the job.
        """
        cfg = self.config.dispatch
        tried: set[str] = set()
        answer: dict[str, Any] | None = None
        if not await self.db(self.store.move_job, job.id, "queued", "waiting"):
            job.state = "cancelled"  # cancelled while it waited for its turn
            return None
        job.state = "waiting"
        while job.attempts < cfg.attempts:
            node = await self._wait_for_candidate(
                job.id, tried, cfg.timeout if wait is None else wait
            )
            if job.id in self._cancelled or (
                node is not None and not await self.db(self.store.move_job, job.id, *HAND_OVER)
            ):
                self._cancelled.discard(job.id)
                job.state = "cancelled"  # cancelled while it waited for an idle node
                return None
            if node is None:
                job.error = f"no trusted node up with CPU under {cfg.cpu_threshold:g}%"
                break
            job.state = "running"
            tried.add(node.record.mac)
            job.attempts += 1
            job.node = node.record.name or node.record.mac
            node.running_jobs += 1
            try:
                result = await send_job(
                    self.session, node, job, self.secrets.agent_token, cfg.timeout, extra=extra
                )
            except AgentJobError as exc:
                job.error = f"{job.node}: {exc}"
                if await self.db(self.store.move_job, job.id, "running", "waiting"):
                    job.state = "waiting"  # cancellable again until the next node has it
                log.warning(
                    "job %d: attempt %d on %s failed: %s",
                    job.id,
                    job.attempts,
                    describe(node.record),
                    exc,
                )
                continue
            finally:
                node.running_jobs -= 1
            answer = result
            job.state = str(result["state"])
            job.output = str(result.get("output") or "")[: self.config.limits.max_body_bytes]
            error = result.get("error")
            job.error = str(error)[:4096] if error else None
            break
        else:
            job.error = f"{cfg.attempts} attempts failed; last: {job.error}"
        if job.state in ("waiting", "running"):
            job.state = "failed"
        job.finished = time.time()
        self.jobs_finished[job.state] = self.jobs_finished.get(job.state, 0) + 1
        await self.db(self.store.update_job, job)
        log.info("job %d: %s on %s after %d attempt(s)", job.id, job.state, job.node, job.attempts)
        return answer

    # -- beacon --
    def beacon(self) -> bytes:
        """One signed beacon datagram."""
        server = self.config.server
        return make_beacon(
            self.secrets.cluster_key, server.cluster, server.advertise, self.api_port
        )

    def start_beacon(self) -> None:
        """Start beaconing (once the API socket listens, so agents that hear it get in)."""
        self._spawn("beacon", self._beacon_loop())

    async def _beacon_loop(self) -> None:
        cfg = self.config.beacon
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            while True:
                try:
                    sock.sendto(self.beacon(), (cfg.broadcast, cfg.port))
                    self.beacons_sent += 1
                except OSError as exc:
                    log.warning("beacon: cannot send to %s:%d: %s", cfg.broadcast, cfg.port, exc)
                await asyncio.sleep(cfg.interval)
