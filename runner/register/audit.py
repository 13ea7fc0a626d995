"""The hash-chained, append-only audit log, its anchor file, and `verify`.

Every alert and decision is recorded (with its content digest) in the audit log; each row's hash covers
the previous row's. `verify()` checks the chain from the retention anchor, every alert and decision
against its record (content, status, snapshot file), and that a record whose alert is gone was removed
by a logged purge (each purge row lists the alert ids it deleted and the anchor it set). The anchor file
beside the register witnesses the newest audit row, so that cutting off the newest rows is seen too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import EllipsisType
from typing import Any

from runner.core.alerts import canonical_json, content_digest
from runner.core.errors import StoreError
from runner.register import clock
from runner.register.backend import POSTGRESQL, database_errors
from runner.register.database import REGISTER_HEALTH, Database, read_meta
from runner.register.media import MediaStore
from runner.register.schema import DECISION_DIGEST_FIELDS, alert_digest_fields

# A problem found by verify: (the audit row it concerns, or None for a row with no audit record; message).
Problem = tuple[int | None, str]
RECORDED_EVENTS = ("alert_created", "decision", "purge")


def audit_hash(
    prev_hash: str, row_id: int, ts_utc: str, event: str, actor: str, camera_id: str | None, details: str
) -> str:
    """The hash of one audit row, chained to the previous row's.

    Args:
        prev_hash: the previous row's hash (the anchor hash for the first row after a purge).
        row_id: this row's id.
        ts_utc: its time stamp.
        event: its event name.
        actor: who did it.
        camera_id: the camera concerned, or None.
        details: its details, as canonical JSON.

    Returns:
        The SHA-256, in hex.
    """
    payload = canonical_json([row_id, ts_utc, event, actor, camera_id, details])
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def id_ranges(ids: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]: compact list of deleted ids for the purge's audit row.

    Args:
        ids: alert ids, in any order.

    Returns:
        Inclusive [first, last] ranges, in order.
    """
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def expand_id_ranges(ranges: list[list[int]]) -> set[int]:
    """Every id in the ranges of a purge's audit row.

    Args:
        ranges: what `id_ranges` made.

    Returns:
        Every id the ranges cover.
    """
    return {i for start, end in ranges for i in range(int(start), int(end) + 1)}


def row_digest(row: sqlite3.Row, fields: tuple[str, ...]) -> str:
    """The content digest of a stored alert or decision, as its audit record has it.

    Args:
        row: an alert or decision row.
        fields: the columns its digest covers (`schema.ALERT_DIGEST_FIELDS` or `DECISION_DIGEST_FIELDS`).

    Returns:
        The content digest of those columns.
    """
    return content_digest({k: row[k] for k in fields})


# -- the anchor file: an append-only witness of the newest audit row, outside the database -----------------
def anchor_path_for(db_path: Path) -> Path:
    """The register's anchor file: `<db>.anchor`, beside it (copy both together).

    Args:
        db_path: the register's file.

    Returns:
        The anchor file's path.
    """
    return db_path.with_name(db_path.name + ".anchor")


