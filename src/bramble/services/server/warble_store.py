"""The server's Warble tables: intake metadata and scores, per-user SAVE values, post cursors.

A mixin of ``bramble.services.server.store.Store`` (SQLite and PostgreSQL share this SQL).
A Warble is a job (table ``jobs``: source, user, state, output, the persistent queue) plus one
row in ``warbles`` (where it came from and its leaderboard score).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bramble.services.server.records import JobRecord

_TABLES = """
CREATE TABLE IF NOT EXISTS warbles (
  job_id BIGINT PRIMARY KEY, origin TEXT NOT NULL, post_id TEXT, post_url TEXT, address TEXT,
  digits INTEGER);
CREATE INDEX IF NOT EXISTS warbles_post ON warbles (origin, post_id);
CREATE TABLE IF NOT EXISTS warble_values (
  user_name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated {real} NOT NULL,
  PRIMARY KEY (user_name, key));
CREATE TABLE IF NOT EXISTS warble_cursors (
  source TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated {real} NOT NULL);
"""
_JOB = (
    "j.id, j.kind, j.source, j.user_name, j.state, j.node, j.output, j.error, j.attempts, "
    "j.created, j.finished"
)
_SELECT = (
    f"SELECT {_JOB}, w.origin, w.post_id, w.post_url, w.digits "  # noqa: S608 - fixed columns
    "FROM warbles w JOIN jobs j ON j.id = w.job_id"
)


@dataclass
class WarbleRecord:
    """A Warble: its job, where it came from, its score (None until it has run)."""

    job: JobRecord
    origin: str
    post_id: str | None = None
    post_url: str | None = None
    digits: int | None = None


@dataclass(frozen=True)
class Leader:
    """One line of the leaderboard: a user's best Warble."""

    user: str
    digits: int
    warble: int
    created: float


def _record(row: Sequence[Any]) -> WarbleRecord:
    job = JobRecord(*row[:11])
    return WarbleRecord(job, row[11], row[12], row[13], row[14])


class WarbleTables(ABC):
    """Warble tables and queries on top of the store's SQL primitives."""

    real = "REAL"

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns."""

    @abstractmethod
    def _commit(self) -> None:
        """Commit the current transaction."""

    def create_warble_tables(self) -> None:
        """Create the Warble tables when missing (idempotent; the caller commits)."""
        for statement in _TABLES.format(real=self.real).split(";"):
            if statement.strip():
                self._execute(statement)

    # -- Warbles --
    def add_warble(
        self,
        job_id: int,
        origin: str,
        post_id: str | None = None,
        post_url: str | None = None,
        address: str | None = None,
    ) -> None:
        """Record where the Warble of job ``job_id`` came from."""
        self._execute(
            "INSERT INTO warbles (job_id, origin, post_id, post_url, address) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
            (job_id, origin, post_id, post_url, address),
        )
        self._commit()

    def set_warble_digits(self, job_id: int, digits: int) -> None:
        """Store the Warble's score (a job submitted as a job gets its Warble row here)."""
        self._execute(
            "INSERT INTO warbles (job_id, origin, digits) VALUES (?, 'job', ?) "
            "ON CONFLICT (job_id) DO UPDATE SET digits = excluded.digits",
            (job_id, digits),
        )
        self._commit()

    def warble(self, job_id: int) -> WarbleRecord | None:
        """One Warble by its id (the job id)."""
        rows = self._execute(f"{_SELECT} WHERE w.job_id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def warbles(self, limit: int, before: int | None = None) -> list[WarbleRecord]:
        """The newest Warbles, newest first; only ids below ``before`` when given."""
        rows = self._execute(
            f"{_SELECT} WHERE w.job_id < ? ORDER BY w.job_id DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        )
        return [_record(row) for row in rows]

    def has_post(self, origin: str, post_id: str) -> bool:
        """Whether a Warble of this post was already taken in."""
        rows = self._execute(
            "SELECT 1 FROM warbles WHERE origin = ? AND post_id = ? LIMIT 1", (origin, post_id)
        )
        return bool(rows)

    def leaderboard(self, limit: int) -> list[Leader]:
        """Each user's best score, best first; ties go to the earlier Warble."""
        rows = self._execute(
            "SELECT user_name, digits, job_id, created FROM ("
            " SELECT j.user_name, w.digits, w.job_id, j.created, ROW_NUMBER() OVER ("
            "  PARTITION BY j.user_name ORDER BY w.digits DESC, j.created, w.job_id) AS place"
            " FROM warbles w JOIN jobs j ON j.id = w.job_id WHERE w.digits > 0) best "
            "WHERE place = 1 ORDER BY digits DESC, created, job_id LIMIT ?",
            (limit,),
        )
        return [Leader(str(u), int(d), int(w), float(c)) for u, d, w, c in rows]

    # -- SAVE / LOAD values, per user --
    def user_values(self, user: str) -> dict[str, str]:
        """Every value the user keeps."""
        rows = self._execute(
            "SELECT key, value FROM warble_values WHERE user_name = ? ORDER BY key", (user,)
        )
        return {str(k): str(v) for k, v in rows}

    def save_user_values(self, user: str, values: Mapping[str, str], now: float) -> None:
        """Insert or replace the given keys of the user, in one transaction."""
        for key, value in values.items():
            self._execute(
                "INSERT INTO warble_values (user_name, key, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_name, key) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated",
                (user, key, value, now),
            )
        self._commit()

    # -- post source cursors --
    def source_cursor(self, source: str) -> str | None:
        """The newest post id a source has handled, if any."""
        rows = self._execute("SELECT cursor FROM warble_cursors WHERE source = ?", (source,))
        return str(rows[0][0]) if rows else None

    def set_source_cursor(self, source: str, cursor: str, now: float) -> None:
        """Remember the newest post id a source has handled."""
        self._execute(
            "INSERT INTO warble_cursors (source, cursor, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
            "updated = excluded.updated",
            (source, cursor, now),
        )
        self._commit()
