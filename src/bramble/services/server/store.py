"""Persistent store of the server: registry, telemetry history, jobs and events.

One small synchronous interface (``Store``) with two implementations sharing their SQL:
SQLite (the default, embedded) and PostgreSQL (psycopg 3, when a DSN is configured). The
server calls it from one dedicated thread, so implementations need not be thread-safe.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bramble.services.server.records import Event, JobRecord, NodeRecord, Sample
from bramble.services.server.warble_store import WarbleTables

_NODE_COLUMNS = (
    "mac",
    "ip",
    "hostname",
    "agent_version",
    "agent_port",
    "serial",
    "name",
    "bank",
    "slot",
    "trusted",
    "registered_at",
    "last_seen",
)
_SAMPLE_COLUMNS = (
    "mac",
    "ts",
    "cpu_percent",
    "mem_used_percent",
    "mem_available_bytes",
    "disk_used_percent",
    "temp_c",
)
_JOB_COLUMNS = (
    "id",
    "kind",
    "source",
    "user_name",
    "state",
    "node",
    "output",
    "error",
    "attempts",
    "created",
    "finished",
)

_TABLES = """
CREATE TABLE IF NOT EXISTS nodes (
  mac TEXT PRIMARY KEY, ip TEXT NOT NULL, hostname TEXT NOT NULL, agent_version TEXT NOT NULL,
  agent_port INTEGER NOT NULL, serial TEXT, name TEXT, bank INTEGER, slot INTEGER,
  trusted INTEGER NOT NULL, registered_at {real} NOT NULL, last_seen {real} NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
  mac TEXT NOT NULL, ts {real} NOT NULL, cpu_percent {real} NOT NULL,
  mem_used_percent {real} NOT NULL, mem_available_bytes BIGINT NOT NULL,
  disk_used_percent {real} NOT NULL, temp_c {real});
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE INDEX IF NOT EXISTS samples_mac_ts ON samples (mac, ts);
CREATE TABLE IF NOT EXISTS jobs (
  id {serial}, kind TEXT NOT NULL, source TEXT NOT NULL, user_name TEXT NOT NULL,
  state TEXT NOT NULL, node TEXT, output TEXT NOT NULL, error TEXT,
  attempts INTEGER NOT NULL, created {real} NOT NULL, finished {real});
CREATE TABLE IF NOT EXISTS events (
  id {serial}, ts {real} NOT NULL, kind TEXT NOT NULL, mac TEXT, message TEXT NOT NULL);
