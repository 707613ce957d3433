"""The REST API (aiohttp): authentication, size limits, validation, and the routes."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bramble import __version__
from bramble.services.server import dashboard, metrics, warble_api
from bramble.services.server.core import ClusterServer
from bramble.services.server.dispatch import NodeState
from bramble.services.server.model import MAC_PATTERN
from bramble.services.server.records import JobRecord, Sample
from bramble.services.server.schemas import JobIn, RegisterIn, Route, TelemetryIn, openapi

log = logging.getLogger("bramble.server.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
B = TypeVar("B", bound=BaseModel)

SERVER_KEY = web.AppKey("server", ClusterServer)
ROUTE_KEY = "bramble_route"
MAX_LIST = 1000


def fail(status: int, message: str) -> web.Response:
    """An error response in the API's shape."""
    return web.json_response({"error": message}, status=status)


class ApiError(Exception):
    """Raised by handlers; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _server(request: web.Request) -> ClusterServer:
    return request.app[SERVER_KEY]


async def parse(request: web.Request, model: type[B]) -> B:
    """The request body validated against ``model`` (400 not JSON, 422 invalid)."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(400, "the body is not valid JSON") from None
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:10]
        )
        raise ApiError(422, text) from None


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise ApiError(422, f"{name} must be an integer from 0 to {high}")
    return int(raw)


def _mac(request: web.Request) -> str:
    mac = request.match_info["mac"]
    if not re.fullmatch(MAC_PATTERN, mac):
        raise ApiError(422, "not a MAC address (aa:bb:cc:dd:ee:ff)")
    return mac.lower()


def node_json(node: NodeState) -> dict[str, Any]:
    """A node as the API shows it."""
    return {
        **dataclasses.asdict(node.record),
        "health": node.health,
        "misses": node.misses,
        "last_registered": node.last_registered or None,
        "latest": _sample_json(node.latest) if node.latest else None,
    }


def _sample_json(sample: Sample) -> dict[str, Any]:
    fields = dataclasses.asdict(sample)
    fields.pop("mac")
    return fields


def job_json(job: JobRecord) -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "id": job.id,
        "state": job.state,
        "node": job.node,
        "output": job.output,
        "error": job.error,
        "attempts": job.attempts,
        "kind": job.kind,
        "user": job.user,
        "created": job.created,
        "finished": job.finished,
    }


# -- handlers --


async def register(request: web.Request) -> web.Response:
    body = await parse(request, RegisterIn)
    server = _server(request)
    record = await server.register(
        mac=body.mac,
        ip=body.ip,
        hostname=body.hostname,
        agent_version=body.agent_version,
        agent_port=body.agent_port,
        serial=body.serial,
    )
    return web.json_response(
        {
            "node": record.name,
            "bank": record.bank,
            "slot": record.slot,
            "trusted": record.trusted,
            "telemetry_interval": server.config.telemetry.interval,
        }
    )


async def telemetry(request: web.Request) -> web.Response:
    body = await parse(request, TelemetryIn)
    server = _server(request)
    limit = server.config.limits.max_samples_per_post
    if len(body.samples) > limit:
        raise ApiError(413, f"at most {limit} samples per post (limits.max_samples_per_post)")
    samples = [Sample(mac=body.mac, **s.model_dump()) for s in body.samples]
    accepted = server.ingest(body.mac, samples)
    if accepted is None:
        raise ApiError(404, "unknown node: register again")
    return web.json_response({"accepted": accepted})


async def nodes(request: web.Request) -> web.Response:
    server = _server(request)
    return web.json_response({"nodes": [node_json(n) for n in server.nodes.values()]})


async def node(request: web.Request) -> web.Response:
    server = _server(request)
    mac = _mac(request)
    state = server.nodes.get(mac)
    if state is None:
        raise ApiError(404, f"no registered node with MAC {mac}")
    history = _int_query(request, "history", 0, MAX_LIST)
    answer = node_json(state)
    if history:
        answer["history"] = [_sample_json(s) for s in await server.history(mac, history)]
    return web.json_response(answer)


async def banks(request: web.Request) -> web.Response:
    return web.json_response({"banks": _server(request).banks()})