def read_anchor(path: Path) -> tuple[int, str] | None:
    """(row id, hash) of the newest audit row the anchor file witnesses, or None (no file, no line).

    Lines are `<row id> <sha256>`; a torn last line (crash while appending) is skipped. Writers in
    several processes may append out of order, hence the largest id rather than the last line.

    Args:
        path: the anchor file.

    Returns:
        The newest witnessed row, or None.

    Raises:
        StoreError: the file exists but cannot be read.
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


def refuse_replaced_register(db_path: Path, anchor_path: Path) -> None:
    """An empty or missing register whose anchor file records audit rows was truncated or replaced:
    starting a fresh one there would hide the loss.

    Args:
        db_path: the register's file.
        anchor_path: its anchor file.

    Raises:
        StoreError: the register is empty or missing while its anchor file records rows.
    """
    if db_path.exists() and db_path.stat().st_size > 0:
        return
    witnessed = read_anchor(anchor_path)
    if witnessed is not None:
        raise StoreError(
            f"register {db_path} is {'empty' if db_path.exists() else 'missing'} but {anchor_path.name} "
            f"records audit rows up to {witnessed[0]}: the register was truncated or replaced; restore it from a "
            "backup (nothing was overwritten), or move both files aside to start a new one"
        )


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    alerts_checked: int
    first_bad_row: int | None = None
    problem: str | None = None
    checkpoints_checked: int = 0  # signed checkpoints whose row was found unchanged (see `checkpoints`)


# A check run inside verify's read snapshot: (first bad row, problem) or None, and how many items it checked.
SnapshotCheck = Callable[[sqlite3.Connection], tuple[tuple[int, str] | None, int]]
# A snapshot file deleted by a purge that committed after verify's snapshot began reads as missing: look again.
_FILE_RACE = "is missing (deleted outside the retention purge)"


class AuditChain:
    """Appends audit rows (inside the caller's transaction), reads them back, and verifies the register."""

    def __init__(self, database: Database, anchor_path: Path | None, media: MediaStore):
        """Append and verify through the register's shared connection.

        Args:
            database: the shared connection.
            anchor_path: the anchor file (appended after each commit that adds audit rows); None for a
                PostgreSQL register, which has none (see docs/register.md: the signed checkpoints stand for it).
            media: the media folder, whose snapshot files `verify` checks.
        """
        self.database = database
        self.anchor_path = anchor_path
        self.media = media
        self._anchor_fd: int | None = None

    def append(self, conn: sqlite3.Connection, event: str, actor: str, camera_id: str | None, details: dict) -> int:
        """Append one row to the chain, inside the caller's transaction; the anchor file gets its line
        once that transaction commits.

        Args:
            conn: the connection a `Database.transaction()` yielded.
            event: the event name (e.g. "alert_created", "decision", "pause", "purge").
            actor: who did it.
            camera_id: the camera concerned, or None.
            details: what happened (stored as canonical JSON).

        Returns:
            The new row's id.
        """
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = (
            last["hash"]
            if last
            else conn.execute("SELECT value FROM meta WHERE key = 'audit_anchor_hash'").fetchone()[0]
        )
        next_id = (last["id"] if last else int(read_meta(conn, "audit_purge_upto"))) + 1
        ts = clock.iso(clock.utc_now())
        text = canonical_json(details)
        digest = audit_hash(prev_hash, next_id, ts, event, actor, camera_id, text)
        conn.execute(
            "INSERT INTO audit(id, ts_utc, event, actor, camera_id, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
            (next_id, ts, event, actor, camera_id, text, prev_hash, digest),
        )
        if self.anchor_path is not None:
            self.database.run_after_commit(lambda: self._write_anchor(next_id, digest))
        return next_id

    def record(self, event: str, actor: str, camera_id: str | None = None, details: dict | None = None) -> int:
        """Append one row in its own transaction.

        Args:
            event: the event name.
            actor: who did it.
            camera_id: the camera concerned, or None.
            details: what happened.

        Returns:
            The new row's id.
        """
        with self.database.transaction() as conn:
            return self.append(conn, event, actor, camera_id, details or {})

    def rows(self, limit: int | None = None, event: str | None = None) -> list[dict]:
        """Audit rows, oldest first.

        Args:
            limit: only the newest `limit` rows.
            event: only rows of this event.

        Returns:
            The rows as dicts.
        """
        sql, params = "SELECT * FROM audit", []
        if event:
            sql += " WHERE event = ?"
            params.append(event)
        sql += " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(limit)}) AS newest ORDER BY id"
        return [dict(r) for r in self.database.query(sql, params)]

    def close(self) -> None:
        """Close the anchor file."""
        if self._anchor_fd is not None:
            os.close(self._anchor_fd)
            self._anchor_fd = None

    def _write_anchor(self, row_id: int, row_hash: str) -> None:
        """Appended after the commit, so a line never names a row that was rolled back; fsynced, so
        that a crash cannot keep a row yet lose the line that names it more than once in a while."""
        assert self.anchor_path is not None  # only registered when there is an anchor file
        try:
            if self._anchor_fd is None:
                self._anchor_fd = os.open(self.anchor_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._anchor_fd, f"{row_id} {row_hash}\n".encode("ascii"))
            os.fsync(self._anchor_fd)
        except OSError as exc:
            self.database.set_storage_health(
                REGISTER_HEALTH, "degraded", f"anchor file {self.anchor_path} not written: {exc.strerror or exc}"
            )

    # -- verify ---------------------------------------------------------------------------------------------
    def verify(self, extra_check: SnapshotCheck | None = None) -> VerifyReport:
        """The database file's own integrity (SQLite quick_check), the audit chain and every record
        against it, then the anchor file: a chain whose newest rows were cut off is still a valid
        chain, only the anchor file beside the register tells that rows are missing.

        Every table is read in ONE read transaction (WAL: one consistent snapshot), so that a writer
        appending alerts and decisions meanwhile is never mistaken for tampering.

        Args:
            extra_check: a further check on the same snapshot (the signed checkpoints), or None.

        Returns:
            The report: ok, or the problem on the earliest audit row.
        """
        report = self._verify_snapshot(extra_check)
        if not report.ok and _FILE_RACE in (report.problem or ""):
            report = self._verify_snapshot(extra_check)  # a purge deleted the file after committing: see its commit
        return report

    def _file_damage(self, conn: Any) -> str:
        """SQLite's quick_check of the file ("ok" when sound); PostgreSQL checks its own pages (checksums)."""
        if self.database.dialect == POSTGRESQL:
            return "ok"
        return str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])

    def _verify_snapshot(self, extra_check: SnapshotCheck | None) -> VerifyReport:
        # Read before the snapshot: a line is appended after its row's commit, so the snapshot holds that row.
        witnessed = read_anchor(self.anchor_path) if self.anchor_path is not None else None
        with self.database.lock:
            conn = self.database.conn
            try:
                conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read, and kept until COMMIT
                try:
                    damage = self._file_damage(conn)
                    if damage != "ok":  # "*** in database main ***\nPage 86: btreeInitPage() returns error code 11"
                        damage = " ".join(damage.replace("*** in database main ***", "").split())
                        return VerifyReport(False, 0, 0, None, f"database file damaged: {damage}")
                    report = verify_records(conn, self.media)
                    tail = anchor_problem(conn, self.anchor_path, witnessed) if self.anchor_path is not None else None
                    extra, extra_count = extra_check(conn) if extra_check else (None, 0)
                finally:
                    conn.execute("COMMIT")
            except database_errors() as exc:
                return VerifyReport(False, 0, 0, None, f"database file damaged: {exc}")
        found = [p for p in (tail, extra) if p is not None]
        if not found:
            return replace(report, checkpoints_checked=extra_count)
        if not report.ok and report.first_bad_row is not None:  # a problem on a row: the earliest row wins
            found.append((report.first_bad_row, report.problem or ""))
        first_row, problem = min(found, key=lambda p: p[0])
        return VerifyReport(False, report.rows_checked, report.alerts_checked, first_row, problem, extra_count)


