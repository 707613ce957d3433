"""The fleet simulator's cheap HTTP, so that ``fleet.py`` measures the server, not itself.

A Pi runs one agent on its own CPU; the simulator runs thousands per process on the same two
cores as the server. With aiohttp at both ends of every request, the simulator spent more CPU
per request than the server it measured (docs/benchmarks.md, "Cluster services"). The agents'
logic (``Agent``: buffer, back-off, beacon, re-registration) stays the real one; only the
transport is replaced:

- ``LeanClient``: ``ServerClient`` (timed, as ``TimedClient``) over one hand-written
  HTTP/1.1 connection per agent, kept alive like the agent's aiohttp session keeps it
  (same requests, same answers parsed);
- ``HealthResponder``: an agent's ``GET /health`` as a bare asyncio protocol (token checked,
  keep-alive, the body of ``Agent.health``), instead of an aiohttp application per agent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bramble.services.agent.client import Registration, ServerClient, ServerError, UnknownNode
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample

HEAD_MAX = 16 * 1024  # request or answer head: more is an error
BODY_MAX = 1024 * 1024


class TimedClient(ServerClient):
    """ServerClient (aiohttp) that records post latencies and registration times (wall
    clock) into lists shared by the agents of a process."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        timeout: float,
        latencies: list[float],
        registered: list[tuple[str, float]],
    ) -> None:
        super().__init__(session, token, timeout)
        self.latencies = latencies
        self.registered = registered

    async def post_samples(self, base: str, mac: str, samples: list[Sample]) -> int:
        started = time.perf_counter()
        accepted = await super().post_samples(base, mac, samples)
        self.latencies.append(time.perf_counter() - started)
        return accepted

    async def register(self, base: str, identity: Identity, agent_port: int) -> Registration:
        answer = await super().register(base, identity, agent_port)
        self.registered.append((identity.mac, time.time()))
        return answer


class LeanClient(TimedClient):
    """One agent's client: one kept-alive connection of its own, no aiohttp."""

    def __init__(
        self,
        token: str,
        timeout: float,
        latencies: list[float],
        registered: list[tuple[str, float]],
    ) -> None:
        self.authorization = f"Bearer {token}"
        self.request_timeout = timeout
        self.latencies = latencies
        self.registered = registered
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        payload = json.dumps(body, separators=(",", ":")).encode()
        request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {self.authorization}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        try:
            status, answer = await asyncio.wait_for(
                self._exchange(host, port, request), self.request_timeout
            )
        except (TimeoutError, ValueError) as exc:
            self.close()
            raise ServerError(f"{url}: {type(exc).__name__}: {exc}") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            # refused, reset or closed before the answer: the server is not there or went
            # away mid-request (a restart), as ServerClient's CUT_OFF
            self.close()
            raise ServerError(f"{url}: {type(exc).__name__}: {exc}", unreachable=True) from None
        if status == 404:
            raise UnknownNode(f"{url}: 404 (the server does not know this node)")
        if status != 200:
            raise ServerError(f"{url}: HTTP {status} {answer[:200]!r}")
        return json.loads(answer)

    async def _exchange(self, host: str, port: int, request: bytes) -> tuple[int, bytes]:
        """Send and read one answer; once more on a new connection when a kept-alive one was
        closed by the server before it answered anything (as a browser or aiohttp does)."""
        for attempt in range(2):
            reused = self._stream is not None
            if self._stream is None:
                self._stream = await asyncio.open_connection(host, port)
            reader, writer = self._stream
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 0 and not getattr(exc, "partial", b""):
                    continue
                raise
            status, length, close = _parse_head(head)
            answer = await reader.readexactly(length)
            if close:
                self.close()
            return status, answer
        raise ConnectionResetError("the server closed the connection twice")

    def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, the server closes) of an HTTP/1.1 answer's head."""
    if len(head) > HEAD_MAX:
        raise ValueError("answer head too long")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(fields.get("content-length", "0"))
    if not 0 <= length <= BODY_MAX or "transfer-encoding" in fields:
        raise ValueError("answer without a usable Content-Length")
    return status, length, fields.get("connection", "").lower() == "close"


def _answer(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class HealthResponder(asyncio.Protocol):
    """One agent's ``GET /health``: 200 with ``body()`` for the agent token, 401 without it,
    404 for any other request; connections kept alive; a request head over HEAD_MAX closes."""

    def __init__(self, token: str, body: Callable[[], dict[str, object]]) -> None:
        self.token = token.encode()
        self.body = body
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):  # always, for a TCP server
            self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            scheme, token = b"", b""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"authorization":
                    scheme, _, token = value.strip().partition(b" ")
            if not lines[0].startswith(b"GET /health "):
                self.transport.write(_answer("404 Not Found", b'{"error":"not found"}'))
            elif scheme.lower() != b"bearer" or not hmac.compare_digest(token, self.token):
                self.transport.write(_answer("401 Unauthorized", b'{"error":"unauthorized"}'))
            else:
                body = json.dumps(self.body(), separators=(",", ":")).encode()
                self.transport.write(_answer("200 OK", body))
        if len(self.buffer) > HEAD_MAX:
            self.transport.close()
