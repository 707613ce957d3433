"""The server's REST API as the agent uses it: register and post telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bramble.services.agent import AGENT_VERSION
from bramble.services.agent.identity import Identity
from bramble.services.agent.sampler import Sample

REQUEST_TIMEOUT = 10.0
#: aiohttp's errors for a server that is not there or went away mid-request: refused or no
#: route (ClientConnectorError, a ClientOSError), reset (ClientOSError), closed before the
#: answer (ServerDisconnectedError) or in its body (ClientPayloadError). Not timeouts.
CUT_OFF = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)


class ServerError(Exception):
    """The server could not be reached or answered with an error (retry later).

    ``unreachable``: the server was not there or went away under the request: nothing
    listened (connection refused, no route), or the connection was reset or closed before
    an answer came, as while the server restarts. A beacon heard afterwards means it is
    worth trying again at once. An error answer (HTTP 5xx, 429) or a timeout is not
    ``unreachable``: the server is there but overloaded, and is backed off from.
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class UnknownNode(ServerError):
    """The server does not know this MAC (404 on telemetry): register again."""


@dataclass(frozen=True)
class Registration:
    """The server's answer to ``POST /api/v1/register``."""

    node: str | None
    bank: int | None
    slot: int | None
    trusted: bool
    telemetry_interval: float | None

    @classmethod
    def from_json(cls, data: Any) -> Registration:
        if not isinstance(data, dict):
            raise ServerError("register: the answer is not a JSON object")
        node, bank, slot = data.get("node"), data.get("bank"), data.get("slot")
        interval = data.get("telemetry_interval")
        return cls(
            node=node if isinstance(node, str) else None,
            bank=bank if isinstance(bank, int) and not isinstance(bank, bool) else None,
            slot=slot if isinstance(slot, int) and not isinstance(slot, bool) else None,
            trusted=data.get("trusted") is True,
            telemetry_interval=float(interval)
            if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0
            else None,
        )


class ServerClient:
    """Calls one server (``base`` = ``http://ADDRESS:PORT``) with the agent token."""

    def __init__(
        self, session: aiohttp.ClientSession, token: str, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self.session = session
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        try:
            async with self.session.post(
                url, json=body, headers=self.headers, timeout=self.timeout
            ) as response:
                if response.status == 404:
                    raise UnknownNode(f"{url}: 404 (the server does not know this node)")
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise ServerError(f"{url}: HTTP {response.status} {text}")
                return await response.json()
        except CUT_OFF as exc:
            raise ServerError(f"{url}: {type(exc).__name__}: {exc}", unreachable=True) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ServerError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def register(self, base: str, identity: Identity, agent_port: int) -> Registration:
        body = {
            "mac": identity.mac,
            "ip": identity.ip,
            "serial": identity.serial,
            "hostname": identity.hostname,
            "agent_version": AGENT_VERSION,
            "agent_port": agent_port,
        }
        return Registration.from_json(await self._post(f"{base}/api/v1/register", body))

    async def post_samples(self, base: str, mac: str, samples: list[Sample]) -> int:
        """Post ``samples``; the number the server accepted."""
        body = {"mac": mac, "samples": [s.to_json() for s in samples]}
        answer = await self._post(f"{base}/api/v1/telemetry", body)
        accepted = answer.get("accepted") if isinstance(answer, dict) else None
        if not isinstance(accepted, int) or isinstance(accepted, bool):
            raise ServerError("telemetry: the answer has no 'accepted' count")
        return accepted
