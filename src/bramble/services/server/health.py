"""Concurrent health checks of the registered agents.

Where a sweep's time goes, and what keeps it short (docs/benchmarks.md, "Cluster services"):

- connections: a new TCP connection per check costs both ends more than the request itself;
  ``connector`` keeps one connection per agent alive from one sweep to the next;
- dead nodes: a hung agent costs the whole ``timeout``; checked last, it would add its
  timeout to the time the live checks took. ``sweep`` starts the suspects (nodes that missed
  their last check; in the first sweep after a server start, those not heard from since)
  first, so their timeouts run alongside the other checks;
- concurrency: bounded (``concurrency`` checks in flight), each check bounded by ``timeout``,
  so a sweep takes at most ``ceil(nodes / concurrency) * timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable

import aiohttp

KEEPALIVE_MARGIN = 5.0  # idle connections outlive the gap between two sweeps by this much
KEEPALIVE_MAX = 60.0  # below the agents' own keep-alive (aiohttp's server: 75 s)


def connector(concurrency: int, interval: float) -> aiohttp.TCPConnector:
    """The HTTP connector of the server's client session: ``concurrency`` connections in use
    at most, and idle ones kept until the next sweep (``interval`` s later) reuses them."""
    keepalive = min(interval + KEEPALIVE_MARGIN, KEEPALIVE_MAX)
    return aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=keepalive)


async def check_one(
    session: aiohttp.ClientSession, url: str, token: str, timeout: float, mac: str
) -> bool:
    """True when the agent answers ``GET /health`` with 200, its MAC and status ok in time."""
    return await _check(session, url, {"Authorization": f"Bearer {token}"}, timeout, mac)


async def _check(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: float, mac: str
) -> bool:
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                return False
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok" and body.get("mac") in (mac, None)


def order(targets: Iterable[tuple[str, str]], suspects: Collection[str]) -> list[tuple[str, str]]:
    """The targets with the suspects' first (otherwise in the given order)."""
    listed = list(targets)
    if not suspects:
        return listed
    return [t for t in listed if t[0] in suspects] + [t for t in listed if t[0] not in suspects]


async def sweep(
    session: aiohttp.ClientSession,
    targets: Iterable[tuple[str, str]],
    token: str,
    timeout: float,
    concurrency: int,
    *,
    suspects: Collection[str] = (),
) -> dict[str, bool]:
    """Check every (MAC, health URL) at once, at most ``concurrency`` in flight, the
    ``suspects`` (MACs) first; True for each agent that answered in time."""
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}

    async def bounded(mac: str, url: str) -> tuple[str, bool]:
        async with limit:
            return mac, await _check(session, url, headers, timeout, mac)

    results = await asyncio.gather(*(bounded(mac, url) for mac, url in order(targets, suspects)))
    return dict(results)
