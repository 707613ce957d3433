"""A bridge lab on 127.0.0.1: simulated boards, bramble-sound playing through mpg123 into a
file, a file server for the sounds, and bramble-bridge in front; run in a background event
loop so that tests speak plain HTTP to it, as a user would."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from bramble.bridge import config as bridge_config
from bramble.bridge import sound
from bramble.bridge.api import Bridge
from bramble.sim.boards import ButtonsBoard, LightsBoard

T = TypeVar("T")
TOKEN = "bridge-token-0123456789"  # noqa: S105 (test secrets)
SOUND_TOKEN = "sound-token-0123456789"  # noqa: S105 (test secrets)
BUTTONS_SECRET = "buttons-secret-0123456789"  # noqa: S105 (test secrets)
LIGHTS_SECRET = "lights-secret-0123456789"  # noqa: S105 (test secrets)


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def call(
    url: str,
    body: Any = None,
    token: str | None = TOKEN,
    method: str | None = None,
    raw: bytes | None = None,
) -> Answer:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            return Answer(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = {"raw": text.decode("utf-8", "replace")}
        return Answer(exc.code, payload, dict(exc.headers))


def write_secret(path: Path, secret: str) -> str:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)


@dataclass
class BridgeLab:
    loop: Loop
    url: str
    buttons: ButtonsBoard
    lights: LightsBoard
    player: sound.Player
    sound_url: str
    files_url: str
    played: Path

    def api(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return call(f"{self.url}/api/v1/{path}", body, **kwargs)


def _sound_file(folder: Path) -> Path:
    """A 0.3 s tone as MP3 (sox makes the WAV, lame encodes it)."""
    for tool in ("sox", "lame", "mpg123"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make venv-test` (apt: sox lame mpg123)")
    wav, mp3 = folder / "tone.wav", folder / "tone.mp3"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", str(wav), "synth", "0.3", "sine", "440"],
        check=True,
        timeout=30,
    )
    subprocess.run(["lame", "--quiet", str(wav), str(mp3)], check=True, timeout=30)
    return mp3


@pytest.fixture
def bridge_lab(tmp_path: Path) -> Iterator[BridgeLab]:
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    _sound_file(sounds)
    played = tmp_path / "played.wav"
    loop = Loop()
    runners: list[web.AppRunner] = []
    buttons = ButtonsBoard("buttons", BUTTONS_SECRET)
    lights = LightsBoard("lights", LIGHTS_SECRET, pixels=24, pixel_type="GRBW")
    try:
        buttons_port = loop.run(buttons.start())
        lights_port = loop.run(lights.start())
        files = web.Application()
        files.router.add_static("/sounds/", sounds)
        runner, files_port = loop.run(serve(files))
        runners.append(runner)
        files_url = f"http://127.0.0.1:{files_port}/sounds/"
        sound_toml = tmp_path / "sound.toml"
        sound_toml.write_text(
            f'token_file = "{write_secret(tmp_path / "sound.token", SOUND_TOKEN)}"\n'
            f'allow = ["{files_url}"]\n'
            f'player = ["mpg123", "-q", "-f", "{{scale}}", "-w", "{played}", "{{file}}"]\n'
        )
        player = sound.Player(sound.load(sound_toml, {}))
        runner, sound_port = loop.run(serve(player.app()))
        runners.append(runner)
        bridge_toml = tmp_path / "bridge.toml"
        bridge_toml.write_text(
            f'token_file = "{write_secret(tmp_path / "bridge.token", TOKEN)}"\n'
            f'sound_allow = ["{files_url}"]\n'
            "rate_per_minute = 60\nburst = 40\nmax_body_bytes = 4096\n"
            '[[boards]]\nname = "buttons"\nkind = "buttons"\n'
            f'url = "http://127.0.0.1:{buttons_port}"\ntimeout = 1.5\n'
            f'secret_file = "{write_secret(tmp_path / "buttons.secret", BUTTONS_SECRET)}"\n'
            '[[boards]]\nname = "lights"\nkind = "lights"\npixel_type = "GRBW"\n'
            f'url = "http://127.0.0.1:{lights_port}"\ntimeout = 1.5\n'
            f'secret_file = "{write_secret(tmp_path / "lights.secret", LIGHTS_SECRET)}"\n'
            f'[sound]\nurl = "http://127.0.0.1:{sound_port}"\n'
            f'token_file = "{tmp_path / "sound.token"}"\n'
        )
        bridge = Bridge(bridge_config.load(bridge_toml, {}))
        runner, bridge_port = loop.run(serve(bridge.app()))
        runners.append(runner)
        yield BridgeLab(
            loop,
            f"http://127.0.0.1:{bridge_port}",
            buttons,
            lights,
            player,
            f"http://127.0.0.1:{sound_port}",
            files_url,
            played,
        )
    finally:
        for runner in reversed(runners):
            loop.run(runner.cleanup())
        loop.run(buttons.stop())
        loop.run(lights.stop())
        loop.close()
