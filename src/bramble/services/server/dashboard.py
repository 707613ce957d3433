"""The web dashboard's routes: the page, its static files, the cluster snapshot, the live
stream (server-sent events) and the admin power request.

The cluster map is every Pi of the model (nodes.json) placed by bank and slot; the grid is as
wide as the highest slot and as tall as the highest bank found there, and a slot of that grid
with no Pi in nodes.json is shown as ``unharvested``. A cell's state is derived here:

- ``unharvested``: no MAC for that slot in the model;
- ``up`` / ``down``: registered, and the health checks (or telemetry) say so;
- ``booting``: not registered, but its bank was powered on or cycled through the power hook in
  the last ``BOOT_WINDOW`` seconds;
- ``off``: not registered (the server cannot tell off from dead; ``booting`` narrows it).

The stream polls the server's in-memory state every ``TICK`` seconds and sends only what
changed (see dashboard_stream.py), so ingest stays as fast as it was.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bramble.services.server.core import ClusterServer
from bramble.services.server.dashboard_stream import Hub
from bramble.services.server.schemas import Route

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerOf = Callable[[web.Request], ClusterServer]

BOOT_WINDOW = 300.0
STATIC_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
STATIC_FILES = ("app.js", "style.css", "index.html")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class PowerUnavailable(Exception):
    """The server cannot switch power (no hook); the message says what to do instead."""


class PowerFailed(Exception):
    """A power request refused (404 unknown group, 409 budget or busy: nothing switched) or
    failed at a controller (502, 504 when it timed out); the message names the controller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PowerResult:
    """What a power hook did: the banks it switched and one line for the event log."""

    banks: tuple[int, ...]
    message: str


PowerHook = Callable[[int, str], Awaitable[PowerResult]]


async def no_power_hook(group: int, action: str) -> PowerResult:
    """The default: this server has no way to reach the power controllers."""
    raise PowerUnavailable(
        "this server has no power hook configured ([power] enabled is false in server.toml; "
        "see docs/server.md): power groups are switched by "
        "`ansible-playbook playbooks/bank.yml` (bank_power)"
    )


@dataclass
class _Extras:
    """Per-server dashboard state that is not the server's business."""

    power_hook: PowerHook = no_power_hook
    booting: dict[int, float] = field(default_factory=dict)  # bank -> when powered on
    hub: Hub | None = None


_EXTRAS: weakref.WeakKeyDictionary[ClusterServer, _Extras] = weakref.WeakKeyDictionary()


def _extras(server: ClusterServer) -> _Extras:
    found = _EXTRAS.get(server)
    if found is None:
        found = _EXTRAS[server] = _Extras()
    return found


def set_power_hook(server: ClusterServer, hook: PowerHook) -> None:
    """Let ``POST /api/v1/power`` switch power through ``hook(group, action)``."""
    _extras(server).power_hook = hook


# -- the snapshot --


def layout(server: ClusterServer) -> tuple[int, int]:
    """(banks, slots per bank) of the map: the highest bank and slot in the model."""
    banks = max((n.bank for n in server.model.values()), default=0)
    slots = max((n.slot for n in server.model.values()), default=0)
    return banks, slots