def anchor_problem(
    conn: sqlite3.Connection, anchor_path: Path, witnessed: tuple[int, str] | None | EllipsisType = ...
) -> tuple[int, str] | None:
    """(first bad row, problem) when the audit log does not reach, or does not match, the newest
    row the anchor file witnessed; None when it does (rows after it are fine: the line of the
    newest commit may have been lost in a crash).

    Args:
        conn: the register's connection (under its lock).
        anchor_path: the anchor file.
        witnessed: what the anchor file witnessed, read *before* the snapshot conn reads (default: read it now).

    Returns:
        The first bad row and the problem, or None.
    """
    newest = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    purge_upto = int(read_meta(conn, "audit_purge_upto") or 0)
    if isinstance(witnessed, EllipsisType):
        witnessed = read_anchor(anchor_path)
    if witnessed is None:
        since = read_meta(conn, "anchor_from_row")
        if since and newest is not None and newest >= int(since):
            return int(since), (
                f"anchor file {anchor_path.name} is missing (it witnesses the audit log since "
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
            f"audit rows {first_missing} to {row_id} are missing: {anchor_path.name} "
            f"witnessed row {row_id} (newest rows removed, or an older copy of the register)"
        )
    if row["hash"] != row_hash:
        return row_id, f"audit row {row_id} differs from the one {anchor_path.name} witnessed (log rewritten)"
    return None


# -- the records against the chain: one function per check -------------------------------------------------
@dataclass
class ChainWalk:
    """What reading the chain found: where it broke, and the records of its intact part."""

    rows_checked: int = 0
    broken: bool = False  # a broken chain hides records: only the break is reported for what it hides
    alert_records: dict[int, tuple[int, str]] = field(default_factory=dict)  # alert id -> (audit row, digest)
    # alert id -> (audit row, digest, decision)
    decision_records: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    purged_alerts: set[int] = field(default_factory=set)
    last_anchor_purge: tuple[int, dict] | None = None  # (audit row, details) of the latest purge that set the anchor
    problems: list[Problem] = field(default_factory=list)


