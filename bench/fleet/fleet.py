"""Cluster services at fleet scale: simulated agents against a real bramble-server.

Figures (docs/benchmarks.md, "Cluster services"), each with its baseline from the same run:

- telemetry: fleets of 1,050 and 10,500 agents, one post per agent per interval (5 s):
  samples lost (sampled by the agents minus rows in the server's store; goal 0), post
  latency p50/p99, server CPU (share of one core); baseline: the 1,050 fleet for the 10,500;
- health sweep: 1,050 agents of which 5% are dead (they accept the connection and never
  answer, like a hung Pi), swept by the server's own ``health.sweep`` and connector: the
  periodic sweep on kept-alive connections with the last misses first (goal <= 2 s), the
  first sweep on new connections, and a sweep without the misses first; against a
  sequential sweep with the same timeout;
- re-registration after a server restart: share of the fleet registered again within two
  beacon intervals of the restarted server's first beacon (goal >= 99%); baseline: the
  fleet's first (cold) registration in the same run;
- batched against row-by-row telemetry writes into the server's SQLite store.

The agents are the real ``bramble.services.agent`` classes (Agent, the beacon listener;
ServerClient and the agent's HTTP app with ``--aiohttp-agents``), many per process
(``--workers`` processes), with a constant fake sampler; by default their HTTP is
``bramble.sim.fleet_http``'s, a fraction of aiohttp's CPU per request, so that the
figures are the server's, not the simulator's; the server is
``python -m bramble.services.server.main`` in its own process.
Everything runs on loopback (agents on 127.20.x.y, the beacon broadcast to
127.255.255.255), in a temporary folder removed at the end; every wait is bounded, and the
script stops by itself.

    .venv/bin/python bench/fleet/fleet.py            # the full run (1,050 and 10,500 agents)
    .venv/bin/python bench/fleet/fleet.py --quick    # 1,050 agents, short phases (< 1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import faulthandler
import functools
import json
import logging
import os
import random
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from bramble.services.agent.agent import Agent, AgentSettings, listen_for_beacons
from bramble.services.agent.client import ServerClient
from bramble.services.agent.http import JobLimits, make_app
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample
from bramble.services.beacon import BeaconVerifier
from bramble.services.server import health
from bramble.services.server.records import Sample as StoredSample
from bramble.services.server.store import SqliteStore
from bramble.sim.fleet_http import HealthResponder, LeanClient, TimedClient

CLUSTER = "fleet"
AGENT_PORT = 8471
BROADCAST = "127.255.255.255"
DEAD_SHARE = 0.05
DRAIN_TIMEOUT = 120.0
PR_SET_PDEATHSIG = 1


def identity(index: int) -> Identity:
    """Agent ``index``'s MAC and loopback address (unique up to 15 million agents)."""
    mac = f"b8:27:eb:{(index >> 16) & 255:02x}:{(index >> 8) & 255:02x}:{index & 255:02x}"
    ip = f"127.{20 + index // 62500}.{(index // 250) % 250 + 1}.{index % 250 + 1}"
    return Identity(mac=mac, ip=ip, hostname=f"sim{index:05d}", serial=f"{index:08x}")


class ConstantSampler:
    """A Pi at 10% CPU: the same figures each time, a fresh time stamp (costs nothing)."""

    def sample(self) -> Sample:
        return Sample(time.time(), 10.0, 30.0, 600_000_000, 40.0, 48.0)


# --- worker: many agents in one process -----------------------------------------------------


@dataclass
class WorkerPlan:
    first: int
    count: int
    interval: float
    duration: float
    token: str
    key_file: str | None  # listen for beacons (telemetry, re-registration) when set
    beacon_port: int
    http: bool  # serve each agent's HTTP API (health sweep); dead ones hang
    seed: int = 1
    lean: bool = True  # bramble.sim.fleet_http at the agents' end; False: aiohttp


class _Hang(asyncio.Protocol):
    """A dead agent: the connection is accepted and nothing is ever answered."""


