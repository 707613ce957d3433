"""REST routes of Warble intake and results (added to ``api.ROUTES``).

Roles: ``submit`` (no token when ``warble.anonymous``; else the submit token or the admin
token) and ``results`` (no token when ``warble.public_results``; else as ``read``).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bramble.services.server.schemas import MAX_SOURCE, Route
from bramble.services.server.warble import Refused, WarbleService
from bramble.services.server.warble_store import Leader, WarbleRecord

if TYPE_CHECKING:
    from bramble.services.server.core import ClusterServer

MAX_LEADERS = 1000


class WarbleIn(BaseModel):
    """A Warble submitted by its author (names with ``@`` are kept for post authors)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    source: Annotated[str, Field(min_length=1, max_length=MAX_SOURCE)]


def role_for(server: ClusterServer, role: str, token: str | None) -> str:
    """The built-in role a Warble role stands for, given the config and the token."""
    cfg = server.config.warble
    if role == "submit":
        submit = server.secrets.submit_token
        if cfg.anonymous or (
            token is not None and submit and hmac.compare_digest(token.encode(), submit.encode())
        ):
            return "public"
        return "admin"
    if role == "results":
        return "public" if cfg.public_results else "read"
    return role


def _service(request: web.Request) -> WarbleService:
    return request.app[api.SERVER_KEY].warble


def warble_json(record: WarbleRecord) -> dict[str, Any]:
    """A Warble as the API shows it (never the submitter's address)."""
    job = record.job
    return {
        "id": job.id,
        "user": job.user,
        "state": job.state,
        "source": job.source,
        "output": job.output,
        "error": job.error,
        "node": job.node,
        "attempts": job.attempts,
        "created": job.created,
        "finished": job.finished,
        "origin": record.origin,
        "post_id": record.post_id,
        "post_url": record.post_url,
        "digits": record.digits,
    }


def _leader_json(place: int, leader: Leader) -> dict[str, Any]:
    return {
        "rank": place,
        "user": leader.user,
        "digits": leader.digits,
        "warble": leader.warble,
        "created": leader.created,
    }


async def submit(request: web.Request) -> web.Response:
    body = await api.parse(request, WarbleIn)
    try:
        job = await _service(request).submit(body.user, body.source, address=request.remote)
    except Refused as exc:
        headers = {}
        if "retry_after" in exc.detail:
            headers["Retry-After"] = str(exc.detail["retry_after"])
        return web.json_response(
            {"error": exc.message, **exc.detail}, status=exc.status, headers=headers
        )
    return web.json_response({"id": job.id, "state": job.state})


async def list_warbles(request: web.Request) -> web.Response:
    limit = api._int_query(request, "limit", 50, api.MAX_LIST)
    before = api._int_query(request, "before", 2**62, 2**62)
    server = request.app[api.SERVER_KEY]
    found = await server.db(server.store.warbles, limit, before)
    return web.json_response({"warbles": [warble_json(w) for w in found]})


async def get_warble(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise api.ApiError(422, "a Warble id is a positive integer")
    server = request.app[api.SERVER_KEY]
    record = await server.db(server.store.warble, int(raw))
    if record is None:
        raise api.ApiError(404, f"no Warble {raw}")
    return web.json_response(warble_json(record))


async def leaderboard(request: web.Request) -> web.Response:
    limit = api._int_query(request, "limit", 20, MAX_LEADERS)
    server = request.app[api.SERVER_KEY]
    leaders = await server.db(server.store.leaderboard, limit)
    return web.json_response(
        {
            "leaderboard": [_leader_json(i, leader) for i, leader in enumerate(leaders, 1)],
            "reference_digits": server.config.warble.reference_digits,
        }
    )


V1 = "/api/v1"
ROUTES: list[tuple[Route, api.Handler]] = [
    (Route("POST", f"{V1}/warbles", "submit", "Submit a Warble", WarbleIn), submit),
    (
        Route("GET", f"{V1}/warbles", "results", "Newest Warbles", query=("limit", "before")),
        list_warbles,
    ),
    (Route("GET", f"{V1}/warbles/{{id}}", "results", "One Warble and its result"), get_warble),
    (
        Route("GET", f"{V1}/leaderboard", "results", "Most digits of pi", query=("limit",)),
        leaderboard,
    ),
]

# At the end: api.py lists ROUTES above among its own, whichever of the two is imported first.
from bramble.services.server import api  # noqa: E402
