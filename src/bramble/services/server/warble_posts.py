"""Post sources: where Warbles posted in public come from (off unless ``[[warble.sources]]``).

A source is anything with a ``name``, an ``interval`` and ``fetch(session, since)`` returning
the posts newer than the post id ``since`` (the persisted cursor), oldest first. One kind is
built in: ``mastodon_tag``, polling a Mastodon-style public hashtag timeline
(``GET /api/v1/timelines/tag/<hashtag>?since_id=<id>&limit=<n>``, pages of at most 40).
"""

from __future__ import annotations

import asyncio
import html.parser
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from bramble.services.config import PostSourceSection

if TYPE_CHECKING:
    from bramble.services.server.warble import WarbleService

log = logging.getLogger("bramble.server.posts")
MAX_TEXT_CHARS = 100_000
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_AUTHOR = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*@[A-Za-z0-9.-]+$")
_AUTHOR_MAX = 64


@dataclass(frozen=True)
class Post:
    """One public post: its id at the source, its author (``user@host``), text and address."""

    id: str
    author: str
    text: str
    url: str | None = None


class PostSource(Protocol):
    """What the poller needs from a source of posts."""

    name: str
    interval: float

    async def fetch(self, session: aiohttp.ClientSession, since: str | None) -> list[Post]:
        """Posts newer than ``since`` (all recent ones when None), oldest first."""
        ...


class SourceError(Exception):
    """The source did not answer usefully this time; the cursor stays where it was."""


def id_order(post_id: str) -> tuple[int, str]:
    """Sort key of post ids: Mastodon ids are numbers as text, so shorter is older."""
    return len(post_id), post_id


class _Text(html.parser.HTMLParser):
    """The text of a post's HTML: line breaks for ``<br>`` and paragraph ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(content: str) -> str:
    """Plain text of post HTML (entities decoded; tags dropped)."""
    reader = _Text()
    reader.feed(content[:MAX_TEXT_CHARS])
    reader.close()
    return "".join(reader.parts).strip()


class MastodonTagSource:
    """Polls ``<url>/api/v1/timelines/tag/<hashtag>`` of a Mastodon-style server."""

    def __init__(self, config: PostSourceSection) -> None:
        self.name = config.name
        self.interval = config.interval
        self.config = config
        self.endpoint = f"{config.url.rstrip('/')}/api/v1/timelines/tag/{config.hashtag}"
        self.host = urlsplit(config.url).hostname or "unknown"

    async def fetch(self, session: aiohttp.ClientSession, since: str | None) -> list[Post]:
        """Newest page first, then older pages down to ``since`` (at most ``max_pages``).

        Without a cursor (the first poll) only the newest page is read.
        """
        cfg = self.config
        found: dict[str, Post] = {}
        older_than: str | None = None
        for _ in range(cfg.max_pages):
            params = {"limit": str(cfg.page_size)}
            if since is not None:
                params["since_id"] = since
            if older_than is not None:
                params["max_id"] = older_than
            page = await self._get(session, params)
            posts = [
                p for p in self._posts(page) if since is None or id_order(p.id) > id_order(since)
            ]
            found.update((p.id, p) for p in posts)
            if since is None or len(page) < cfg.page_size or not posts:
                break
            older_than = min((p.id for p in posts), key=id_order)
        else:
            log.warning(
                "%s: more than %d pages of new posts; older ones are skipped",
                self.name,
                cfg.max_pages,
            )
        return sorted(found.values(), key=lambda p: id_order(p.id))

    async def _get(self, session: aiohttp.ClientSession, params: dict[str, str]) -> list[Any]:
        cfg = self.config
        try:
            async with session.get(
                self.endpoint,
                params=params,
                timeout=aiohttp.ClientTimeout(total=cfg.timeout),
                headers={"Accept": "application/json"},
            ) as response:
                if response.status != 200:
                    raise SourceError(f"HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > cfg.max_response_bytes:
                        raise SourceError(f"answer larger than {cfg.max_response_bytes} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        try:
            page = json.loads(body)
        except ValueError:
            raise SourceError("the answer is not JSON") from None
        if not isinstance(page, list):
            raise SourceError("the answer is not a list of posts")
        return page

    def _posts(self, page: Iterable[Any]) -> list[Post]:
        posts = []
        for status in page:
            post = self._post(status)
            if post is not None:
                posts.append(post)
        return posts

    def _post(self, status: Any) -> Post | None:
        """A post from one status, or None when it is malformed, a boost or its author's
        name is not usable."""
        if not isinstance(status, dict) or status.get("reblog"):
            return None
        post_id, content, account = status.get("id"), status.get("content"), status.get("account")
        if not (isinstance(post_id, str) and _ID.match(post_id) and isinstance(content, str)):
            return None
        acct = account.get("acct") if isinstance(account, dict) else None
        if not isinstance(acct, str):
            return None
        author = acct if "@" in acct else f"{acct}@{self.host}"
        if len(author) > _AUTHOR_MAX or not _AUTHOR.match(author):
            log.info(
                "%s: post %s: author name %r is not usable; skipped", self.name, post_id, acct[:80]
            )
            return None
        url = status.get("url")
        return Post(post_id, author, html_text(content), url if isinstance(url, str) else None)


SOURCE_KINDS = {"mastodon_tag": MastodonTagSource}


def make_source(config: PostSourceSection) -> PostSource:
    """The source a ``[[warble.sources]]`` entry describes."""
    return SOURCE_KINDS[config.kind](config)


async def poll_once(service: WarbleService, source: PostSource) -> int:
    """Read new posts once, take in their Warbles, move the cursor; Warbles found."""
    server = service.server
    since = await server.db(server.store.source_cursor, source.name)
    posts = await source.fetch(server.session, since)
    found = 0
    for post in posts:
        found += await service.take_post(source.name, post)
        await server.db(server.store.set_source_cursor, source.name, post.id, time.time())
    if posts:
        log.info("%s: %d new posts, %d Warbles", source.name, len(posts), found)
    return found


async def poll_forever(service: WarbleService, source: PostSource) -> None:
    """``poll_once`` every ``interval`` seconds; failures are logged and retried."""
    while True:
        try:
            await poll_once(service, source)
        except SourceError as exc:
            log.warning("%s: cannot read posts: %s", source.name, exc)
        except Exception:
            log.exception("%s: polling failed", source.name)
        await asyncio.sleep(source.interval)
