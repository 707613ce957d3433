"""Concurrent health checks of the registered agents."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp


async def check_one(
    session: aiohttp.ClientSession, url: str, token: str, timeout: float, mac: str
) -> bool:
    """True when the agent answers ``GET /health`` with 200, its MAC and status ok in time."""
    try:
        async with session.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 200:
                return False
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok" and body.get("mac") in (mac, None)


async def sweep(
    session: aiohttp.ClientSession,
    targets: Iterable[tuple[str, str]],
    token: str,
    timeout: float,
    concurrency: int,
) -> dict[str, bool]:
    """Check every (MAC, health URL) at once, at most ``concurrency`` in flight."""
    limit = asyncio.Semaphore(concurrency)

    async def bounded(mac: str, url: str) -> tuple[str, bool]:
        async with limit:
            return mac, await check_one(session, url, token, timeout, mac)

    results = await asyncio.gather(*(bounded(mac, url) for mac, url in targets))
    return dict(results)