def verify_records(conn: sqlite3.Connection, media: MediaStore) -> VerifyReport:
    """Recompute the audit chain, then check every alert and decision against its audit record.

    The chain is read from the retention anchor (the hash of the last purged row) up to the
    newest row and stops at its first break; alerts and decisions are then compared with the
    records of the intact part. Among all problems found, the one on the earliest audit row is
    reported (a row inserted outside Vigie has no audit row and comes last).

    Args:
        conn: the register's connection (under its lock).
        media: the media folder, for the snapshot files.

    Returns:
        The report (without the anchor file's check).
    """
    anchor = read_meta(conn, "audit_anchor_hash")
    purge_upto = int(read_meta(conn, "audit_purge_upto") or 0)
    walk = check_chain(conn, anchor, purge_upto)
    problems = list(walk.problems)
    problems += check_purge_anchor(walk, purge_upto, anchor)
    alert_problems, alive, alerts_checked = check_alerts(conn, walk, media)
    problems += alert_problems
    problems += check_deleted_alerts(walk, alive)
    problems += check_decisions(conn, walk, alive)
    if not problems:
        return VerifyReport(True, walk.rows_checked, alerts_checked)
    # min() keeps the first of equals: the order of the checks above decides ties.
    first_row, problem = min(problems, key=lambda p: (p[0] is None, p[0] or 0))
    return VerifyReport(False, walk.rows_checked, alerts_checked, first_row, problem)


def check_chain(conn: sqlite3.Connection, anchor: str, purge_upto: int) -> ChainWalk:
    """Read the audit log from the anchor, stopping at the first missing row, broken link or altered row.

    Args:
        conn: the register's connection.
        anchor: the hash the first remaining row links to (genesis, or the last purged row's).
        purge_upto: the id of the last purged row (0 when none).

    Returns:
        The rows read, whether the chain broke, and the records of the intact part.
    """
    walk = ChainWalk()
    prev, expected_id = anchor, purge_upto + 1
    for row in conn.execute("SELECT * FROM audit ORDER BY id"):
        walk.rows_checked += 1
        problem = _link_problem(row, expected_id, prev)
        if problem is not None:
            walk.problems.append(problem)
            walk.broken = True
            break
        prev = row["hash"]
        expected_id += 1
        _collect_record(walk, row)
    return walk


def _link_problem(row: sqlite3.Row, expected_id: int, prev_hash: str) -> Problem | None:
    rid = row["id"]
    if rid != expected_id:
        return expected_id, f"audit row {expected_id} is missing (next row is {rid})"
    if row["prev_hash"] != prev_hash:
        return rid, f"audit row {rid}: previous-hash link broken (row removed or replaced)"
    recomputed = audit_hash(prev_hash, rid, row["ts_utc"], row["event"], row["actor"], row["camera_id"], row["details"])
    if recomputed != row["hash"]:
        return rid, f"audit row {rid} ({row['event']}): content altered"
    return None


def _collect_record(walk: ChainWalk, row: sqlite3.Row) -> None:
    """Note what an intact alert_created, decision or purge row records."""
    if row["event"] not in RECORDED_EVENTS:
        return
    rid = row["id"]
    try:
        info = json.loads(row["details"])
        if row["event"] == "alert_created":
            walk.alert_records[int(info["alert_id"])] = (rid, info["digest"])
        elif row["event"] == "decision":
            walk.decision_records[int(info["alert_id"])] = (rid, info["digest"], info["decision"])
        else:
            walk.purged_alerts.update(expand_id_ranges(info.get("deleted_alert_ids") or []))
            if info.get("audit_anchor_upto") is not None:
                walk.last_anchor_purge = (rid, info)
    except (ValueError, KeyError, TypeError):
        walk.problems.append((rid, f"audit row {rid}: unreadable details"))


