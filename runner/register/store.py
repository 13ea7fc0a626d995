"""The register: alerts, operator decisions and the hash-chained, append-only audit log (SQLite, WAL).

Durability rules: a snapshot is written (temp file + fsync + rename) *before* its alert row; an
alert row and its audit row commit in one transaction; a snapshot that cannot be written never
prevents the alert from being stored (the row says why there is no image).

Integrity: every alert and decision is recorded (with its content digest) in the hash-chained audit
log; `verify()` checks the chain from the retention anchor, every alert and decision against its
record (content, status, snapshot file), and that a record whose alert is gone was removed by a
logged purge (each purge row lists the alert ids it deleted and the anchor it set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.config.site import MAX_ALERT_DAYS, MAX_MEDIA_DAYS
from runner.core.access import RETENTION_SCHEDULE, Action, Principal, require
from runner.core.alerts import DECISIONS, FOLLOW_UPS, REJECT_REASONS, AlertRecord, canonical_json, content_digest
from runner.core.errors import StoreError, UsageError

log = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 1
DEFAULT_DB = Path("var/vigie.db")
# Health rows that are not cameras: the database itself, and the snapshot folder.
REGISTER_HEALTH, STORAGE_HEALTH = "register", "storage"
STORAGE_HEALTH_KEYS = (REGISTER_HEALTH, STORAGE_HEALTH)
# A camera id, day or uid used as a snapshot path part: no separator, no '..', no NUL, not hidden.
_SAFE_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")

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

# Columns of an alert that its digest covers: everything but id, status (changes on decision) and digest.
_ALERT_DIGEST_FIELDS = (
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
_DECISION_DIGEST_FIELDS = ("alert_id", "decision", "reason", "follow_up", "operator", "note", "decided_utc")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def anchor_path_for(db_path: Path) -> Path:
    """The register's anchor file: `<db>.anchor`, beside it (copy both together)."""
    return db_path.with_name(db_path.name + ".anchor")