def cells(server: ClusterServer, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Every slot of the map by ``"bank-slot"``: name, state and the latest metrics."""
    now = time.time() if now is None else now
    booting = {b for b, when in _extras(server).booting.items() if now - when < BOOT_WINDOW}
    banks, slots = layout(server)
    found: dict[str, dict[str, Any]] = {
        f"{b}-{s}": {"bank": b, "slot": s, "state": "unharvested"}
        for b in range(1, banks + 1)
        for s in range(1, slots + 1)
    }
    for node in server.model.values():
        state = server.nodes.get(node.mac)
        cell: dict[str, Any] = {
            "bank": node.bank,
            "slot": node.slot,
            "name": node.name,
            "mac": node.mac,
            "ip": node.ip,
            "state": "booting" if node.bank in booting else "off",
        }
        if state is not None:
            cell["state"] = "down" if state.health == "down" else "up"
            cell["ip"] = state.record.ip
            latest = state.latest
            if latest is not None:
                cell.update(
                    cpu=round(latest.cpu_percent, 1),
                    mem=round(latest.mem_used_percent, 1),
                    temp=None if latest.temp_c is None else round(latest.temp_c, 1),
                    ts=latest.ts,
                )
        found[f"{node.bank}-{node.slot}"] = cell
    return found


def totals(found: dict[str, dict[str, Any]], strangers: int) -> dict[str, Any]:
    """Cluster totals: Pis per state, CPU average and hottest temperature."""
    counts = dict.fromkeys(("up", "down", "booting", "off", "unharvested"), 0)
    cpu = [c["cpu"] for c in found.values() if c.get("cpu") is not None]
    temps = [c["temp"] for c in found.values() if c.get("temp") is not None]
    for cell in found.values():
        counts[cell["state"]] += 1
    return {
        "slots": len(found),
        **counts,
        "untrusted": strangers,
        "cpu_percent_avg": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "temp_c_max": max(temps) if temps else None,
    }


def bank_rows(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-bank summary rows (the totals of each bank's cells), bank order."""
    by_bank: dict[int, dict[str, dict[str, Any]]] = {}
    for key, cell in found.items():
        by_bank.setdefault(cell["bank"], {})[key] = cell
    rows = []
    for number in sorted(by_bank):
        row = {"bank": number, **totals(by_bank[number], 0)}
        row.pop("untrusted")
        rows.append(row)
    return rows


def snapshot(server: ClusterServer) -> dict[str, Any]:
    """Everything the page and ``bramble status`` show, at one instant."""
    found = cells(server)
    banks, slots = layout(server)
    strangers = sum(1 for n in server.nodes.values() if not n.record.trusted)
    return {
        "cluster": server.config.server.cluster,
        "time": time.time(),
        "banks": banks,
        "slots": slots,
        "public_read": server.config.api.public_read,
        "totals": totals(found, strangers),
        "bank_summary": bank_rows(found),
        "cells": list(found.values()),
    }


# -- handlers --


def install(app: web.Application, server: ClusterServer) -> None:
    """What the routes need besides the route table: live streams end at shutdown."""

    async def end_streams(_: web.Application) -> None:
        hub = _extras(server).hub
        if hub is not None:
            hub.close_all()

    app.on_shutdown.append(end_streams)


def _hub(server: ClusterServer) -> Hub:
    extras = _extras(server)
    if extras.hub is None:
        extras.hub = Hub(lambda: snapshot(server), server)
    return extras.hub


class PowerIn(BaseModel):
    """An operator's power request for one power group."""

    model_config = ConfigDict(extra="forbid", strict=True)

    group: Annotated[int, Field(ge=1, le=10_000)]
    action: Literal["on", "off", "cycle"]


def routes(server_of: ServerOf) -> list[tuple[Route, Handler]]:
    """The dashboard's routes for the API's route table (``server_of`` finds the server)."""

    async def page(request: web.Request) -> web.StreamResponse:
        return _static("index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        return _static(request.match_info["name"])

    async def cluster(request: web.Request) -> web.StreamResponse:
        return web.json_response(snapshot(server_of(request)))

    async def stream(request: web.Request) -> web.StreamResponse:
        return await _hub(server_of(request)).serve(request)

    async def power(request: web.Request) -> web.StreamResponse:
        return await _power(server_of(request), request)

    v1 = "/api/v1"
    return [
        (Route("GET", "/", "public", "The dashboard page (no data, no secrets)"), page),
        (Route("GET", "/static/{name}", "public", "The dashboard's script and style"), static),
        (Route("GET", f"{v1}/cluster", "read", "Map, totals and per-bank summary"), cluster),
        (Route("GET", f"{v1}/stream", "read", "Live changes (server-sent events)"), stream),
        (Route("POST", f"{v1}/power", "admin", "Switch a power group", PowerIn), power),
    ]


def _static(name: str) -> web.Response:
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(reason=f"no static file {name}")
    data = resources.files("bramble.services.server").joinpath("static", name).read_bytes()
    kind = STATIC_TYPES[name[name.rindex(".") :]]
    return web.Response(body=data, content_type=kind, charset="utf-8", headers=SECURITY_HEADERS)


async def _power(server: ClusterServer, request: web.Request) -> web.Response:
    try:
        body = PowerIn.model_validate_json(await request.read())
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise web.HTTPUnprocessableEntity(reason=f"{where}: {first['msg']}") from None
    extras = _extras(server)
    asked = f"power group {body.group} {body.action}"
    try:
        result = await extras.power_hook(body.group, body.action)
    except PowerUnavailable as exc:
        await server.event("power", None, f"{asked}: not done: {exc}")
        return web.json_response({"error": str(exc)}, status=501)
    except PowerFailed as exc:
        done = "refused" if exc.status < 500 else "FAILED"
        await server.event("power", None, f"{asked}: {done}: {exc}")
        return web.json_response({"error": f"{asked}: {done.lower()}: {exc}"}, status=exc.status)
    except Exception as exc:
        await server.event("power", None, f"{asked}: FAILED: {exc}")
        return web.json_response({"error": f"{asked} failed: {exc}"}, status=502)
    now = time.time()
    for bank in result.banks:
        if body.action == "off":
            extras.booting.pop(bank, None)
        else:
            extras.booting[bank] = now
    await server.event("power", None, f"{asked}: {result.message}")
    return web.json_response(
        {"group": body.group, "action": body.action, "banks": list(result.banks)}
        | {"message": result.message}
    )
