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
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.alerts import DECISIONS, FOLLOW_UPS, REJECT_REASONS, AlertRecord, canonical_json, content_digest
from runner.errors import StoreError, UsageError

log = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 1
DEFAULT_DB = Path("var/vigie.db")

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
    "uid", "site", "camera_id", "rule_id", "kind", "ts_utc", "t_s", "frame_index", "subject", "track_id", "score",
    "bbox", "details", "is_test", "phase", "mode", "source", "config_revision", "config_sha256", "models",
    "snapshot", "snapshot_sha256", "snapshot_note", "created_utc",
)
_DECISION_DIGEST_FIELDS = ("alert_id", "decision", "reason", "follow_up", "operator", "note", "decided_utc")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def audit_hash(prev_hash: str, row_id: int, ts_utc: str, event: str, actor: str, camera_id: str | None, details: str) -> str:
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

    def __init__(self, db_path: str | Path = DEFAULT_DB, media_dir: str | Path | None = None, *, create: bool = True):
        self.db_path = Path(db_path)
        self.media_dir = Path(media_dir) if media_dir else self.db_path.parent / "media"
        self._lock = threading.RLock()
        if not create and not self.db_path.exists():
            raise StoreError(f"register {self.db_path}: no such file (run the runner first, or pass --db)")
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"register {self.db_path}: schema {version} is newer than this Vigie ({SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif self._conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ('audit_no_update', 'audit_no_delete')"
            ).fetchone()[0] < 2:
                log.warning("register %s: audit triggers were missing; restored", self.db_path)
                self._conn.executescript(_TRIGGERS)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"register {self.db_path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"register {self.db_path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self):
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"register {self.db_path}: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    self._conn.execute("ROLLBACK")
                    raise StoreError(f"register {self.db_path}: {exc}") from None

    def _query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"register {self.db_path}: {exc}") from None

    # -- audit ---------------------------------------------------------------------------------
    def _append_audit(self, conn: sqlite3.Connection, event: str, actor: str, camera_id: str | None, details: dict) -> int:
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = last["hash"] if last else conn.execute(
            "SELECT value FROM meta WHERE key = 'audit_anchor_hash'"
        ).fetchone()[0]
        next_id = (last["id"] if last else int(self._meta(conn, "audit_purge_upto"))) + 1
        ts = iso(utc_now())
        text = canonical_json(details)
        digest = audit_hash(prev_hash, next_id, ts, event, actor, camera_id, text)
        conn.execute(
            "INSERT INTO audit(id, ts_utc, event, actor, camera_id, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (next_id, ts, event, actor, camera_id, text, prev_hash, digest),
        )
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
                recomputed = audit_hash(prev, rid, row["ts_utc"], row["event"], row["actor"], row["camera_id"], row["details"])
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
                    problems.append((purge_upto + 1, f"rows up to {purge_upto} are gone but no purge recorded removing them"))

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
                    problems.append((row_no, f"alert {alert_id} status '{alert['status']}' does not match its audit "
                                             f"record ('{expected_status}', row {row_no})"))
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
                    problems.append((record[0] if record else None,
                                     f"decision on alert {alert_id} differs from its audit record{where}"))
            for alert_id, (rid, _digest, _decision) in decision_records.items():
                if not chain_broken and alert_id in alive and alert_id not in decided_rows:
                    problems.append((rid, f"decision on alert {alert_id} is missing (recorded in row {rid})"))
            if not problems:
                return VerifyReport(True, checked, alerts_checked)
            first_row, problem = min(problems, key=lambda p: (p[0] is None, p[0] or 0))
            return VerifyReport(False, checked, alerts_checked, first_row, problem)

    def _snapshot_problem(self, alert: sqlite3.Row) -> str | None:
        if not alert["snapshot"] or alert["media_purged_utc"]:
            return None
        path = self.media_dir / alert["snapshot"]
        try:
            data = path.read_bytes()
        except OSError:
            return f"snapshot {alert['snapshot']} is missing (deleted outside the retention purge)"
        if hashlib.sha256(data).hexdigest() != alert["snapshot_sha256"]:
            return f"snapshot {alert['snapshot']} was altered"
        return None

    # -- alerts --------------------------------------------------------------------------------
    def _snapshot_path(self, record: AlertRecord) -> Path:
        day = record.ts_utc[:10]
        return Path(record.camera_id) / day / f"{record.uid}.jpg"

    def _write_snapshot(self, relative: Path, data: bytes) -> None:
        target = (self.media_dir / relative).resolve()
        if self.media_dir.resolve() not in target.parents:
            raise OSError(f"snapshot path escapes the media folder: {relative}")
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_suffix(".tmp")
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)

    def add_alert(self, record: AlertRecord, snapshot_jpeg: bytes | None = None, snapshot_note: str | None = None) -> StoredAlert:
        """Store an alert (and its snapshot first). `snapshot_note` says why there is no image, when none is given."""
        snapshot = snapshot_sha = note = None
        if snapshot_jpeg is not None:
            relative = self._snapshot_path(record)
            try:
                self._write_snapshot(relative, snapshot_jpeg)
                snapshot, snapshot_sha = relative.as_posix(), hashlib.sha256(snapshot_jpeg).hexdigest()
            except OSError as exc:
                note = f"snapshot not saved: {exc.strerror or exc}"
                log.error("camera %s: %s", record.camera_id, note)
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
        with self._transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO alerts({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [row[c] for c in columns],
            )
            alert_id = int(cursor.lastrowid)
            self._append_audit(
                conn, "alert_created", "runner", record.camera_id,
                {"alert_id": alert_id, "uid": record.uid, "kind": record.kind, "rule_id": record.rule_id,
                 "is_test": record.is_test, "digest": row["digest"]},
            )
        return StoredAlert(alert_id, record.uid, snapshot, note)

    def alert(self, alert_id: int) -> dict | None:
        rows = self._query(
            "SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc "
            "FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id WHERE a.id = ?", (alert_id,)
        )
        return _alert_dict(rows[0]) if rows else None

    def alerts(
        self, *, status: str | None = None, camera_id: str | None = None, kind: str | None = None,
        include_tests: bool = True, since_utc: str | None = None, after_id: int | None = None, limit: int | None = None,
    ) -> list[dict]:
        sql = ("SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc "
               "FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id WHERE 1=1")
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
        return self.media_dir / alert["snapshot"]

    # -- decisions -----------------------------------------------------------------------------
    def decide(
        self, alert_id: int, decision: str, *, operator: str, follow_up: str = "none",
        reason: str | None = None, note: str | None = None,
    ) -> dict:
        if decision not in DECISIONS:
            raise UsageError(f"decision must be one of {', '.join(DECISIONS)}")
        if not operator or not operator.strip():
            raise UsageError("an operator identity is required for every decision")
        if decision == "rejected" and reason not in REJECT_REASONS:
            raise UsageError(f"a rejection needs a reason among: {', '.join(REJECT_REASONS)}")
        if decision == "confirmed" and reason is not None:
            raise UsageError("a reason is only given when rejecting")
        if follow_up not in FOLLOW_UPS:
            raise UsageError(f"follow-up must be one of {', '.join(FOLLOW_UPS)}")
        with self._transaction() as conn:
            alert = conn.execute("SELECT id, status, camera_id, is_test FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if alert is None:
                raise UsageError(f"no alert with id {alert_id}")
            if alert["status"] != "pending":
                existing = conn.execute("SELECT operator, decided_utc FROM decisions WHERE alert_id = ?", (alert_id,)).fetchone()
                raise UsageError(
                    f"alert {alert_id} is already {alert['status']}"
                    + (f" (by {existing['operator']} at {existing['decided_utc']})" if existing else "")
                )
            row = {"alert_id": alert_id, "decision": decision, "reason": reason, "follow_up": follow_up,
                   "operator": operator.strip(), "note": note, "decided_utc": iso(utc_now())}
            row["digest"] = content_digest({k: row[k] for k in _DECISION_DIGEST_FIELDS})
            conn.execute(
                "INSERT INTO decisions(alert_id, decision, reason, follow_up, operator, note, decided_utc, digest) "
                "VALUES (:alert_id, :decision, :reason, :follow_up, :operator, :note, :decided_utc, :digest)", row,
            )
            conn.execute("UPDATE alerts SET status = ? WHERE id = ?", (decision, alert_id))
            self._append_audit(
                conn, "decision", row["operator"], alert["camera_id"],
                {"alert_id": alert_id, "decision": decision, "reason": reason, "follow_up": follow_up, "digest": row["digest"]},
            )
        return row

    # -- pause / resume ------------------------------------------------------------------------
    def set_paused(self, scope: str, paused: bool, actor: str) -> int:
        """scope is '*' (everything) or a camera id. Returns the audit row id."""
        if not actor or not actor.strip():
            raise UsageError("an operator identity is required to pause or resume")
        with self._transaction() as conn:
            audit_id = self._append_audit(
                conn, "pause" if paused else "resume", actor.strip(), None if scope == "*" else scope, {"scope": scope}
            )
            conn.execute(
                "INSERT OR REPLACE INTO control(scope, paused, actor, changed_utc, audit_id) VALUES (?,?,?,?,?)",
                (scope, int(paused), actor.strip(), iso(utc_now()), audit_id),
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
        return [dict(r) for r in self._query("SELECT * FROM health ORDER BY camera_id")]

    # -- retention -----------------------------------------------------------------------------
    def purge(self, *, media_days: int, alert_days: int, actor: str = "retention", now: datetime | None = None) -> dict[str, int]:
        """Delete snapshots older than media_days, alerts / decisions / audit rows older than alert_days.

        An image never outlives its record: media are kept at most min(media_days, alert_days).
        Alerts go when their time is past the cutoff *or* when their audit records do (so the
        register always verifies), and the purge's own audit row lists the deleted alert ids.
        """
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
            path = self.media_dir / row["snapshot"]
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
            conn.executemany(
                "UPDATE alerts SET media_purged_utc = ? WHERE id = ?", [(iso(now), i) for i in purged_ids]
            )
            last_old = conn.execute("SELECT MAX(id) FROM audit WHERE ts_utc < ?", (alert_cutoff,)).fetchone()[0]
            doomed_rows = conn.execute(
                "SELECT id, snapshot, media_purged_utc FROM alerts WHERE ts_utc < ? OR id IN ("
                " SELECT CAST(json_extract(details, '$.alert_id') AS INTEGER) FROM audit"
                " WHERE id <= ? AND event IN ('alert_created', 'decision'))",
                (alert_cutoff, last_old if last_old is not None else -1),
            ).fetchall()
            doomed = [r["id"] for r in doomed_rows]
            for chunk in range(0, len(doomed), 500):
                ids = doomed[chunk:chunk + 500]
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
                conn, "purge", actor, None,
                {**counts, "media_days": media_days, "alert_days": alert_days,
                 "media_purged_alert_ids": _id_ranges(purged_ids), "deleted_alert_ids": _id_ranges(doomed),
                 "audit_anchor_upto": last_old, "audit_anchor_hash": anchor},
            )
        # Images of records deleted before their media cutoff (their audit records expired) go too.
        for row in doomed_rows:
            if row["snapshot"] and not row["media_purged_utc"] and row["id"] not in purged_ids:
                try:
                    (self.media_dir / row["snapshot"]).unlink()
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
        removed = 0
        for path in self.media_dir.rglob("*"):
            if not path.is_file():
                continue
            relative = path.relative_to(self.media_dir).as_posix()
            if relative in referenced:
                continue
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed


    def _remove_empty_media_folders(self) -> None:
        if not self.media_dir.is_dir():
            return
        for folder in sorted((p for p in self.media_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
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
