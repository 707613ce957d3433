"""Warble intake and results: checks at the door, the queue, SAVE/LOAD per user, scores.

A Warble taken in (``POST /api/v1/warbles`` or a post source) is parsed at once (a syntax
error is answered, never queued), rate limited per user and per client address, stored as a
job (the jobs table is the persistent queue) plus a ``warbles`` row, and dispatched like any
job, except that it waits for an idle node up to ``warble.max_queue_age`` seconds after it was
taken in. The server owns each user's SAVE values: a job carries the user's values to the
agent (``saved``) and the agent answers the values after the run (``saved``); the server keeps
what changed. One user's Warbles run one at a time, so no SAVE is lost between two runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bramble.services.server.records import JobRecord
from bramble.services.server.warble_posts import Post, PostSource, make_source, poll_forever
from bramble.services.server.warble_score import pi_digits
from bramble.warble.errors import WarbleError
from bramble.warble.limits import Limits
from bramble.warble.parser import parse
from bramble.warble.scanner import extract_warbles

if TYPE_CHECKING:
    from bramble.services.server.core import ClusterServer

log = logging.getLogger("bramble.server.warble")
RATE_KEYS_MAX = 10_000
VALUE_LIMITS = Limits()  # the bounds the agent's runs apply to SAVE (keys, key and value size)


class Refused(Exception):
    """A Warble not taken in: ``status`` for the API, ``message`` for its author."""

    def __init__(self, status: int, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or {}


class RateLimiter:
    """Token buckets (``per_minute`` refill, ``burst`` deep) per key, at most ``max_keys``."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = RATE_KEYS_MAX,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def take(self, *keys: str) -> float:
        """Take one token from every key's bucket: 0 when allowed, else seconds to wait."""
        now = self.clock()
        levels = {key: self._level(key, now) for key in keys}
        short = [level for level in levels.values() if level < 1.0]
        wait = max(((1.0 - level) / self.rate for level in short), default=0.0)
        for key, level in levels.items():
            self._buckets.pop(key, None)
            self._buckets[key] = (level - 1.0 if not short else level, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass
class _UserTurn:
    lock: asyncio.Lock
    users: int = 0


class WarbleService:
    """Intake, per-user values, scores and post sources of one ``ClusterServer``."""

    def __init__(self, server: ClusterServer) -> None:
        self.server = server
        self.config = server.config.warble
        self.limits = Limits(max_source_chars=self.config.max_source_chars)
        self.rates = RateLimiter(self.config.rate_per_minute, self.config.rate_burst)
        self.sources: list[PostSource] = [make_source(s) for s in self.config.sources]
        self._turns: dict[str, _UserTurn] = {}

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The loops to run while the server runs: one poller per post source."""
        return [(f"posts-{s.name}", poll_forever(self, s)) for s in self.sources]

    # -- intake --
    def check(self, source: str) -> None:
        """Refused (413 too long, 422 with line and column) unless ``source`` parses."""
        if len(source) > self.config.max_source_chars:
            raise Refused(
                413,
                f"the Warble is {len(source):,} characters; at most "
                f"{self.config.max_source_chars:,} (warble.max_source_chars)",
            )
        try:
            parse(source, self.limits)
        except WarbleError as exc:
            raise Refused(422, str(exc), exc.to_json()) from None

    async def submit(
        self,
        user: str,
        source: str,
        *,
        origin: str = "api",
        address: str | None = None,
        post_id: str | None = None,
        post_url: str | None = None,
    ) -> JobRecord:
        """Check, store and queue a Warble; Refused when it is not taken in."""
        keys = [f"user:{user}"] + ([f"address:{address}"] if address else [])
        wait = self.rates.take(*keys)
        if wait:
            per = "user and per address" if address else "user"
            raise Refused(
                429,
                f"too many Warbles: at most {self.config.rate_per_minute:g} a minute per {per}",
                {"retry_after": int(wait) + 1},
            )
        self.check(source)
        if self.server.jobs_waiting >= self.config.max_queued:
            raise Refused(503, "too many Warbles are waiting; try again later")
        job = JobRecord(id=0, kind="warble", source=source, user=user, created=time.time())
        server = self.server
        job.id = await server.db(server.store.create_job, job)
        await server.db(server.store.add_warble, job.id, origin, post_id, post_url, address)
        try:
            server.enqueue(job.id)
        except asyncio.QueueFull:
            await self._refuse(job, "too many Warbles are waiting; try again later")
            raise Refused(503, "too many Warbles are waiting; try again later") from None
        log.info(
            "warble %d: taken in from %s (%s, %d characters)", job.id, user, origin, len(source)
        )
        return job

    async def _refuse(self, job: JobRecord, message: str) -> None:
        job.state, job.error, job.finished = "failed", message, time.time()
        await self.server.db(self.server.store.update_job, job)

    async def take_post(self, source: str, post: Post) -> int:
        """Take in the Warbles of one post; how many were found (refused ones are stored
        as failed Warbles with the reason, so their author can see it)."""
        server, origin = self.server, f"post:{source}"
        if await server.db(server.store.has_post, origin, post.id):
            return 0
        found = extract_warbles(post.text)
        for warble in found:
            try:
                await self.submit(
                    post.author, warble.source, origin=origin, post_id=post.id, post_url=post.url
                )
            except Refused as exc:
                job = JobRecord(0, "warble", warble.source, post.author, created=time.time())
                job.id = await server.db(server.store.create_job, job)
                await server.db(server.store.add_warble, job.id, origin, post.id, post.url)
                await self._refuse(job, exc.message)
                log.info(
                    "warble %d: from post %s of %s refused: %s", job.id, post.id, post.author, exc
                )
        return len(found)

    # -- running --
    @contextlib.asynccontextmanager
    async def _turn(self, user: str) -> AsyncIterator[None]:
        """One run at a time per user (their SAVE values are read before and written after)."""
        turn = self._turns.setdefault(user, _UserTurn(asyncio.Lock()))
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[user]

    async def run(self, job: JobRecord) -> None:
        """Dispatch a job with its user's values, keep the values it changed, score it."""
        server = self.server
        record = await server.db(server.store.warble, job.id)
        taken_in = record is not None and record.origin != "job"
        wait = max(0.0, job.created + self.config.max_queue_age - time.time()) if taken_in else None
        async with self._turn(job.user):
            sent = await server.db(server.store.user_values, job.user)
            answer = await server.run_job(job, {"saved": sent}, wait)
            if job.state == "cancelled":
                return
            if answer is None and taken_in and job.attempts == 0:
                job.error = (
                    f"{job.error}; waited {self.config.max_queue_age:g} s (warble.max_queue_age)"
                )
                await server.db(server.store.update_job, job)
            if answer is not None:
                await self._keep_values(job, sent, answer.get("saved"))
        digits = pi_digits(job.output, self.config.reference_digits)
        await server.db(server.store.set_warble_digits, job.id, digits)

    async def _keep_values(self, job: JobRecord, sent: dict[str, str], saved: object) -> None:
        """Store the values the agent says the run left, if they are within the bounds."""
        if saved is None:
            return  # an agent that does not return values yet: nothing changes
        problem = _values_problem(saved)
        if problem is not None or not isinstance(saved, dict):
            log.warning("warble %d: values from %s ignored: %s", job.id, job.node, problem)
            return
        changed = {k: v for k, v in saved.items() if sent.get(k) != v}
        if changed:
            await self.server.db(self.server.store.save_user_values, job.user, changed, time.time())


def _values_problem(saved: object) -> str | None:
    """Why the agent's ``saved`` answer is not acceptable, or None."""
    if not isinstance(saved, dict):
        return "not an object"
    if len(saved) > VALUE_LIMITS.max_saved_keys:
        return f"{len(saved)} keys; at most {VALUE_LIMITS.max_saved_keys}"
    for key, value in saved.items():
        if not isinstance(key, str) or not 0 < len(key) <= VALUE_LIMITS.max_key_chars:
            return "a key is not a string of the allowed length"
        if not isinstance(value, str) or len(value.encode()) > VALUE_LIMITS.max_value_bytes:
            return f"the value of {key!r} is not a string of the allowed size"
    return None
