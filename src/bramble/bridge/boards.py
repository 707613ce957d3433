"""Talking to the boards: one request per call over HTTP (TCP) or a serial port.

The protocol is in bramble.bridge.protocol; a board's non-200 answer or silence becomes a
BoardError that the API turns into a clear status for its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from bramble.bridge import protocol as p

MAX_ANSWER = 4096


class BoardError(Exception):
    """The board failed; ``status`` is what the bridge answers its caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BoardConfig:
    name: str
    kind: str
    url: str  # http://ADDRESS[:PORT] or serial:///dev/ttyACM0[?baud=115200&settle=2]
    secret: str
    pixels: int = 24
    pixel_type: str = "GRB"
    timeout: float = 3.0


class Transport(Protocol):
    async def exchange(self, request: bytes) -> tuple[int, bytes]: ...


class HttpTransport:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(request)
                await writer.drain()
                status = p.parse_status_line(await reader.readline())
                headers: list[bytes] = []
                for _ in range(32):
                    line = (await reader.readline()).rstrip(b"\r\n")
                    if not line:
                        break
                    headers.append(line)
                length = p.content_length(headers)
                if length is not None and length > MAX_ANSWER:
                    raise ValueError(f"answer of {length} bytes is too long")
                body = await (
                    reader.readexactly(length) if length is not None else reader.read(MAX_ANSWER)
                )
                return status, body
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


class SerialTransport:
    """The board's USB serial port (pyserial): the same request text, the same answer.

    The port stays open between requests: opening it pulses DTR, which resets an Arduino Mega
    (its bootloader then listens for about 1.6 s). So after each opening the transport waits
    ``settle`` seconds before the first request, and it reopens only after a failure (a late
    answer of a timed-out request must not be read as the next one's).
    """

    def __init__(self, device: str, baud: int, timeout: float, settle: float = 2.0) -> None:
        self.device, self.baud, self.timeout, self.settle = device, baud, timeout, settle
        self._lock = threading.Lock()
        self._port: Any = None
        self.opened = 0  # how many times the port was opened (each one resets the board)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        return await asyncio.to_thread(self._exchange, request)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None

    def _open(self) -> Any:
        import serial  # noqa: PLC0415 (only hosts with serial boards need pyserial)

        if self._port is None:
            self._port = serial.Serial(self.device, self.baud, timeout=self.timeout)
            self.opened += 1
            if self.settle > 0:
                time.sleep(self.settle)
        return self._port

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        with self._lock:
            try:
                return self._talk(self._open(), request)
            except BaseException:
                self._close()
                raise

    def _talk(self, port: Any, request: bytes) -> tuple[int, bytes]:
        port.reset_input_buffer()
        port.write(request)
        port.flush()
        status_line = port.readline()
        if not status_line.endswith(b"\n"):
            raise TimeoutError
        status = p.parse_status_line(status_line)
        headers: list[bytes] = []
        for _ in range(32):
            line = port.readline().rstrip(b"\r\n")
            if not line:
                break
            headers.append(line)
        length = p.content_length(headers)
        if length is None or length > MAX_ANSWER:
            raise ValueError("answer without a usable Content-Length")
        body = port.read(length)
        if len(body) < length:
            raise TimeoutError
        return status, bytes(body)


def transport_for(config: BoardConfig) -> Transport:
    parts = urlsplit(config.url)
    if parts.scheme == "http" and parts.hostname:
        return HttpTransport(parts.hostname, parts.port or 80, config.timeout)
    if parts.scheme == "serial" and parts.path:
        options = {"baud": 115200.0, "settle": 2.0}
        for item in filter(None, parts.query.split("&")):
            key, _, value = item.partition("=")
            try:
                options[key] = float(value) if key in options else float("nan")
            except ValueError:
                options[key] = float("nan")
            if not 0 <= options[key] <= 10_000_000:
                break
        else:
            return SerialTransport(
                parts.path, int(options["baud"]), config.timeout, options["settle"]
            )
    raise ValueError(
        f"board {config.name}: url {config.url!r} is neither http://ADDRESS[:PORT] nor "
        "serial:///dev/DEVICE[?baud=N&settle=SECONDS]"
    )


class Board:
    """One board: ``call`` sends one request and returns the board's JSON answer."""

    def __init__(self, config: BoardConfig, transport: Transport | None = None) -> None:
        self.config = config
        self.transport = transport or transport_for(config)
        self._lock = asyncio.Lock()  # the firmware serves one client at a time

    @property
    def name(self) -> str:
        return self.config.name

    async def call(self, method: str, path: str, **params: int | str) -> dict[str, Any]:
        request = p.build_request(method, path, params, self.config.secret)
        where = f"{self.config.kind} board {self.name}"
        try:
            async with self._lock:
                status, raw = await self.transport.exchange(request)
            answer = p.parse_body(status, raw)
        except TimeoutError:
            raise BoardError(
                504, f"{where} did not answer within {self.config.timeout:g} s"
            ) from None
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            raise BoardError(502, f"{where} is unreachable or answered garbage ({exc})") from None
        if answer.status == 200:
            return answer.body
        message = str(answer.body.get("error", "no reason given"))
        if answer.status == 401:
            raise BoardError(
                502,
                f"{where} refused the bridge's secret: the firmware and the bridge hold "
                "different secrets (re-run the bridges role and flash the board)",
            )
        if answer.status in (409, 503):
            raise BoardError(answer.status, f"{where}: {message}")
        raise BoardError(502, f"{where} answered {answer.status}: {message}")