def check_purge_anchor(walk: ChainWalk, purge_upto: int, anchor: str) -> list[Problem]:
    """Purged audit rows: the anchor must be the one the latest purge set (and logged in the chain).

    Args:
        walk: the chain as read.
        purge_upto: the id of the last purged row (0 when none).
        anchor: the anchor hash in meta.

    Returns:
        The problem, if any.
    """
    if not purge_upto or walk.broken:
        return []
    logged = walk.last_anchor_purge[1] if walk.last_anchor_purge else {}
    if logged.get("audit_anchor_upto") != purge_upto or logged.get("audit_anchor_hash", anchor) != anchor:
        return [(purge_upto + 1, f"rows up to {purge_upto} are gone but no purge recorded removing them")]
    return []


def check_alerts(conn: sqlite3.Connection, walk: ChainWalk, media: MediaStore) -> tuple[list[Problem], set[int], int]:
    """Every alert against its audit record: present, same content, same status, intact snapshot.

    Args:
        conn: the register's connection.
        walk: the chain as read.
        media: the media folder.

    Returns:
        The problems, the ids of the alerts present, and how many alerts were checked.
    """
    problems: list[Problem] = []
    alive: set[int] = set()
    clips = {row["alert_id"]: row for row in conn.execute("SELECT * FROM alert_clips")}
    for alert in conn.execute("SELECT * FROM alerts ORDER BY id"):
        alive.add(alert["id"])
        problems += _alert_problems(alert, walk, media, clips.get(alert["id"]))
    return problems, alive, len(alive)


def _alert_problems(
    alert: sqlite3.Row, walk: ChainWalk, media: MediaStore, clip: sqlite3.Row | None = None
) -> list[Problem]:
    alert_id = alert["id"]
    record = walk.alert_records.get(alert_id)
    if record is None:
        if walk.broken:  # a broken chain hides records: only the break is reported
            return []
        return [(None, f"alert {alert_id} has no audit record (inserted outside Vigie)")]
    if row_digest(alert, alert_digest_fields(alert)) != record[1] or alert["digest"] != record[1]:
        return [(record[0], f"alert {alert_id} differs from its audit record (row {record[0]})")]
    problems: list[Problem] = []
    decided = walk.decision_records.get(alert_id)
    expected_status = decided[2] if decided else "pending"
    if alert["status"] != expected_status and (decided or not walk.broken):
        row_no = decided[0] if decided else record[0]
        problems.append(
            (
                row_no,
                f"alert {alert_id} status '{alert['status']}' does not match its audit "
                f"record ('{expected_status}', row {row_no})",
            )
        )
    for media_problem in (media.snapshot_problem(alert), media.clip_problem(alert, clip)):
        if media_problem:
            problems.append((record[0], f"alert {alert_id}: {media_problem}"))
    return problems


def check_deleted_alerts(walk: ChainWalk, alive: set[int]) -> list[Problem]:
    """Purged records: an alert recorded in the chain may only be gone if a logged purge deleted it.

    Args:
        walk: the chain as read.
        alive: the ids of the alerts present.

    Returns:
        The problems, in the order of the records.
    """
    if walk.broken:
        return []
    return [
        (rid, f"alert {alert_id} was deleted outside the retention purge (row {rid})")
        for alert_id, (rid, _digest) in walk.alert_records.items()
        if alert_id not in alive and alert_id not in walk.purged_alerts
    ]


def check_decisions(conn: sqlite3.Connection, walk: ChainWalk, alive: set[int]) -> list[Problem]:
    """Every decision against its audit record, then every recorded decision of a present alert present.

    Args:
        conn: the register's connection.
        walk: the chain as read.
        alive: the ids of the alerts present.

    Returns:
        The problems: decisions that differ first, then the missing ones.
    """
    problems: list[Problem] = []
    decided_alerts: set[int] = set()
    for decision in conn.execute("SELECT * FROM decisions ORDER BY id"):
        alert_id = decision["alert_id"]
        decided_alerts.add(alert_id)
        record = walk.decision_records.get(alert_id)
        if record is None and walk.broken:
            continue
        if record is None or row_digest(decision, DECISION_DIGEST_FIELDS) != record[1]:
            where = f" (row {record[0]})" if record else ""
            problems.append(
                (record[0] if record else None, f"decision on alert {alert_id} differs from its audit record{where}")
            )
    if not walk.broken:
        problems += [
            (rid, f"decision on alert {alert_id} is missing (recorded in row {rid})")
            for alert_id, (rid, _digest, _decision) in walk.decision_records.items()
            if alert_id in alive and alert_id not in decided_alerts
        ]
    return problems
