"""SAVE/LOAD end to end: bramble-server and a real ``bramble-agent`` process on 127.0.0.1.

The agent hears the server's beacon, registers (its MAC is lo's, put in the model), reports a
low CPU figure (``--test-cpu-file``) and runs each Warble in its isolated child with the
user's values the server sends; the server keeps what the run saved (issue 6's example).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_server import AGENT, KEY, Client, Running, eventually, run, write_secret
from test_warble_intake import finished, open_settings, submit

LO_MAC = "00:00:00:00:00:00"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def agent_config(folder: Path, port: int, beacon_port: int) -> Path:
    """An agent config for the server of ``open_settings`` (same cluster, key and token)."""
    config = folder / "agent.toml"
    config.write_text(
        f'[agent]\ncluster = "lab"\nlisten = "127.0.0.1"\nport = {port}\ninterface = "lo"\n'
        f"[beacon]\nport = {beacon_port}\n"
        f'[auth]\ncluster_key_file = "{write_secret(folder / "agent-cluster.key", KEY)}"\n'
        f'agent_token_file = "{write_secret(folder / "agent-agent.token", AGENT)}"\n'
        "[jobs]\nwall_seconds = 20\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def agent_process(tmp_path: Path) -> Any:
    """A running bramble-agent (killed at the end, whatever happens): (beacon port, log)."""
    beacon_port = free_port(socket.SOCK_DGRAM)
    cpu = tmp_path / "cpu"
    cpu.write_text("5\n", encoding="utf-8")
    log = (tmp_path / "agent.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bramble.services.agent.main",
            "--config",
            str(agent_config(tmp_path, free_port(), beacon_port)),
            "--test-cpu-file",
            str(cpu),
        ],
        stderr=log,
    )
    try:
        yield beacon_port, tmp_path / "agent.log"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_save_then_load_in_a_later_warble_per_user_through_a_real_agent(tmp_path, agent_process):
    beacon_port, agent_log = agent_process
    config = open_settings(tmp_path)
    config["beacon"].update({"port": beacon_port, "broadcast": "127.0.0.1"})
    config["telemetry"]["interval"] = 0.5
    config["dispatch"]["timeout"] = 20.0  # the child starts Python and imports the interpreter
    (tmp_path / "nodes.json").write_text(
        f'[{{"name": "bank01-pi01", "bank": 1, "slot": 1, "mac": "{LO_MAC}",'
        ' "ip": "127.0.0.1", "serial": "00000001"}]',
        encoding="utf-8",
    )

    async def scenario(server: Running, api: Client) -> None:
        async def idle_and_registered() -> bool:
            node = server.server.nodes.get(LO_MAC)
            return node is not None and node.latest is not None and node.latest.cpu_percent < 30

        await eventually(idle_and_registered, 30)
        assert server.server.nodes[LO_MAC].record.trusted

        async def run_warble(user: str, source: str) -> dict[str, Any]:
            status, body = await submit(api, source, user=user)
            assert status == 200, body
            return await finished(api, body["id"], 30)

        first = await run_warble("ann", '#pi{SAVE("pi",1)}')
        assert first["state"] == "done", first
        second = await run_warble("ann", '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}')
        assert (second["state"], second["output"].strip()) == ("done", "2"), second
        third = await run_warble("ann", '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}')
        assert third["output"].strip() == "3", third
        other = await run_warble("bob", '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}')
        assert other["output"].strip() == "1", other  # bob's values are his own
        kept = await server.server.db(server.server.store.user_values, "ann")
        assert list(kept) == ["pi"]
        assert kept != await server.server.db(server.server.store.user_values, "bob")

    started = time.monotonic()
    try:
        run(config, scenario)
    finally:
        print(agent_log.read_text(encoding="utf-8")[-3000:])
    assert time.monotonic() - started < 60


def test_a_job_without_saved_still_runs_and_answers_the_values_it_saved():
    """An older server sends no ``saved``: the run starts empty and the answer says what it
    saved; a malformed ``saved`` gets 422 before anything runs."""
    from test_agent_api import job, with_agent_api  # noqa: PLC0415

    from bramble.services.agent.http import JobLimits  # noqa: PLC0415

    count = '#pi{x=LOAD("k")+1;SAVE("k",x);PRINT(x)}'

    async def scenario(call: Any) -> None:
        status, body = await call("POST", "/jobs", json=job(count))
        assert (status, body["state"], body["output"].strip()) == (200, "done", "1"), body
        assert list(body["saved"]) == ["k"]
        given = {"k": body["saved"]["k"], "other": "kept as it is"}
        status, body = await call("POST", "/jobs", json=job(count, saved=given))
        assert (status, body["output"].strip()) == (200, "2"), body
        assert body["saved"]["other"] == "kept as it is"
        assert body["saved"]["k"] != given["k"]
        for bad in ([1], {"k": 1}, {f"k{i}": "1" for i in range(101)}):
            status, body = await call("POST", "/jobs", json=job('#pi{PRINT("x")}', saved=bad))
            assert status == 422, (bad, body)
            assert "saved" in body["error"]

    with_agent_api(scenario, JobLimits())


def test_a_body_with_a_hundred_full_values_is_accepted():
    from test_agent_api import job, with_agent_api  # noqa: PLC0415

    from bramble.services.agent.http import JobLimits  # noqa: PLC0415

    saved = {f"k{i:03d}": "9" * 16_000 for i in range(100)}

    async def scenario(call: Any) -> None:
        status, body = await call("POST", "/jobs", json=job('#pi{PRINT("x")}', saved=saved))
        assert status == 200, body
        assert body["saved"] == saved

    with_agent_api(scenario, JobLimits())
