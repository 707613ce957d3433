"""Where SAVE keeps values and LOAD finds them: per user, persistent, bounded."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol


class StoreFullError(Exception):
    """The user already keeps as many keys as allowed."""


class Store(Protocol):
    """Values kept by SAVE, per user. Values are the encoded text the runtime hands over.

    Implementations enforce ``max_keys`` (per user) on ``save``; the runtime has already
    checked key and value sizes.
    """

    def load(self, user: str, key: str) -> str | None: ...

    def save(self, user: str, key: str, value: str, *, max_keys: int) -> None: ...

    def snapshot(self, user: str) -> dict[str, str]:
        """Every key the user keeps (for a run in a child process)."""
        ...


class MemoryStore:
    """A Store in a dict: for tests, and inside the isolated child."""

    def __init__(self, data: dict[str, dict[str, str]] | None = None) -> None:
        self.data: dict[str, dict[str, str]] = {u: dict(kv) for u, kv in (data or {}).items()}

    def load(self, user: str, key: str) -> str | None:
        return self.data.get(user, {}).get(key)

    def save(self, user: str, key: str, value: str, *, max_keys: int) -> None:
        values = self.data.setdefault(user, {})
        if key not in values and len(values) >= max_keys:
            raise StoreFullError(f"you already keep {len(values)} values (limit {max_keys})")
        values[key] = value

    def snapshot(self, user: str) -> dict[str, str]:
        return dict(self.data.get(user, {}))


def default_store_path() -> Path:
    """``$XDG_DATA_HOME/bramble/warble.sqlite3``, else ``~/.local/share/bramble/...``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bramble" / "warble.sqlite3"


class SqliteStore:
    """A Store in one SQLite file (stdlib sqlite3), safe for several processes at once."""

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS warble_values (
            user TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (user, key)
        )
    """

    def __init__(self, path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(self._SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def load(self, user: str, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM warble_values WHERE user = ? AND key = ?", (user, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def save(self, user: str, key: str, value: str, *, max_keys: int) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                exists = conn.execute(
                    "SELECT 1 FROM warble_values WHERE user = ? AND key = ?", (user, key)
                ).fetchone()
                if exists is None:
                    (count,) = conn.execute(
                        "SELECT COUNT(*) FROM warble_values WHERE user = ?", (user,)
                    ).fetchone()
                    if count >= max_keys:
                        raise StoreFullError(f"you already keep {count} values (limit {max_keys})")
                conn.execute(
                    "INSERT INTO warble_values (user, key, value, updated) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (user, key) DO UPDATE"
                    " SET value = excluded.value, updated = excluded.updated",
                    (user, key, value, time.time()),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def snapshot(self, user: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM warble_values WHERE user = ? ORDER BY key", (user,)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}
