"""The dashboard's live stream: server-sent events to a bounded number of clients.

One task per server (running only while someone listens) compares the cluster snapshot every
``TICK`` seconds with the previous one and sends what changed:

- ``cells``: the map cells whose state or metrics changed (``{"cells": [...]}``);
- ``summary``: cluster totals and per-bank rows, when they changed;
- ``log``: new events (boots, failures, power requests), oldest first;
- ``resync``: the client fell behind (its queue of ``QUEUE_MAX`` messages filled up) and must
  fetch ``/api/v1/cluster`` again; queued messages were dropped.

A comment line (``: ping``) every ``HEARTBEAT`` seconds keeps proxies from closing the stream.
At most ``MAX_CLIENTS`` listen at once; one more gets 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bramble.services.server.core import ClusterServer

log = logging.getLogger("bramble.server.dashboard")

TICK = 0.5
HEARTBEAT = 15.0
QUEUE_MAX = 256
MAX_CLIENTS = 64
EVENTS_PER_TICK = 100
Snapshot = Callable[[], dict[str, Any]]


def frame(kind: str, data: Any) -> bytes:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Hub:
    """The listeners of one server and the task that feeds them."""

    def __init__(self, snapshot: Snapshot, server: ClusterServer) -> None:
        self._snapshot = snapshot
        self._server = server
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def listeners(self) -> int:
        """Clients connected right now."""
        return len(self._clients)

    def close_all(self) -> None:
        """Tell every client to end its stream (the server is shutting down)."""
        for queue in self._clients:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    def broadcast(self, message: bytes) -> None:
        """Queue ``message`` for every client; a client that is full gets a resync instead."""
        for queue in self._clients:
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(frame("resync", {}))

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Stream to one client until it goes away."""
        if len(self._clients) >= MAX_CLIENTS:
            raise web.HTTPServiceUnavailable(
                reason=f"already {MAX_CLIENTS} live dashboards; try again later"
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MAX)
        self._clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-stream")
        try:
            await response.write(b"retry: 2000\n\n" + frame("hello", {"tick": TICK}))
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except TimeoutError:
                    message = b": ping\n\n"
                if message is None:
                    break
                await response.write(message)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._clients.discard(queue)
            if not self._clients and self._task is not None:
                self._task.cancel()
                self._task = None
        return response

    async def _run(self) -> None:
        previous = self._snapshot()
        cells = {(c["bank"], c["slot"]): c for c in previous["cells"]}
        found = await self._server.events(1)
        last_event = found[0].id if found else 0
        while True:
            await asyncio.sleep(TICK)
            try:
                last_event = await self._tick(previous, cells, last_event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dashboard stream: one update failed")
                continue

    async def _tick(
        self,
        previous: dict[str, Any],
        cells: dict[tuple[int, int], dict[str, Any]],
        last_event: int,
    ) -> int:
        now = self._snapshot()
        changed = [c for c in now["cells"] if cells.get((c["bank"], c["slot"])) != c]
        for cell in changed:
            cells[(cell["bank"], cell["slot"])] = cell
        if changed:
            self.broadcast(frame("cells", {"cells": changed}))
        summary = {"totals": now["totals"], "bank_summary": now["bank_summary"]}
        if summary != {"totals": previous["totals"], "bank_summary": previous["bank_summary"]}:
            self.broadcast(frame("summary", summary))
            previous.update(summary)
        fresh = [e for e in await self._server.events(EVENTS_PER_TICK) if e.id > last_event]
        for event in reversed(fresh):
            self.broadcast(frame("log", dataclasses.asdict(event)))
        return max((e.id for e in fresh), default=last_event)
