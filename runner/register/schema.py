"""The register's SQLite file: its schema, and opening it (WAL, read-only, refusals with their reason).

A damaged file, an SQLite file that is not a register, or one from a newer Vigie is never modified:
opening it fails with a one-line StoreError that says what to do.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.config.loading import redact
from runner.core.errors import StoreError
from runner.register.backend import (
    MIGRATE_LOCK_KEY,
    PG_AUDIT_TRIGGERS,
    POSTGRESQL,
    SQLITE,
    DbTarget,
    PgConnection,
    database_errors,
    parse_target,
    postgres_ddl,
    sqlite_ddl,
)

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
    # alerts pushed out (runner/register/outbox.py): one row per alert and per decision, written in their
    # transaction, gone with their alert; and each destination's cursor (the last row it acknowledged)
    6: """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    event TEXT NOT NULL CHECK (event IN ('alert', 'decision')),
    kind TEXT NOT NULL,
    is_test INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_alert ON outbox(alert_id);
CREATE TABLE IF NOT EXISTS outbox_delivery (
    destination TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    include_tests INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    last_attempt_utc TEXT,
    delivered_utc TEXT
);
""",
    # runner nodes sharing one site's cameras (runner/register/leases.py): each node's heartbeat, one lease
    # per camera (and per site-wide duty, camera id `duty:<name>`) whose token grows with each new owner,
    # and on every alert the node and token that owned its camera when it was stored (the fencing proof)
    7: """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_utc TEXT NOT NULL,
    heartbeat_utc TEXT NOT NULL,
    lease_ttl_s REAL NOT NULL,
    config_revision INTEGER,
    config_sha256 TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_leases (
    site TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    node TEXT,
    token INTEGER NOT NULL,
    acquired_utc TEXT NOT NULL,
    renewed_utc TEXT NOT NULL,
    expires_utc TEXT NOT NULL,
    PRIMARY KEY (site, camera_id)
);
ALTER TABLE alerts ADD COLUMN node TEXT;
ALTER TABLE alerts ADD COLUMN lease_token INTEGER;
""",
}
# The highest step (steps are numbered 2, 3, ... with no gap once every issue has landed).
SCHEMA_VERSION = max(MIGRATIONS)
# Alembic's own version table (created by hand where Alembic is not run: a new register, one of before Alembic).
VERSION_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)

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
# Who owned the alert's camera (a runner node and its lease token): covered only when set, so that the alerts of
# a single runner (no node) and every alert stored before schema 7 keep the digest they were stored with.
ALERT_FENCING_FIELDS = ("node", "lease_token")
DECISION_DIGEST_FIELDS = ("alert_id", "decision", "reason", "follow_up", "operator", "note", "decided_utc")


def alert_digest_fields(row: Mapping[str, Any] | sqlite3.Row) -> tuple[str, ...]:
    """The columns an alert's digest covers: ALERT_DIGEST_FIELDS, and its owner's node and token when it has one.

    Args:
        row: the alert's row (stored or about to be).

    Returns:
        The column names, in digest order.
    """
    owned = "node" in row.keys() and row["node"] is not None
    return ALERT_DIGEST_FIELDS + ALERT_FENCING_FIELDS if owned else ALERT_DIGEST_FIELDS


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


def revision_id(step: int) -> str:
    """The Alembic revision of a schema step: "0001" for the base schema, "0002" for MIGRATIONS[2]...

    Args:
        step: the schema step (1 = the base schema).

    Returns:
        The revision id.
    """
    return f"{step:04d}"


def step_statements(step: int, dialect: str) -> list[str]:
    """The DDL of one schema step for one engine (the one source of the register's DDL is this module,
    in SQLite's spelling; `backend.postgres_ddl` translates it).

    Args:
        step: 1 for the base schema, or a MIGRATIONS step.
        dialect: "sqlite" or "postgresql".

    Returns:
        Its statements; none for a step that has no MIGRATIONS entry (a number kept free).
    """
    script = _SCHEMA if step == 1 else MIGRATIONS.get(step, "")
    if dialect == POSTGRESQL:
        return postgres_ddl(script) + (list(PG_AUDIT_TRIGGERS) if step == 1 else [])
    return sqlite_ddl(script)


def open_connection(
    target: DbTarget | Path | str, *, read_only: bool, on_open: Callable[[Any], None]
) -> sqlite3.Connection | PgConnection:
    """Open the register, check that it is a register of this version, and make it ready.

    Writing opens create the schema on a new register, upgrade an older one in place (Alembic) and restore
    the audit triggers; on SQLite they also set WAL and full sync. Any failure closes the connection and
    becomes a one-line StoreError that never shows a password.

    Args:
        target: the register (an SQLite file, which the caller has already refused when it must exist, or a
            PostgreSQL database).
        read_only: open for reading only (listing, verifying), which also works on a read-only file system.
        on_open: first reads on the opened connection, whose failures are reported like the opening's.

    Returns:
        The connection (autocommit mode, rows by column name, explicit BEGIN / COMMIT).
    """
    target = parse_target(target)
    conn: Any = None
    try:
        if target.is_postgres:
            conn = PgConnection(target, read_only=read_only)
            _check_postgres(conn, target, read_only)
        else:
            assert target.path is not None
            conn = _connect_read_only(target.path) if read_only else _connect(target.path)
            _check_sqlite(conn, target.path, read_only)
        on_open(conn)
        return conn
    except database_errors() as exc:
        _close_quietly(conn)
        raise StoreError(_open_problem(target, exc)) from None
    except OSError as exc:
        _close_quietly(conn)
        raise StoreError(f"register {target.display}: {exc.strerror or exc}") from None
    except BaseException:
        _close_quietly(conn)
        raise


def _check_sqlite(conn: sqlite3.Connection, db_path: Path, read_only: bool) -> None:
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
        _switch_to_wal(conn)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _prepare_for_writing(conn, parse_target(db_path))
    else:
        _refuse_unusable(str(db_path), version)


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """WAL journal mode, retried while the file is locked: of several processes switching a new register at
    once, SQLite answers 'database is locked' at once to all but one, without waiting its busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_postgres(conn: PgConnection, target: DbTarget, read_only: bool) -> None:
    version, objects = _postgres_version(conn)
    if version == 0 and objects and read_only:  # a writing open checks it again under the upgrade lock
        raise StoreError(_NOT_A_REGISTER.format(target.display))
    if version > SCHEMA_VERSION:
        raise StoreError(f"register {target.display}: schema {version} is newer than this Vigie ({SCHEMA_VERSION})")
    if read_only:
        _refuse_unusable(target.display, version)
    else:
        _prepare_for_writing(conn, target)


_NOT_A_REGISTER = "register {}: a PostgreSQL database but not a Vigie register; left untouched (pass another --db)"


def _refuse_unusable(display: str, version: int) -> None:
    """A read-only open needs a register of exactly this version: it cannot create or upgrade one."""
    if version == 0:
        raise StoreError(f"register {display}: empty, not a Vigie register")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"register {display}: schema {version} is older than this Vigie ({SCHEMA_VERSION}); "
            "any writing command (vigie run, purge, decide) upgrades it in place"
        )


