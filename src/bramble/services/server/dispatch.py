"""Choosing a node for a job, and sending the job to its agent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bramble.services.server.records import JobRecord, NodeRecord, Sample


@dataclass
class NodeState:
    """What the server knows about a registered node right now (in memory)."""

    record: NodeRecord
    health: str = "unknown"  # unknown | up | down
    misses: int = 0
    latest: Sample | None = None
    running_jobs: int = 0
    #: time.time() of the agent's latest registration with this server run (0: none yet); the
    #: record's registered_at is the first one ever, kept across re-registrations and restarts
    last_registered: float = 0.0

    @property
    def base_url(self) -> str:
        """The agent's HTTP address."""
        return f"http://{self.record.ip}:{self.record.agent_port}"


def candidates(
    nodes: Iterable[NodeState], cpu_threshold: float, exclude: set[str]
) -> list[NodeState]:
    """Trusted nodes not down, with a latest CPU under the threshold, least loaded first."""
    eligible = [
        n
        for n in nodes
        if n.record.trusted
        and n.health != "down"
        and n.latest is not None
        and n.latest.cpu_percent < cpu_threshold
        and n.record.mac not in exclude
    ]
    return sorted(
        eligible,
        key=lambda n: (n.running_jobs, n.latest.cpu_percent if n.latest else 0.0, n.record.mac),
    )


class AgentJobError(Exception):
    """The agent did not run the job (unreachable, timeout, refused): try another node."""


async def send_job(
    session: aiohttp.ClientSession,
    node: NodeState,
    job: JobRecord,
    token: str,
    timeout: float,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """POST the job (plus ``extra`` keys) to the agent; its result (``state``, ``output``,
    ``error``, and whatever else the agent answers, e.g. ``saved``)."""
    body = {**(extra or {}), "id": job.id, "kind": job.kind, "source": job.source, "user": job.user}
    try:
        async with session.post(
            f"{node.base_url}/jobs",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 200:
                raise AgentJobError(f"agent answered HTTP {response.status}")
            result = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise AgentJobError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
    if not isinstance(result, dict) or result.get("state") not in ("done", "failed"):
        raise AgentJobError("agent answered without a job state")
    return result
