"""The register's SQLite file: its schema, and opening it (WAL, read-only, refusals with their reason).

A damaged file, an SQLite file that is not a register, or one from a newer Vigie is never modified:
opening it fails with a one-line StoreError that says what to do.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from runner.core.errors import StoreError

log = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
DEFAULT_DB = Path("var/vigie.db")
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('audit_purge_upto', '0'), ('audit_anchor_hash', '%(genesis)s');
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts_utc TEXT NOT NULL,
    t_s REAL NOT NULL,
    frame_index INTEGER NOT NULL,
    subject TEXT NOT NULL,
    track_id INTEGER,
    score REAL NOT NULL,
    bbox TEXT,
    details TEXT NOT NULL,
    is_test INTEGER NOT NULL,
    phase TEXT NOT NULL,
    mode TEXT NOT NULL,
    source TEXT NOT NULL,
    config_revision INTEGER NOT NULL,
    config_sha256 TEXT NOT NULL,
    models TEXT NOT NULL,
    snapshot TEXT,
    snapshot_sha256 TEXT,
    snapshot_note TEXT,
    created_utc TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_purged_utc TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'rejected'))
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts(ts_utc);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, ts_utc);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL UNIQUE REFERENCES alerts(id) ON DELETE CASCADE,
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    reason TEXT,
    follow_up TEXT NOT NULL,
    operator TEXT NOT NULL,
    note TEXT,
    decided_utc TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_utc TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    camera_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
%(triggers)sCREATE TABLE IF NOT EXISTS control (
    scope TEXT PRIMARY KEY,
    paused INTEGER NOT NULL,
    actor TEXT NOT NULL,
    changed_utc TEXT NOT NULL,
    audit_id INTEGER
);
CREATE TABLE IF NOT EXISTS health (
    camera_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_utc TEXT NOT NULL
);
"""

# Recreated on every open, so that a trigger dropped by hand does not stay dropped.
_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
WHEN OLD.id > CAST((SELECT value FROM meta WHERE key = 'audit_purge_upto') AS INTEGER)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""
_SCHEMA = _SCHEMA % {"genesis": GENESIS_HASH, "triggers": _TRIGGERS}

# Upgrades of an existing register, applied in order, each in the same transaction as its user_version.
# Version 1 is `_SCHEMA` itself. A step only adds (tables, columns, indexes): an older Vigie refuses a newer
# file rather than misread it. Each step's SQL must be a complete script (statements ending with `;`).
MIGRATIONS: dict[int, str] = {
    # records that survive a wrong clock: each site's retention (an operational one is not overridden by a
    # design-phase config), and the media files a committed purge still has to delete (swept after a crash)
    2: """
CREATE TABLE IF NOT EXISTS site_retention (
    site TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    media_days INTEGER NOT NULL,
    alert_days INTEGER NOT NULL,
    max_clock_jump_days INTEGER NOT NULL,
    updated_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS media_doomed (path TEXT PRIMARY KEY, purged_utc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_site_ts ON alerts(site, ts_utc);
""",
    # rights of the persons filmed: the DPO's requests, and the alerts hidden from operators and analysts
    3: """
CREATE TABLE IF NOT EXISTS rights_requests (
    reference TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    camera_id TEXT,
    from_utc TEXT,
    to_utc TEXT,
    received_utc TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    opened_utc TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'rejected', 'withdrawn')),
    answered_utc TEXT,
    answered_by TEXT
);
CREATE INDEX IF NOT EXISTS rights_requests_status ON rights_requests(status, received_utc);
CREATE TABLE IF NOT EXISTS restrictions (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
    request_ref TEXT NOT NULL,
    restricted_by TEXT NOT NULL,
    restricted_utc TEXT NOT NULL
);
""",
    # named logins of the workbench (runner/register/users.py): one role and an argon2 hash each, never
    # deleted (their names stay in the audit log); failed logins per typed name, known or not
    4: """
CREATE TABLE IF NOT EXISTS users (
    login TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_utc TEXT NOT NULL,
    created_by TEXT NOT NULL,
    changed_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    login TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_utc TEXT NOT NULL,
    locked_until_utc TEXT
);
""",
    # the operators' alarm workflow: who holds which alert (gone with its decision or its alert), and the
    # short clip stored beside each alert's snapshot (same retention; its sha256 checked before playing)
    5: """
CREATE TABLE IF NOT EXISTS alert_claims (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
    operator TEXT NOT NULL,
    taken_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_clips (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    media_type TEXT NOT NULL,
    frames INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_utc TEXT NOT NULL
);
""",
}
SCHEMA_VERSION = 1 + len(MIGRATIONS)

# Columns of an alert that its digest covers: everything but id, status (changes on decision) and digest.
ALERT_DIGEST_FIELDS = (
    "uid",
    "site",
    "camera_id",
    "rule_id",
    "kind",
    "ts_utc",
    "t_s",
    "frame_index",
    "subject",
    "track_id",
    "score",
    "bbox",
    "details",
    "is_test",
    "phase",
    "mode",
    "source",
    "config_revision",
    "config_sha256",
    "models",
    "snapshot",
    "snapshot_sha256",
    "snapshot_note",
    "created_utc",
)
DECISION_DIGEST_FIELDS = ("alert_id", "decision", "reason", "follow_up", "operator", "note", "decided_utc")


def write_blocker(db_path: Path) -> str | None:
    """Why the register at db_path cannot be written (read-only file system, permissions), or None.

    Args:
        db_path: the register's file, which may not exist yet.

    Returns:
        The reason in a few words, or None when nothing prevents writing.
    """
    folder = db_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        return None
    if db_path.exists() and not os.access(db_path, os.W_OK):
        return "no write permission on the file"
    if not os.access(folder, os.W_OK):
        return f"no write permission on the folder {folder}"
    return None


