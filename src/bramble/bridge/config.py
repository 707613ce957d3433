"""bramble-bridge's configuration: one TOML file (the bridges role templates it), secrets in
files of their own, ``BRAMBLE_BRIDGE_<KEY>`` environment variables over top-level keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bramble.bridge import protocol as p
from bramble.bridge.boards import BoardConfig, transport_for
from bramble.bridge.web import ConfigError, env_overrides, load_toml, read_secret, setting

DEFAULT_PATH = Path("/etc/bramble/bridge.toml")
ENV_PREFIX = "BRAMBLE_BRIDGE_"


@dataclass(frozen=True)
class SoundTarget:
    url: str
    token: str
    timeout: float


@dataclass(frozen=True)
class BridgeConfig:
    token: str
    boards: tuple[BoardConfig, ...]
    sound: SoundTarget | None
    sound_allow: tuple[str, ...]
    listen: str = "127.0.0.1"
    port: int = 8472
    rate_per_minute: int = 120
    burst: int = 20
    max_body_bytes: int = 16384


def check_prefixes(values: Any, where: str) -> tuple[str, ...]:
    """Allow-list entries: http(s) URL prefixes ending in '/' (so no host can be extended)."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: sound_allow must be a list of URL prefixes")
    for value in values:
        if not value.startswith(("http://", "https://")) or not value.endswith("/"):
            raise ConfigError(
                f"{where}: sound_allow entry {value!r} must be an http(s) URL ending in '/', "
                "e.g. http://10.42.0.1/sounds/"
            )
    return tuple(values)


def load(path: Path = DEFAULT_PATH, environ: Mapping[str, str] = os.environ) -> BridgeConfig:
    data = env_overrides(load_toml(path), ENV_PREFIX, environ)
    where = str(path)
    boards = []
    for index, raw in enumerate(data.get("boards", [])):
        here = f"{where}: boards[{index}]"
        kind = setting(raw, "kind", str, None, here)
        if kind not in ("buttons", "lights"):
            raise ConfigError(f"{here}: kind must be buttons or lights")
        board = BoardConfig(
            name=setting(raw, "name", str, None, here),
            kind=kind,
            url=setting(raw, "url", str, None, here),
            secret=read_secret(setting(raw, "secret_file", str, None, here)),
            pixels=setting(raw, "pixels", int, 24, here),
            pixel_type=setting(raw, "pixel_type", str, "GRB", here),
            timeout=setting(raw, "timeout", float, 3.0, here),
        )
        if board.pixel_type not in p.PIXEL_TYPES or not 1 <= board.pixels <= 1024:
            raise ConfigError(f"{here}: pixel_type one of {p.PIXEL_TYPES}, pixels 1..1024")
        try:
            transport_for(board)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        boards.append(board)
    sound = None
    if "sound" in data:
        here = f"{where}: [sound]"
        sound = SoundTarget(
            url=setting(data["sound"], "url", str, None, here).rstrip("/"),
            token=read_secret(setting(data["sound"], "token_file", str, None, here)),
            timeout=setting(data["sound"], "timeout", float, 10.0, here),
        )
    return BridgeConfig(
        token=read_secret(setting(data, "token_file", str, None, where)),
        boards=tuple(boards),
        sound=sound,
        sound_allow=check_prefixes(data.get("sound_allow", []), where),
        listen=setting(data, "listen", str, "127.0.0.1", where),
        port=setting(data, "port", int, 8472, where),
        rate_per_minute=setting(data, "rate_per_minute", int, 120, where),
        burst=setting(data, "burst", int, 20, where),
        max_body_bytes=setting(data, "max_body_bytes", int, 16384, where),
    )