async def serve_agents(agents: list[Agent], token: str, dead: set[int], *, lean: bool) -> list[Any]:
    loop = asyncio.get_running_loop()
    servers: list[Any] = []
    for index, agent in enumerate(agents):
        address = agent.identity.ip
        if index in dead:
            servers.append(await loop.create_server(_Hang, address, AGENT_PORT))
            continue
        if lean:
            responder = functools.partial(HealthResponder, token, agent.health)
            servers.append(await loop.create_server(responder, address, AGENT_PORT))
            continue
        runner = web.AppRunner(make_app(agent, token, JobLimits()), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, AGENT_PORT).start()
        servers.append(runner)
    return servers


async def run_worker(plan: WorkerPlan) -> dict[str, Any]:
    rng = random.Random(plan.seed)  # noqa: S311 - which agents are dead, not a secret
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = TimedClient(session, plan.token, 30.0, [], [])
        settings = AgentSettings(
            AGENT_PORT, plan.interval, 60.0, 720, register_spread=1.0, sample_in_thread=False
        )
        clients: list[ServerClient] = [
            LeanClient(plan.token, 30.0, client.latencies, client.registered) if plan.lean
            else client
            for _ in range(plan.count)
        ]  # fmt: skip
        agents = [
            Agent(identity(i), clients[i - plan.first], ConstantSampler(), settings,
                  rng=random.Random(i))  # noqa: S311
            for i in range(plan.first, plan.first + plan.count)
        ]  # fmt: skip
        beacons: list[float] = []
        dead: set[int] = set()
        transport = None
        servers: list[Any] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            if plan.http:
                dead = set(rng.sample(range(plan.count), round(plan.count * DEAD_SHARE)))
                servers = await serve_agents(agents, plan.token, dead, lean=plan.lean)
            if plan.key_file:
                key = Path(plan.key_file).read_bytes().strip()
                verifier = BeaconVerifier(key, CLUSTER)
                transport = await listen_for_beacons(verifier, agents, plan.beacon_port)
                original = transport.get_protocol().datagram_received  # type: ignore[attr-defined]

                def heard(data: bytes, addr: tuple[str | int, int]) -> None:
                    beacons.append(time.time())
                    original(data, addr)

                transport.get_protocol().datagram_received = heard  # type: ignore[attr-defined]
            print("ready", flush=True)
            samplers = [asyncio.create_task(_sample_later(a, rng.uniform(0, plan.interval)))
                        for a in agents]  # fmt: skip
            senders = [asyncio.create_task(a.send_loop()) for a in agents]
            tasks = samplers + senders
            stop = asyncio.Event()  # SIGTERM ends the run early, results are still reported
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), plan.duration)
            for task in samplers:
                task.cancel()
            drained = time.monotonic() + DRAIN_TIMEOUT
            while any(len(a.buffer) for a in agents if a.server) and time.monotonic() < drained:
                await asyncio.sleep(0.2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if transport is not None:
                transport.close()
            for server in servers:
                if isinstance(server, web.AppRunner):
                    await server.cleanup()
                else:
                    server.close()
            for each in clients:
                if isinstance(each, LeanClient):
                    each.close()
        return {
            "sampled": sum(a.stats.sampled for a in agents),
            "accepted": sum(a.stats.accepted for a in agents),
            "dropped": sum(a.buffer.dropped for a in agents),
            "left": sum(len(a.buffer) for a in agents),
            "failures": sum(a.stats.failures for a in agents),
            "latencies": client.latencies,
            "registered": client.registered,
            "beacons": beacons,
            "dead": [identity(plan.first + i).mac for i in dead] if plan.http else [],
        }


async def _sample_later(agent: Agent, delay: float) -> None:
    await asyncio.sleep(delay)  # Pis boot at different times: spread the fleet's posts
    await agent.sample_loop()


def _die_with_parent() -> None:
    """In a child (``preexec_fn``): SIGKILL when the bench dies, even by SIGKILL (Linux).

    Not SIGTERM: a worker takes SIGTERM as "stop and report" and then drains its agents'
    buffers for up to DRAIN_TIMEOUT, which nobody would read once the bench is gone.
    """
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# --- the server -------------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Fleet:
    """The temporary folder with secrets, model and server config for ``size`` agents."""

    work: Path
    size: int
    beacon_interval: float
    telemetry_interval: float
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = field(default_factory=free_port)
    beacon_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    server: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.key_file = self._secret("cluster.key", secrets.token_hex(24))
        nodes = [
            {"name": f"sim{i:05d}", "bank": i // 21 + 1, "slot": i % 21 + 1,
             "mac": identity(i).mac, "ip": identity(i).ip}
            for i in range(self.size)
        ]  # fmt: skip
        (self.work / "nodes.json").write_text(json.dumps(nodes))
        (self.work / "server.toml").write_text(
            f'[server]\ncluster = "{CLUSTER}"\nlisten = "127.0.0.1"\nport = {self.port}\n'
            'advertise = "127.0.0.1"\n'
            f"[beacon]\ninterval = {self.beacon_interval}\nport = {self.beacon_port}\n"
            f'broadcast = "{BROADCAST}"\n'
            f'[auth]\ncluster_key_file = "{self.key_file}"\n'
            f'agent_token_file = "{self._secret("agent.token", self.token)}"\n'
            f'admin_token_file = "{self._secret("admin.token", secrets.token_hex(16))}"\n'
            f'[store]\nsqlite = "{self.work / "server.db"}"\n'
            f'[model]\nnodes_file = "{self.work / "nodes.json"}"\n'
            "[health]\ninterval = 86400\n"
            f"[telemetry]\ninterval = {self.telemetry_interval}\n"
        )

    def _secret(self, name: str, text: str) -> str:
        path = self.work / name
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    def start_server(self) -> None:
        log = (self.work / "server.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "bramble.services.server.main", "--config",
             str(self.work / "server.toml"), "--log-level", "WARNING"],
            stdout=log, stderr=log, preexec_fn=_die_with_parent,  # noqa: PLW1509 - one thread
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"bramble-server exited; see {self.work / 'server.log'}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("bramble-server did not answer /healthz within 60 s")

    def server_cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        assert self.server is not None
        times = psutil.Process(self.server.pid).cpu_times()
        return float(times.user + times.system)

    def stop_server(self, *, kill: bool = False, freeze: float = 0.0) -> None:
        """SIGTERM (a graceful stop), or SIGKILL (a crash: what is in flight is cut off);
        ``freeze`` s stopped (SIGSTOP) before, so that requests pile up in flight."""
        if self.server is None:
            return
        if self.server.poll() is None:
            if freeze > 0:
                self.server.send_signal(signal.SIGSTOP)
                time.sleep(freeze)
            self.server.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.server.send_signal(signal.SIGCONT)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def stored_samples(self) -> int:
        with contextlib.closing(sqlite3.connect(self.work / "server.db")) as db:
            return int(db.execute("SELECT count(*) FROM samples").fetchone()[0])

    def workers(
        self, count: int, duration: float, *, beacons: bool, http: bool, lean: bool
    ) -> Workers:
        plans, first = [], 0
        for number in range(count):
            size = self.size // count + (1 if number < self.size % count else 0)
            plans.append(WorkerPlan(
                first, size, self.telemetry_interval, duration, self.token,
                str(self.key_file) if beacons else None, self.beacon_port, http, seed=number + 1,
                lean=lean,
            ))  # fmt: skip
            first += size
        return Workers(plans)


class Workers:
    """Worker processes (``fleet.py --worker PLAN``); ``start`` returns once all are ready."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        self.plans = plans
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, timeout: float = 300.0) -> None:
        for plan in self.plans:
            self.processes.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(plan.__dict__)],
                stdout=subprocess.PIPE, text=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the bench has one thread here
            ))  # fmt: skip
        deadline = time.monotonic() + timeout
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != "ready" or time.monotonic() > deadline:
                raise RuntimeError(f"a fleet worker did not start ({line!r})")

    def results(self, timeout: float) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for process in self.processes:
            out, _ = process.communicate(timeout=timeout)
            if process.returncode:
                raise RuntimeError(f"a fleet worker failed (exit {process.returncode})")
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                merged[key] = merged.get(key, 0 if isinstance(value, int) else []) + value
        return merged

    def cpu(self) -> float:
        """CPU seconds the worker processes have used so far."""
        return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


# --- figures ----------------------------------------------------------------------------------


def listen_overflows() -> int:
    """The kernel's count of connections dropped on a full listen queue (TcpExt
    ListenOverflows in /proc/net/netstat: this network namespace's, every program's)."""
    lines = Path("/proc/net/netstat").read_text(encoding="ascii").splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def telemetry(args: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    """One fleet posting for ``args.telemetry_seconds``; then drained and counted."""
    fleet = Fleet(work / f"telemetry-{size}", size, args.beacon_interval, args.interval)
    workers = fleet.workers(args.workers if size > 2000 else 1, args.telemetry_seconds,
                            beacons=True, http=False, lean=args.lean)  # fmt: skip
    try:
        fleet.start_server()
        workers.start()
        cpu0, agents0, wall0 = fleet.server_cpu(), workers.cpu(), time.monotonic()
        time.sleep(args.telemetry_seconds)
        wall = time.monotonic() - wall0
        cpu = (fleet.server_cpu() - cpu0) / wall
        agents_cpu = (workers.cpu() - agents0) / wall
        result = workers.results(timeout=args.telemetry_seconds + DRAIN_TIMEOUT + 300)
        fleet.stop_server()  # writes what is pending
        stored = fleet.stored_samples()
    finally:
        workers.stop()
        fleet.stop_server()
    latencies = result["latencies"]
    figure = {
        "agents": size,
        "seconds": args.telemetry_seconds,
        "sampled": result["sampled"],
        "stored": stored,
        "lost": result["sampled"] - stored,
        "dropped_by_agents": result["dropped"],
        "posts": len(latencies),
        "posts_per_s": len(latencies) / args.telemetry_seconds,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "server_cpu_share": cpu,
        "server_cpu_ms_per_post": 1000 * cpu * wall / max(1, len(latencies)),
        "agents_cpu_share": agents_cpu,
        "agent_failures": result["failures"],
    }
    print(
        f"telemetry {size:>6,} agents: {figure['sampled']:,} sampled, {stored:,} stored, "
        f"lost {figure['lost']:,} (goal 0); {figure['posts_per_s']:.0f} posts/s, p50 "
        f"{figure['p50_ms']:.1f} ms, p99 {figure['p99_ms']:.1f} ms; server CPU "
        f"{100 * cpu:.0f}% of a core, {figure['server_cpu_ms_per_post']:.2f} ms a post "
        f"(simulated agents: {100 * agents_cpu:.0f}%); load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return figure


@dataclass
class Sweeps:
    """The timings of ``_sweeps``: wall and the sweeping process's CPU seconds per sweep."""

    concurrent: dict[str, bool]
    seconds: dict[str, float]  # cold, warm, warm_unordered, restart, restart_unordered
    cpu_s: dict[str, float]
    sequential: dict[str, tuple[bool, float]]  # a sample: verdict and seconds per check