def refuse_unwritable(db_path: Path) -> None:
    """A register the service cannot write is refused up front, with the reason, not at the first alert.

    Args:
        db_path: the register's file.

    Raises:
        StoreError: the file or its folder cannot be written.
    """
    reason = write_blocker(db_path)
    if reason:
        raise StoreError(
            f"register {db_path} is read-only ({reason}): cannot record alerts; "
            "listing and `vigie audit verify` still work"
        )


def open_connection(
    db_path: Path, *, read_only: bool, on_open: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    """Open the register's file, check that it is a register of this version, and make it ready.

    Writing opens get WAL, full sync, the schema on a new file and the audit triggers restored on an
    old one. Any failure closes the connection and becomes a one-line StoreError.

    Args:
        db_path: the register's file (the caller has already refused a missing one where it must exist).
        read_only: open for reading only (listing, verifying), which also works on a read-only file system.
        on_open: first reads on the opened connection, whose failures are reported like the opening's.

    Returns:
        The connection (autocommit mode, rows as `sqlite3.Row`, 30 s busy timeout).
    """
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect_read_only(db_path) if read_only else _connect(db_path)
        # One statement, one snapshot: a register being created by another process is seen empty or whole.
        version, objects = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)"
        ).fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(f"register {db_path}: schema {version} is newer than this Vigie ({SCHEMA_VERSION})")
        if version == 0 and objects:
            raise StoreError(
                f"register {db_path}: an SQLite file but not a Vigie register; left untouched (pass another --db)"
            )
        if not read_only:
            _prepare_for_writing(conn, db_path, version)
        elif version == 0:
            raise StoreError(f"register {db_path}: empty file, not a Vigie register")
        elif version < SCHEMA_VERSION:
            raise StoreError(
                f"register {db_path}: schema {version} is older than this Vigie ({SCHEMA_VERSION}); "
                "any writing command (vigie run, purge, decide) upgrades it in place"
            )
        on_open(conn)
        return conn
    except sqlite3.DatabaseError as exc:
        _close_quietly(conn)
        raise StoreError(_open_problem(db_path, exc)) from None
    except OSError as exc:
        _close_quietly(conn)
        raise StoreError(f"register {db_path}: {exc.strerror or exc}") from None
    except StoreError:
        _close_quietly(conn)
        raise


def _prepare_for_writing(conn: sqlite3.Connection, db_path: Path, version: int) -> None:
    """WAL and full sync; the schema on a new file, the audit triggers restored on an old one.
    Only called once the file is known to be a register or empty: this may rewrite its header."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if version == 0:
        _create(conn)
    else:
        _upgrade(conn, db_path, version)
    if (
        conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' "
            "AND name IN ('audit_no_update', 'audit_no_delete')"
        ).fetchone()[0]
        < 2
    ):
        log.warning("register %s: audit triggers were missing; restored", db_path)
        conn.executescript(_TRIGGERS)
    # From this row on, the anchor file witnesses the newest audit row (see AuditChain.verify()).
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('anchor_from_row', "
        "(SELECT COALESCE(MAX(id), CAST((SELECT value FROM meta WHERE key = 'audit_purge_upto') AS INTEGER)) + 1"
        " FROM audit))"
    )


def _create(conn: sqlite3.Connection) -> None:
    """The whole schema (version 1 and every migration) in one transaction: no reader ever sees half of it,
    and of two processes creating the same file at once, the second finds it done."""
    _apply(conn, [_SCHEMA, *(MIGRATIONS[step] for step in sorted(MIGRATIONS))], SCHEMA_VERSION, only_from=0)


def _upgrade(conn: sqlite3.Connection, db_path: Path, version: int) -> None:
    """Apply the MIGRATIONS after `version`, each step with its user_version in one transaction."""
    for target in sorted(step for step in MIGRATIONS if step > version):
        if _apply(conn, [MIGRATIONS[target]], target):
            log.info("register %s: schema upgraded to %d", db_path, target)


def _apply(conn: sqlite3.Connection, scripts: list[str], target: int, only_from: int | None = None) -> bool:
    """Run scripts and set user_version to target in one IMMEDIATE transaction, unless the file already moved
    on while we waited for the lock (another process upgraded it): then nothing is done.

    only_from: apply only when the version is exactly this (creation: an empty file); default: below target.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        due = version == only_from if only_from is not None else version < target
        if due:
            for script in scripts:
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
        return due
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements (sqlite3.complete_statement), blanks dropped."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement in a register migration: {pending.strip()[:60]}")
    return statements


def _connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    return _configured(conn)


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """mode=ro; on a read-only folder or file system a WAL register cannot get its shared-memory
    file, so it is then opened as immutable (nobody can be writing to it there)."""
    uri = "file:" + quote(str(db_path.resolve()))
    conn = sqlite3.connect(
        uri + "?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if write_blocker(db_path) is None:
            raise  # writable after all: the failure is something else, and a writer may be active
        conn = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    except BaseException:
        conn.close()
        raise
    return _configured(conn)


def _configured(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Rows by column name and a 30 s wait on another writer's lock; the connection is closed if that fails."""
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
    except BaseException:
        conn.close()
        raise
    return conn


def _open_problem(db_path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (
            f"register {db_path}: {text} (damaged, or not a register); the file is left untouched: "
            "restore it from a backup or move it aside"
        )
    if "readonly" in text or "unable to open" in text:
        reason = write_blocker(db_path) or text
        return f"register {db_path}: cannot open ({reason})"
    return f"register {db_path}: {text}"


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass
