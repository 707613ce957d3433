"""The server's signed UDP beacon: building it (server) and checking it (agent).

Datagram: UTF-8 JSON ``{"b": BODY, "sig": HEX}``; BODY is itself a JSON text of
``{"v": 1, "cluster", "server", "port", "ts", "nonce"}`` and ``sig`` is
HMAC-SHA256(cluster_key, BODY) in hex. See docs/services-protocol.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BEACON_VERSION = 1
MAX_DATAGRAM = 512
DEFAULT_PORT = 47470
DEFAULT_MAX_SKEW = 30.0
NONCE_HEX = 16


@dataclass(frozen=True)
class Beacon:
    """A verified beacon: where the server of ``cluster`` listens, and when it said so."""

    cluster: str
    server: str
    port: int
    ts: float
    nonce: str


def sign(key: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under the cluster key."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def make_beacon(
    key: bytes,
    cluster: str,
    server: str,
    port: int,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> bytes:
    """Build one signed beacon datagram announcing ``server:port`` for ``cluster``."""
    try:
        ipaddress.IPv4Address(server)
    except ValueError:
        raise ValueError(f"{server!r} is not an IPv4 address") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is outside 1..65535")
    body = json.dumps(
        {
            "v": BEACON_VERSION,
            "cluster": cluster,
            "server": server,
            "port": port,
            "ts": time.time() if now is None else now,
            "nonce": secrets.token_hex(NONCE_HEX // 2) if nonce is None else nonce,
        },
        separators=(",", ":"),
    )
    data = json.dumps({"b": body, "sig": sign(key, body.encode())}, separators=(",", ":"))
    encoded = data.encode()
    if len(encoded) > MAX_DATAGRAM:
        raise ValueError(f"beacon is {len(encoded)} bytes, more than {MAX_DATAGRAM}")
    return encoded


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _parse_body(body: str) -> Beacon | str:
    """The beacon in a signed body, or the reason it is not one."""
    try:
        fields: Any = json.loads(body)
    except ValueError:
        return "malformed"
    if not isinstance(fields, dict) or fields.get("v") != BEACON_VERSION:
        return "version"
    cluster, server, port = fields.get("cluster"), fields.get("server"), fields.get("port")
    ts, nonce = fields.get("ts"), fields.get("nonce")
    if not (
        isinstance(cluster, str)
        and isinstance(server, str)
        and isinstance(port, int)
        and not isinstance(port, bool)
        and 0 < port < 65536
        and isinstance(ts, int | float)
        and not isinstance(ts, bool)
        and math.isfinite(ts)
        and isinstance(nonce, str)
        and _is_hex(nonce, NONCE_HEX)
    ):
        return "malformed"
    try:
        ipaddress.IPv4Address(server)
    except ValueError:
        return "malformed"
    return Beacon(cluster=cluster, server=server, port=port, ts=float(ts), nonce=nonce)


@dataclass
class BeaconVerifier:
    """Accepts only signed, fresh, unreplayed beacons of one cluster.

    ``rejected`` counts refusals by reason (``size``, ``malformed``, ``signature``,
    ``version``, ``cluster``, ``stale``, ``replay``); ``accepted`` counts the rest.
    """

    key: bytes
    cluster: str
    max_skew: float = DEFAULT_MAX_SKEW
    max_nonces: int = 4096
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    _seen: dict[str, float] = field(default_factory=dict, repr=False)

    def verify(self, data: bytes, now: float | None = None) -> Beacon | None:
        """The beacon in ``data`` if it is to be trusted at time ``now``, else None."""
        now = time.time() if now is None else now
        result = self._check(data, now)
        if isinstance(result, str):
            self.rejected[result] += 1
            return None
        self.accepted += 1
        return result

    def _check(self, data: bytes, now: float) -> Beacon | str:  # noqa: PLR0911 - one per reason
        if len(data) > MAX_DATAGRAM:
            return "size"
        try:
            outer: Any = json.loads(data.decode("utf-8"))
        except ValueError:
            return "malformed"
        if not isinstance(outer, dict):
            return "malformed"
        body, sig = outer.get("b"), outer.get("sig")
        if not isinstance(body, str) or not isinstance(sig, str):
            return "malformed"
        if not hmac.compare_digest(sign(self.key, body.encode()).encode(), sig.lower().encode()):
            return "signature"
        beacon = _parse_body(body)
        if isinstance(beacon, str):
            return beacon
        if beacon.cluster != self.cluster:
            return "cluster"
        self._forget(now)
        if abs(now - beacon.ts) > self.max_skew:
            return "stale"
        if beacon.nonce in self._seen:
            return "replay"
        if len(self._seen) >= self.max_nonces:
            # Only the key holder makes valid nonces; drop the oldest to stay bounded.
            del self._seen[min(self._seen, key=self._seen.__getitem__)]
        self._seen[beacon.nonce] = beacon.ts
        return beacon

    def _forget(self, now: float) -> None:
        """Drop nonces whose beacons would be refused as stale anyway."""
        expired = [n for n, ts in self._seen.items() if now - ts > self.max_skew]
        for nonce in expired:
            del self._seen[nonce]