async def events(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", 100, MAX_LIST)
    found = await _server(request).events(limit)
    return web.json_response({"events": [dataclasses.asdict(e) for e in found]})


async def submit_job(request: web.Request) -> web.Response:
    body = await parse(request, JobIn)
    try:
        job = await _server(request).submit_job(body.kind, body.source, body.user)
    except asyncio.QueueFull:
        raise ApiError(503, "too many jobs are waiting; try again later") from None
    return web.json_response({"id": job.id, "state": job.state})


def _job_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(422, "a job id is a positive integer")
    return int(raw)


async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job = await _server(request).job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return web.json_response(job_json(job))


async def cancel_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job = await _server(request).cancel_job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    if job.state == "running":
        raise ApiError(
            409,
            f"job {job_id} is running on {job.node}: it was handed to that agent, and an agent "
            "cannot be told to stop a job; it ends within the agent's jobs.wall_seconds",
        )
    if job.state != "cancelled":
        raise ApiError(
            409, f"job {job_id} is {job.state}; only a queued or waiting job can be cancelled"
        )
    return web.json_response(job_json(job))


async def openapi_doc(request: web.Request) -> web.Response:
    return web.json_response(openapi([route for route, _ in ROUTES], __version__))


async def healthz(request: web.Request) -> web.Response:
    server = _server(request)
    return web.json_response(
        {"status": "ok", "nodes": len(server.nodes), "cluster": server.config.server.cluster}
    )


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(
        body=metrics.render(_server(request)),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


V1 = "/api/v1"
ROUTES: list[tuple[Route, Handler]] = [
    (Route("POST", f"{V1}/register", "agent", "Register an agent", RegisterIn), register),
    (Route("POST", f"{V1}/telemetry", "agent", "Post telemetry samples", TelemetryIn), telemetry),
    (Route("GET", f"{V1}/nodes", "read", "List registered nodes"), nodes),
    (Route("GET", f"{V1}/nodes/{{mac}}", "read", "One node", query=("history",)), node),
    (Route("GET", f"{V1}/banks", "read", "Per-bank summary"), banks),
    (Route("GET", f"{V1}/events", "read", "Newest events", query=("limit",)), events),
    (Route("POST", f"{V1}/jobs", "admin", "Submit a Warble job", JobIn), submit_job),
    (Route("GET", f"{V1}/jobs/{{id}}", "admin", "A job's state and result"), get_job),
    (
        Route(
            "POST",
            f"{V1}/jobs/{{id}}/cancel",
            "admin",
            "Cancel a job or Warble no agent has yet (queued or waiting)",
            conflict="the job is already running on an agent, or finished",
        ),
        cancel_job,
    ),
    (Route("GET", f"{V1}/openapi.json", "public", "This document"), openapi_doc),
    (Route("GET", "/healthz", "public", "Liveness of the server"), healthz),
    (Route("GET", "/metrics", "metrics", "Prometheus metrics"), prometheus),
    *warble_api.ROUTES,
    *dashboard.routes(_server),
]


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorise(server: ClusterServer, role: str, token: str | None) -> int | None:
    """None when allowed, else the HTTP status (401 no or bad token, 403 wrong role)."""
    api = server.config.api
    role = warble_api.role_for(server, role, token)
    if role == "public" or (role == "read" and api.public_read):
        return None
    if role == "metrics" and api.public_metrics:
        return None
    if token is None:
        return 401
    is_admin = _same(token, server.secrets.admin_token)
    is_agent = _same(token, server.secrets.agent_token)
    if not (is_admin or is_agent):
        return 401
    wanted_admin = role in ("admin", "read", "metrics")
    return None if (is_admin if wanted_admin else is_agent) else 403


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, body size limit and the JSON error shape, for every route."""
    server = _server(request)
    route: Route | None = getattr(handler, ROUTE_KEY, None)
    try:
        if route is not None:
            status = authorise(server, route.role, _token(request))
            if status is not None:
                reason = "missing or invalid token" if status == 401 else "token not allowed here"
                return fail(status, reason)
        limit = server.config.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return fail(413, f"body larger than {limit} bytes (limits.max_body_bytes)")
        return await handler(request)
    except ApiError as exc:
        return fail(exc.status, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return fail(413, f"body larger than {server.config.limits.max_body_bytes} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return fail(exc.status, exc.reason)
        raise


def _tagged(route: Route, handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    setattr(wrapped, ROUTE_KEY, route)
    return wrapped


def make_app(server: ClusterServer) -> web.Application:
    """The aiohttp application serving the API of ``server``."""
    app = web.Application(middlewares=[guard], client_max_size=server.config.limits.max_body_bytes)
    app[SERVER_KEY] = server
    for route, handler in ROUTES:
        app.router.add_route(route.method, route.path, _tagged(route, handler))
    dashboard.install(app, server)
    return app