def _postgres_version(conn: PgConnection) -> tuple[int, int]:
    """(the stamped schema step or 0, how many tables the database's current schema holds)."""
    row = conn.execute(
        "SELECT to_regclass('alembic_version') IS NOT NULL, "
        "(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema())"
    ).fetchone()
    if not row[0]:
        return 0, int(row[1])
    stamped = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return (int(stamped[0]) if stamped and stamped[0].isdigit() else 0), int(row[1])


def _stamped(conn: Any) -> str | None:
    """The Alembic revision recorded in the register, or None (no version table: a register of before Alembic)."""
    if getattr(conn, "dialect", SQLITE) == POSTGRESQL:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()[0]
    else:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() is not None
    if not exists:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _current_step(conn: Any) -> int:
    """The schema step, read inside the upgrade lock: user_version on SQLite, the Alembic stamp on PostgreSQL."""
    if getattr(conn, "dialect", SQLITE) == POSTGRESQL:
        stamped = _stamped(conn)
        return int(stamped) if stamped and stamped.isdigit() else 0
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _prepare_for_writing(conn: Any, target: DbTarget) -> None:
    """The schema on a new register, in-place upgrades of an older one, the audit triggers restored.
    Only called once the register is known to be a register or empty."""
    due = _create_or_stamp(conn)
    if due:
        upgrade_with_alembic(target, revision_id(SCHEMA_VERSION))
        log.info("register %s: schema upgraded to %d", target.display, SCHEMA_VERSION)
    _restore_triggers(conn, target)
    # From this row on, the anchor file witnesses the newest audit row (see AuditChain.verify()).
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('anchor_from_row', "
        "(SELECT CAST(COALESCE(MAX(id), CAST((SELECT value FROM meta WHERE key = 'audit_purge_upto') AS INTEGER))"
        " + 1 AS TEXT) FROM audit)) ON CONFLICT DO NOTHING"
    )


