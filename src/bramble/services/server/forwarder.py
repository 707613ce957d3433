"""Optional forwarding of telemetry to an ORDS-style REST endpoint, with a bounded queue.

Samples go out as ``POST URL {"items": [{"mac", "node", "ts", ...}, ...]}`` with the
forwarder's bearer token. When the endpoint fails, batches stay queued and are retried with a
growing delay (up to a minute); when the queue is full the oldest samples are dropped and
counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiohttp

log = logging.getLogger("bramble.server.forwarder")


class Forwarder:
    """Queue of telemetry items and the loop that posts them."""

    def __init__(
        self,
        url: str,
        token: str | None,
        queue_max: int,
        *,
        batch_max: int = 500,
        timeout: float = 10.0,
        max_delay: float = 60.0,
    ) -> None:
        self.url = url
        self.token = token
        self.batch_max = batch_max
        self.timeout = timeout
        self.max_delay = max_delay
        self._queue: deque[dict[str, Any]] = deque(maxlen=queue_max)
        self._ready = asyncio.Event()
        self.sent = 0
        self.dropped = 0
        self.failures = 0

    def add(self, items: Sequence[dict[str, Any]]) -> None:
        """Queue items, dropping the oldest beyond ``queue_max``."""
        maxlen = self._queue.maxlen or 0
        overflow = len(self._queue) + len(items) - maxlen
        if overflow > 0:
            self.dropped += overflow
        self._queue.extend(items)
        self._ready.set()

    @property
    def queued(self) -> int:
        """Items waiting to be sent."""
        return len(self._queue)

    async def post_once(self, session: aiohttp.ClientSession) -> bool:
        """Send one batch; False (batch kept) when the endpoint failed."""
        batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
        if not batch:
            return True
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with session.post(
                self.url,
                json={"items": batch},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.sent += len(batch)
            return True
        self.failures += 1
        overflow = len(self._queue) + len(batch) - (self._queue.maxlen or 0)
        if overflow > 0:
            self.dropped += overflow  # extendleft on a full deque drops the newest
        self._queue.extendleft(reversed(batch))
        return False

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Post queued batches forever, backing off while the endpoint fails."""
        delay = 1.0
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
            if await self.post_once(session):
                delay = 1.0
                continue
            log.warning(
                "forwarder: %s failed; %d items queued, retry in %.0f s",
                self.url,
                len(self._queue),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
