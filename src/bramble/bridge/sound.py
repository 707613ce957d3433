"""bramble-sound: the sound Pi's player behind a small authenticated API.

    GET  /state                  {"playing": URL or null, "volume": 0..100, "played": N}
    POST /play   {"url": ..}     fetch (size and time bounded, allow-listed prefixes only), play
    POST /stop
    POST /volume {"percent": ..}

The player is a command (default mpg123) with ``{file}`` and ``{scale}`` (mpg123's -f: 32768
is full volume) filled in; one sound at a time, a new one stops the old. Configuration:
/etc/bramble/sound.toml, ``BRAMBLE_SOUND_<KEY>`` environment variables over top-level keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bramble.bridge.config import check_prefixes
from bramble.bridge.web import (
    BadRequest,
    ConfigError,
    RateLimiter,
    env_overrides,
    error,
    guard,
    int_field,
    json_body,
    load_toml,
    read_secret,
    run_app,
    service_main,
    setting,
    str_field,
    url_allowed,
)

log = logging.getLogger("bramble.sound")
DEFAULT_PATH = Path("/etc/bramble/sound.toml")
DEFAULT_PLAYER = ["mpg123", "-q", "-o", "alsa", "-f", "{scale}", "{file}"]


@dataclass(frozen=True)
class SoundConfig:
    token: str
    allow: tuple[str, ...]
    player: tuple[str, ...] = tuple(DEFAULT_PLAYER)
    listen: str = "0.0.0.0"  # noqa: S104 (the bridge on the head calls in; the token guards)
    port: int = 8471
    volume: int = 80
    max_bytes: int = 20 * 1024 * 1024
    fetch_timeout: float = 30.0
    rate_per_minute: int = 120
    burst: int = 20


def load(path: Path = DEFAULT_PATH, environ: Any = os.environ) -> SoundConfig:
    data = env_overrides(load_toml(path), "BRAMBLE_SOUND_", environ)
    where = str(path)
    player = data.get("player", DEFAULT_PLAYER)
    if not isinstance(player, list) or not player or not all(isinstance(a, str) for a in player):
        raise ConfigError(f"{where}: player must be a command as a list of strings")
    if "{file}" not in player:
        raise ConfigError(f"{where}: player must contain {{file}} (the sound to play)")
    volume = setting(data, "volume", int, 80, where)
    if not 0 <= volume <= 100:
        raise ConfigError(f"{where}: volume must be 0..100")
    return SoundConfig(
        token=read_secret(setting(data, "token_file", str, None, where)),
        allow=check_prefixes(data.get("allow", []), where),
        player=tuple(player),
        listen=setting(data, "listen", str, "0.0.0.0", where),  # noqa: S104
        port=setting(data, "port", int, 8471, where),
        volume=volume,
        max_bytes=setting(data, "max_bytes", int, 20 * 1024 * 1024, where),
        fetch_timeout=setting(data, "fetch_timeout", float, 30.0, where),
        rate_per_minute=setting(data, "rate_per_minute", int, 120, where),
        burst=setting(data, "burst", int, 20, where),
    )


class Player:
    def __init__(self, config: SoundConfig) -> None:
        self.config = config
        self.volume = config.volume
        self.playing: str | None = None
        self.played = 0
        self._process: asyncio.subprocess.Process | None = None
        self._waiter: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        limiter = RateLimiter(self.config.rate_per_minute, self.config.burst)
        app = web.Application(
            client_max_size=4096, middlewares=[guard(self.config.token, limiter, frozenset(), 4096)]
        )
        app.add_routes(
            [
                web.get("/state", self.state),
                web.post("/play", self.play),
                web.post("/stop", self.stop),
                web.post("/volume", self.set_volume),
            ]
        )
        app.on_cleanup.append(self._cleanup)
        return app

    def _state(self) -> dict[str, Any]:
        return {"playing": self.playing, "volume": self.volume, "played": self.played}

    async def state(self, _request: web.Request) -> web.Response:
        return web.json_response(self._state())

    async def set_volume(self, request: web.Request) -> web.Response:
        try:
            body = await json_body(request, {"percent"})
            self.volume = int_field(body, "percent", 0, 100, None)
        except BadRequest as exc:
            return error(400, str(exc))
        log.info("volume %d%% (applies from the next sound)", self.volume)
        return web.json_response(self._state())

    async def stop(self, _request: web.Request) -> web.Response:
        await self._stop()
        return web.json_response(self._state())

    async def play(self, request: web.Request) -> web.Response:
        try:
            url = str_field(await json_body(request, {"url"}), "url")
        except BadRequest as exc:
            return error(400, str(exc))
        if not url_allowed(url, self.config.allow):
            log.warning("refused (not on the allow-list): %.200s", url)
            return error(403, "the URL is not on the allow-list")
        handle, name = tempfile.mkstemp(prefix="bramble-sound-")
        os.close(handle)
        file = Path(name)
        try:
            await self._fetch(url, file)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            file.unlink(missing_ok=True)
            log.error("cannot fetch %.200s: %s", url, exc)
            return error(502, f"cannot fetch the sound ({exc})")
        await self._stop()
        scale = str(32768 * self.volume // 100)
        argv = [
            arg.replace("{file}", str(file)).replace("{scale}", scale) for arg in self.config.player
        ]
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.playing = url
        self.played += 1
        self._waiter = asyncio.create_task(self._wait(self._process, file))
        log.info("playing %.200s at %d%%", url, self.volume)
        return web.json_response(self._state())

    async def _fetch(self, url: str, file: Path) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.fetch_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise ValueError(f"{url} answered {response.status}")
            size = 0
            with file.open("wb") as out:
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > self.config.max_bytes:
                        raise ValueError(f"larger than {self.config.max_bytes} bytes")
                    out.write(chunk)

    async def _wait(self, process: asyncio.subprocess.Process, file: Path) -> None:
        try:
            await process.wait()
        finally:
            file.unlink(missing_ok=True)
            if self._process is process:
                self.playing = None
                self._process = None

    async def _stop(self) -> None:
        process, waiter = self._process, self._waiter
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
        if waiter is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        self.playing = None

    async def _cleanup(self, _app: web.Application) -> None:
        await self._stop()


def _serve(settings: Any) -> None:
    run_app(Player(settings).app(), settings.listen, settings.port)


def main(argv: list[str] | None = None) -> int:
    return service_main(
        "bramble-sound", str(__doc__), DEFAULT_PATH, load=load, serve=_serve, argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
