"""An Arduino-style HTTP relay board (the ``http_relay`` driver's device), simulated.

The protocol (docs/power.md, "http_relay"): JSON over HTTP/1.1, one relay per outlet, numbered
from 1; every request carries ``Authorization: Bearer <token>`` (the board's shared secret).

- ``GET /relays`` -> ``{"relays": {"1": "on", "2": "off", ...}}``
- ``GET /relay/<n>`` -> ``{"relay": n, "state": "on"|"off"}``
- ``PUT /relay/<n>`` with ``{"state": "on"|"off"}`` -> ``{"relay": n, "state": ...}``: the state
  read back from the relay's sense input after switching, so a stuck relay answers with the
  state it is stuck in.

Like the Arduino sketches it stands in for: ``Connection: close`` on every answer, 401
``{"error": "unauthorized"}`` for a wrong or missing token, 404 for a relay that does not
exist, 400 for a body it cannot read (at most 256 bytes). ``Faults`` make it hang (never
answer), refuse every token, or stick a relay.
"""

from __future__ import annotations

import asyncio
import hmac
import json

from aiohttp import web
from aiohttp.typedefs import Handler

from bramble.sim.power import Faults, Outlets, ThreadedSim

MAX_BODY = 256


class RelayBoardSim(ThreadedSim):
    """The relay board: ``RelayBoardSim(Outlets(4), token="s3cret").start()`` -> port."""

    def __init__(
        self, outlets: Outlets, token: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.outlets = outlets
        self.token = token
        self._runner: web.AppRunner | None = None

    @property
    def faults(self) -> Faults:
        return self.outlets.faults

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/relays", self._all)
        app.router.add_get("/relay/{n}", self._get)
        app.router.add_put("/relay/{n}", self._put)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.faults.hang:
            await asyncio.Event().wait()  # until the server closes the connection
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        if self.faults.refuse_auth or not hmac.compare_digest(given.encode(), expected.encode()):
            response: web.StreamResponse = _json({"error": "unauthorized"}, 401)
        else:
            response = await handler(request)
        response.force_close()
        return response

    def _relay(self, request: web.Request) -> int:
        text = request.match_info["n"]
        if not text.isdigit() or not 1 <= int(text) <= self.outlets.count:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no relay {text}"}), content_type="application/json"
            )
        return int(text)

    async def _all(self, request: web.Request) -> web.Response:
        states = self.outlets.snapshot()
        return _json({"relays": {str(n): _word(on) for n, on in states.items()}})

    async def _get(self, request: web.Request) -> web.Response:
        n = self._relay(request)
        return _json({"relay": n, "state": _word(self.outlets.get(n))})

    async def _put(self, request: web.Request) -> web.Response:
        n = self._relay(request)
        try:
            body = json.loads(await request.read())
            state = body["state"]
            if state not in ("on", "off"):
                raise ValueError(state)
        except (ValueError, KeyError, TypeError, web.HTTPRequestEntityTooLarge):
            return _json({"error": 'body must be {"state": "on"} or {"state": "off"}'}, 400)
        return _json({"relay": n, "state": _word(self.outlets.set(n, state == "on"))})

    async def _serve(self) -> int:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _word(on: bool) -> str:
    return "on" if on else "off"


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
