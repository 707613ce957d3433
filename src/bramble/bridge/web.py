"""What bramble-bridge and bramble-sound share: configuration files, secrets, bearer
authentication, a per-client rate limit, and strict JSON bodies."""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger("bramble.bridge")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConfigError(Exception):
    """A configuration file or secret that cannot be used; the message says what to fix."""


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def env_overrides(data: dict[str, Any], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Top-level keys overridden by ``PREFIX_KEY`` environment variables (ints stay ints)."""
    merged = dict(data)
    for key, value in data.items():
        name = f"{prefix}{key.upper()}"
        if name in environ and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            raw = environ[name]
            try:
                merged[key] = type(value)(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r}: expected a {type(value).__name__}") from None
    return merged


def read_secret(path: str | Path) -> str:
    """The secret in ``path`` (stripped); ConfigError when missing, empty or readable by all."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        secret = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the secret ({exc.strerror})") from None
    if mode & 0o004:
        raise ConfigError(f"{file}: the secret is readable by everyone; chmod 0600 or 0640")
    if not secret or len(secret) < 16 or not secret.isascii() or not secret.isprintable():
        raise ConfigError(f"{file}: the secret must be at least 16 printable ASCII characters")
    return secret


def setting(data: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    """``data[key]`` of type ``kind`` (default when absent); ConfigError naming ``where``."""
    value = data.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}")
    return value


class RateLimiter:
    """A token bucket per client address: ``rate`` requests a minute, bursts of ``burst``."""

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self.buckets) > 10_000:  # bounded memory: forget the idle clients
            self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < 300}
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def guard(token: str, limiter: RateLimiter, open_paths: frozenset[str], max_body: int) -> Any:
    """Middleware: rate limit every request, then require ``Authorization: Bearer <token>``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.remote or "unknown"
        wait = limiter.take(client)
        if wait > 0:
            log.warning("rate limit: %s %s from %s refused", request.method, request.path, client)
            response = error(429, "too many requests; slow down")
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        if request.path not in open_paths:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning(
                    "refused: %s %s from %s without the token", request.method, request.path, client
                )
                return error(401, "missing or wrong bearer token")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"request body larger than {max_body} bytes")

    return middleware


class BadRequest(Exception):
    """A request the API refuses with 400; the message names the field."""


async def json_body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object, with no keys outside ``allowed``."""
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {sorted(allowed)}")
    return body


def int_field(body: Mapping[str, Any], name: str, lo: int, hi: int, default: int | None) -> int:
    value = body.get(name, default)
    if value is None:
        raise BadRequest(f"{name} is required ({lo}..{hi})")
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(f"{name} must be an integer {lo}..{hi}, not {value!r}")
    return value


def str_field(body: Mapping[str, Any], name: str, choices: tuple[str, ...] | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required (a string)")
    if choices is not None and value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """``url`` starts with one of the allow-listed prefixes (each a URL ending in '/')."""
    if len(url) > 2048 or any(ch.isspace() or not ch.isprintable() for ch in url):
        return False
    if ".." in url or not url.startswith(("http://", "https://")):
        return False
    return any(url.startswith(prefix) for prefix in prefixes)


def run_app(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM; one log line per request is written by the handlers."""
    logging.basicConfig(
        level=os.environ.get("BRAMBLE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    web.run_app(app, host=host, port=port, access_log=None, print=None)


def service_main(
    name: str,
    description: str,
    default_path: Path,
    *,
    load: Callable[[Path], Any],
    serve: Callable[[Any], None],
    argv: list[str] | None,
) -> int:
    """The command line of both services: --config FILE, --check (validate only), else serve."""
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--config", type=Path, default=default_path)
    parser.add_argument("--check", action="store_true", help="check the configuration and exit")
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{name}: {args.config} is usable")
        return 0
    serve(settings)
    return 0
