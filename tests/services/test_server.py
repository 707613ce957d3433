"""bramble-server over real sockets on 127.0.0.1: registry, auth, limits, telemetry, health,
dispatch, beacon, forwarder, metrics, OpenAPI, restart, and the PostgreSQL store.

Fake agents are small aiohttp apps on ephemeral loopback ports; every node "is" 127.0.0.1
with its own agent port. Intervals are shortened so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bramble.services.beacon import BeaconVerifier
from bramble.services.config import ServerConfig, ServerSecrets
from bramble.services.server.api import ROUTES, make_app
from bramble.services.server.main import Running, main, running

KEY = "k" * 40
AGENT = "agent-token-0123456789"
ADMIN = "admin-token-9876543210"
ORDS_TOKEN = "ords-token"  # noqa: S105 - a test secret
MACS = [f"b8:27:eb:00:00:{i:02x}" for i in range(1, 7)]
STRANGER = "dc:a6:32:99:99:99"


def write_secret(path: Path, text: str) -> str:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def nodes_json(path: Path) -> str:
    nodes = [
        {
            "name": f"bank{1 + i // 3:02d}-pi{1 + i % 3:02d}",
            "bank": 1 + i // 3,
            "slot": 1 + i % 3,
            "mac": mac,
            "ip": "127.0.0.1",
            "serial": f"0000{i:04x}",
        }
        for i, mac in enumerate(MACS)
    ]
    path.write_text(json.dumps(nodes), encoding="utf-8")
    return str(path)


def settings(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A server config as a dict: loopback, fast intervals, files under ``tmp``."""
    data: dict[str, Any] = {
        # port 1 is replaced by a free port when run() starts the server
        "server": {"cluster": "lab", "listen": "127.0.0.1", "port": 1, "advertise": "127.0.0.1"},
        "beacon": {"interval": 0.2, "port": 9, "broadcast": "127.0.0.1"},
        "auth": {
            "cluster_key_file": write_secret(tmp / "cluster.key", KEY),
            "agent_token_file": write_secret(tmp / "agent.token", AGENT),
            "admin_token_file": write_secret(tmp / "admin.token", ADMIN),
        },
        "store": {"sqlite": str(tmp / "server.db")},
        "model": {"nodes_file": nodes_json(tmp / "nodes.json")},
        "health": {"interval": 3600.0, "timeout": 0.5, "misses_down": 2},
        "telemetry": {"batch_seconds": 0.05},
        "dispatch": {"timeout": 2.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def secrets_for(**extra: Any) -> ServerSecrets:
    return ServerSecrets(cluster_key=KEY.encode(), agent_token=AGENT, admin_token=ADMIN, **extra)


def header(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class Client:
    """A client for one running server."""

    session: aiohttp.ClientSession
    base: str

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers=header(token), **kw
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def register(self, mac: str, port: int, ip: str = "127.0.0.1") -> tuple[int, Any]:
        return await self.call(
            "POST",
            "/api/v1/register",
            AGENT,
            {"mac": mac, "ip": ip, "hostname": "pi", "agent_version": "0.1.0", "agent_port": port},
        )

    async def post_cpu(self, mac: str, *cpus: float) -> tuple[int, Any]:
        now = time.time()
        samples = [sample(now - len(cpus) + i, cpu) for i, cpu in enumerate(cpus)]
        return await self.call("POST", "/api/v1/telemetry", AGENT, {"mac": mac, "samples": samples})


def sample(ts: float, cpu: float = 5.0) -> dict[str, Any]:
    return {
        "ts": ts,
        "cpu_percent": cpu,
        "mem_used_percent": 20.0,
        "mem_available_bytes": 500_000_000,
        "disk_used_percent": 30.0,
        "temp_c": 45.5,
    }


Scenario = Callable[[Running, Client], Awaitable[None]]


def run(config: dict[str, Any], scenario: Scenario, **secret_extra: Any) -> None:
    """Start a server with ``config``, run ``scenario`` against it, always stop it."""

    async def go() -> None:
        cfg = ServerConfig.model_validate(config)
        if cfg.server.port == 1:
            cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"port": 0})})
        async with (
            running(cfg, secrets_for(**secret_extra)) as server,
            aiohttp.ClientSession() as session,
        ):
            await scenario(server, Client(session, f"http://127.0.0.1:{server.port}"))

    asyncio.run(asyncio.wait_for(go(), 60))


