"""Simulators of the two bridge boards, answering exactly like the sketches in firmware/.

Same parsing (255-byte lines, 16 headers, 2 s per line, query parameters only, first occurrence
wins, decimal integers only), same answers, same quirks: one client at a time, a 250 ms pause
before 401, colour parameters default to 0, ``w`` ignored on RGB strips, a flash restores the
previous animation but not static pixels. Failures on request (``fail``): ``timeout`` (read the
request, never answer), ``drop`` (close without an answer), ``stuck`` (the next released
solenoid stays out); a wrong secret is a simulator made with another secret. Over a serial
line (``serve_serial``: a pseudo-terminal's master side in tests) the board reads request after
request from the one stream and writes each answer back, as the sketches do with ``Serial``.

    python -m bramble.sim.boards --kind lights --secret-file F --port 8081 [--pixels 24 --type GRB]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bramble.bridge import protocol as p


@dataclass
class Request:
    method: str = ""
    path: str = ""
    query: str = ""
    authorized: bool = False
    status: int = 0


class BoardError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def param(query: str, key: str, size: int = 12) -> str | None:
    """brambleParam: the first ``key=value`` (not decoded); BoardError 400 when too long."""
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and name == key and part:
            if len(value) >= size:
                raise BoardError(400, f"{key} too long")
            return value
    return None


def int_param(query: str, key: str, lo: int, hi: int, message: str) -> int | None:
    """brambleIntParam: None when absent; BoardError 400 unless decimal digits within lo..hi."""
    try:
        text = param(query, key)
    except BoardError:
        raise BoardError(400, message) from None
    if text is None:
        return None
    if not text or not text.isascii() or not text.isdigit() or int(text) > 1_000_000_000:
        raise BoardError(400, message)
    value = int(text)
    if not lo <= value <= hi:
        raise BoardError(400, message)
    return value


class Board:
    """The part both sketches share (bramble_http.h): parsing, authentication, serving."""

    kind = ""

    def __init__(self, name: str, secret: str) -> None:
        self.name = name
        self.secret = secret
        self.fail: str | None = None
        self.requests: list[str] = []
        self._lock = asyncio.Lock()
        self._started = time.monotonic()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._client, host, port, limit=64 * 1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def serve_serial(self, fd: int) -> None:
        """Answer requests arriving on ``fd`` (a serial line) until cancelled.

        Like the sketches' ``if (Serial.available()) handle(Serial);``: the board waits for a
        byte, then parses one request from the stream (the same 2 s per line) and answers.
        """
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024)
        arrived = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:  # the other side hung up for good
                data = b""
            if data:
                reader.feed_data(data)
                arrived.set()
            else:
                loop.remove_reader(fd)
                reader.feed_eof()
                arrived.set()

        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
        try:
            while not reader.at_eof():
                await arrived.wait()
                arrived.clear()
                if reader.at_eof():
                    break
                async with self._lock:
                    answer = await self.serve(reader)
                if answer is not None:
                    await _write_all(fd, answer)
        finally:
            loop.remove_reader(fd)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        try:
            async with self._lock:  # the Arduino serves one client at a time
                answer = await self.serve(reader)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def serve(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request read from ``reader``; the bytes to answer (None: say nothing)."""
        req = await self._parse(reader)
        self.requests.append(f"{req.method} {req.path}?{req.query}")
        if self.fail == "timeout":  # hang until the client gives up or the fault is cleared
            deadline = time.monotonic() + 60
            while self.fail == "timeout" and time.monotonic() < deadline:
                try:
                    if not await asyncio.wait_for(reader.read(4096), 0.05):
                        break  # the client hung up
                except TimeoutError:
                    pass
            return None
        if self.fail == "drop":
            return None
        refusal = await self._refusal(req)
        if refusal is not None:
            return refusal
        try:
            return p.build_response(200, self.route(req.method, req.path, req.query))
        except BoardError as exc:
            return p.build_response(exc.status, {"error": str(exc)})

    async def _refusal(self, req: Request) -> bytes | None:
        """brambleAccept: the answer to a request the routes never see, else None."""
        errors = {
            408: "request timeout",
            414: "request line too long",
            431: "too many or too long headers",
            400: "malformed request line",
        }
        if req.status in errors:
            return p.build_response(req.status, {"error": errors[req.status]})
        if not req.authorized:
            await asyncio.sleep(p.AUTH_FAIL_DELAY_MS / 1000)
            return p.build_response(401, {"error": "missing or wrong secret"})
        if req.status == 404:
            return p.build_response(404, {"error": "no such path"})
        if req.method not in ("GET", "POST"):
            return p.build_response(405, {"error": "GET or POST only"})
        return None

    async def _line(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        """brambleReadLine: (length or -1 timeout or -2 overflow, text)."""
        try:
            raw = await asyncio.wait_for(reader.readline(), p.READ_TIMEOUT_MS / 1000)
        except (TimeoutError, ValueError):
            return -1, ""
        if not raw.endswith(b"\n"):
            return -1, ""
        text = raw.rstrip(b"\n").replace(b"\r", b"").decode("latin-1")
        if len(text) > p.MAX_LINE:
            return -2, text[: p.MAX_LINE]
        return len(text), text

    async def _parse(self, reader: asyncio.StreamReader) -> Request:
        req = Request()
        n, line = await self._line(reader)
        if n == -1:
            req.status = 408
            return req
        if n == -2:
            req.status = 414
        else:
            parts = line.split(" ")
            if len(parts) < 3 or len(parts[0]) >= 8:
                req.status = 400
            else:
                req.method = parts[0]
                target = parts[1]
                target, _, req.query = target.partition("?")
                if len(target) >= 24:
                    req.status = 404
                else:
                    req.path = target
        for count in range(p.MAX_HEADERS + 64):
            n, line = await self._line(reader)
            if n == 0:
                return req
            if n == -1:
                req.status = 408
                return req
            if n == -2 or count >= p.MAX_HEADERS:
                req.status = req.status or 431
                continue
            if line[:17].lower() == "x-bramble-secret:":
                req.authorized = line[17:].lstrip(" ") == self.secret
        req.status = req.status or 431
        return req

    def route(self, method: str, path: str, query: str) -> dict[str, Any]:
        raise NotImplementedError


async def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a non-blocking ``fd``, waiting (at most 5 s) while it is full."""
    deadline = time.monotonic() + 5
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("the serial line did not take the answer") from None
            await asyncio.sleep(0.01)


@dataclass
class Solenoid:
    name: str
    active_until: float = 0.0
    released_at: float = 0.0
    stuck: bool = False
    presses: int = 0
    jam: bool = False  # the plunger will stay out after the next release

    def update(self, now: float) -> None:
        if self.active_until and now >= self.active_until:
            self.released_at = self.active_until
            self.active_until = 0.0
        settled = now - self.released_at >= p.STUCK_CHECK_MS / 1000
        if not self.active_until and self.released_at and settled:
            self.stuck = self.stuck or self.jam

    def state(self) -> str:
        if self.active_until:
            return "pressed"
        return "stuck" if self.stuck else "idle"


class ButtonsBoard(Board):
    """firmware/buttons/buttons.ino."""

    kind = "buttons"

    def __init__(self, name: str, secret: str) -> None:
        super().__init__(name, secret)
        self.solenoids = {b: Solenoid(b) for b in p.BUTTONS}
        self.log: list[tuple[str, int]] = []

    def jam(self, button: str) -> None:
        """The solenoid stays out after its next release (reported stuck)."""
        self.solenoids[button].jam = True

    def _state(self) -> dict[str, Any]:
        now = time.monotonic()
        for solenoid in self.solenoids.values():
            solenoid.update(now)
        return {
            "board": self.name,
            "kind": "buttons",
            "power": self.solenoids["power"].state(),
            "reset": self.solenoids["reset"].state(),
            "presses": sum(s.presses for s in self.solenoids.values()),
            "uptime_ms": self.uptime_ms(),
            "max_press_ms": p.MAX_PRESS_MS,
            "hold_ms": p.HOLD_MS,
        }

    def route(self, method: str, path: str, query: str) -> dict[str, Any]:
        if path == "/state":
            return self._state()
        if path not in ("/press", "/hold", "/release"):
            raise BoardError(404, "no such path")
        if method != "POST":
            raise BoardError(405, "POST only")
        if path == "/release":
            now = time.monotonic()
            for solenoid in self.solenoids.values():
                if solenoid.active_until:
                    solenoid.active_until = now
            return self._state()
        return self._press(query, hold=path == "/hold")

    def _press(self, query: str, *, hold: bool) -> dict[str, Any]:
        try:
            name = param(query, "button", 8)
        except BoardError:
            name = None
        if name not in self.solenoids:
            raise BoardError(400, "button must be power or reset")
        solenoid = self.solenoids[str(name)]
        ms = p.HOLD_MS
        if hold:
            if solenoid.name != "power":
                raise BoardError(400, "only power can be held")
        else:
            given = int_param(query, "ms", p.MIN_PRESS_MS, p.MAX_PRESS_MS, "ms must be 50..2000")
            if given is None:
                raise BoardError(400, "ms must be 50..2000")
            ms = given
        self._state()
        if solenoid.stuck:
            raise BoardError(503, "solenoid stuck")
        if solenoid.active_until:
            raise BoardError(409, "already pressed")
        solenoid.active_until = time.monotonic() + ms / 1000
        solenoid.presses += 1
        self.log.append((solenoid.name, ms))
        return {"button": solenoid.name, "ms": ms, "state": "pressed"}


@dataclass
class Show:
    animation: str = "off"
    color: tuple[int, ...] = (0, 0, 0, 0)
    progress: int = 0
    brightness: int = 64
    started: float = field(default_factory=time.monotonic)


class LightsBoard(Board):
    """firmware/lights/lights.ino; ``pixels`` holds what the strip shows without animation."""

    kind = "lights"

    def __init__(
        self,
        name: str,
        secret: str,
        pixels: int = 24,
        pixel_type: str = "GRB",
        brightness: int = 64,
    ) -> None:
        super().__init__(name, secret)
        self.count = pixels
        self.pixel_type = pixel_type
        self.white = p.white_channel(pixel_type)
        self.pixels: list[tuple[int, ...]] = [(0, 0, 0, 0)] * pixels
        self.show = Show(brightness=brightness)
        self._before_flash = self.show

    def _color(self, query: str) -> tuple[int, ...]:
        values = [int_param(query, key, 0, 255, "colours are 0..255") for key in "rgbw"]
        color = tuple(v or 0 for v in values)
        return color if self.white else (*color[:3], 0)

    def _update(self) -> None:
        flash_ms = 2 * p.FLASH_CYCLES * p.FLASH_STEP_MS
        over = time.monotonic() - self.show.started >= flash_ms / 1000
        if self.show.animation == "flash" and over:
            self.show = self._before_flash
            self.pixels = [(0, 0, 0, 0)] * self.count

    def _state(self) -> dict[str, Any]:
        self._update()
        return {
            "board": self.name,
            "kind": "lights",
            "pixels": self.count,
            "type": self.pixel_type,
            "brightness": self.show.brightness,
            "animation": self.show.animation,
            "progress": self.show.progress,
            "uptime_ms": self.uptime_ms(),
        }

    def route(self, method: str, path: str, query: str) -> dict[str, Any]:
        self._update()
        if path == "/state":
            return self._state()
        if path not in ("/pixel", "/pixels", "/fill", "/brightness", "/animation"):
            raise BoardError(404, "no such path")
        if method != "POST":
            raise BoardError(405, "POST only")
        if path == "/pixels":
            self._pixels(query)
        elif path == "/animation":
            self._animation(query)
        elif path == "/brightness":
            value = int_param(query, "v", 0, 255, "v must be 0..255")
            if value is None:
                raise BoardError(400, "v must be 0..255")
            self.show.brightness = value
        else:
            index = None
            if path == "/pixel":
                index = int_param(query, "i", 0, self.count - 1, "i must be a pixel index")
                if index is None:
                    raise BoardError(400, "i must be a pixel index")
            color = self._color(query)
            self.show.animation = "off"
            if index is None:
                self.pixels = [color] * self.count
            else:
                self.pixels[index] = color
        return self._state()

    def _pixels(self, query: str) -> None:
        width = 8 if self.white else 6
        start = int_param(query, "from", 0, self.count - 1, "from must be a pixel index")
        if start is None:
            raise BoardError(400, "from must be a pixel index")
        try:
            data = param(query, "data", p.MAX_PIXELS_PER_REQUEST * 8 + 1)
        except BoardError:
            data = None
        if data is None:
            raise BoardError(400, "data: up to 24 pixels of hex")
        count = len(data) // width
        if not data or len(data) % width or start + count > self.count:
            raise BoardError(400, "data: whole pixels within the strip")
        if any(c not in "0123456789abcdefABCDEF" for c in data):
            raise BoardError(400, "data: hex digits only")
        for k in range(count):
            chunk = data[k * width : (k + 1) * width]
            color = tuple(int(chunk[j : j + 2], 16) for j in range(0, width, 2))
            self.pixels[start + k] = color if self.white else (*color, 0)
        self.show.animation = "off"

    def _animation(self, query: str) -> None:
        try:
            name = param(query, "name")
        except BoardError:
            name = None
        if name not in p.ANIMATIONS:
            raise BoardError(400, "unknown animation")
        color = self._color(query)
        progress = int_param(query, "p", 0, 100, "p must be 0..100") or 0
        if name == "flash" and self.show.animation != "flash":
            self._before_flash = self.show
        self.show = Show(str(name), color, progress, self.show.brightness)
        if name == "off":
            self.pixels = [(0, 0, 0, 0)] * self.count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=["buttons", "lights"], required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--secret-file", required=True, help="file holding the shared secret")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pixels", type=int, default=24)
    parser.add_argument("--type", default="GRB", choices=p.PIXEL_TYPES)
    args = parser.parse_args(argv)
    with open(args.secret_file, encoding="utf-8") as handle:
        secret = handle.read().strip()
    board: Board = (
        ButtonsBoard(args.name or "buttons", secret)
        if args.kind == "buttons"
        else LightsBoard(args.name or "lights", secret, args.pixels, args.type)
    )

    async def run() -> None:
        port = await board.start(args.host, args.port)
        print(f"{board.kind} board {board.name} on {args.host}:{port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
