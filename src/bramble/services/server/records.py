"""The rows the server keeps: nodes, telemetry samples, jobs and events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NodeRecord:
    """A registered agent, as persisted in the registry."""

    mac: str
    ip: str
    hostname: str
    agent_version: str
    agent_port: int
    serial: str | None = None
    name: str | None = None
    bank: int | None = None
    slot: int | None = None
    trusted: bool = False
    registered_at: float = 0.0
    last_seen: float = 0.0


@dataclass(frozen=True)
class Sample:
    """One telemetry sample of one node."""

    mac: str
    ts: float
    cpu_percent: float
    mem_used_percent: float
    mem_available_bytes: int
    disk_used_percent: float
    temp_c: float | None


@dataclass
class JobRecord:
    """A Warble job and, once run, its result."""

    id: int
    kind: str
    source: str
    user: str
    state: str = "queued"  # queued | waiting (for a node) | running | done | failed | cancelled
    node: str | None = None
    output: str = ""
    error: str | None = None
    attempts: int = 0
    created: float = 0.0
    finished: float | None = None


@dataclass(frozen=True)
class Event:
    """Something an operator may want to know about, one line each."""

    id: int
    ts: float
    kind: str
    mac: str | None
    message: str
