"""Warble intake and results over real sockets on 127.0.0.1: submit, syntax errors at once,
auth, rate limits, the persistent queue waiting for an idle Pi, SAVE/LOAD kept by the server,
and the leaderboard. Fake agents run the real interpreter in process (fast) and answer the
user's values after the run, as the agent does once it takes ``saved`` (see docs/warble.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import test_server
from aiohttp import web
from test_server import ADMIN, AGENT, MACS, Client, FakeAgent, Running, eventually, run, settings

from bramble.services.server.warble import RateLimiter
from bramble.services.server.warble_score import pi_decimals, pi_digits
from bramble.warble import MemoryStore
from bramble.warble import run as run_warble

SUBMIT = "submit-token-0123456789"
postgres = test_server.postgres  # the fixture: a throw-away PostgreSQL
BBP_SHORT = "#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6)}"


@dataclass
class WarbleAgent(FakeAgent):
    """An agent that runs Warbles with the values the server sends (``saved``)."""

    returns_values: bool = True

    async def _job(self, request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {AGENT}"
        body = await request.json()
        self.jobs.append(body)
        store = MemoryStore({body["user"]: body.get("saved", {})})
        result = run_warble(body["source"], user=body["user"], store=store)
        answer = {
            "id": body["id"],
            "state": "done" if result.ok else "failed",
            "output": result.output,
            "error": None if result.error is None else str(result.error),
            "elapsed_ms": 1,
        }
        if self.returns_values:
            answer["saved"] = store.snapshot(body["user"])
        return web.json_response(answer)


async def with_agent(api: Client, agent: WarbleAgent, cpu: float = 5.0) -> None:
    await agent.start()
    await api.register(agent.mac, agent.port)
    await api.post_cpu(agent.mac, cpu)


async def submit(
    api: Client, source: str, user: str = "ann", token: str | None = None
) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/warbles", token, {"user": user, "source": source})


async def finished(api: Client, warble_id: int, seconds: float = 10.0) -> dict[str, Any]:
    """The Warble once it has run and been scored."""
    found: dict[str, Any] = {}

    async def done() -> bool:
        _, body = await api.call("GET", f"/api/v1/warbles/{warble_id}", None)
        found.update(body)
        return body["state"] in ("done", "failed") and body["digits"] is not None

    await eventually(done, seconds)
    return found


def open_settings(tmp: Path, **warble: Any) -> dict[str, Any]:
    return settings(tmp, warble={"anonymous": True, "rate_burst": 100, **warble})


# ---------------------------------------------------------------------------------------


def test_a_warble_runs_on_an_idle_pi_and_its_result_is_listed(tmp_path: Path) -> None:
    busy, idle = WarbleAgent(MACS[0]), WarbleAgent(MACS[1])

    async def scenario(server: Running, api: Client) -> None:
        try:
            await with_agent(api, busy, cpu=80.0)
            await with_agent(api, idle, cpu=10.0)
            status, body = await submit(api, "#pi{PRINT(“hello cluster”)}")
            assert (status, body["state"]) == (200, "queued")
            warble = await finished(api, body["id"])
            assert warble["state"] == "done"
            assert warble["output"] == "hello cluster\n"
            assert warble["node"] == "bank01-pi02"
            assert (warble["user"], warble["origin"], warble["digits"]) == ("ann", "api", 0)
            assert "address" not in warble
            assert busy.jobs == []
            _, bare = await submit(api, "PRINT(2*ROUND(ACOS(0.0),3))", user="bob")
            assert (await finished(api, bare["id"]))["output"] == "3.142\n"
            _, listing = await api.call("GET", "/api/v1/warbles", None)
            assert [w["id"] for w in listing["warbles"]] == [bare["id"], body["id"]]
            _, older = await api.call("GET", f"/api/v1/warbles?before={bare['id']}", None)
            assert [w["id"] for w in older["warbles"]] == [body["id"]]
            assert (await api.call("GET", "/api/v1/warbles/999", None))[0] == 404
            assert (await api.call("GET", "/api/v1/warbles/x1", None))[0] == 422
        finally:
            await busy.stop()
            await idle.stop()

    run(open_settings(tmp_path), scenario)


def test_bad_warbles_are_answered_at_once_and_never_queued(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        status, body = await submit(api, BBP_SHORT)
        assert status == 422
        assert body["kind"] == "syntax"
        assert (body["line"], body["column"]) == (1, len(BBP_SHORT))
        assert body["error"].startswith(f"line 1, column {len(BBP_SHORT)}: ")
        assert "Traceback" not in body["error"]
        status, _ = await submit(api, BBP_SHORT[:-1] + ")}")
        assert status == 200
        for user in ("bad name", "eve@mastodon.example", "-x", "a" * 65, ""):
            status, body = await submit(api, "PRINT(1)", user=user)
            assert status == 422, user
            assert "user" in body["error"]
        status, body = await submit(api, "PRINT(1)" * 20)
        assert status == 413
        assert "warble.max_source_chars" in body["error"]
        status, _ = await api.call("POST", "/api/v1/warbles", None, {"user": "ann"})
        assert status == 422
        _, listing = await api.call("GET", "/api/v1/warbles", None)
        assert len(listing["warbles"]) == 1

    run(open_settings(tmp_path, max_source_chars=100), scenario)


def test_who_may_submit_and_read(tmp_path: Path) -> None:
    async def closed(server: Running, api: Client) -> None:
        assert (await submit(api, "PRINT(1)"))[0] == 401
        wrong = "wrong-token-0000000"
        assert (await submit(api, "PRINT(1)", token=wrong))[0] == 401
        assert (await submit(api, "PRINT(1)", token=AGENT))[0] == 403
        assert (await submit(api, "PRINT(1)", token=SUBMIT))[0] == 200
        assert (await submit(api, "PRINT(1)", token=ADMIN))[0] == 200
        assert (await api.call("GET", "/api/v1/leaderboard", None))[0] == 200
        assert (await api.call("GET", "/api/v1/warbles", None))[0] == 200
        assert (await api.call("GET", "/api/v1/jobs/1", None))[0] == 401

    async def private(server: Running, api: Client) -> None:
        assert (await api.call("GET", "/api/v1/warbles", None))[0] == 401
        assert (await api.call("GET", "/api/v1/leaderboard", None))[0] == 401
        assert (await api.call("GET", "/api/v1/warbles", ADMIN))[0] == 200
        assert (await submit(api, "PRINT(1)", token=SUBMIT))[0] == 401  # no submit token set

    token = tmp_path / "submit.token"
    token.write_text(SUBMIT + "\n", encoding="utf-8")
    token.chmod(0o600)
    run(
        settings(tmp_path, warble={"submit_token_file": str(token), "rate_burst": 100}),
        closed,
        submit_token=SUBMIT,
    )
    other = tmp_path / "private"
    other.mkdir()
    run(settings(other, warble={"public_results": False}), private)


def test_rate_limits_per_user_and_per_address(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        assert (await submit(api, "PRINT(1)", user="ann"))[0] == 200
        assert (await submit(api, "PRINT(1)", user="ann"))[0] == 200
        async with api.session.post(
            api.base + "/api/v1/warbles", json={"user": "ann", "source": "PRINT(1)"}
        ) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert "per user" in (await response.json())["error"]
        # another name from the same address: the address bucket is empty too
        assert (await submit(api, "PRINT(1)", user="bob"))[0] == 429

    run(settings(tmp_path, warble={"anonymous": True, "rate_burst": 2}), scenario)


def test_rate_limiter_refills_and_stays_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(6.0, 2, clock=lambda: now[0], max_keys=3)
    assert limiter.take("a") == 0
    assert limiter.take("a") == 0
    assert limiter.take("a") == 10.0  # 6 a minute: one token every 10 s
    now[0] = 10.0
    assert limiter.take("a") == 0
    assert limiter.take("a", "b") > 0  # refused: nothing taken from b
    assert limiter.take("b") == 0
    assert limiter.take("b") == 0
    for key in "cdef":
        limiter.take(key)
    assert len(limiter._buckets) == 3


def test_save_and_load_are_kept_per_user_by_the_server(tmp_path: Path) -> None:
    agent = WarbleAgent(MACS[0])
    counter = 'x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)'

    async def first(server: Running, api: Client) -> None:
        try:
            await with_agent(api, agent)
            _, body = await submit(api, '#pi{SAVE("pi",1)}')
            assert (await finished(api, body["id"]))["output"] == ""
            _, body = await submit(api, f"#pi{{{counter}}}")
            assert (await finished(api, body["id"]))["output"] == "2\n"
            _, body = await submit(api, counter, user="bob")
            assert (await finished(api, body["id"]))["output"] == "1\n"
            assert set(agent.jobs[1]["saved"]) == {"pi"}
            assert agent.jobs[2]["saved"] == {}
        finally:
            await agent.stop()

    async def after_restart(server: Running, api: Client) -> None:
        old = WarbleAgent(MACS[1], returns_values=False)
        try:
            await with_agent(api, old)
            _, body = await submit(api, counter)
            assert (await finished(api, body["id"]))["output"] == "3\n"
            _, body = await submit(api, counter)  # the old agent kept nothing: still 3
            assert (await finished(api, body["id"]))["output"] == "3\n"
        finally:
            await old.stop()

    config = open_settings(tmp_path)
    run(config, first)
    run(config, after_restart)


def test_one_users_warbles_run_one_at_a_time(tmp_path: Path) -> None:
    agents = [WarbleAgent(mac) for mac in MACS[:3]]
    counter = 'x=LOAD("n");x++;SAVE("n",x);PRINT(x)'

    async def scenario(server: Running, api: Client) -> None:
        try:
            for agent in agents:
                await with_agent(api, agent)
            ids = [(await submit(api, counter))[1]["id"] for _ in range(6)]
            outputs = sorted([(await finished(api, i))["output"] for i in ids])
            assert outputs == sorted(f"{n}\n" for n in range(1, 7))
        finally:
            for agent in agents:
                await agent.stop()

    run(open_settings(tmp_path), scenario)


def test_the_queue_waits_for_an_idle_pi_and_survives_a_restart(tmp_path: Path) -> None:
    agent = WarbleAgent(MACS[0])
    submitted: list[int] = []

    async def while_busy(server: Running, api: Client) -> None:
        try:
            await with_agent(api, agent, cpu=95.0)
            _, body = await submit(api, '#pi{PRINT("late")}')
            submitted.append(body["id"])
            await asyncio.sleep(1.0)  # three times dispatch.timeout: a plain job failed by now
            _, warble = await api.call("GET", f"/api/v1/warbles/{body['id']}", None)
            assert warble["state"] in ("queued", "waiting", "running")
            assert agent.jobs == []
        finally:
            await agent.stop()

    async def idle_again(server: Running, api: Client) -> None:
        try:
            await with_agent(api, agent, cpu=5.0)
            warble = await finished(api, submitted[0])
            assert (warble["state"], warble["output"]) == ("done", "late\n")
        finally:
            await agent.stop()

    config = open_settings(tmp_path, max_queue_age=60.0)
    config["dispatch"]["timeout"] = 0.3
    run(config, while_busy)
    run(config, idle_again)


def test_a_warble_waiting_too_long_fails_with_the_reason(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        _, body = await submit(api, "PRINT(1)")
        warble = await finished(api, body["id"])
        assert warble["state"] == "failed"
        assert "CPU under 30%" in warble["error"]
        assert "warble.max_queue_age" in warble["error"]

    run(open_settings(tmp_path, max_queue_age=0.5), scenario)


def test_the_leaderboard_ranks_users_by_their_best_digits_of_pi(tmp_path: Path) -> None:
    agent = WarbleAgent(MACS[0])
    entries = [
        ("ann", 'PRINT("pi is 3.14159")'),  # 6
        ("bob", 'PRINT("3.14159 or so")'),  # 6, earlier than carol
        ("ann", 'PRINT("3.1415926535")'),  # 11: ann's best
        ("carol", 'PRINT("3.14159")'),  # 6
        ("dave", "PRINT(2*ROUND(ACOS(0.0),3))"),  # 3.142: 3
        ("eve", 'PRINT("2.71828")'),  # 0: not on the board
        (
            "fay",
            "SETPRECISION(60);s=0;FOR(k=0;k<50;k++){"
            "s=s+1/POW(16,k)*(4/(8*k+1)-2/(8*k+4)-1/(8*k+5)-1/(8*k+6))}PRINT(s)",
        ),
    ]

    async def scenario(server: Running, api: Client) -> None:
        try:
            await with_agent(api, agent)
            for user, source in entries:
                _, body = await submit(api, source, user=user)
                await finished(api, body["id"])
            status, board = await api.call("GET", "/api/v1/leaderboard", None)
            assert status == 200
            table = [(e["rank"], e["user"], e["digits"]) for e in board["leaderboard"]]
            fay = table[0]
            assert fay[1] == "fay"
            assert fay[2] >= 55
            assert table[1:] == [(2, "ann", 11), (3, "bob", 6), (4, "carol", 6), (5, "dave", 3)]
            assert board["reference_digits"] == 10000
            _, top = await api.call("GET", "/api/v1/leaderboard?limit=2", None)
            assert [e["user"] for e in top["leaderboard"]] == ["fay", "ann"]
        finally:
            await agent.stop()

    run(open_settings(tmp_path), scenario)


def test_pi_digits_counts_the_best_pi_like_number() -> None:
    assert pi_digits("3.142\n") == 3
    assert pi_digits("3.14159265358979") == 15
    assert pi_digits("x 3.14 13.14159265 3.1415926") == 8  # 13.14... is not pi-like
    assert pi_digits("3\n-3.14159\n") == 0
    assert pi_digits("3.14\n15926") == 3  # numbers split over lines do not add up
    assert pi_digits("no pi here") == 0
    assert pi_digits("3." + "1415926535" * 3) == 11
    assert pi_digits("3." + pi_decimals(100), reference_digits=12) == 12


def test_openapi_documents_the_warble_routes(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        _, doc = await api.call("GET", "/api/v1/openapi.json", None)
        paths = doc["paths"]
        for path in ("/api/v1/warbles", "/api/v1/warbles/{id}", "/api/v1/leaderboard"):
            assert "get" in paths[path]
        post = paths["/api/v1/warbles"]["post"]
        assert "warble.anonymous" in post["description"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert set(doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]) == {
            "user",
            "source",
        }

    run(settings(tmp_path), scenario)


def test_postgres_keeps_warbles_values_and_the_leaderboard(tmp_path: Path, postgres: str) -> None:
    agent = WarbleAgent(MACS[0])
    counter = 'x=LOAD("n");x++;SAVE("n",x);PRINT(3.14+x/1000)'

    async def once(server: Running, api: Client) -> None:
        try:
            await with_agent(api, agent)
            _, body = await submit(api, counter)
            await finished(api, body["id"])
        finally:
            await agent.stop()

    async def check(server: Running, api: Client) -> None:
        _, listing = await api.call("GET", "/api/v1/warbles", None)
        assert [w["output"] for w in listing["warbles"]] == ["3.142\n", "3.141\n"]
        _, board = await api.call("GET", "/api/v1/leaderboard", None)
        assert [(e["user"], e["digits"], e["warble"]) for e in board["leaderboard"]] == [
            ("ann", 4, listing["warbles"][1]["id"])
        ]

    config = open_settings(tmp_path)
    for scenario in (once, once, check):
        run(config, scenario, postgres_dsn=postgres)