@dataclass
class FakeAgent:
    """An agent's HTTP side: /health and /jobs, with switchable behaviour."""

    mac: str
    healthy: bool = True
    job_status: int = 200
    jobs: list[dict[str, Any]] = field(default_factory=list)
    hang: bool = False
    hold_jobs: bool = False  # a job is answered only once ``released`` is set
    runner: web.AppRunner | None = None
    port: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/jobs", self._job)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        self.released.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {AGENT}"

    async def _health(self, request: web.Request) -> web.Response:
        if self.hang:
            await self.released.wait()
        if not self.healthy or not self._authorised(request):
            return web.json_response({"error": "no"}, status=503)
        return web.json_response({"status": "ok", "mac": self.mac, "version": "0", "uptime_s": 1})

    async def _job(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.jobs.append(body)
        if self.hold_jobs:
            await self.released.wait()
        if self.job_status != 200 or not self._authorised(request):
            return web.json_response({"error": "broken"}, status=self.job_status)
        return web.json_response(
            {
                "id": body["id"],
                "state": "done",
                "output": f"ran on {self.mac}",
                "error": None,
                "elapsed_ms": 3,
            }
        )


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------


def test_registration_trusts_only_model_macs_and_survives_a_restart(tmp_path: Path) -> None:
    config = settings(tmp_path)

    async def first(server: Running, api: Client) -> None:
        status, body = await api.register(MACS[4].upper(), 8471)
        assert status == 200
        assert body == {
            "node": "bank02-pi02",
            "bank": 2,
            "slot": 2,
            "trusted": True,
            "telemetry_interval": 5.0,
        }
        status, body = await api.register(STRANGER, 8471)
        assert (status, body["trusted"], body["node"]) == (200, False, None)
        # last_registered moves with a registration, not with telemetry (bank_power's wait)
        node = (await api.call("GET", f"/api/v1/nodes/{MACS[4]}", ADMIN))[1]
        assert node["last_registered"] == node["registered_at"] > 0
        await asyncio.sleep(0.05)
        assert (await api.post_cpu(MACS[4], 1.0))[0] == 200
        after_post = (await api.call("GET", f"/api/v1/nodes/{MACS[4]}", ADMIN))[1]
        assert after_post["last_registered"] == node["last_registered"]
        assert after_post["last_seen"] > node["last_seen"]
        assert (await api.register(MACS[4], 8471))[0] == 200
        again = (await api.call("GET", f"/api/v1/nodes/{MACS[4]}", ADMIN))[1]
        assert again["last_registered"] > node["last_registered"]
        assert again["registered_at"] == node["registered_at"]
        status, events = await api.call("GET", "/api/v1/events", ADMIN)
        assert any(e["kind"] == "untrusted" and e["mac"] == STRANGER for e in events["events"])

    async def second(server: Running, api: Client) -> None:
        status, body = await api.call("GET", "/api/v1/nodes", ADMIN)
        assert status == 200
        by_mac = {n["mac"]: n for n in body["nodes"]}
        assert set(by_mac) == {MACS[4], STRANGER}
        assert by_mac[MACS[4]]["name"] == "bank02-pi02"
        assert by_mac[MACS[4]]["trusted"]
        assert not by_mac[STRANGER]["trusted"]
        assert by_mac[MACS[4]]["last_registered"] is None  # not with this run of the server
        # a restarted server knows the node: telemetry is accepted without registering again
        status, body = await api.post_cpu(MACS[4], 12.0)
        assert (status, body) == (200, {"accepted": 1})

    run(config, first)
    run(config, second)


def test_authentication_and_roles(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        assert (await api.call("GET", "/api/v1/nodes", None))[0] == 401
        assert (await api.call("GET", "/api/v1/nodes", "wrong-token-000000000"))[0] == 401
        assert (await api.call("GET", "/api/v1/nodes", AGENT))[0] == 403
        assert (await api.call("GET", "/api/v1/nodes", ADMIN))[0] == 200
        status, body = await api.call(
            "POST", "/api/v1/jobs", AGENT, {"kind": "warble", "source": "1", "user": "x"}
        )
        assert (status, body) == (403, {"error": "token not allowed here"})
        assert (await api.register(MACS[0], 8471))[0] == 200
        status, _ = await api.call(
            "POST",
            "/api/v1/register",
            ADMIN,
            {
                "mac": MACS[1],
                "ip": "127.0.0.1",
                "hostname": "pi",
                "agent_version": "1",
                "agent_port": 8471,
            },
        )
        assert status == 403
        assert (await api.call("GET", "/metrics", None))[0] == 401
        status, text = await api.call("GET", "/metrics", ADMIN)
        assert status == 200
        assert 'bramble_nodes{state="up"} 1.0' in text
        assert (await api.call("GET", "/api/v1/openapi.json", None))[0] == 200
        assert (await api.call("GET", "/healthz", None))[0] == 200
        assert (await api.call("GET", "/nope", ADMIN)) == (404, {"error": "Not Found"})

    run(settings(tmp_path), scenario)


def test_public_read_opens_reads_only(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        assert (await api.call("GET", "/api/v1/banks", None))[0] == 200
        assert (await api.call("GET", "/metrics", None))[0] == 200
        assert (await api.call("GET", "/api/v1/jobs/1", None))[0] == 401
        assert (await api.register(MACS[0], 1))[0] == 200
        assert (await api.call("POST", "/api/v1/telemetry", None, {"mac": MACS[0]}))[0] == 401

    run(settings(tmp_path, api={"public_read": True, "public_metrics": True}), scenario)


def test_oversized_malformed_and_invalid_bodies_are_refused(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        await api.register(MACS[0], 8471)
        big = {"mac": MACS[0], "samples": [sample(time.time())] * 200}
        status, body = await api.call("POST", "/api/v1/telemetry", AGENT, big)
        assert status == 413
        assert "max_body_bytes" in body["error"]

        async def chunks() -> Any:
            for _ in range(40):
                yield b" " * 1024

        async with api.session.post(
            api.base + "/api/v1/telemetry", data=chunks(), headers=header(AGENT)
        ) as response:
            assert response.status == 413  # no Content-Length: the read is capped
        many = {"mac": MACS[0], "samples": [sample(time.time())] * 11}
        status, body = await api.call("POST", "/api/v1/telemetry", AGENT, many)
        assert status == 413
        assert "max_samples_per_post" in body["error"]
        status, _ = await api.call("POST", "/api/v1/telemetry", AGENT, data=b"{not json", body=None)
        assert status == 400
        for bad in (
            {"mac": "zz:27:eb:00:00:01", "samples": []},
            {"mac": MACS[0], "samples": [{**sample(time.time()), "cpu_percent": 150}]},
            {"mac": MACS[0], "samples": [{**sample(time.time()), "shell": "rm -rf /"}]},
            {"mac": MACS[0], "samples": [{**sample(time.time()), "cpu_percent": "5"}]},
        ):
            status, body = await api.call("POST", "/api/v1/telemetry", AGENT, bad)
            assert status == 422, bad
            assert body["error"]
        status, body = await api.call(
            "POST", "/api/v1/jobs", ADMIN, {"kind": "shell", "source": "ls", "user": "eve"}
        )
        assert status == 422
        assert "kind" in body["error"]
        status, _ = await api.call(
            "POST", "/api/v1/jobs", ADMIN, {"kind": "warble", "source": "x" * 70000, "user": "eve"}
        )
        assert status in (413, 422)

    run(settings(tmp_path, limits={"max_body_bytes": 8192, "max_samples_per_post": 10}), scenario)


def test_telemetry_unknown_node_latest_and_batched_history(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        status, body = await api.post_cpu(MACS[0], 10.0)
        assert (status, body) == (404, {"error": "unknown node: register again"})
        await api.register(MACS[0], 8471)
        assert (await api.post_cpu(MACS[0], 10.0, 20.0, 30.0))[1] == {"accepted": 3}
        status, node = await api.call("GET", f"/api/v1/nodes/{MACS[0]}", ADMIN)
        assert node["latest"]["cpu_percent"] == 30.0
        assert node["health"] == "up"

        async def stored() -> bool:
            _, node = await api.call("GET", f"/api/v1/nodes/{MACS[0]}?history=10", ADMIN)
            return [s["cpu_percent"] for s in node["history"]] == [10.0, 20.0, 30.0]

        await eventually(stored)
        status, banks = await api.call("GET", "/api/v1/banks", ADMIN)
        assert banks["banks"][0] == {
            "bank": 1,
            "model": 3,
            "registered": 1,
            "up": 1,
            "down": 0,
            "unknown": 0,
            "cpu_percent_avg": 30.0,
            "temp_c_max": 45.5,
        }
        assert (await api.call("GET", "/api/v1/nodes/b8:27:eb:ff:ff:ff", ADMIN))[0] == 404

    run(settings(tmp_path), scenario)


def test_retention_prunes_old_samples(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        await api.register(MACS[0], 8471)
        old = time.time() - 7200
        body = {"mac": MACS[0], "samples": [sample(old, 1.0), sample(time.time(), 2.0)]}
        await api.call("POST", "/api/v1/telemetry", AGENT, body)
        await server.server.writer.flush()
        store = server.server.store
        assert await server.server.db(store.prune_samples, time.time() - 3600) == 1
        assert [s.cpu_percent for s in await server.server.history(MACS[0], 10)] == [2.0]

    run(settings(tmp_path), scenario)


def test_health_sweep_is_concurrent_and_marks_down_after_misses(tmp_path: Path) -> None:
    agents = [FakeAgent(mac) for mac in MACS[:3]]
    hanging = [FakeAgent(f"b8:27:eb:11:00:{i:02x}", hang=True) for i in range(20)]

    async def scenario(server: Running, api: Client) -> None:
        try:
            for agent in agents + hanging:
                await agent.start()
                await api.register(agent.mac, agent.port)
            agents[2].healthy = False
            began = time.monotonic()
            results = await server.server.sweep()
            elapsed = time.monotonic() - began
            # 20 agents that never answer, 0.5 s timeout: one round, not 10 s in a row
            assert elapsed < 2.0
            assert results[agents[0].mac]
            assert not results[agents[2].mac]
            _, node = await api.call("GET", f"/api/v1/nodes/{agents[2].mac}", ADMIN)
            assert (node["health"], node["misses"]) == ("up", 1)
            await server.server.sweep()
            _, node = await api.call("GET", f"/api/v1/nodes/{agents[2].mac}", ADMIN)
            assert node["health"] == "down"
            _, banks = await api.call("GET", "/api/v1/banks", ADMIN)
            assert (banks["banks"][0]["up"], banks["banks"][0]["down"]) == (2, 1)
            agents[2].healthy = True
            await server.server.sweep()
            _, node = await api.call("GET", f"/api/v1/nodes/{agents[2].mac}", ADMIN)
            assert (node["health"], node["misses"]) == ("up", 0)
            _, events = await api.call("GET", "/api/v1/events?limit=5", ADMIN)
            kinds = [e["kind"] for e in events["events"]]
            assert kinds[:2] == ["up", "down"]
        finally:
            for agent in agents + hanging:
                await agent.stop()

    run(settings(tmp_path, health={"timeout": 0.5, "concurrency": 64}), scenario)


def test_dispatch_picks_only_trusted_nodes_under_the_threshold_and_retries(
    tmp_path: Path,
) -> None:
    busy, broken, good = FakeAgent(MACS[0]), FakeAgent(MACS[1], job_status=500), FakeAgent(MACS[2])
    stranger = FakeAgent(STRANGER)
    cpus = [(busy, 80.0), (broken, 5.0), (good, 20.0), (stranger, 0.0)]

    async def scenario(server: Running, api: Client) -> None:
        try:
            for agent, cpu in cpus:
                await agent.start()
                await api.register(agent.mac, agent.port)
                await api.post_cpu(agent.mac, cpu)
            status, body = await api.call(
                "POST", "/api/v1/jobs", ADMIN, {"kind": "warble", "source": "say 1", "user": "op"}
            )
            assert (status, body["state"]) == (200, "queued")
            job_id = body["id"]

            async def finished() -> bool:
                _, job = await api.call("GET", f"/api/v1/jobs/{job_id}", ADMIN)
                return job["state"] in ("done", "failed")

            await eventually(finished)
            _, job = await api.call("GET", f"/api/v1/jobs/{job_id}", ADMIN)
            assert job["state"] == "done", job
            assert job["node"] == "bank01-pi03"
            assert job["attempts"] == 2
            assert job["output"] == f"ran on {good.mac}"
            assert len(broken.jobs) == 1
            assert broken.jobs[0]["source"] == "say 1"
            assert busy.jobs == []
            assert stranger.jobs == []
            assert (await api.call("GET", "/api/v1/jobs/999", ADMIN))[0] == 404
        finally:
            for agent, _ in cpus:
                await agent.stop()

    run(settings(tmp_path), scenario)


def test_dispatch_fails_clearly_when_no_node_is_idle(tmp_path: Path) -> None:
    busy = FakeAgent(MACS[0])

    async def scenario(server: Running, api: Client) -> None:
        try:
            await busy.start()
            await api.register(busy.mac, busy.port)
            await api.post_cpu(busy.mac, 95.0)
            _, body = await api.call(
                "POST", "/api/v1/jobs", ADMIN, {"kind": "warble", "source": "1", "user": "op"}
            )

            async def finished() -> bool:
                _, job = await api.call("GET", f"/api/v1/jobs/{body['id']}", ADMIN)
                return bool(job["state"] == "failed")

            await eventually(finished)
            _, job = await api.call("GET", f"/api/v1/jobs/{body['id']}", ADMIN)
            assert "CPU under 30%" in job["error"]
            assert job["attempts"] == 0
            assert busy.jobs == []
        finally:
            await busy.stop()

    run(settings(tmp_path, dispatch={"timeout": 0.3}), scenario)


def test_a_job_no_agent_has_can_be_cancelled_one_on_an_agent_cannot(tmp_path: Path) -> None:
    agent = FakeAgent(MACS[0])

    async def scenario(server: Running, api: Client) -> None:
        def submit(source: str) -> Awaitable[tuple[int, Any]]:
            body = {"kind": "warble", "source": source, "user": "op"}
            return api.call("POST", "/api/v1/jobs", ADMIN, body)

        async def state(job_id: int) -> str:
            return str((await api.call("GET", f"/api/v1/jobs/{job_id}", ADMIN))[1]["state"])

        def becomes(job_id: int, wanted: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return await state(job_id) == wanted

            return check

        try:
            await agent.start()
            await api.register(agent.mac, agent.port)
            await api.post_cpu(agent.mac, 95.0)  # busy: the first job waits for an idle node
            first = (await submit("say 1"))[1]["id"]
            second = (await submit("say 2"))[1]["id"]  # queued behind op's first one
            await eventually(becomes(first, "waiting"))
            assert await state(second) == "queued"
            cancel = f"/api/v1/jobs/{second}/cancel"
            assert (await api.call("POST", cancel, None))[0] == 401
            assert (await api.call("POST", cancel, AGENT))[0] == 403
            status, body = await api.call("POST", cancel, ADMIN)
            assert (status, body["state"]) == (200, "cancelled"), body
            # waiting for an idle node: not handed to an agent yet, so it can be cancelled
            status, body = await api.call("POST", f"/api/v1/jobs/{first}/cancel", ADMIN)
            assert (status, body["state"]) == (200, "cancelled"), body
            assert (await api.call("POST", "/api/v1/jobs/999/cancel", ADMIN))[0] == 404
            third = (await submit("say 3"))[1]["id"]  # the worker gave the first one up
            await eventually(becomes(third, "waiting"))
            agent.hold_jobs = True
            await api.post_cpu(agent.mac, 5.0)  # idle now: the third job goes to the agent
            await eventually(becomes(third, "running"))
            status, body = await api.call("POST", f"/api/v1/jobs/{third}/cancel", ADMIN)
            assert status == 409
            assert "running on " in body["error"]
            assert "cannot be told to stop" in body["error"]
            agent.released.set()
            await eventually(becomes(third, "done"))
            assert [job["source"] for job in agent.jobs] == ["say 3"]
            assert await state(first) == "cancelled"
            assert await state(second) == "cancelled"
            status, body = await api.call("POST", f"/api/v1/jobs/{third}/cancel", ADMIN)
            assert status == 409
            assert "done" in body["error"]
            _, found = await api.call("GET", "/api/v1/events", ADMIN)
            assert len([e for e in found["events"] if e["kind"] == "cancelled"]) == 2
        finally:
            await agent.stop()

    run(settings(tmp_path, dispatch={"timeout": 3.0}), scenario)


def test_server_broadcasts_a_valid_signed_beacon(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]

        async def scenario(server: Running, api: Client) -> None:
            data = await asyncio.get_running_loop().run_in_executor(None, listener.recv, 1024)
            beacon = BeaconVerifier(KEY.encode(), "lab").verify(data)
            assert beacon is not None
            assert (beacon.server, beacon.port) == ("127.0.0.1", server.port)
            assert BeaconVerifier(b"x" * 32, "lab").verify(data) is None

        run(settings(tmp_path, beacon={"port": port}), scenario)


def test_no_beacon_before_the_api_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that hears a beacon must find the API serving: the first beacon goes out only
    after the API's site has started (here the start is slowed by 0.5 s, 2.5 intervals)."""
    heard_before: list[bool] = []
    start = web.SockSite.start

    async def slow_start(site: web.SockSite) -> None:
        await asyncio.sleep(0.5)
        try:
            listener.recv(1024)
        except BlockingIOError:
            heard_before.append(False)
        else:
            heard_before.append(True)
        await start(site)

    monkeypatch.setattr(web.SockSite, "start", slow_start)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)

        async def scenario(server: Running, api: Client) -> None:
            for _ in range(100):  # the first beacon follows at once
                if server.server.beacons_sent:
                    break
                await asyncio.sleep(0.02)
            assert server.server.beacons_sent >= 1

        run(settings(tmp_path, beacon={"port": listener.getsockname()[1]}), scenario)
    assert heard_before == [False]


def test_registrations_are_written_in_batches_and_kept_on_retry() -> None:
    """Nodes and events wait in memory and go in one write; a failed write is retried with
    nothing lost or reordered, the newest record of a node winning."""
    from bramble.services.server.records import NodeRecord  # noqa: PLC0415
    from bramble.services.server.registry_writer import RegistryWriter  # noqa: PLC0415

    writes: list[tuple[list[str], list[str]]] = []
    attempts: list[int] = []

    async def write(nodes: list[NodeRecord], events: list[Any]) -> None:
        attempts.append(len(nodes))
        if len(attempts) == 1:
            raise OSError("disk full")
        writes.append(([f"{n.mac}@{n.ip}" for n in nodes], [e[3] for e in events]))

    async def go() -> RegistryWriter:
        writer = RegistryWriter(write, batch_max=1000, batch_seconds=3600)
        for i in range(3):
            writer.node(NodeRecord(MACS[i], "10.0.0.1", "pi", "1", 8471))
            writer.event((float(i), "registered", MACS[i], f"e{i}"))
        await writer.flush()  # fails
        assert writes == []
        writer.node(NodeRecord(MACS[0], "10.0.0.9", "pi", "1", 8471))
        writer.event((3.0, "address", MACS[0], "e3"))
        await writer.flush()
        await writer.flush()  # nothing pending: no write
        return writer

    writer = asyncio.run(go())
    assert writes == [
        (
            [f"{MACS[0]}@10.0.0.9", f"{MACS[1]}@10.0.0.1", f"{MACS[2]}@10.0.0.1"],
            ["e0", "e1", "e2", "e3"],
        )
    ]
    assert (writer.batches, writer.failed_batches, writer.pending) == (1, 1, 0)
    assert attempts == [3, 3]


def test_forwarder_retries_and_counts_drops(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    failures = [2]

    async def ords(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {ORDS_TOKEN}"
        if failures[0]:
            failures[0] -= 1
            return web.Response(status=503)
        received.extend((await request.json())["items"])
        return web.json_response({})

    async def scenario(server: Running, api: Client) -> None:
        app = web.Application()
        app.router.add_post("/ords/bramble/telemetry/", ords)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        try:
            forwarder = server.server.forwarder
            assert forwarder is not None
            forwarder.url = f"http://127.0.0.1:{sock.getsockname()[1]}/ords/bramble/telemetry/"
            forwarder.max_delay = 0.05
            await api.register(MACS[0], 8471)
            await api.post_cpu(MACS[0], 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)

            async def delivered() -> bool:
                return len(received) == 4

            await eventually(delivered)
            assert [i["cpu_percent"] for i in received] == [3.0, 4.0, 5.0, 6.0]
            assert received[0]["node"] == "bank01-pi01"
            assert forwarder.dropped == 2
            assert forwarder.failures == 2
            _, text = await api.call("GET", "/metrics", ADMIN)
            assert "bramble_forwarder_items_dropped_total 2.0" in text
        finally:
            await runner.cleanup()

    token = write_secret(tmp_path / "ords.token", ORDS_TOKEN)
    config = settings(
        tmp_path, forwarder={"url": "http://127.0.0.1:9/", "token_file": token, "queue_max": 4}
    )
    run(config, scenario, forwarder_token=ORDS_TOKEN)


def test_openapi_lists_every_route(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        _, doc = await api.call("GET", "/api/v1/openapi.json", None)
        app = make_app(server.server)
        routes = {
            (r.method.lower(), r.resource.canonical)
            for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        }
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented
        assert len(routes) == len(ROUTES)
        body = doc["paths"]["/api/v1/telemetry"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "samples" in doc["components"]["schemas"][ref]["properties"]

    run(settings(tmp_path), scenario)


# -- the command line -------------------------------------------------------------------


def toml(data: dict[str, Any]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--check-config", "--log-level", "--version"):
        assert option in out
    assert "BRAMBLE_SERVER__" in out


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.toml"
    path.write_text(toml(settings(tmp_path)), encoding="utf-8")
    assert main(["--config", str(path), "--check-config"]) == 0
    assert "OK: cluster lab" in capsys.readouterr().out
    bad = settings(tmp_path, dispatch={"cpu_threshold": 130.0})
    path.write_text(toml(bad), encoding="utf-8")
    assert main(["--config", str(path), "--check-config"]) == 2
    assert "dispatch.cpu_threshold" in capsys.readouterr().err
    path.write_text(toml(settings(tmp_path)), encoding="utf-8")
    (tmp_path / "admin.token").chmod(0o644)
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "auth.admin_token_file" in err
    assert "0644" in err


def test_sigterm_shuts_down_gracefully_and_flushes_telemetry(tmp_path: Path) -> None:
    port = free_port()
    config = settings(tmp_path, server={"port": port}, telemetry={"batch_seconds": 3600.0})
    path = tmp_path / "server.toml"
    path.write_text(toml(config), encoding="utf-8")
    script = shutil.which("bramble-server") or ""
    command = [script] if script else [sys.executable, "-m", "bramble.services.server.main"]
    process = subprocess.Popen([*command, "--config", str(path)], stderr=subprocess.PIPE)
    try:

        async def talk() -> None:
            async with aiohttp.ClientSession() as session:
                api = Client(session, f"http://127.0.0.1:{port}")
                for _ in range(200):
                    try:
                        if (await api.call("GET", "/healthz", None))[0] == 200:
                            break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.05)
                assert (await api.register(MACS[0], 8471))[0] == 200
                assert (await api.post_cpu(MACS[0], 7.0, 8.0))[1] == {"accepted": 2}

        asyncio.run(asyncio.wait_for(talk(), 30))
        with contextlib.closing(sqlite3.connect(tmp_path / "server.db")) as db:
            # registration answered at once, its writes wait for the batch (or the shutdown)
            assert db.execute("SELECT COUNT(*) FROM nodes").fetchone() == (0,)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with contextlib.closing(sqlite3.connect(tmp_path / "server.db")) as db:
        assert db.execute("SELECT cpu_percent FROM samples ORDER BY ts").fetchall() == [
            (7.0,),
            (8.0,),
        ]
        assert db.execute("SELECT mac, name FROM nodes").fetchall() == [(MACS[0], "bank01-pi01")]
        assert db.execute("SELECT kind, mac FROM events").fetchall() == [("registered", MACS[0])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL on a unix socket in a tmp dir; its DSN."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    # not under pytest's tmp dir: its parents are 0700 root, and PostgreSQL runs as postgres
    base = Path(tempfile.mkdtemp(prefix="brt-pg-"))
    try:
        yield from _run_postgres(base, initdb, pg_ctl)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_postgres(base: Path, initdb: str, pg_ctl: str) -> Iterator[str]:
    data, run_dir = base / "data", base / "run"
    run_dir.mkdir()
    user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd  # noqa: PLC0415

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        shutil.chown(base, owner.pw_uid, owner.pw_gid)
        shutil.chown(run_dir, owner.pw_uid, owner.pw_gid)
        user = {"user": owner.pw_uid, "group": owner.pw_gid, "cwd": base}
    subprocess.run(
        [initdb, "-D", str(data), "-U", "bramble", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        **user,
    )
    options = f"-k {run_dir} -c listen_addresses='' -c fsync=off"
    started = subprocess.run(
        [
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(base / "log"),
            "start",
        ],
        capture_output=True,
        check=False,
        **user,
    )
    if started.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {started.stderr.decode()[-300:]}")
    try:
        yield f"host={run_dir} dbname=postgres user=bramble"
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            check=False,
            **user,
        )


def test_postgres_store_keeps_registry_jobs_and_history_across_restarts(
    tmp_path: Path, postgres: str
) -> None:
    agent = FakeAgent(MACS[0])

    async def first(server: Running, api: Client) -> None:
        try:
            await agent.start()
            await api.register(MACS[0], agent.port)
            await api.post_cpu(MACS[0], 3.0, 4.0)
            _, body = await api.call(
                "POST", "/api/v1/jobs", ADMIN, {"kind": "warble", "source": "1", "user": "op"}
            )

            async def done() -> bool:
                _, job = await api.call("GET", f"/api/v1/jobs/{body['id']}", ADMIN)
                return bool(job["state"] == "done")

            await eventually(done)
        finally:
            await agent.stop()

    async def second(server: Running, api: Client) -> None:
        _, nodes = await api.call("GET", "/api/v1/nodes", ADMIN)
        assert [n["name"] for n in nodes["nodes"]] == ["bank01-pi01"]
        _, node = await api.call("GET", f"/api/v1/nodes/{MACS[0]}?history=5", ADMIN)
        assert [s["cpu_percent"] for s in node["history"]] == [3.0, 4.0]
        _, job = await api.call("GET", "/api/v1/jobs/1", ADMIN)
        assert job["state"] == "done"
        assert job["output"] == f"ran on {MACS[0]}"

    config = settings(tmp_path, store={"sqlite": str(tmp_path / "unused.db")})
    run(config, first, postgres_dsn=postgres)
    run(config, second, postgres_dsn=postgres)
    assert not (tmp_path / "unused.db").exists()