"""


def _placeholders(count: int) -> str:
    return ", ".join(["?"] * count)


_NODE_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in _NODE_COLUMNS[1:])
_UPSERT_NODE = (
    f"INSERT INTO nodes ({', '.join(_NODE_COLUMNS)}) "  # noqa: S608 - fixed columns
    f"VALUES ({_placeholders(len(_NODE_COLUMNS))}) ON CONFLICT (mac) DO UPDATE SET {_NODE_UPDATES}"
)
_INSERT_EVENT = "INSERT INTO events (ts, kind, mac, message) VALUES (?, ?, ?, ?)"


class Store(WarbleTables, ABC):
    """Registry, telemetry history, jobs and events, in SQL written with ``?`` parameters."""

    real = "REAL"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def create_tables(self) -> None:
        """Create what is missing (idempotent)."""
        for statement in _TABLES.format(real=self.real, serial=self.serial).split(";"):
            if statement.strip():
                self._execute(statement)
        self.create_warble_tables()
        self._commit()

    # -- primitives each backend provides --
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (empty when none)."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""

    @abstractmethod
    def _commit(self) -> None:
        """Commit the current transaction."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    # -- registry --
    def write_registry(
        self, nodes: Sequence[NodeRecord], events: Sequence[tuple[float, str, str | None, str]]
    ) -> None:
        """Insert or replace nodes (by MAC) and append events (ts, kind, MAC, message), in
        one transaction."""
        if nodes:
            self._executemany(
                _UPSERT_NODE,
                [
                    [int(n.trusted) if c == "trusted" else getattr(n, c) for c in _NODE_COLUMNS]
                    for n in nodes
                ],
            )
        if events:
            self._executemany(_INSERT_EVENT, events)
        self._commit()

    def touch_nodes(self, seen: Iterable[tuple[str, float]]) -> None:
        """Record when nodes (MAC, time) were last heard from."""
        self._executemany("UPDATE nodes SET last_seen = ? WHERE mac = ?", [(t, m) for m, t in seen])
        self._commit()

    def nodes(self) -> list[NodeRecord]:
        """Every registered node."""
        rows = self._execute(
            f"SELECT {', '.join(_NODE_COLUMNS)} FROM nodes ORDER BY mac"  # noqa: S608
        )
        return [
            NodeRecord(**{**dict(zip(_NODE_COLUMNS, row, strict=True)), "trusted": bool(row[9])})
            for row in rows
        ]

    # -- telemetry --
    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Write a batch of samples in one transaction."""
        self._executemany(
            f"INSERT INTO samples ({', '.join(_SAMPLE_COLUMNS)}) "  # noqa: S608
            f"VALUES ({_placeholders(len(_SAMPLE_COLUMNS))})",
            [tuple(getattr(s, c) for c in _SAMPLE_COLUMNS) for s in samples],
        )
        self._commit()

    def samples(self, mac: str, limit: int) -> list[Sample]:
        """The newest ``limit`` samples of one node, oldest first."""
        rows = self._execute(
            f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM samples "  # noqa: S608
            "WHERE mac = ? ORDER BY ts DESC LIMIT ?",
            (mac, limit),
        )
        return [Sample(*row) for row in reversed(rows)]

    def prune_samples(self, before: float) -> int:
        """Delete samples older than ``before``; how many went."""
        rows = self._execute("DELETE FROM samples WHERE ts < ? RETURNING 1", (before,))
        self._commit()
        return len(rows)

    # -- jobs --
    def create_job(self, job: JobRecord) -> int:
        """Store a new job; its id."""
        rows = self._execute(
            f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS[1:])}) "  # noqa: S608
            f"VALUES ({_placeholders(len(_JOB_COLUMNS) - 1)}) RETURNING id",
            _job_row(job)[1:],
        )
        self._commit()
        return int(rows[0][0])

    def update_job(self, job: JobRecord) -> None:
        """Store the job's new state and result."""
        sets = ", ".join(f"{c} = ?" for c in _JOB_COLUMNS[1:])
        self._execute(
            f"UPDATE jobs SET {sets} WHERE id = ?",  # noqa: S608
            [*_job_row(job)[1:], job.id],
        )
        self._commit()

    def job(self, job_id: int) -> JobRecord | None:
        """The job with this id, if any."""
        rows = self._execute(
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?",  # noqa: S608
            (job_id,),
        )
        if not rows:
            return None
        fields = dict(zip(_JOB_COLUMNS, rows[0], strict=True))
        fields["user"] = fields.pop("user_name")
        return JobRecord(**fields)

    def cancel_job(self, job_id: int, now: float) -> bool:
        """Mark the job cancelled if no agent has it yet (queued or waiting); whether it was."""
        rows = self._execute(
            "UPDATE jobs SET state = 'cancelled', finished = ?, error = 'cancelled' "
            "WHERE id = ? AND state IN ('queued', 'waiting') RETURNING id",
            (now, job_id),
        )
        self._commit()
        return bool(rows)

    def move_job(self, job_id: int, old: str, new: str) -> bool:
        """Move a job from state ``old`` to ``new`` (atomic: a cancel in between wins);
        whether it was in ``old``. queued -> waiting (a worker took it, it waits for an idle
        node), waiting -> running (handed to an agent), running -> waiting (to retry)."""
        rows = self._execute(
            "UPDATE jobs SET state = ? WHERE id = ? AND state = ? RETURNING id",
            (new, job_id, old),
        )
        self._commit()
        return bool(rows)

    def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs queued, waiting or running (to resume after a restart)."""
        rows = self._execute(
            "SELECT id FROM jobs WHERE state IN ('queued', 'waiting', 'running') ORDER BY id"
        )
        return [job for (job_id,) in rows if (job := self.job(int(job_id))) is not None]

    # -- events --
    def events(self, limit: int) -> list[Event]:
        """The newest ``limit`` events, newest first."""
        rows = self._execute(
            "SELECT id, ts, kind, mac, message FROM events ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [Event(*row) for row in rows]


def _job_row(job: JobRecord) -> list[Any]:
    return [
        job.id,
        job.kind,
        job.source,
        job.user,
        job.state,
        job.node,
        job.output,
        job.error,
        job.attempts,
        job.created,
        job.finished,
    ]


class SqliteStore(Store):
    """The embedded default: one SQLite file in WAL mode."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def _commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3 (``pip install bramble[postgres]``)."""

    real = "DOUBLE PRECISION"
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, dsn: str) -> None:
        import psycopg  # noqa: PLC0415 - optional dependency, only when configured

        self._db = psycopg.connect(dsn)
        self.create_tables()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._db.execute(sql.replace("?", "%s"), tuple(params))
        return cursor.fetchall() if cursor.description else []

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)

    def _commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def open_store(sqlite_path: str, postgres_dsn: str | None) -> Store:
    """PostgreSQL when a DSN is given, else the SQLite file."""
    return PostgresStore(postgres_dsn) if postgres_dsn else SqliteStore(sqlite_path)
