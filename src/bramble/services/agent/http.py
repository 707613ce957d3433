"""The agent's own HTTP API: ``GET /health`` and ``POST /jobs``, for the server only.

Both need ``Authorization: Bearer <agent token>`` (constant-time compare; 401 otherwise).
Bodies above ``MAX_BODY_BYTES`` get 413. ``POST /jobs`` runs a Warble, and nothing else, in
the isolated child of ``bramble.warble.isolated`` (CPU time, memory, wall time and output
bounded); one job at a time, a second one meanwhile gets 503 so the server tries another node.
A job may carry ``saved``, the user's SAVE values kept by the server: the run starts with them
(LOAD finds them) and the answer's ``saved`` holds every value the user keeps after the run.
No endpoint runs a shell or any other program.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bramble.services.agent.agent import Agent

if TYPE_CHECKING:  # the Warble package (and mpmath) is imported when the first job comes
    from bramble.warble.limits import Limits
    from bramble.warble.result import RunResult

log = logging.getLogger("bramble.agent")

# A Warble is at most 10,000 characters, ``saved`` at most 100 values of 16 KiB: 1.6 MB.
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_JOB_ID = 200
MAX_USER = 64
MAX_SAVED_KEYS = 100  # bramble.warble.limits.Limits.max_saved_keys
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class JobLimits:
    """The agent's ceilings for one job (agent.toml ``[jobs]``); a request may only lower them.

    The isolated runner bounds CPU time by the wall time (a Warble runs on one thread, so it
    cannot use more CPU than wall time): the run's time limit is the lower of ``cpu_seconds``
    and ``wall_seconds``.
    """

    cpu_seconds: float = 10
    memory_mb: int = 128
    output_bytes: int = 65536
    wall_seconds: float = 30

    def for_request(self, requested: Any) -> Limits:
        """``bramble.warble.limits.Limits`` for a job, lowered by the request's ``limits``."""
        from bramble.warble.limits import Limits  # noqa: PLC0415 - see TYPE_CHECKING

        wall = float(min(self.cpu_seconds, self.wall_seconds))
        output = self.output_bytes
        memory = self.memory_mb * 1024 * 1024
        if requested is not None:
            if not isinstance(requested, dict):
                raise ValueError("limits must be an object")
            unknown = set(requested) - {"wall_time", "max_output_bytes", "memory_bytes"}
            if unknown:
                raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
            for key, value in requested.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ValueError(f"limits.{key} must be a positive number")
            wall = min(wall, float(requested.get("wall_time", wall)))
            output = min(output, int(requested.get("max_output_bytes", output)))
            memory = min(memory, int(requested.get("memory_bytes", memory)))
        return Limits(wall_time=wall, max_output_bytes=output, memory_bytes=memory)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def make_app(agent: Agent, token: str, limits: JobLimits) -> web.Application:
    """The aiohttp application serving ``agent``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong agent token")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")

    busy = asyncio.Lock()

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(agent.health())

    async def jobs(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        problem, job_limits = _check_job(body, limits)
        if problem:
            return _error(422, problem)
        if busy.locked():
            return _error(503, "busy with another job")
        user = body["user"]
        async with busy:
            log.info("%s: job %s from %s", agent.name, body["id"], user)
            started = time.monotonic()
            result, saved = await asyncio.to_thread(
                _run, body["source"], job_limits, user, body.get("saved") or {}
            )
            elapsed = int((time.monotonic() - started) * 1000)
        return web.json_response(
            {
                "id": body["id"],
                "state": "done" if result.ok else "failed",
                "output": result.output,
                "error": None if result.error is None else str(result.error),
                "elapsed_ms": elapsed,
                "saved": saved,
            }
        )

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/health", health)
    app.router.add_post("/jobs", jobs)
    return app


def _check_job(body: Any, limits: JobLimits) -> tuple[str | None, Limits | None]:
    """(the problem with a job request or None, the run's limits)."""
    try:
        _require(isinstance(body, dict), "the body must be a JSON object")
        job_id, user = body.get("id"), body.get("user")
        _require(
            isinstance(job_id, int | str)
            and not isinstance(job_id, bool)
            and len(str(job_id)) <= MAX_JOB_ID,
            "id must be a number or a short string",
        )
        _require(body.get("kind") == "warble", "kind must be 'warble' (the only kind it runs)")
        _require(isinstance(body.get("source"), str), "source must be the Warble's text")
        _require(
            isinstance(user, str) and 0 < len(user) <= MAX_USER,
            f"user must be a name of 1 to {MAX_USER} characters",
        )
        saved = body.get("saved")
        _require(
            saved is None
            or (
                isinstance(saved, dict)
                and len(saved) <= MAX_SAVED_KEYS
                and all(isinstance(v, str) for v in saved.values())
            ),
            f"saved must be an object of at most {MAX_SAVED_KEYS} text values",
        )
        return None, limits.for_request(body.get("limits"))
    except ValueError as exc:
        return str(exc), None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _run(
    source: str, limits: Limits | None, user: str, saved: dict[str, str]
) -> tuple[RunResult, dict[str, str]]:
    """The run's result and every value the user keeps afterwards (SAVEs applied)."""
    from bramble.warble.isolated import run_isolated  # noqa: PLC0415 - see TYPE_CHECKING
    from bramble.warble.store import MemoryStore  # noqa: PLC0415

    store = MemoryStore({user: saved})
    result = run_isolated(source, limits=limits, user=user, store=store)
    return result, store.snapshot(user)
