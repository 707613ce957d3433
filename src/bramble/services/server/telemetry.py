"""Batched telemetry writes: samples wait in memory and go to the store in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bramble.services.server.records import Sample

log = logging.getLogger("bramble.server.telemetry")

Flush = Callable[[list[Sample], dict[str, float]], Awaitable[None]]


class PeriodicFlush:
    """What both batch writers share: ``run`` flushes every ``batch_seconds``, or at once when
    ``_full`` is set (``batch_max`` waiting)."""

    batch_seconds: float
    _full: asyncio.Event

    async def flush(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Flush forever (cancel to stop; call ``flush`` once more afterwards)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.batch_seconds)
            self._full.clear()
            await self.flush()


class BatchWriter(PeriodicFlush):
    """Collects samples; ``run`` flushes them every ``batch_seconds`` or at ``batch_max``.

    At most ``pending_max`` samples wait; beyond that new samples are dropped and counted
    (the store cannot keep up), so memory stays bounded.
    """

    def __init__(
        self, flush: Flush, batch_max: int, batch_seconds: float, pending_max: int
    ) -> None:
        self._flush = flush
        self.batch_max = batch_max
        self.batch_seconds = batch_seconds
        self.pending_max = pending_max
        self._pending: list[Sample] = []
        self._seen: dict[str, float] = {}
        self._full = asyncio.Event()
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    def add(self, samples: Sequence[Sample]) -> int:
        """Queue samples; how many were accepted."""
        room = max(0, self.pending_max - len(self._pending))
        accepted = list(samples[:room])
        self.dropped += len(samples) - len(accepted)
        self._pending.extend(accepted)
        if samples:
            self._seen[samples[0].mac] = time.time()
        if len(self._pending) >= self.batch_max:
            self._full.set()
        return len(accepted)

    @property
    def pending(self) -> int:
        """Samples waiting for the next flush."""
        return len(self._pending)

    async def flush(self) -> None:
        """Write everything pending, ``batch_max`` at a time."""
        seen, self._seen = self._seen, {}
        while self._pending or seen:
            batch = self._pending[: self.batch_max]
            del self._pending[: self.batch_max]
            try:
                await self._flush(batch, seen)
            except Exception:
                self.failed_batches += 1
                self.dropped += len(batch)
                log.exception("telemetry: a batch of %d samples could not be stored", len(batch))
            else:
                self.written += len(batch)
            seen = {}
