"""Registry writes behind the in-memory registry: node records and events, batched.

A registration updates ``ClusterServer.nodes`` at once and answers the agent; the node's
record and the events it causes wait here and go to the store together, in one transaction,
every ``batch_seconds`` or as soon as ``batch_max`` are waiting. After a server restart 1,050
agents register again within a second or two; one transaction per registration would make
them queue on the store's thread (see docs/benchmarks.md, "Cluster services"). The server
flushes on shutdown, so a restart loses nothing; readers of the stored events flush first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bramble.services.server.records import NodeRecord
from bramble.services.server.telemetry import PeriodicFlush

log = logging.getLogger("bramble.server.registry")

PendingEvent = tuple[float, str, str | None, str]  # time, kind, MAC, message
Write = Callable[[list[NodeRecord], list[PendingEvent]], Awaitable[None]]


class RegistryWriter(PeriodicFlush):
    """Nodes (the newest record per MAC) and events waiting for the store.

    At most ``events_max`` events wait; beyond that the oldest are dropped and counted (the
    store is failing), so memory stays bounded. Node records are at most one per MAC.
    """

    def __init__(
        self, write: Write, batch_max: int, batch_seconds: float, events_max: int = 100_000
    ) -> None:
        self._write = write
        self.batch_max = batch_max
        self.batch_seconds = batch_seconds
        self.events_max = events_max
        self._nodes: dict[str, NodeRecord] = {}
        self._events: list[PendingEvent] = []
        self._full = asyncio.Event()
        self.batches = 0
        self.failed_batches = 0
        self.dropped_events = 0

    @property
    def pending(self) -> int:
        """Node records and events waiting for the next flush."""
        return len(self._nodes) + len(self._events)

    def node(self, record: NodeRecord) -> None:
        """Store ``record`` (it is read when written, so later changes to it go too)."""
        self._nodes[record.mac] = record
        self._wake()

    def event(self, event: PendingEvent) -> None:
        """Append one event."""
        self._events.append(event)
        self._trim()
        self._wake()

    def _wake(self) -> None:
        if self.pending >= self.batch_max:
            self._full.set()

    async def flush(self) -> None:
        """Write everything waiting in one transaction; on failure it waits for the next."""
        if not self.pending:
            return
        nodes, self._nodes = self._nodes, {}
        events, self._events = self._events, []
        try:
            await self._write(list(nodes.values()), events)
        except Exception:
            self.failed_batches += 1
            log.exception(
                "registry: %d nodes and %d events could not be stored; will retry",
                len(nodes),
                len(events),
            )
            self._nodes = nodes | self._nodes  # newer records win
            self._events[:0] = events
            self._trim()
        else:
            self.batches += 1

    def _trim(self) -> None:
        """Drop the oldest events beyond ``events_max``."""
        excess = len(self._events) - self.events_max
        if excess > 0:
            del self._events[:excess]
            self.dropped_events += excess
