"""Post sources against a fake Mastodon-style hashtag timeline on 127.0.0.1: Warbles found in
posts are taken in under the author's name, posts are never taken twice (persisted cursor and
post ids), pages are bounded, and a source that fails, hangs or floods is survived.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_server import Client, Running, eventually, run, settings

from bramble.services.config import PostSourceSection
from bramble.services.server.warble_posts import MastodonTagSource, SourceError, html_text


def status(number: int, content: str, acct: str = "ann", **extra: Any) -> dict[str, Any]:
    return {
        "id": str(number),
        "content": content,
        "account": {"acct": acct},
        "url": f"https://social.example/@{acct}/{number}",
        **extra,
    }


@dataclass
class FakeTimeline:
    """``GET /api/v1/timelines/tag/pi`` with Mastodon's since_id / max_id / limit paging."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    ignore_since: bool = False
    status_code: int = 200
    delay: float = 0.0
    padding: int = 0

    async def _timeline(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status_code != 200:
            return web.json_response({"error": "down"}, status=self.status_code)
        limit = min(int(query.get("limit", 20)), 40)
        chosen = sorted(self.statuses, key=lambda s: int(s["id"]), reverse=True)
        if "since_id" in query and not self.ignore_since:
            chosen = [s for s in chosen if int(s["id"]) > int(query["since_id"])]
        if "max_id" in query:
            chosen = [s for s in chosen if int(s["id"]) < int(query["max_id"])]
        page: list[Any] = chosen[:limit]
        if self.padding:
            page = [*page, {"padding": "x" * self.padding}]
        return web.json_response(page)


def source_settings(tmp: Path, url: str, **source: Any) -> dict[str, Any]:
    entry = {"name": "social", "url": url, "hashtag": "pi", "interval": 3600.0, **source}
    return settings(tmp, warble={"rate_burst": 100, "sources": [entry]})


async def warbles(api: Client) -> list[dict[str, Any]]:
    _, body = await api.call("GET", "/api/v1/warbles", None)
    return list(reversed(body["warbles"]))


async def cursor(server: Running) -> str | None:
    core = server.server
    return await core.db(core.store.source_cursor, "social")


async def poll(server: Running) -> int:
    from bramble.services.server.warble_posts import poll_once  # noqa: PLC0415

    core = server.server
    return await poll_once(core.warble, core.warble.sources[0])


def test_warbles_in_posts_are_taken_in_once_under_the_authors_name(tmp_path: Path) -> None:
    fake = FakeTimeline(
        [
            status(101, "<p>no Warble here</p>"),
            status(
                102,
                '<p><a href="https://social.example/tags/pi" class="hashtag">#<span>pi</span></a>'
                "{PRINT(“hello cluster”)} and #pi{PRINT(2*ROUND(ACOS(0.0),3))}</p>",
                acct="bob@other.example",
            ),
            status(103, "<p>#pi{PRINT(1}</p>", acct="carol"),
            status(104, "<p>#pi{PRINT(9)}</p>", reblog={"id": "1"}),
        ]
    )

    async def first(server: Running, api: Client) -> None:
        async def taken_in() -> bool:
            return len(await warbles(api)) == 3 and await cursor(server) == "103"

        await eventually(taken_in)
        taken = await warbles(api)
        assert [(w["user"], w["source"], w["post_id"]) for w in taken] == [
            ("bob@other.example", "#pi{PRINT(“hello cluster”)}", "102"),
            ("bob@other.example", "#pi{PRINT(2*ROUND(ACOS(0.0),3))}", "102"),
            ("carol@127.0.0.1", "#pi{PRINT(1}", "103"),
        ]
        assert {w["origin"] for w in taken} == {"post:social"}
        assert taken[0]["post_url"] == "https://social.example/@bob@other.example/102"
        assert taken[2]["state"] == "failed"
        assert taken[2]["error"].startswith("line 1, column 12: ")
        assert taken[0]["state"] in ("queued", "waiting", "running")
        assert fake.requests[0] == {"limit": "40"}
        # the cursor fell behind (a crash before it was stored): no post is taken twice
        core = server.server
        await core.db(core.store.set_source_cursor, "social", "101", 0.0)
        assert await poll(server) == 0
        assert fake.requests[-1]["since_id"] == "101"
        # a server that ignores since_id: old posts are dropped by id
        fake.ignore_since = True
        assert await poll(server) == 0
        fake.ignore_since = False
        fake.statuses.append(status(105, "<p>#PI {PRINT(5)}</p>", acct="dan"))
        assert await poll(server) == 1
        assert fake.requests[-1]["since_id"] == "103"
        assert len(await warbles(api)) == 4

    async def after_restart(server: Running, api: Client) -> None:
        async def polled() -> bool:
            return len(fake.requests) >= 1

        await eventually(polled)
        assert fake.requests[-1]["since_id"] == "105"
        assert len(await warbles(api)) == 4

    for scenario in (first, after_restart):
        fake.requests.clear()
        run_with_fake(fake, tmp_path, scenario)


def run_with_fake(fake: FakeTimeline, tmp_path: Path, scenario: Any, **source: Any) -> None:
    """Serve ``fake`` on a socket that listens before the server starts (its first poll
    waits in the backlog), run ``scenario``, stop both."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]

    async def with_timeline(server: Running, api: Client) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/timelines/tag/pi", fake._timeline)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            await scenario(server, api)
        finally:
            await runner.cleanup()

    try:
        run(source_settings(tmp_path, f"http://127.0.0.1:{port}", **source), with_timeline)
    finally:
        sock.close()


def test_new_posts_are_read_page_by_page_down_to_the_cursor(tmp_path: Path) -> None:
    fake = FakeTimeline([status(1, "<p>#pi{PRINT(0)}</p>")])

    async def scenario(server: Running, api: Client) -> None:
        async def first_read() -> bool:
            return await cursor(server) == "1"

        await eventually(first_read)
        fake.statuses += [status(n, f"<p>#pi{{PRINT({n})}}</p>", acct=f"u{n}") for n in range(2, 9)]
        assert await poll(server) == 7
        pages = fake.requests[1:]
        assert [p.get("max_id") for p in pages] == [None, "6", "3"]
        assert all(p["since_id"] == "1" and p["limit"] == "3" for p in pages)
        assert [w["post_id"] for w in await warbles(api)] == [str(n) for n in range(1, 9)]
        # more new posts than max_pages pages: the newest are read, the rest skipped
        fake.statuses += [status(n, f"<p>#pi{{PRINT({n})}}</p>", acct="v") for n in range(9, 19)]
        fake.requests.clear()
        await poll(server)
        assert len(fake.requests) == 3
        assert await cursor(server) == "18"

    run_with_fake(fake, tmp_path, scenario, page_size=3, max_pages=3)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status_code": 503}, "HTTP 503"),
        ({"delay": 2.0}, "TimeoutError"),
        ({"padding": 5000}, "larger than 2048 bytes"),
    ],
)
def test_a_failing_source_moves_no_cursor(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    fake = FakeTimeline([status(1, "<p>#pi{PRINT(0)}</p>")])

    async def scenario(server: Running, api: Client) -> None:
        async def polled() -> bool:
            return len(fake.requests) >= 1

        await eventually(polled)
        for key, value in change.items():
            setattr(fake, key, value)
        await asyncio.sleep(0.1)
        with pytest.raises(SourceError, match=reason):
            await poll(server)
        assert await cursor(server) in (None, "1")

    run_with_fake(fake, tmp_path, scenario, timeout=0.5, max_response_bytes=2048)


def test_sources_are_off_by_default(tmp_path: Path) -> None:
    async def scenario(server: Running, api: Client) -> None:
        assert server.server.warble.sources == []
        assert not any(t.get_name().startswith("posts-") for t in asyncio.all_tasks())

    run(settings(tmp_path), scenario)


def test_post_html_becomes_text_and_local_authors_get_the_host() -> None:
    text = html_text("<p>a &amp; b<br>#<span>pi</span>{PRINT(&quot;x&quot;)}</p><p>next</p>")
    assert text == 'a & b\n#pi{PRINT("x")}\nnext'
    source = MastodonTagSource(
        PostSourceSection(name="s", url="https://social.example", hashtag="pi")
    )
    posts = source._posts(
        [
            status(1, "x", acct="ann"),
            status(2, "x", acct="bob@far.example"),
            status(3, "x", acct="bad name"),
            status(4, "x", acct="a" * 70),
            {"id": 5},
            "junk",
            status(6, "x", reblog={"id": "2"}),
        ]
    )
    assert [(p.id, p.author) for p in posts] == [
        ("1", "ann@social.example"),
        ("2", "bob@far.example"),
    ]


def test_a_source_that_is_unreachable_raises_source_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = MastodonTagSource(PostSourceSection(name="s", url=f"http://127.0.0.1:{port}"))

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(SourceError, match="ClientConnectorError"):
                await source.fetch(session, None)

    asyncio.run(go())