def _create_or_stamp(conn: Any) -> bool:
    """Under the upgrade lock, re-read the version: create the whole schema on an empty register (one
    transaction: no reader sees half of it, and of several processes creating it at once the others find it
    done), stamp a register of before Alembic at its user_version. Returns whether Alembic has steps to apply
    (run after this transaction, on its own connection, under the same lock)."""
    if getattr(conn, "dialect", SQLITE) != POSTGRESQL:
        return _create_or_stamp_locked(conn, SQLITE, "")  # BEGIN IMMEDIATE is SQLite's upgrade lock
    # A session lock, taken before the transaction: a transaction caches the catalog from its start (an
    # advisory lock does not refresh it), so it must begin once the previous holder has committed.
    conn.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK_KEY,))
    try:
        return _create_or_stamp_locked(conn, POSTGRESQL, conn.target.display)
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATE_LOCK_KEY,))


def _create_or_stamp_locked(conn: Any, dialect: str, display: str) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        step = _current_step(conn)
        if step == 0 and dialect == POSTGRESQL and _postgres_version(conn)[1]:
            raise StoreError(_NOT_A_REGISTER.format(display))
        if step == 0:
            for statement in [s for n in [1, *sorted(MIGRATIONS)] for s in step_statements(n, dialect)]:
                conn.execute(statement)
            step = SCHEMA_VERSION
            if dialect == SQLITE:
                conn.execute(f"PRAGMA user_version = {step}")
        if _stamped(conn) is None:
            conn.execute(VERSION_TABLE_DDL)
            conn.execute("INSERT INTO alembic_version(version_num) VALUES (?)", (revision_id(step),))
        conn.execute("COMMIT")
        return step < SCHEMA_VERSION
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def upgrade_with_alembic(target: DbTarget, revision: str) -> None:
    """Apply the schema steps after the register's stamped revision (runner/register/migrations), in one
    transaction under the upgrade lock, re-checked inside it (a concurrent opener may have done it).
    Alembic and SQLAlchemy are imported only here: an up-to-date register never loads them.

    Args:
        target: the register.
        revision: the revision to reach.

    Raises:
        StoreError: a step failed; the register stays at its version (one line).
    """
    from alembic import command  # noqa: PLC0415 (only an upgrade pays the import)
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["target"] = target
    try:
        command.upgrade(config, revision)
    except Exception as exc:  # SQLAlchemy, the driver or Alembic: reported in one line, no password
        message = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise StoreError(f"register {target.display}: schema upgrade failed ({redact(message)})") from None


def _restore_triggers(conn: Any, target: DbTarget) -> None:
    """Recreate the audit triggers when one was dropped by hand."""
    if target.is_postgres:
        count = conn.execute(
            "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = to_regclass('audit') "
            "AND tgname IN ('audit_no_update', 'audit_no_delete')"
        ).fetchone()[0]
        triggers = list(PG_AUDIT_TRIGGERS)
    else:
        count = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' "
            "AND name IN ('audit_no_update', 'audit_no_delete')"
        ).fetchone()[0]
        triggers = sqlite_ddl(_TRIGGERS)
    if count < 2:
        log.warning("register %s: audit triggers were missing; restored", target.display)
        for statement in triggers:
            conn.execute(statement)


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


def _open_problem(target: DbTarget, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if target.is_postgres:
        return f"register {target.display}: {redact(text)}"
    if "not a database" in text or "malformed" in text:
        return (
            f"register {target.display}: {text} (damaged, or not a register); the file is left untouched: "
            "restore it from a backup or move it aside"
        )
    if "readonly" in text or "unable to open" in text:
        reason = (write_blocker(target.path) if target.path else None) or text
        return f"register {target.display}: cannot open ({reason})"
    return f"register {target.display}: {text}"


def _close_quietly(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except database_errors():
            pass
