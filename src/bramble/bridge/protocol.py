"""The boards' wire protocol: the HTTP/1.0 subset the sketches in firmware/ speak.

The constants here are the firmware's (a test reads them back from the sketches). One request
per connection; parameters in the query string only (a body is ignored); the shared secret in
the ``X-Bramble-Secret`` header; every answer is JSON with a Content-Length, then close. Over
serial the board reads the same request text and writes the same answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

#: Longest request line or header line the firmware buffers (414 / 431 beyond).
MAX_LINE = 255
#: Most header lines the firmware reads before answering 431.
MAX_HEADERS = 16
#: The firmware gives up on a request line or header line after this long (408).
READ_TIMEOUT_MS = 2000
#: The firmware waits this long before answering 401 (slows down guessing).
AUTH_FAIL_DELAY_MS = 250
SECRET_HEADER = "X-Bramble-Secret"  # noqa: S105 (a header name, not a secret)

#: Buttons board: the solenoids, and the press bounds it enforces.
BUTTONS = ("power", "reset")
MIN_PRESS_MS = 50
MAX_PRESS_MS = 2000
#: hold-to-power-off: how long the power button is held (a PC's forced power-off is 4 s).
HOLD_MS = 6000
#: After a release, a plunger still out after this long is reported stuck.
STUCK_CHECK_MS = 200

#: Lights board: named animations, and how many pixels one /pixels request carries.
ANIMATIONS = ("off", "rainbow", "pulse", "chase", "flash", "progress")
PIXEL_TYPES = ("RGB", "GRB", "RGBW", "GRBW")
MAX_PIXELS_PER_REQUEST = 24
#: A flash: this many on/off cycles of FLASH_STEP_MS each, then the previous animation.
FLASH_CYCLES = 3
FLASH_STEP_MS = 150

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def white_channel(pixel_type: str) -> bool:
    """Whether pixels of this type have a white LED (4 bytes per pixel)."""
    return pixel_type.endswith("W")


def build_request(method: str, path: str, params: dict[str, int | str], secret: str) -> bytes:
    """The bytes of one request, as the bridge sends it to a board."""
    query = "&".join(f"{key}={quote(str(value), safe='')}" for key, value in params.items())
    target = f"{path}?{query}" if query else path
    return f"{method} {target} HTTP/1.0\r\n{SECRET_HEADER}: {secret}\r\n\r\n".encode("ascii")


def build_response(status: int, body: dict[str, Any]) -> bytes:
    """The bytes of one answer, as the firmware writes it."""
    text = json.dumps(body, separators=(",", ":"))
    return (
        f"HTTP/1.0 {status} {REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(text)}\r\n"
        "Connection: close\r\n\r\n"
        f"{text}"
    ).encode("ascii")


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def parse_status_line(line: bytes) -> int:
    """The status code of ``HTTP/1.0 200 OK``; ValueError when it is not one."""
    parts = line.decode("ascii", "replace").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {line[:60]!r}")
    return int(parts[1])


def content_length(header_lines: list[bytes]) -> int | None:
    for raw in header_lines:
        name, _, value = raw.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def parse_body(status: int, body: bytes) -> Response:
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"answer {status} is not JSON: {body[:60]!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"answer {status} is not a JSON object")
    return Response(status, data)