async def _sweeps(
    targets: list[tuple[str, str]], token: str, timeout: float, sequential_count: int
) -> Sweeps:
    """As the server sweeps: its connector, its concurrency (256), the last misses first."""
    seconds: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    concurrent: dict[str, bool] = {}
    # cold: new connections, nobody suspect; warm: the next sweep, on kept-alive connections,
    # the agents that missed checked first; warm_unordered: the same without putting them
    # first (the dead then wait behind the live); restart: a restarted server's first sweep,
    # new connections, the nodes not heard from since its start first (the live agents
    # registered again, the hung ones did not: the ones the cold sweep found dead);
    # restart_unordered: the same, nobody first (as the server did before it knew)
    sequential: dict[str, tuple[bool, float]] = {}
    for names in (("cold", "warm", "warm_unordered"), ("restart_unordered",), ("restart",)):
        connector = health.connector(256, interval=10.0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for name in names:
                dead = {m for m, ok in concurrent.items() if not ok}
                suspects = dead if name in ("warm", "restart") else ()
                began, cpu = time.monotonic(), time.process_time()
                result = await health.sweep(
                    session, targets, token, timeout, 256, suspects=suspects
                )
                seconds[name], cpu_s[name] = time.monotonic() - began, time.process_time() - cpu
                concurrent = concurrent or result
            if "restart" in names:  # the sequential baseline on kept-alive connections too
                for mac, url in targets[:: max(1, -(-len(targets) // sequential_count))]:
                    began = time.monotonic()
                    ok = await health.check_one(session, url, token, timeout, mac)
                    sequential[mac] = ok, time.monotonic() - began
    return Sweeps(concurrent, seconds, cpu_s, sequential)


def sequential_estimate(sweeps: Sweeps, timeout: float) -> float:
    """The sequential sweep of every target: all of them when all were measured, else the
    sample's mean time per live and per dead check times their counts in the fleet."""
    sample, verdicts = sweeps.sequential, sweeps.concurrent
    if len(sample) == len(verdicts):
        return sum(seconds for _, seconds in sample.values())
    total = 0.0
    for alive in (True, False):
        times = [seconds for ok, seconds in sample.values() if ok is alive]
        mean = sum(times) / len(times) if times else (0.0 if alive else timeout)
        total += mean * sum(ok is alive for ok in verdicts.values())
    return total


def health_sweep(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The server's sweep over 1,050 agents, 5% of them hung, against a sequential one."""
    fleet = Fleet(work / "health", 1050, args.beacon_interval, args.interval)
    workers = fleet.workers(args.workers, 3600, beacons=False, http=True, lean=args.lean)
    try:
        workers.start()
        targets = [(identity(i).mac, f"http://{identity(i).ip}:{AGENT_PORT}/health")
                   for i in range(fleet.size)]  # fmt: skip
        agents_cpu, load = workers.cpu(), os.getloadavg()[0]
        run = asyncio.run(_sweeps(targets, fleet.token, args.health_timeout, args.sequential))
        agents_cpu = workers.cpu() - agents_cpu  # serving all three sweeps
        sequential_s = sequential_estimate(run, args.health_timeout)
        for process in workers.processes:  # stops serving, reports which agents were dead
            process.terminate()
        dead = set(workers.results(timeout=60)["dead"])
    finally:
        workers.stop()
    concurrent, secs, cpu = run.concurrent, run.seconds, run.cpu_s
    figure = {
        "agents": fleet.size,
        "dead": len(dead),
        "found_dead": sum(not ok for ok in concurrent.values()),
        "every_dead_found": all(not concurrent[mac] for mac in dead),
        "timeout_s": args.health_timeout,
        "lean_agents": args.lean,
        "sweep_s": secs["warm"],  # the server's periodic sweep: the figure
        "sweep_cpu_s": cpu["warm"],
        "cold_s": secs["cold"],
        "cold_cpu_s": cpu["cold"],
        "restart_s": secs["restart"],  # a restarted server's first sweep
        "restart_cpu_s": cpu["restart"],
        "restart_unordered_s": secs["restart_unordered"],
        "unordered_s": secs["warm_unordered"],
        "agents_cpu_s": agents_cpu,
        "load": load,
        "sequential_s": sequential_s,
        "ratio": sequential_s / secs["warm"],
        "cold_ratio": sequential_s / secs["cold"],
        "sequential_measured": len(run.sequential),
        "agree": all(concurrent[mac] == ok for mac, (ok, _) in run.sequential.items()),
    }
    print(
        f"health sweep of {fleet.size:,} agents, {figure['dead']} dead, "
        f"{figure['found_dead']} found dead (timeout {args.health_timeout:g} s, load "
        f"{load:.1f}, {'lean' if args.lean else 'aiohttp'} agents): {secs['warm']:.2f} s "
        f"(goal <= 2 s; sweeper CPU {cpu['warm']:.2f} s); the first sweep, new connections: "
        f"{secs['cold']:.2f} s (CPU {cpu['cold']:.2f} s), after a server restart (those not "
        f"heard from first) {secs['restart']:.2f} s (CPU {cpu['restart']:.2f} s), without them "
        f"first {secs['restart_unordered']:.2f} s; the periodic sweep without the last misses "
        f"first: "
        f"{secs['warm_unordered']:.2f} s; agents' CPU for all sweeps {agents_cpu:.1f} s; "
        f"sequential {sequential_s:.1f} s ({figure['sequential_measured']:,} measured); "
        f"ratio {figure['ratio']:.0f} (first sweep {figure['cold_ratio']:.0f}); "
        f"same verdicts: {figure['agree']}",
        flush=True,
    )
    return figure


def reregistration(args: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    """Cold registration, then a server restart: who is registered again within 2 intervals."""
    interval = args.beacon_interval
    fleet = Fleet(work / f"reregister-{size}", size, interval, args.interval)
    settle, outage, after = (2, 1, 2) if args.quick else (4, 3, 4)
    settle, outage, after = settle * interval, outage * interval, after * interval
    workers = fleet.workers(args.workers if size > 2000 else 1, settle + outage + after + 5,
                            beacons=True, http=False, lean=args.lean)  # fmt: skip
    try:
        fleet.start_server()
        workers.start()
        time.sleep(settle)
        fleet.stop_server(kill=args.restart_signal == "kill", freeze=args.restart_freeze)
        stopped = time.time()
        time.sleep(outage)
        overflows0 = listen_overflows()
        fleet.start_server()
        cpu0, agents0, wall0 = fleet.server_cpu(), workers.cpu(), time.monotonic()
        time.sleep(after)
        server_cpu, server_wall = fleet.server_cpu() - cpu0, time.monotonic() - wall0
        agents_cpu = workers.cpu() - agents0
        overflows = listen_overflows() - overflows0
        result = workers.results(timeout=settle + outage + after + 5 + DRAIN_TIMEOUT + 300)
    finally:
        workers.stop()
        fleet.stop_server()
    beacons = sorted(result["beacons"])
    first_cold = beacons[0]
    first_back = min(t for t in beacons if t > stopped)
    by_mac: dict[str, list[float]] = {}
    for mac, at in result["registered"]:
        by_mac.setdefault(mac, []).append(at)
    window = 2 * interval
    cold = sum(1 for times in by_mac.values() if min(times) <= first_cold + window)
    again = sum(
        1 for times in by_mac.values() if any(first_back <= t <= first_back + window for t in times)
    )
    cold_times = sorted(min(times) - first_cold for times in by_mac.values())
    back_times = sorted(
        min((t for t in times if t >= first_back), default=float("inf")) - first_back
        for times in by_mac.values()
    )
    figure = {
        "agents": size,
        "beacon_interval_s": interval,
        "restart_signal": args.restart_signal,
        "restart_freeze_s": args.restart_freeze,
        "cold_share": cold / size,
        "restart_share": again / size,
        "restart_share_by_end": sum(t < float("inf") for t in back_times) / size,
        "cold_p99_s": percentile(cold_times, 0.99),
        "restart_p50_s": percentile(back_times, 0.50),
        "restart_p99_s": percentile(back_times, 0.99),
        "restart_max_s": back_times[-1] if back_times else float("nan"),
        "server_cpu_share": server_cpu / server_wall,  # while the fleet came back
        "agents_cpu_share": agents_cpu / server_wall,
        # registrations in each second after the restarted server's first beacon
        "restart_per_s": [
            sum(1 for t in back_times if second <= t < second + 1) for second in range(int(after))
        ],
        # connections the kernel dropped because a listen queue was full (the machine's
        # count: other programs' too), from the restart to the end of the window
        "listen_overflows": overflows,
        "load": os.getloadavg()[0],
    }
    print(
        f"re-registration {size:>6,} agents (SIG{args.restart_signal.upper()} after "
        f"{args.restart_freeze:g} s frozen): "
        f"{100 * again / size:.1f}% within 2 beacon "
        f"intervals ({window:g} s) of the restarted server's first beacon (goal >= 99%), p50 "
        f"{figure['restart_p50_s']:.2f} s, p99 {figure['restart_p99_s']:.2f} s, max "
        f"{figure['restart_max_s']:.2f} s; cold start: {100 * cold / size:.1f}%, p99 "
        f"{figure['cold_p99_s']:.2f} s; restarted server's CPU "
        f"{100 * figure['server_cpu_share']:.0f}% of a core over {server_wall:.0f} s (simulated "
        f"agents {100 * figure['agents_cpu_share']:.0f}%); listen queue overflows "
        f"{overflows}; load {figure['load']:.1f}; "
        f"registered per second after that beacon: {figure['restart_per_s']}",
        flush=True,
    )
    return figure


def writes(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A minute of a 1,050-Pi fleet's telemetry into the SQLite store, batched and row by row."""
    count = 1050 * round(60 / args.interval) if not args.quick else 1050 * 3
    samples = [
        StoredSample(identity(i % 1050).mac, 1.8e9 + i, 10.0, 30.0, 600_000_000, 40.0, 48.0)
        for i in range(count)
    ]
    timings = {}
    for name, size in (("batched", 5000), ("row_by_row", 1)):
        store = SqliteStore(str(work / f"writes-{name}.db"))
        try:
            began = time.perf_counter()
            for start in range(0, count, size):
                store.add_samples(samples[start : start + size])
            timings[name] = time.perf_counter() - began
        finally:
            store.close()
    figure = {
        "samples": count,
        "batched_per_s": count / timings["batched"],
        "row_by_row_per_s": count / timings["row_by_row"],
        "ratio": timings["row_by_row"] / timings["batched"],
    }
    print(
        f"writes of {count:,} samples: batched (5,000 a transaction) "
        f"{figure['batched_per_s']:,.0f}/s, row by row {figure['row_by_row_per_s']:,.0f}/s, "
        f"ratio {figure['ratio']:.1f}",
        flush=True,
    )
    return figure


# --- command line -----------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,050 agents only, short phases: a smoke test under a minute",
    )
    parser.add_argument(
        "--figures",
        default="telemetry,health,reregister,writes",
        help="comma-separated subset of telemetry,health,reregister,writes",
    )
    parser.add_argument(
        "--sizes", default="1050,10500", help="fleet sizes (telemetry, re-registration)"
    )
    parser.add_argument("--telemetry-seconds", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=5.0, help="telemetry interval")
    parser.add_argument("--beacon-interval", type=float, default=5.0)
    parser.add_argument("--health-timeout", type=float, default=1.0)
    parser.add_argument(
        "--restart-signal",
        choices=("term", "kill"),
        default="term",
        help="how the re-registration figure stops the server: term (a graceful restart) or "
        "kill (a crash: requests in flight are cut off)",
    )
    parser.add_argument(
        "--restart-freeze",
        type=float,
        default=0.0,
        help="seconds the server is frozen (SIGSTOP) before that signal, so that requests "
        "are in flight when it goes (a hung server restarted by a watchdog)",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=1050,
        help="agents in the sequential baseline sweep (an even sample, scaled to the fleet)",
    )
    parser.add_argument("--workers", type=int, default=2, help="agent processes for big fleets")
    parser.add_argument(
        "--aiohttp-agents",
        dest="lean",
        action="store_false",
        help="simulated agents speak HTTP through aiohttp like a Pi's agent (costs the "
        "simulator more CPU per request than the server) instead of bramble.sim.fleet_http",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.telemetry_seconds = "1050", 8.0
        args.interval, args.beacon_interval, args.sequential = 2.0, 3.0, 105
    return args  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.worker:
        logging.basicConfig(level=logging.ERROR)  # a fleet's worth of "server unreachable"
        plan = WorkerPlan(**json.loads(args.worker))
        # a worker still running well after its plan: where it is, on stderr
        faulthandler.dump_traceback_later(plan.duration + DRAIN_TIMEOUT + 240, exit=True)
        print(json.dumps(asyncio.run(run_worker(plan))), flush=True)
        return 0
    # SIGTERM unwinds like an error, so the server and workers are stopped and the folder goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    wanted = set(args.figures.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0]
    print(
        f"fleet bench: {os.cpu_count()} CPUs, load {load:.1f}; quick={args.quick}; simulated "
        f"agents' HTTP: {'bramble.sim.fleet_http' if args.lean else 'aiohttp'}",
        flush=True,
    )
    figures: dict[str, Any] = {"quick": args.quick, "load": load}
    failed = []
    with tempfile.TemporaryDirectory(prefix="bramble-fleet-") as folder:
        work = Path(folder)
        steps: list[tuple[str, Any]] = [
            ("writes", lambda: writes(args, work)),
            ("health", lambda: health_sweep(args, work)),
            *((f"telemetry-{n}", lambda n=n: telemetry(args, work, n)) for n in sizes),
            *((f"reregister-{n}", lambda n=n: reregistration(args, work, n)) for n in sizes),
        ]
        for name, step in steps:
            if name.split("-")[0] not in wanted:
                continue
            try:
                figures[name] = step()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                print(f"{name}: FAILED: {exc}"[:500], flush=True)
                failed.append(name)
        small, big = (figures.get(f"telemetry-{n}") for n in (sizes[0], sizes[-1]))
        if small and big and small is not big:
            print(
                f"telemetry scaling {big['agents']:,} / {small['agents']:,}: p99 ratio "
                f"{big['p99_ms'] / small['p99_ms']:.1f}, server CPU ratio "
                f"{big['server_cpu_share'] / max(small['server_cpu_share'], 1e-9):.1f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