def read_anchor(path: Path) -> tuple[int, str] | None:
    """(row id, hash) of the newest audit row the anchor file witnesses, or None (no file, no line).

    Lines are `<row id> <sha256>`; a torn last line (crash while appending) is skipped. Writers in
    several processes may append out of order, hence the largest id rather than the last line.
    """
    newest: tuple[int, str] | None = None
    try:
        with open(path, "rb") as handle:
            for raw_line in handle:
                parts = raw_line.split()
                if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
                    continue
                row_id = int(parts[0])
                if newest is None or row_id > newest[0]:
                    newest = (row_id, parts[1].decode("ascii", "replace"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"anchor file {path}: {exc.strerror or exc}") from None
    return newest


def _write_blocker(db_path: Path) -> str | None:
    """Why the register at db_path cannot be written (read-only file system, permissions), or None."""
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


def audit_hash(
    prev_hash: str, row_id: int, ts_utc: str, event: str, actor: str, camera_id: str | None, details: str
) -> str:
    payload = canonical_json([row_id, ts_utc, event, actor, camera_id, details])
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredAlert:
    id: int
    uid: str
    snapshot: str | None
    snapshot_note: str | None


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    alerts_checked: int
    first_bad_row: int | None = None
    problem: str | None = None


class Register:
    """One SQLite file (WAL) plus a media folder for snapshots. Thread-safe (one lock)."""

    def __init__(
        self,
        db_path: str | Path = DEFAULT_DB,
        media_dir: str | Path | None = None,
        *,
        create: bool = True,
        read_only: bool = False,
    ):
        """Open (or create) the register. `read_only` opens an existing one for reading only (listing,
        verifying), which also works on a read-only file or file system. A damaged file is never
        modified: opening it fails with a one-line StoreError."""
        self.db_path = Path(db_path)
        self.media_dir = Path(media_dir) if media_dir else self.db_path.parent / "media"
        self.anchor_path = anchor_path_for(self.db_path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._anchor_fd: int | None = None
        self._anchor_pending: tuple[int, str] | None = None  # newest audit row of the open transaction
        self._storage_state: dict[str, tuple[str, str]] = {}  # health key -> (status, detail), as last known
        self._unrecorded_health: dict[str, dict] = {}  # storage health rows the register could not take
        if (read_only or not create) and not self.db_path.exists():
            raise StoreError(f"register {self.db_path}: no such file (run the runner first, or pass --db)")
        if not read_only:
            self._refuse_unwritable()
            self._refuse_replaced_register()
        try:
            self._conn = self._connect_read_only() if read_only else self._connect()
            # One statement, one snapshot: a register being created by another process is seen empty or whole.
            version, objects = self._conn.execute(
                "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)"
            ).fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"register {self.db_path}: schema {version} is newer than this Vigie ({SCHEMA_VERSION})"
                )
            if version < SCHEMA_VERSION and objects:
                raise StoreError(
                    f"register {self.db_path}: an SQLite file but not a Vigie register; left untouched "
                    "(pass another --db)"
                )
            if not read_only:
                self._prepare_for_writing(version)
            elif version < SCHEMA_VERSION:
                raise StoreError(f"register {self.db_path}: empty file, not a Vigie register")
            self._storage_state = {
                r["camera_id"]: (r["status"], r["detail"])
                for r in self._conn.execute("SELECT * FROM health WHERE camera_id IN (?, ?)", STORAGE_HEALTH_KEYS)
            }
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StoreError(self._open_problem(exc)) from None
        except OSError as exc:
            self._close_quietly()
            raise StoreError(f"register {self.db_path}: {exc.strerror or exc}") from None
        except StoreError:
            self._close_quietly()
            raise

    def _prepare_for_writing(self, version: int) -> None:
        """WAL and full sync; the schema on a new file, the audit triggers restored on an old one.
        Only called once the file is known to be a register or empty: this may rewrite its header."""
        conn = self._conn
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:  # in one transaction, so that no reader ever sees half a schema
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif (
            conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ('audit_no_update', 'audit_no_delete')"
            ).fetchone()[0]
            < 2
        ):
            log.warning("register %s: audit triggers were missing; restored", self.db_path)
            conn.executescript(_TRIGGERS)
        # From this row on, the anchor file witnesses the newest audit row (see verify()).
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('anchor_from_row', "
            "(SELECT COALESCE(MAX(id), CAST((SELECT value FROM meta WHERE key = 'audit_purge_upto') AS INTEGER)) + 1"
            " FROM audit))"
        )

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """mode=ro; on a read-only folder or file system a WAL register cannot get its shared-memory
        file, so it is then opened as immutable (nobody can be writing to it there)."""
        uri = "file:" + quote(str(self.db_path.resolve()))
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            if _write_blocker(self.db_path) is None:
                raise  # writable after all: the failure is something else, and a writer may be active
            conn = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _refuse_unwritable(self) -> None:
        """A register the service cannot write is refused up front, with the reason, not at the first alert."""
        reason = _write_blocker(self.db_path)
        if reason:
            raise StoreError(
                f"register {self.db_path} is read-only ({reason}): cannot record alerts; "
                "listing and `vigie audit verify` still work"
            )

    def _refuse_replaced_register(self) -> None:
        """An empty or missing register whose anchor file records audit rows was truncated or replaced:
        starting a fresh one there would hide the loss."""
        if self.db_path.exists() and self.db_path.stat().st_size > 0:
            return
        witnessed = read_anchor(self.anchor_path)
        if witnessed is not None:
            raise StoreError(
                f"register {self.db_path} is {'empty' if self.db_path.exists() else 'missing'} but {self.anchor_path.name} "
                f"records audit rows up to {witnessed[0]}: the register was truncated or replaced; restore it from a "
                "backup (nothing was overwritten), or move both files aside to start a new one"
            )

    def _open_problem(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return (
                f"register {self.db_path}: {text} (damaged, or not a register); the file is left untouched: "
                "restore it from a backup or move it aside"
            )
        if "readonly" in text or "unable to open" in text:
            reason = _write_blocker(self.db_path) or text
            return f"register {self.db_path}: cannot open ({reason})"
        return f"register {self.db_path}: {text}"

    def _close_quietly(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._anchor_fd is not None:
                os.close(self._anchor_fd)
                self._anchor_fd = None

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self):
        """One write transaction. A failed write (disk full, I/O error, read-only file) is rolled back
        and raised as a one-line StoreError, and the register's health entry says so."""
        with self._lock:
            self._anchor_pending = None
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self._write_failed(exc) from None
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._anchor_pending = None
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass  # SQLite already rolled back (disk full, I/O error)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._write_failed(exc) from None
                raise
            if self._anchor_pending is not None:
                self._write_anchor(*self._anchor_pending)
            if self._storage_state.get(REGISTER_HEALTH, ("ok",))[0] != "ok":
                self._set_storage_health(REGISTER_HEALTH, "ok", "writing again")

    def _write_failed(self, exc: sqlite3.DatabaseError) -> StoreError:
        message = f"register {self.db_path}: cannot write ({exc})"
        log.error("%s", message)
        self._set_storage_health(REGISTER_HEALTH, "error", message)
        return StoreError(message)

    def _set_storage_health(self, key: str, status: str, detail: str) -> None:
        """Storage health, written only when it changes; kept in memory when the register itself cannot
        take it (disk full), so that this process still reports it."""
        if self._storage_state.get(key) == (status, detail) and key not in self._unrecorded_health:
            return
        self._storage_state[key] = (status, detail)
        row = {"camera_id": key, "status": status, "detail": detail[:500], "updated_utc": iso(utc_now())}
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO health(camera_id, status, detail, updated_utc) "
                "VALUES (:camera_id, :status, :detail, :updated_utc)",
                row,
            )
            self._unrecorded_health.pop(key, None)
        except sqlite3.DatabaseError as exc:
            if key not in self._unrecorded_health:
                log.error("register %s: cannot record %s health: %s", self.db_path, key, exc)
            self._unrecorded_health[key] = row  # health() still shows it; retried on the next report

    # -- anchor: an append-only witness of the newest audit row, outside the database -----------
    def _write_anchor(self, row_id: int, row_hash: str) -> None:
        """Appended after the commit, so a line never names a row that was rolled back; fsynced, so
        that a crash cannot keep a row yet lose the line that names it more than once in a while."""
        try:
            if self._anchor_fd is None:
                self._anchor_fd = os.open(self.anchor_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._anchor_fd, f"{row_id} {row_hash}\n".encode("ascii"))
            os.fsync(self._anchor_fd)
        except OSError as exc:
            self._set_storage_health(
                REGISTER_HEALTH, "degraded", f"anchor file {self.anchor_path} not written: {exc.strerror or exc}"
            )

    def _query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"register {self.db_path}: {exc}") from None

    # -- audit ---------------------------------------------------------------------------------
    def _append_audit(
        self, conn: sqlite3.Connection, event: str, actor: str, camera_id: str | None, details: dict
    ) -> int:
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = (
            last["hash"]
            if last
            else conn.execute("SELECT value FROM meta WHERE key = 'audit_anchor_hash'").fetchone()[0]
        )
        next_id = (last["id"] if last else int(self._meta(conn, "audit_purge_upto"))) + 1
        ts = iso(utc_now())
        text = canonical_json(details)
        digest = audit_hash(prev_hash, next_id, ts, event, actor, camera_id, text)
        conn.execute(
            "INSERT INTO audit(id, ts_utc, event, actor, camera_id, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (next_id, ts, event, actor, camera_id, text, prev_hash, digest),
        )
        self._anchor_pending = (next_id, digest)
        return next_id

    def audit(self, event: str, actor: str, camera_id: str | None = None, details: dict | None = None) -> int:
        with self._transaction() as conn:
            return self._append_audit(conn, event, actor, camera_id, details or {})

    def audit_rows(self, limit: int | None = None, event: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM audit", []
        if event:
            sql += " WHERE event = ?"
            params.append(event)
        sql += " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(limit)}) ORDER BY id"
        return [dict(r) for r in self._query(sql, params)]

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def verify(self) -> VerifyReport:
        """The database file's own integrity (SQLite quick_check), the audit chain and every record
        against it (`_verify_records`), then the anchor file: a chain whose newest rows were cut off
        is still a valid chain, only the anchor file beside the register tells that rows are missing.
        """
        with self._lock:
            try:
                damage = self._conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if damage != "ok":  # e.g. "*** in database main ***\nPage 86: btreeInitPage() returns error code 11"
                    damage = " ".join(damage.replace("*** in database main ***", "").split())
                    return VerifyReport(False, 0, 0, None, f"database file damaged: {damage}")
                report = self._verify_records()
                tail = self._anchor_problem()
            except sqlite3.DatabaseError as exc:
                return VerifyReport(False, 0, 0, None, f"database file damaged: {exc}")
        if tail is not None and (report.ok or report.first_bad_row is None or tail[0] < report.first_bad_row):
            return VerifyReport(False, report.rows_checked, report.alerts_checked, tail[0], tail[1])
        return report

    def _anchor_problem(self) -> tuple[int, str] | None:
        """(first bad row, problem) when the audit log does not reach, or does not match, the newest
        row the anchor file witnessed; None when it does (rows after it are fine: the line of the
        newest commit may have been lost in a crash)."""
        conn = self._conn
        newest = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
        purge_upto = int(self._meta(conn, "audit_purge_upto") or 0)
        witnessed = read_anchor(self.anchor_path)
        if witnessed is None:
            since = self._meta(conn, "anchor_from_row")
            if since and newest is not None and newest >= int(since):
                return int(since), (
                    f"anchor file {self.anchor_path.name} is missing (it witnesses the audit log since "
                    f"row {since}; keep it beside the register)"
                )
            return None
        row_id, row_hash = witnessed
        if row_id <= purge_upto:
            return None
        row = conn.execute("SELECT hash FROM audit WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            first_missing = (newest if newest is not None else purge_upto) + 1
            return first_missing, (
                f"audit rows {first_missing} to {row_id} are missing: {self.anchor_path.name} "
                f"witnessed row {row_id} (newest rows removed, or an older copy of the register)"
            )
        if row["hash"] != row_hash:
            return row_id, f"audit row {row_id} differs from the one {self.anchor_path.name} witnessed (log rewritten)"
        return None

    def _verify_records(self) -> VerifyReport:
        """Recompute the audit chain, then check every alert and decision against its audit record.

        The chain is read from the retention anchor (the hash of the last purged row) up to the
        newest row and stops at its first break; alerts and decisions are then compared with the
        records of the intact part. Among all problems found, the one on the earliest audit row is
        reported (a row inserted outside Vigie has no audit row and comes last).
        """
        with self._lock:
            conn = self._conn
            anchor = self._meta(conn, "audit_anchor_hash")
            purge_upto = int(self._meta(conn, "audit_purge_upto") or 0)
            prev, expected_id = anchor, purge_upto + 1
            alert_records: dict[int, tuple[int, str]] = {}  # alert id -> (audit row, digest)
            decision_records: dict[int, tuple[int, str, str]] = {}  # alert id -> (audit row, digest, decision)
            purged_alerts: set[int] = set()
            last_anchor_purge: tuple[int, dict] | None = None
            problems: list[tuple[int | None, str]] = []
            checked, chain_broken = 0, False
            for row in conn.execute("SELECT * FROM audit ORDER BY id"):
                checked += 1
                rid = row["id"]
                if rid != expected_id:
                    problems.append((expected_id, f"audit row {expected_id} is missing (next row is {rid})"))
                    chain_broken = True
                    break
                if row["prev_hash"] != prev:
                    problems.append((rid, f"audit row {rid}: previous-hash link broken (row removed or replaced)"))
                    chain_broken = True
                    break
                recomputed = audit_hash(
                    prev, rid, row["ts_utc"], row["event"], row["actor"], row["camera_id"], row["details"]
                )
                if recomputed != row["hash"]:
                    problems.append((rid, f"audit row {rid} ({row['event']}): content altered"))
                    chain_broken = True
                    break
                prev = row["hash"]
                expected_id += 1
                if row["event"] not in ("alert_created", "decision", "purge"):
                    continue
                try:
                    info = json.loads(row["details"])
                    if row["event"] == "alert_created":
                        alert_records[int(info["alert_id"])] = (rid, info["digest"])
                    elif row["event"] == "decision":
                        decision_records[int(info["alert_id"])] = (rid, info["digest"], info["decision"])
                    else:
                        purged_alerts.update(_expand_ranges(info.get("deleted_alert_ids") or []))
                        if info.get("audit_anchor_upto") is not None:
                            last_anchor_purge = (rid, info)
                except (ValueError, KeyError, TypeError):
                    problems.append((rid, f"audit row {rid}: unreadable details"))
            # The anchor must be the one the latest purge set (and logged in the chain).
            if purge_upto and not chain_broken:
                logged = last_anchor_purge[1] if last_anchor_purge else {}
                if logged.get("audit_anchor_upto") != purge_upto or logged.get("audit_anchor_hash", anchor) != anchor:
                    problems.append(
                        (purge_upto + 1, f"rows up to {purge_upto} are gone but no purge recorded removing them")
                    )

            alerts_checked = 0
            alive: set[int] = set()
            for alert in conn.execute("SELECT * FROM alerts ORDER BY id"):
                alerts_checked += 1
                alert_id = alert["id"]
                alive.add(alert_id)
                record = alert_records.get(alert_id)
                if record is None:
                    if not chain_broken:  # a broken chain hides records: only the break is reported
                        problems.append((None, f"alert {alert_id} has no audit record (inserted outside Vigie)"))
                    continue
                if _row_digest(alert, _ALERT_DIGEST_FIELDS) != record[1] or alert["digest"] != record[1]:
                    problems.append((record[0], f"alert {alert_id} differs from its audit record (row {record[0]})"))
                    continue
                decided = decision_records.get(alert_id)
                expected_status = decided[2] if decided else "pending"
                if alert["status"] != expected_status and (decided or not chain_broken):
                    row_no = decided[0] if decided else record[0]
                    problems.append(
                        (
                            row_no,
                            f"alert {alert_id} status '{alert['status']}' does not match its audit "
                            f"record ('{expected_status}', row {row_no})",
                        )
                    )
                problem = self._snapshot_problem(alert)
                if problem:
                    problems.append((record[0], f"alert {alert_id}: {problem}"))
            for alert_id, (rid, _digest) in alert_records.items():
                if not chain_broken and alert_id not in alive and alert_id not in purged_alerts:
                    problems.append((rid, f"alert {alert_id} was deleted outside the retention purge (row {rid})"))
            decided_rows: set[int] = set()
            for decision in conn.execute("SELECT * FROM decisions ORDER BY id"):
                alert_id = decision["alert_id"]
                decided_rows.add(alert_id)
                record = decision_records.get(alert_id)
                if record is None and chain_broken:
                    continue
                if record is None or _row_digest(decision, _DECISION_DIGEST_FIELDS) != record[1]:
                    where = f" (row {record[0]})" if record else ""
                    problems.append(
                        (
                            record[0] if record else None,
                            f"decision on alert {alert_id} differs from its audit record{where}",
                        )
                    )
            for alert_id, (rid, _digest, _decision) in decision_records.items():
                if not chain_broken and alert_id in alive and alert_id not in decided_rows:
                    problems.append((rid, f"decision on alert {alert_id} is missing (recorded in row {rid})"))
            if not problems:
                return VerifyReport(True, checked, alerts_checked)
            first_row, problem = min(problems, key=lambda p: (p[0] is None, p[0] or 0))
            return VerifyReport(False, checked, alerts_checked, first_row, problem)

    def media_path(self, relative: str) -> Path | None:
        """media_dir / relative, or None when it would lead outside the media folder ('..', absolute,
        NUL, a symlink out): a snapshot column edited in the database must not make the purge delete,
        nor the apps show, a file elsewhere."""
        try:
            root = self.media_dir.resolve()
            target = (self.media_dir / relative).resolve()
        except (OSError, ValueError):  # ValueError: embedded NUL
            return None
        return self.media_dir / relative if target.is_relative_to(root) and target != root else None

    def _snapshot_problem(self, alert: sqlite3.Row) -> str | None:
        if not alert["snapshot"] or alert["media_purged_utc"]:
            return None
        path = self.media_path(alert["snapshot"])
        if path is None:
            return f"snapshot path {alert['snapshot'][:80]!r} leads outside the media folder"
        try:
            data = path.read_bytes()
        except OSError:
            return f"snapshot {alert['snapshot']} is missing (deleted outside the retention purge)"
        if hashlib.sha256(data).hexdigest() != alert["snapshot_sha256"]:
            return f"snapshot {alert['snapshot']} was altered"
        return None

    # -- alerts --------------------------------------------------------------------------------
    def _snapshot_path(self, record: AlertRecord) -> Path:
        """media/<camera>/<day>/<uid>.jpg; every part a plain name, so none can lead out of the media folder."""
        parts = (record.camera_id, record.ts_utc[:10], record.uid)
        for label, part in zip(("camera id", "alert day", "alert uid"), parts, strict=True):
            if not isinstance(part, str) or not _SAFE_FILE_PART.fullmatch(part):
                raise OSError(f"unsafe {label} for a file name: {str(part)[:60]!r}")
        return Path(parts[0]) / parts[1] / f"{parts[2]}.jpg"

    def _write_snapshot(self, relative: Path, data: bytes) -> None:
        target = (self.media_dir / relative).resolve()
        if self.media_dir.resolve() not in target.parents:
            raise OSError(f"snapshot path escapes the media folder: {relative}")
        target.parent.mkdir(parents=True, exist_ok=True)  # also recreates a media folder deleted meanwhile
        temp = target.with_suffix(".tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError:
            temp.unlink(missing_ok=True)  # a partial file on a full disk only takes more room
            raise
        # The rename is durable only once its folder is: the alert row that names the file comes next.
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def add_alert(
        self, record: AlertRecord, snapshot_jpeg: bytes | None = None, snapshot_note: str | None = None
    ) -> StoredAlert:
        """Store an alert (and its snapshot first). `snapshot_note` says why there is no image, when none is given."""
        snapshot = snapshot_sha = note = None
        if snapshot_jpeg is not None:
            try:
                relative = self._snapshot_path(record)
                self._write_snapshot(relative, snapshot_jpeg)
                snapshot, snapshot_sha = relative.as_posix(), hashlib.sha256(snapshot_jpeg).hexdigest()
            except OSError as exc:
                # The alert is stored all the same; its row and the storage health entry say why.
                note = f"snapshot not saved: {exc.strerror or exc}"
                log.error("camera %s: %s", record.camera_id, note)
                with self._lock:
                    self._set_storage_health(STORAGE_HEALTH, "error", f"{self.media_dir}: {note}")
            else:
                if self._storage_state.get(STORAGE_HEALTH, ("ok",))[0] != "ok":
                    with self._lock:
                        self._set_storage_health(STORAGE_HEALTH, "ok", "snapshots saved again")
        else:
            note = snapshot_note or "no snapshot requested"
        row = record.as_row()
        row.update(
            bbox=json.dumps(record.bbox) if record.bbox is not None else None,
            details=canonical_json(record.details),
            models=canonical_json(record.models),
            is_test=int(record.is_test),
            snapshot=snapshot,
            snapshot_sha256=snapshot_sha,
            snapshot_note=note,
            created_utc=iso(utc_now()),
        )
        row["digest"] = content_digest({k: row[k] for k in _ALERT_DIGEST_FIELDS})
        columns = list(row)
        try:
            with self._transaction() as conn:
                cursor = conn.execute(
                    f"INSERT INTO alerts({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    [row[c] for c in columns],
                )
                alert_id = int(cursor.lastrowid)
                self._append_audit(
                    conn,
                    "alert_created",
                    "runner",
                    record.camera_id,
                    {
                        "alert_id": alert_id,
                        "uid": record.uid,
                        "kind": record.kind,
                        "rule_id": record.rule_id,
                        "is_test": record.is_test,
                        "digest": row["digest"],
                    },
                )
        except StoreError:
            if snapshot is not None:  # no row names it: give the room back (a full disk is the usual cause)
                try:
                    (self.media_dir / snapshot).unlink(missing_ok=True)
                except OSError:
                    pass  # left for the orphan sweep of the retention purge
            raise
        return StoredAlert(alert_id, record.uid, snapshot, note)

    def alert(self, alert_id: int) -> dict | None:
        rows = self._query(
            "SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc "
            "FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id WHERE a.id = ?",
            (alert_id,),
        )
        return _alert_dict(rows[0]) if rows else None

    def alerts(
        self,
        *,
        status: str | None = None,
        camera_id: str | None = None,
        kind: str | None = None,
        include_tests: bool = True,
        since_utc: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        sql = (
            "SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc "
            "FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id WHERE 1=1"
        )
        params: list[Any] = []
        for column, value in (("a.status", status), ("a.camera_id", camera_id), ("a.kind", kind)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if not include_tests:
            sql += " AND a.is_test = 0"
        if since_utc:
            sql += " AND a.ts_utc >= ?"
            params.append(since_utc)
        if after_id is not None:
            sql += " AND a.id > ?"
            params.append(after_id)
        sql += " ORDER BY a.id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_alert_dict(r) for r in self._query(sql, params)]

    def snapshot_file(self, alert: dict) -> Path | None:
        """Path of the alert's image, or None when it was never saved or has been purged."""
        if not alert.get("snapshot") or alert.get("media_purged_utc"):
            return None
        return self.media_path(alert["snapshot"])

    # -- decisions -----------------------------------------------------------------------------
    def decide(
        self,
        alert_id: int,
        decision: str,
        *,
        by: Principal,
        follow_up: str = "none",
        reason: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Record an operator's decision. `by` must hold the operator role (else PermissionDenied)."""
        require(by, Action.DECIDE)
        if decision not in DECISIONS:
            raise UsageError(f"decision must be one of {', '.join(DECISIONS)}")
        if decision == "rejected" and reason not in REJECT_REASONS:
            raise UsageError(f"a rejection needs a reason among: {', '.join(REJECT_REASONS)}")
        if decision == "confirmed" and reason is not None:
            raise UsageError("a reason is only given when rejecting")
        if follow_up not in FOLLOW_UPS:
            raise UsageError(f"follow-up must be one of {', '.join(FOLLOW_UPS)}")
        with self._transaction() as conn:
            alert = conn.execute(
                "SELECT id, status, camera_id, is_test FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
            if alert is None:
                raise UsageError(f"no alert with id {alert_id}")
            if alert["status"] != "pending":
                existing = conn.execute(
                    "SELECT operator, decided_utc FROM decisions WHERE alert_id = ?", (alert_id,)
                ).fetchone()
                raise UsageError(
                    f"alert {alert_id} is already {alert['status']}"
                    + (f" (by {existing['operator']} at {existing['decided_utc']})" if existing else "")
                )
            row = {
                "alert_id": alert_id,
                "decision": decision,
                "reason": reason,
                "follow_up": follow_up,
                "operator": by.user,
                "note": note,
                "decided_utc": iso(utc_now()),
            }
            row["digest"] = content_digest({k: row[k] for k in _DECISION_DIGEST_FIELDS})
            conn.execute(
                "INSERT INTO decisions(alert_id, decision, reason, follow_up, operator, note, decided_utc, digest) "
                "VALUES (:alert_id, :decision, :reason, :follow_up, :operator, :note, :decided_utc, :digest)",
                row,
            )
            conn.execute("UPDATE alerts SET status = ? WHERE id = ?", (decision, alert_id))
            self._append_audit(
                conn,
                "decision",
                row["operator"],
                alert["camera_id"],
                {
                    "alert_id": alert_id,
                    "decision": decision,
                    "reason": reason,
                    "follow_up": follow_up,
                    "digest": row["digest"],
                    **by.audit_details(),
                },
            )
        return row

    # -- pause / resume ------------------------------------------------------------------------
    def set_paused(self, scope: str, paused: bool, by: Principal) -> int:
        """scope is '*' (everything) or a camera id; `by` must hold the operator role. Returns the audit row id."""
        require(by, Action.PAUSE)
        with self._transaction() as conn:
            audit_id = self._append_audit(
                conn,
                "pause" if paused else "resume",
                by.user,
                None if scope == "*" else scope,
                {"scope": scope, **by.audit_details()},
            )
            conn.execute(
                "INSERT OR REPLACE INTO control(scope, paused, actor, changed_utc, audit_id) VALUES (?,?,?,?,?)",
                (scope, int(paused), by.user, iso(utc_now()), audit_id),
            )
        return audit_id

    def control_state(self) -> dict[str, dict]:
        return {r["scope"]: dict(r) for r in self._query("SELECT * FROM control")}

    def is_paused(self, camera_id: str, state: dict[str, dict] | None = None) -> bool:
        state = self.control_state() if state is None else state
        return any(state.get(scope, {}).get("paused") for scope in ("*", camera_id))

    # -- health --------------------------------------------------------------------------------
    def set_health(self, camera_id: str, status: str, detail: str = "") -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO health(camera_id, status, detail, updated_utc) VALUES (?,?,?,?)",
                (camera_id, status, detail, iso(utc_now())),
            )

    def health(self) -> list[dict]:
        """Every health row; a storage entry this process could not write (full disk) is shown as well."""
        rows = {r["camera_id"]: dict(r) for r in self._query("SELECT * FROM health ORDER BY camera_id")}
        with self._lock:
            rows.update({key: dict(row) for key, row in self._unrecorded_health.items()})
        return [rows[key] for key in sorted(rows)]

    # -- retention -----------------------------------------------------------------------------
    def purge(
        self,
        *,
        media_days: int,
        alert_days: int,
        by: Principal = RETENTION_SCHEDULE,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Delete snapshots older than media_days, alerts / decisions / audit rows older than alert_days.

        Only the service's role purges (`by`, the runner's own identity by default): nobody else
        deletes records, and the retention schedule is the only way they go.

        An image never outlives its record: media are kept at most min(media_days, alert_days).
        Alerts go when their time is past the cutoff *or* when their audit records do (so the
        register always verifies), and the purge's own audit row lists the deleted alert ids.
        """
        require(by, Action.PURGE)
        for name, days, cap in (("media_days", media_days, MAX_MEDIA_DAYS), ("alert_days", alert_days, MAX_ALERT_DAYS)):
            if not isinstance(days, int) or not 1 <= days <= cap:  # a longer retention is not lawful
                raise UsageError(f"purge: {name} must be a whole number from 1 to {cap} (legal cap), not {days!r}")
        now = now or utc_now()
        media_days = min(media_days, alert_days)
        media_cutoff, alert_cutoff = iso(now - timedelta(days=media_days)), iso(now - timedelta(days=alert_days))
        counts = {"media_files": 0, "alerts": 0, "decisions": 0, "audit_rows": 0}
        old_media = self._query(
            "SELECT id, snapshot FROM alerts WHERE snapshot IS NOT NULL AND media_purged_utc IS NULL AND ts_utc < ?",
            (media_cutoff,),
        )
        # Files first (a crash leaves a row pointing to a missing file, which the next purge fixes).
        purged_ids = []
        for row in old_media:
            path = self.media_path(row["snapshot"])
            if path is None:  # never delete outside the media folder; the row's image is unusable anyway
                log.error("purge: alert %s names a snapshot outside the media folder; not deleted", row["id"])
                purged_ids.append(row["id"])
                continue
            try:
                path.unlink()
                counts["media_files"] += 1
            except FileNotFoundError:
                pass  # already gone (a previous purge crashed before its commit)
            except OSError as exc:
                log.error("purge: cannot delete %s: %s", path, exc.strerror or exc)
                continue  # still there: not marked as purged, retried next time
            purged_ids.append(row["id"])
        counts["media_files"] += self._sweep_orphan_media(now - timedelta(days=media_days))
        with self._transaction() as conn:
            # The snapshot columns stay (the digest covers them): media_purged_utc says the file is gone.
            conn.executemany("UPDATE alerts SET media_purged_utc = ? WHERE id = ?", [(iso(now), i) for i in purged_ids])
            last_old = conn.execute("SELECT MAX(id) FROM audit WHERE ts_utc < ?", (alert_cutoff,)).fetchone()[0]
            doomed_rows = conn.execute(
                "SELECT id, snapshot, media_purged_utc FROM alerts WHERE ts_utc < ? OR id IN ("
                " SELECT CAST(json_extract(details, '$.alert_id') AS INTEGER) FROM audit"
                " WHERE id <= ? AND event IN ('alert_created', 'decision'))",
                (alert_cutoff, last_old if last_old is not None else -1),
            ).fetchall()
            doomed = [r["id"] for r in doomed_rows]
            for chunk in range(0, len(doomed), 500):
                ids = doomed[chunk : chunk + 500]
                marks = ",".join("?" * len(ids))
                counts["decisions"] += conn.execute(f"DELETE FROM decisions WHERE alert_id IN ({marks})", ids).rowcount
                counts["alerts"] += conn.execute(f"DELETE FROM alerts WHERE id IN ({marks})", ids).rowcount
            anchor = None
            if last_old is not None:
                anchor = conn.execute("SELECT hash FROM audit WHERE id = ?", (last_old,)).fetchone()[0]
                conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_purge_upto'", (str(last_old),))
                conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_anchor_hash'", (anchor,))
                counts["audit_rows"] = conn.execute("DELETE FROM audit WHERE id <= ?", (last_old,)).rowcount
            self._append_audit(
                conn,
                "purge",
                by.user,
                None,
                {
                    **counts,
                    **by.audit_details(),
                    "media_days": media_days,
                    "alert_days": alert_days,
                    "media_purged_alert_ids": _id_ranges(purged_ids),
                    "deleted_alert_ids": _id_ranges(doomed),
                    "audit_anchor_upto": last_old,
                    "audit_anchor_hash": anchor,
                },
            )
        # Images of records deleted before their media cutoff (their audit records expired) go too.
        for row in doomed_rows:
            if row["snapshot"] and not row["media_purged_utc"] and row["id"] not in purged_ids:
                path = self.media_path(row["snapshot"])
                if path is None:
                    continue
                try:
                    path.unlink()
                    counts["media_files"] += 1
                except OSError:
                    pass  # missing, or left for the orphan sweep of the next purge
        self._remove_empty_media_folders()
        return counts

    def _sweep_orphan_media(self, cutoff: datetime) -> int:
        """Delete media files older than the cutoff that no alert references (crash leftovers)."""
        if not self.media_dir.exists():
            return 0
        referenced = {r["snapshot"] for r in self._query("SELECT snapshot FROM alerts WHERE snapshot IS NOT NULL")}
        # A temp file is never referenced: one an hour old was left by a killed writer, whatever the retention.
        temp_cutoff = max(cutoff, utc_now() - timedelta(hours=1))
        removed = 0
        for path in self.media_dir.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(self.media_dir).as_posix()
            if relative in referenced:
                continue
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < (
                    temp_cutoff if path.suffix == ".tmp" else cutoff
                ):
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def _remove_empty_media_folders(self) -> None:
        if not self.media_dir.is_dir():
            return
        for folder in sorted(
            (p for p in self.media_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                continue


def _id_ranges(ids: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]: compact list of deleted ids for the purge's audit row."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def _expand_ranges(ranges: list[list[int]]) -> set[int]:
    return {i for start, end in ranges for i in range(int(start), int(end) + 1)}


def _row_digest(row: sqlite3.Row, fields: tuple[str, ...]) -> str:
    return content_digest({k: row[k] for k in fields})


def _alert_dict(row: sqlite3.Row) -> dict:
    data = dict(row)
    data["bbox"] = json.loads(data["bbox"]) if data.get("bbox") else None
    data["details"] = json.loads(data["details"]) if data.get("details") else {}
    data["models"] = json.loads(data["models"]) if data.get("models") else []
    data["is_test"] = bool(data["is_test"])
    return data
