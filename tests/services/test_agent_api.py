"""The agent's own HTTP API, its samplers and identity, and the ``bramble-agent`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from test_agent import IDENTITY, TOKEN, CountingSampler

from bramble.services.agent.agent import Agent, AgentSettings
from bramble.services.agent.client import ServerClient
from bramble.services.agent.http import MAX_BODY_BYTES, JobLimits, make_app
from bramble.services.agent.identity import default_interface, read_serial
from bramble.services.agent.main import parser
from bramble.services.agent.sampler import (
    FakeCpuSampler,
    SystemSampler,
    read_thermal_zones,
    read_vcgencmd,
)

AGENT = [sys.executable, "-m", "bramble.services.agent.main"]

Call = Callable[..., Awaitable[tuple[int, Any]]]


def with_agent_api(scenario: Callable[[Call], Awaitable[None]], limits: JobLimits) -> None:
    """Serve the agent API on loopback and give ``scenario`` a ``call(method, path, ...)``."""

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            agent = Agent(
                IDENTITY, ServerClient(session, TOKEN), CountingSampler(), AgentSettings()
            )
            runner = web.AppRunner(make_app(agent, TOKEN, limits))
            await runner.setup()
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"

                async def call(
                    method: str, path: str, token: str | None = TOKEN, **kwargs: Any
                ) -> tuple[int, Any]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with session.request(
                        method, base + path, headers=headers, **kwargs
                    ) as response:
                        return response.status, await response.json()

                await asyncio.wait_for(scenario(call), 60)
            finally:
                await runner.cleanup()

    asyncio.run(main())


def job(source: str, **extra: Any) -> dict[str, Any]:
    return {"id": 7, "kind": "warble", "source": source, "user": "ada"} | extra


def test_health_and_jobs_need_the_agent_token():
    async def scenario(call: Call) -> None:
        assert (await call("GET", "/health", token=None))[0] == 401
        assert (await call("GET", "/health", token="wrong-token-0123456789"))[0] == 401  # noqa: S106
        assert (await call("POST", "/jobs", token=None, json=job('#pi{PRINT("x")}')))[0] == 401
        status, body = await call("GET", "/health")
        assert status == 200
        assert body["status"] == "ok"
        assert body["mac"] == IDENTITY.mac
        assert body["version"]
        assert body["uptime_s"] >= 0
        assert body["dropped"] == 0

    with_agent_api(scenario, JobLimits())


def test_a_warble_job_runs_in_the_isolated_child_and_nothing_else_does():
    async def scenario(call: Call) -> None:
        status, body = await call("POST", "/jobs", json=job("#pi{PRINT(2*ROUND(ACOS(0.0),3))}"))
        assert status == 200, body
        assert body == {"id": 7, "state": "done", "output": "3.142\n", "error": None,
                        "elapsed_ms": body["elapsed_ms"], "saved": {}}  # fmt: skip
        status, body = await call("POST", "/jobs", json=job("#pi{PRINT(1/0)}"))
        assert (status, body["state"]) == (200, "failed")
        assert "zero" in body["error"]
        for bad in (
            job("ls /", kind="shell"),
            job("x", user=""),
            job("x", id=True),
            job("x", limits={"wall_time": -1}),
            job("x", limits={"nproc": 5}),
            [1, 2],
        ):
            status, body = await call("POST", "/jobs", json=bad)
            assert status == 422, bad
            assert body["error"]
        status, _ = await call("POST", "/jobs", data=b"{not json")
        assert status == 400

    with_agent_api(scenario, JobLimits())


def test_jobs_are_bounded_by_the_agents_limits_and_a_request_can_only_lower_them():
    async def scenario(call: Call) -> None:
        started = time.monotonic()
        status, body = await call("POST", "/jobs", json=job("#pi{WHILE(1){SLEEP(50)}}"))
        assert status == 200
        assert body["state"] == "failed"
        assert "time limit" in body["error"]
        assert time.monotonic() - started < 10  # cpu_seconds=1 bounds the 30 s wall time
        loud = '#pi{FOR(i=0;i<500;i++){PRINT("0123456789")}}'
        status, body = await call("POST", "/jobs", json=job(loud))
        assert body["state"] == "failed"
        assert len(body["output"].encode()) <= 1024
        status, body = await call(
            "POST", "/jobs", json=job(loud, limits={"max_output_bytes": 10**9})
        )
        assert body["state"] == "failed"  # asking for more than the agent allows gets less

    with_agent_api(scenario, JobLimits(cpu_seconds=1, output_bytes=1024, wall_seconds=30))


def test_a_second_job_while_one_runs_is_refused_busy_and_oversized_bodies_get_413():
    async def scenario(call: Call) -> None:
        slow = asyncio.create_task(call("POST", "/jobs", json=job("#pi{SLEEP(1500) PRINT(1)}")))
        await asyncio.sleep(0.3)
        status, body = await call("POST", "/jobs", json=job('#pi{PRINT("x")}'))
        assert (status, body["error"]) == (503, "busy with another job")
        assert (await slow)[1]["output"] == "1\n"
        big = job("#pi{" + "PRINT(1) " * (MAX_BODY_BYTES // 8) + "}")
        status, body = await call("POST", "/jobs", json=big)
        assert status == 413
        assert "larger than" in body["error"]

    with_agent_api(scenario, JobLimits())


# --- samplers and identity ----------------------------------------------------------------


def test_system_sampler_reads_plausible_figures():
    sampler = SystemSampler(thermal_pattern="/nonexistent/*", vcgencmd="/nonexistent/vcgencmd")
    time.sleep(0.05)
    sample = sampler.sample()
    assert 0 <= sample.cpu_percent <= 100
    assert 0 < sample.mem_used_percent < 100
    assert sample.mem_available_bytes > 0
    assert 0 < sample.disk_used_percent <= 100
    assert sample.temp_c is None
    assert abs(sample.ts - time.time()) < 5


def test_temperature_from_thermal_zones_in_millidegrees(tmp_path):
    for zone, value in (("thermal_zone0", "47234\n"), ("thermal_zone1", "51000\n")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "temp").write_text(value)
    (tmp_path / "thermal_zone2").mkdir()
    (tmp_path / "thermal_zone2" / "temp").write_text("garbage")
    assert read_thermal_zones(str(tmp_path / "thermal_zone*" / "temp")) == 51.0
    assert read_thermal_zones(str(tmp_path / "none*")) is None


def fake_tool(tmp_path: Path, body: str) -> str:
    tool = tmp_path / "vcgencmd"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return str(tool)


def test_temperature_from_vcgencmd_when_present_bounded_in_time(tmp_path):
    assert read_vcgencmd(fake_tool(tmp_path, 'echo "temp=48.3\'C"')) == 48.3
    assert read_vcgencmd(fake_tool(tmp_path, "echo nonsense")) is None
    assert read_vcgencmd(fake_tool(tmp_path, "exit 1")) is None
    started = time.monotonic()
    assert read_vcgencmd(fake_tool(tmp_path, "exec sleep 5"), timeout=0.3) is None
    assert time.monotonic() - started < 3
    sampler = SystemSampler(thermal_pattern=str(tmp_path / "none*"),
                            vcgencmd=fake_tool(tmp_path, "echo \"temp=61.0'C\""))  # fmt: skip
    assert sampler.sample().temp_c == 61.0


def test_test_only_cpu_file_overrides_the_cpu_figure(tmp_path):
    cpu = tmp_path / "cpu"
    sampler = FakeCpuSampler(cpu, SystemSampler())
    assert sampler.sample().cpu_percent == 0.0  # no file yet
    cpu.write_text("85.5\n")
    assert sampler.sample().cpu_percent == 85.5
    cpu.write_text("250")
    assert sampler.sample().cpu_percent == 100.0


def test_serial_from_the_device_tree_or_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 000000004db34690\n")
    missing = tmp_path / "none"
    assert read_serial(cpuinfo, missing) == "4db34690"
    tree = tmp_path / "serial-number"
    tree.write_bytes(b"000000001a2b3c4d\x00")
    assert read_serial(cpuinfo, tree) == "1a2b3c4d"
    assert read_serial(missing, missing) is None


def test_default_interface_from_the_routing_table(tmp_path):
    routes = tmp_path / "route"
    header = "Iface\tDestination\tGateway\tFlags\n"
    routes.write_text(header + "eth0\t002A0A00\t00000000\t0001\n")
    assert default_interface(routes) is None  # a Pi on the cluster LAN: no default route
    routes.write_text(header + "eth0\t002A0A00\t00000000\t0001\nwlan0\t00000000\t01000A0A\t3\n")
    assert default_interface(routes) == "wlan0"


# --- the command ------------------------------------------------------------------------


def test_help_documents_every_option():
    text = parser().format_help()
    for action in parser()._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in text
    assert "TEST ONLY" in text


def write_config(folder: Path, port: int, extra: str = "") -> Path:
    secrets = folder / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "cluster.key").write_text("c" * 40)
    (secrets / "agent.token").write_text(TOKEN)
    for secret in secrets.iterdir():
        secret.chmod(0o600)
    config = folder / "agent.toml"
    config.write_text(
        f'[agent]\ncluster = "lab"\nlisten = "127.0.0.1"\nport = {port}\ninterface = "lo"\n'
        '[auth]\ncluster_key_file = "secrets/cluster.key"\n'
        'agent_token_file = "secrets/agent.token"\n' + extra
    )
    return config


def test_a_bad_config_stops_the_agent_with_the_key_named(tmp_path):
    config = write_config(tmp_path, 8471, "[telemetry]\ninterval = -5\n")
    result = subprocess.run([*AGENT, "--config", str(config)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "telemetry.interval" in result.stderr
    (tmp_path / "secrets" / "agent.token").chmod(0o644)
    config = write_config(tmp_path, 8471)
    (tmp_path / "secrets" / "agent.token").chmod(0o644)
    result = subprocess.run([*AGENT, "--config", str(config), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "auth.agent_token_file" in result.stderr
    (tmp_path / "secrets" / "agent.token").chmod(0o600)
    result = subprocess.run([*AGENT, "--config", str(config), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_running_agent_answers_health_stops_on_sigterm_and_stays_small(tmp_path):
    """The footprint figure of docs/agent.md: resident memory of a running agent."""
    port = free_port()
    config = write_config(tmp_path, port, f"[beacon]\nport = {free_port()}\n")
    process = subprocess.Popen([*AGENT, "--config", str(config)], stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        body = None
        deadline = time.monotonic() + 30
        while body is None and time.monotonic() < deadline and process.poll() is None:
            try:
                body = asyncio.run(_get_health(port))
            except (aiohttp.ClientError, OSError):
                time.sleep(0.2)
        assert body is not None, "the agent did not answer /health"
        assert body["mac"] == "00:00:00:00:00:00"  # lo's
        time.sleep(1.5)
        rss = psutil.Process(process.pid).memory_info().rss
        print(f"bramble-agent RSS: {rss / 2**20:.1f} MiB")
        assert rss < 64 * 2**20
        process.terminate()
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        log = process.stderr.read()
    assert "waiting for beacons" in log
    assert "stopped" in log


async def _get_health(port: int) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response,
    ):
        return json.loads(await response.text())


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch):
    for name in os.environ:
        if name.startswith("BRAMBLE_AGENT__"):
            monkeypatch.delenv(name)


def test_the_example_config_is_valid_and_shows_every_key():
    from bramble.services.config import AgentConfig, load_agent_config  # noqa: PLC0415

    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "agent.toml"
    config = load_agent_config(example, environ={})
    text = example.read_text(encoding="utf-8")
    for section, model in AgentConfig.model_fields.items():
        assert f"[{section}]" in text
        assert model.annotation is not None
        for key in model.annotation.model_fields:
            assert f"\n{key} = " in text, f"{section}.{key} missing from docs/examples/agent.toml"
    assert config.telemetry.buffer_samples == 720
