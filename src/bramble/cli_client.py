"""How ``bramble`` reaches bramble-server: where it is, the token, HTTP calls, the live stream.

Settings, first found wins: command-line flags (``--server``, ``--token-file``), the
environment (``BRAMBLE_SERVER``, ``BRAMBLE_TOKEN``, ``BRAMBLE_TOKEN_FILE``), the config file
(``--config``, else ``$BRAMBLE_CONFIG``, else ``~/.config/bramble/cli.toml`` with keys
``server`` and ``token_file``), then ``http://127.0.0.1:8470`` with no token. The token is
sent only in the ``Authorization`` header and never printed, not even in errors.
"""

from __future__ import annotations

import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8470"
DEFAULT_CONFIG = "~/.config/bramble/cli.toml"
MAX_RESPONSE = 64 * 1024 * 1024
MAX_EVENT = 4 * 1024 * 1024


class CliError(Exception):
    """Something the operator must fix or know; printed as ``bramble: <message>``."""


@dataclass(frozen=True)
class Settings:
    """Where the server is and what to authenticate with (the token is never shown)."""

    server: str
    token: str | None
    source: str  # where the server URL came from, for error messages

    def __repr__(self) -> str:
        return f"Settings(server={self.server!r}, token={'***' if self.token else None})"


def _read_token(path: str, where: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"{where}: cannot read the token file {path}: {exc.strerror}") from None
    if not text:
        raise CliError(f"{where}: the token file {path} is empty")
    return text


def _config_file(path: str | None, environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    explicit = path or environ.get("BRAMBLE_CONFIG")
    name = Path(explicit or DEFAULT_CONFIG).expanduser()
    try:
        with name.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if explicit:
            raise CliError(f"{name}: no such config file") from None
        return {}, str(name)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"{name}: cannot read it as TOML: {exc}") from None
    unknown = sorted(set(data) - {"server", "token_file"})
    if unknown:
        raise CliError(f"{name}: unknown keys {unknown} (known: server, token_file)")
    return data, str(name)


def settings(
    server: str | None,
    token_file: str | None,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The settings from flags, environment and config file, in that order."""
    env = os.environ if environ is None else environ
    data, config_name = _config_file(config, env)
    url, source = DEFAULT_SERVER, "the default"
    for value, where in (
        (data.get("server"), config_name),
        (env.get("BRAMBLE_SERVER"), "BRAMBLE_SERVER"),
        (server, "--server"),
    ):
        if value:
            url, source = str(value), where
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CliError(f"{source}: {url!r} is not an http:// or https:// URL")
    token = None
    if token_file:
        token = _read_token(token_file, "--token-file")
    elif env.get("BRAMBLE_TOKEN"):
        token = env["BRAMBLE_TOKEN"].strip()
    elif env.get("BRAMBLE_TOKEN_FILE"):
        token = _read_token(env["BRAMBLE_TOKEN_FILE"], "BRAMBLE_TOKEN_FILE")
    elif data.get("token_file"):
        token = _read_token(str(data["token_file"]), config_name)
    return Settings(url.rstrip("/"), token, source)


class Client:
    """JSON over HTTP to one server."""

    def __init__(self, config: Settings, timeout: float = 15.0) -> None:
        self.config = config
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.config.server + path, data=data, method=method)  # noqa: S310 - the scheme is checked in settings()
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.config.token:
            request.add_header("Authorization", f"Bearer {self.config.token}")
        return request

    def _error(self, exc: urllib.error.HTTPError, path: str) -> CliError:
        try:
            message = json.loads(exc.read(65536) or b"{}").get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        hint = ""
        if exc.code == 401:
            hint = " (give the admin token: --token-file, BRAMBLE_TOKEN or BRAMBLE_TOKEN_FILE)"
        return CliError(f"{path}: HTTP {exc.code}: {message}{hint}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; CliError on an HTTP error or when the server cannot be reached."""
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is checked in settings()
                self._request(method, path, body), timeout=self.timeout
            ) as response:
                return json.loads(response.read(MAX_RESPONSE) or b"null")
        except urllib.error.HTTPError as exc:
            raise self._error(exc, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                f"cannot reach the server at {self.config.server} (from {self.config.source}): "
                f"{reason}"
            ) from None
        except ValueError:
            raise CliError(f"{path}: the server did not answer JSON") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)

    def stream(self, path: str) -> Iterator[tuple[str, Any]]:
        """Server-sent events as (kind, data) until the server closes the stream."""
        request = self._request("GET", path)
        request.add_header("Accept", "text/event-stream")
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310
        except urllib.error.HTTPError as exc:
            raise self._error(exc, path) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"cannot reach the server at {self.config.server}: {exc}") from None
        with response:
            yield from parse_events(response)


def parse_events(lines: Iterator[bytes] | Any) -> Iterator[tuple[str, Any]]:
    """Parse an event stream (an iterable of byte lines) into (kind, JSON data)."""
    kind, data = "message", ""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield kind, json.loads(data)
            kind, data = "message", ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
            if len(data) > MAX_EVENT:
                raise CliError("the server sent an event larger than 4 MiB")
