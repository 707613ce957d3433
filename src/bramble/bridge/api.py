"""bramble-bridge's REST API: power (the head's buttons), lights, sound; one token, one rate
limit. Every value is checked here first: a bad request gets a 400 and nothing reaches a board.

    GET  /api/v1/health                      no token needed: {"ok": true}
    GET  /api/v1/power                       the buttons board's state
    POST /api/v1/power     {"action": "press"|"reset"|"hold"|"release", "ms": N, "confirm": true}
    GET  /api/v1/lights
    POST /api/v1/lights/pixels      {"pixels": [{"index": i, "r": .., "g": .., "b": .., "w": ..}]}
    POST /api/v1/lights/fill        {"r": .., "g": .., "b": .., "w": ..}
    POST /api/v1/lights/brightness  {"value": 0..255}
    POST /api/v1/lights/animation   {"name": .., "r": .., "g": .., "b": .., "progress": 0..100}
    POST /api/v1/lights/cluster     {"state": "booting"|"healthy"|"degraded"|"down"|"warble",
                                     "progress": 0..100}
    GET  /api/v1/sound
    POST /api/v1/sound/play    {"url": ..}     (the URL must start with an allow-listed prefix)
    POST /api/v1/sound/stop
    POST /api/v1/sound/volume  {"percent": 0..100}

Lights requests may name a lights board with "board" (default: the first one).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from bramble.bridge import protocol as p
from bramble.bridge.boards import Board, BoardError
from bramble.bridge.config import BridgeConfig
from bramble.bridge.web import (
    BadRequest,
    Handler,
    RateLimiter,
    error,
    guard,
    int_field,
    json_body,
    str_field,
    url_allowed,
)

log = logging.getLogger("bramble.bridge")
PREFIX = "/api/v1"
DEFAULT_PRESS_MS = {"press": 500, "reset": 250}
#: Cluster states as animations: (animation, colour).
CLUSTER_STATES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "booting": ("progress", (0, 64, 255)),
    "healthy": ("pulse", (0, 255, 0)),
    "degraded": ("pulse", (255, 128, 0)),
    "down": ("chase", (255, 0, 0)),
    "warble": ("flash", (255, 255, 255)),
}
COLOURS = ("r", "g", "b", "w")


def _colour(body: dict[str, Any], board: Board) -> dict[str, int | str]:
    params: dict[str, int | str] = {k: int_field(body, k, 0, 255, 0) for k in COLOURS[:3]}
    if "w" in body:
        if not p.white_channel(board.config.pixel_type):
            raise BadRequest(
                f"w: board {board.name} has {board.config.pixel_type} pixels, no white"
            )
        params["w"] = int_field(body, "w", 0, 255, 0)
    return params


def _hex(board: Board, pixel: dict[str, int | str]) -> str:
    keys = COLOURS if p.white_channel(board.config.pixel_type) else COLOURS[:3]
    return "".join(f"{int(pixel.get(k, 0)):02x}" for k in keys)


class Bridge:
    def __init__(self, config: BridgeConfig, boards: list[Board] | None = None) -> None:
        self.config = config
        self.boards = boards if boards is not None else [Board(b) for b in config.boards]
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        limiter = RateLimiter(self.config.rate_per_minute, self.config.burst)
        app = web.Application(
            client_max_size=self.config.max_body_bytes,
            middlewares=[
                guard(
                    self.config.token,
                    limiter,
                    frozenset({f"{PREFIX}/health"}),
                    self.config.max_body_bytes,
                ),
                self._errors,
            ],
        )
        routes = [
            web.get(f"{PREFIX}/health", self.health),
            web.get(f"{PREFIX}/power", self.power_state),
            web.post(f"{PREFIX}/power", self.power),
            web.get(f"{PREFIX}/lights", self.lights_state),
            web.get(f"{PREFIX}/sound", self.sound_state),
        ]
        routes += [web.post(f"{PREFIX}/lights/{name}", self.lights) for name in LIGHT_ACTIONS]
        routes += [web.post(f"{PREFIX}/sound/{name}", self.sound) for name in SOUND_ACTIONS]
        app.add_routes(routes)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.remote or "unknown"
        try:
            response = await handler(request)
        except BadRequest as exc:
            log.info("%s %s from %s refused: %s", request.method, request.path, client, exc)
            return error(400, str(exc))
        except BoardError as exc:
            log.error("%s %s from %s failed: %s", request.method, request.path, client, exc)
            return error(exc.status, str(exc))
        log.info("%s %s from %s -> %s", request.method, request.path, client, response.status)
        return response

    def _board(self, kind: str, name: object = None) -> Board:
        for board in self.boards:
            if board.config.kind == kind and (name is None or board.name == name):
                return board
        named = f" named {name!r}" if name is not None else ""
        raise BoardError(404, f"no {kind} board{named} is configured")

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def power_state(self, _request: web.Request) -> web.Response:
        return web.json_response(await self._board("buttons").call("GET", "/state"))

    async def power(self, request: web.Request) -> web.Response:
        body = await json_body(request, {"action", "ms", "confirm", "board"})
        action = str_field(body, "action", ("press", "reset", "hold", "release"))
        if action != "release" and body.get("confirm") is not True:
            raise BadRequest(
                f'{action} acts on the head server\'s buttons: send "confirm": true to mean it'
            )
        board = self._board("buttons", body.get("board"))
        if action == "release":
            return web.json_response(await board.call("POST", "/release"))
        if action == "hold":
            if "ms" in body:
                raise BadRequest(f"hold always lasts {p.HOLD_MS} ms; leave out ms")
            return web.json_response(await board.call("POST", "/hold", button="power"))
        ms = int_field(body, "ms", p.MIN_PRESS_MS, p.MAX_PRESS_MS, DEFAULT_PRESS_MS[action])
        button = "power" if action == "press" else "reset"
        log.warning("pressing %s for %d ms (from %s)", button, ms, request.remote)
        return web.json_response(await board.call("POST", "/press", button=button, ms=ms))

    async def lights_state(self, request: web.Request) -> web.Response:
        board = self._board("lights", request.query.get("board"))
        return web.json_response(await board.call("GET", "/state"))

    async def lights(self, request: web.Request) -> web.Response:
        action = request.path.rsplit("/", 1)[1]
        allowed = LIGHT_ACTIONS[action] | {"board"}
        body = await json_body(request, allowed)
        board = self._board("lights", body.get("board"))
        calls = getattr(self, f"_lights_{action}")(body, board)
        answer: dict[str, Any] = {}
        for path, params in calls:  # all checked above: nothing is sent on a bad request
            answer = await board.call("POST", path, **params)
        return web.json_response(answer)

    def _lights_pixels(
        self, body: dict[str, Any], board: Board
    ) -> list[tuple[str, dict[str, Any]]]:
        pixels = body.get("pixels")
        count = board.config.pixels
        if not isinstance(pixels, list) or not 1 <= len(pixels) <= count:
            raise BadRequest(f"pixels must be a list of 1..{count} pixels")
        by_index: dict[int, dict[str, int | str]] = {}
        for n, pixel in enumerate(pixels):
            if not isinstance(pixel, dict) or set(pixel) - {"index", *COLOURS}:
                raise BadRequest(f"pixels[{n}] must be {{index, r, g, b[, w]}}")
            try:
                index = int_field(pixel, "index", 0, count - 1, None)
                by_index[index] = _colour(pixel, board)
            except BadRequest as exc:
                raise BadRequest(f"pixels[{n}].{exc}") from None
        calls: list[tuple[str, dict[str, Any]]] = []
        run: list[int] = []
        for index in [*sorted(by_index), -1]:
            full = len(run) == p.MAX_PIXELS_PER_REQUEST
            if run and (index != run[-1] + 1 or full):
                data = "".join(_hex(board, by_index[i]) for i in run)
                calls.append(("/pixels", {"from": run[0], "data": data}))
                run = []
            run.append(index)
        return calls

    def _lights_fill(self, body: dict[str, Any], board: Board) -> list[tuple[str, dict[str, Any]]]:
        return [("/fill", _colour(body, board))]

    def _lights_brightness(
        self, body: dict[str, Any], _board: Board
    ) -> list[tuple[str, dict[str, Any]]]:
        return [("/brightness", {"v": int_field(body, "value", 0, 255, None)})]

    def _lights_animation(
        self, body: dict[str, Any], board: Board
    ) -> list[tuple[str, dict[str, Any]]]:
        name = str_field(body, "name", p.ANIMATIONS)
        params: dict[str, Any] = {"name": name, **_colour(body, board)}
        if "progress" in body:
            params["p"] = int_field(body, "progress", 0, 100, None)
        return [("/animation", params)]

    def _lights_cluster(
        self, body: dict[str, Any], _board: Board
    ) -> list[tuple[str, dict[str, Any]]]:
        state = str_field(body, "state", tuple(CLUSTER_STATES))
        animation, (r, g, b) = CLUSTER_STATES[state]
        params: dict[str, Any] = {"name": animation, "r": r, "g": g, "b": b}
        if state == "booting":
            params["p"] = int_field(body, "progress", 0, 100, None)
        elif "progress" in body:
            raise BadRequest("progress goes with state booting only")
        return [("/animation", params)]

    async def sound_state(self, _request: web.Request) -> web.Response:
        return web.json_response(await self._sound("GET", "state", {}))

    async def sound(self, request: web.Request) -> web.Response:
        action = request.path.rsplit("/", 1)[1]
        body = await json_body(request, SOUND_ACTIONS[action])
        if action == "play":
            url = str_field(body, "url")
            if not url_allowed(url, self.config.sound_allow):
                shown = ", ".join(self.config.sound_allow) or "none"
                log.warning("sound refused (not on the allow-list): %.200s", url)
                return error(403, f"the URL is not on the allow-list (allowed prefixes: {shown})")
            body = {"url": url}
        elif action == "volume":
            body = {"percent": int_field(body, "percent", 0, 100, None)}
        return web.json_response(await self._sound("POST", action, body))

    async def _sound(self, method: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.config.sound
        if target is None:
            raise BoardError(404, "no sound Pi is configured")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=target.timeout)
            )
        headers = {"Authorization": f"Bearer {target.token}"}
        try:
            async with self._session.request(
                method, f"{target.url}/{action}", json=body or None, headers=headers
            ) as response:
                raw = await response.content.read(65536)
                answer = json.loads(raw or b"{}")
        except TimeoutError:
            raise BoardError(
                504, f"the sound Pi did not answer within {target.timeout:g} s"
            ) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise BoardError(
                502, f"the sound Pi is unreachable or answered garbage ({exc})"
            ) from None
        if response.status != 200 or not isinstance(answer, dict):
            reason = answer.get("error") if isinstance(answer, dict) else None
            raise BoardError(502, f"the sound Pi answered {response.status}: {reason}")
        return answer


LIGHT_ACTIONS: dict[str, set[str]] = {
    "pixels": {"pixels"},
    "fill": set(COLOURS),
    "brightness": {"value"},
    "animation": {"name", "progress", *COLOURS},
    "cluster": {"state", "progress"},
}
SOUND_ACTIONS: dict[str, set[str]] = {"play": {"url"}, "stop": set(), "volume": {"percent"}}
