"""The one connection that the register's parts share: its lock, write transactions, reads, meta keys,
and the storage health rows that say when the register or the snapshot folder cannot be written."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.config.loading import redact
from runner.core.errors import StoreError
from runner.register import clock
from runner.register.backend import DbTarget, database_errors, parse_target
from runner.register.schema import open_connection

log = logging.getLogger(__name__)
# Health rows that are not cameras: the database itself, and the snapshot folder.
REGISTER_HEALTH, STORAGE_HEALTH = "register", "storage"
STORAGE_HEALTH_KEYS = (REGISTER_HEALTH, STORAGE_HEALTH)
# The tail of every write of a health row (SQLite and PostgreSQL alike): the newest report replaces the last.
UPSERT_HEALTH = (
    "ON CONFLICT (camera_id) DO UPDATE SET status = excluded.status, detail = excluded.detail, "
    "updated_utc = excluded.updated_utc"
)


def _one_line(exc: BaseException) -> str:
    """A database error in one line (PostgreSQL's carry a DETAIL and a HINT on further lines)."""
    lines = str(exc).strip().splitlines()
    return redact(lines[0]) if lines else type(exc).__name__


def read_meta(conn: Any, key: str) -> str:
    """A meta value read inside an open transaction, or "" when the key is absent.

    Args:
        conn: the connection, usually the one a transaction yielded.
        key: the meta key.

    Returns:
        The value, or an empty string.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else ""


class Database:
    """One connection (SQLite, or PostgreSQL through `backend.PgConnection`) behind one re-entrant lock;
    thread-safe."""

    def __init__(self, target: DbTarget | Path | str, *, read_only: bool):
        """Open the register (see `schema.open_connection`).

        Args:
            target: the register: its SQLite file or its PostgreSQL database.
            read_only: open for reading only.
        """
        self.target = parse_target(target)
        self.db_path = self.target.display  # what messages name: the file, or the URL without its password
        self.lock = threading.RLock()
        self._after_commit: Callable[[], None] | None = None  # run once the open transaction commits
        self._storage_state: dict[str, tuple[str, str]] = {}  # health key -> (status, detail), as last known
        self._unrecorded_health: dict[str, dict] = {}  # storage health rows the register could not take
        self.conn: Any = open_connection(self.target, read_only=read_only, on_open=self._load_storage_state)

    @property
    def dialect(self) -> str:
        """The engine.

        Returns:
            "sqlite" or "postgresql".
        """
        return self.target.dialect

    def _load_storage_state(self, conn: Any) -> None:
        self._storage_state = {
            r["camera_id"]: (r["status"], r["detail"])
            for r in conn.execute("SELECT * FROM health WHERE camera_id IN (?, ?)", STORAGE_HEALTH_KEYS)
        }

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction. A failed write (disk full, I/O error, read-only file) is rolled back
        and raised as a one-line StoreError, and the register's health entry says so.

        Yields:
            The connection, inside BEGIN IMMEDIATE (on PostgreSQL: BEGIN and the register's advisory write lock,
            held to COMMIT by every writer of every node); committed when the block ends without an exception.
        """
        with self.lock:
            self._after_commit = None
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except database_errors() as exc:
                raise self._write_failed(exc) from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                self._after_commit = None
                try:
                    self.conn.execute("ROLLBACK")
                except database_errors():
                    pass  # SQLite already rolled back (disk full, I/O error); PostgreSQL's connection was lost
                if isinstance(exc, database_errors()):
                    raise self._write_failed(exc) from None
                raise
            if self._after_commit is not None:
                action, self._after_commit = self._after_commit, None
                action()
            if self.storage_status(REGISTER_HEALTH) != "ok":
                self.set_storage_health(REGISTER_HEALTH, "ok", "writing again")

    def run_after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the open transaction commits, never if it rolls back.

        A later call in the same transaction replaces the earlier one: its only user, the anchor
        file, witnesses the newest audit row.

        Args:
            action: what to run, still under the lock, right after COMMIT.
        """
        self._after_commit = action

    def _write_failed(self, exc: BaseException) -> StoreError:
        message = f"register {self.db_path}: cannot write ({_one_line(exc)})"
        log.error("%s", message)
        self.set_storage_health(REGISTER_HEALTH, "error", message)
        return StoreError(message)

    def query(self, sql: str, params: tuple | list = ()) -> list[Any]:
        """Rows of one read, under the lock.

        Args:
            sql: one SELECT statement.
            params: its parameters.

        Returns:
            All its rows.

        Raises:
            StoreError: the read failed (one line, naming the register).
        """
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except database_errors() as exc:
                raise StoreError(f"register {self.db_path}: {_one_line(exc)}") from None

    def get_meta(self, key: str) -> str | None:
        """One meta value.

        Args:
            key: a meta key.

        Returns:
            Its value, or None when absent.
        """
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta key, in its own transaction.

        Args:
            key: a meta key.
            value: its new value.
        """
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- storage health: the register's and the snapshot folder's own rows of the health table ----------
    def storage_status(self, key: str) -> str:
        """The last known storage status.

        Args:
            key: REGISTER_HEALTH or STORAGE_HEALTH.

        Returns:
            Its last known status ("ok" when never reported).
        """
        return self._storage_state.get(key, ("ok",))[0]

    def set_storage_health(self, key: str, status: str, detail: str) -> None:
        """Storage health, written only when it changes; kept in memory when the register itself cannot
        take it (disk full), so that this process still reports it. Call it under the lock.

        Args:
            key: REGISTER_HEALTH or STORAGE_HEALTH.
            status: "ok", "degraded" or "error".
            detail: why (cut to 500 characters).
        """
        if self._storage_state.get(key) == (status, detail) and key not in self._unrecorded_health:
            return
        self._storage_state[key] = (status, detail)
        row = {"camera_id": key, "status": status, "detail": detail[:500], "updated_utc": clock.iso(clock.utc_now())}
        try:
            self.conn.execute(
                "INSERT INTO health(camera_id, status, detail, updated_utc) "
                "VALUES (:camera_id, :status, :detail, :updated_utc) " + UPSERT_HEALTH,
                row,
            )
            self._unrecorded_health.pop(key, None)
        except database_errors() as exc:
            if key not in self._unrecorded_health:
                log.error("register %s: cannot record %s health: %s", self.db_path, key, exc)
            self._unrecorded_health[key] = row  # health() still shows it; retried on the next report

    def unrecorded_health(self) -> dict[str, dict]:
        """Storage health rows this process could not write (full disk), by key; a copy.

        Returns:
            Key (the row's camera_id) -> the health row it tried to write (camera_id, status, detail,
            updated_utc); empty once every report got through.
        """
        with self.lock:
            return {key: dict(row) for key, row in self._unrecorded_health.items()}
