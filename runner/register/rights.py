"""Rights of the persons filmed, as the register keeps them: the DPO's requests and the restricted alerts.

Every write here is the DPO's (`Role.DPO`) and is audited in the same transaction, its row naming the
request's reference and the DPO. What the law keeps is never deleted here:

- a restriction (limitation) only hides an alert from the operators' and analysts' listings; the row,
  its decision and its audit records stay for the legal duration, and `verify` still checks them;
- an erasure removes the alert's media (snapshot, clip) and records it like a retention purge does
  (`media_purged_utc`, and the erased alert ids in the audit row), while the alert's own fields and its
  decision stay: the register of alerts and follow-ups is kept for its legal duration (décret
  n°2023-828, art. 10 of loi n°2023-380).

The record goes first, the files after it commits: a crash in between leaves a file the next erasure of
the same alert removes, never a record that verify reports as tampered.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.core.access import Action, Principal, require
from runner.core.errors import UsageError
from runner.register import clock
from runner.register.audit import AuditChain, id_ranges
from runner.register.database import Database
from runner.register.media import MediaStore

log = logging.getLogger(__name__)

ANSWER_DEADLINE_DAYS = 30  # RGPD art. 12(3): the DPO answers within one month
# The kinds of request (the social-acceptability indicators list them in this order).
REQUEST_KINDS = ("information", "access", "rectification", "objection", "erasure", "restriction", "complaint")
REQUEST_CHANNELS = ("mail", "email", "in_person", "phone", "cnil", "other")
REQUEST_STATUSES = ("open", "answered", "rejected", "withdrawn")
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$")
_CHUNK = 500  # ids per statement, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class ErasedMedia:
    """What an erasure recorded, and the files to delete once it committed."""

    alert_ids: list[int]
    audit_id: int
    files: list[str]  # snapshot and clip paths, relative to the media folder


def check_reference(reference: object) -> str:
    """A request reference as the DPO typed it, checked.

    Args:
        reference: e.g. "DPO-2026-014".

    Returns:
        The reference, trimmed.

    Raises:
        UsageError: it is empty, too long or holds other characters than letters, digits and `_./:-`.
    """
    text = reference.strip() if isinstance(reference, str) else ""
    if not REFERENCE.fullmatch(text):
        raise UsageError(
            f"request reference {str(reference)[:40]!r}: 1 to 64 letters, digits or _./:- (e.g. DPO-2026-014)"
        )
    return text


class RightsRecords:
    """The rights requests and the restrictions, through the register's shared connection."""

    def __init__(self, database: Database, chain: AuditChain, media: MediaStore):
        """Rights records through the register's shared connection.

        Args:
            database: the shared connection.
            chain: the audit chain, appended in the same transaction as each write.
            media: the media folder (erasure).
        """
        self.database = database
        self.chain = chain
        self.media = media

    # -- requests -------------------------------------------------------------------------------------------
    def open_request(
        self,
        reference: str,
        *,
        by: Principal,
        kind: str,
        channel: str = "other",
        received: datetime | None = None,
    ) -> dict:
        """Record a request received by the DPO (audited `rights_request_opened`); an existing one is returned.

        Args:
            reference: the request's reference.
            by: the DPO.
            kind: one of REQUEST_KINDS.
            channel: one of REQUEST_CHANNELS.
            received: when it was received (the deadline counts from it); None for now.

        Returns:
            The request's row.

        Raises:
            UsageError: a bad reference, kind or channel, or a receipt date in the future.
        """
        require(by, Action.RIGHTS_ACCESS)
        reference = check_reference(reference)
        _check_choice("kind", kind, REQUEST_KINDS)
        _check_choice("channel", channel, REQUEST_CHANNELS)
        now = clock.utc_now()
        if received is not None and received > now:
            raise UsageError(f"request {reference}: received {clock.iso(received)} is in the future")
        with self.database.transaction() as conn:
            self._ensure(conn, reference, by, kind, channel, received or now)
            row = conn.execute("SELECT * FROM rights_requests WHERE reference = ?", (reference,)).fetchone()
        return dict(row)

    def _ensure(
        self, conn: sqlite3.Connection, reference: str, by: Principal, kind: str, channel: str, received: datetime
    ) -> None:
        """The request's row, created (and audited) when it is new; refused when it is closed."""
        row = conn.execute("SELECT status FROM rights_requests WHERE reference = ?", (reference,)).fetchone()
        if row is not None:
            if row["status"] != "open":
                raise UsageError(f"request {reference} is {row['status']}: open a new reference to act again")
            return
        now = clock.iso(clock.utc_now())
        conn.execute(
            "INSERT INTO rights_requests(reference, kind, channel, received_utc, opened_by, opened_utc) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (reference, kind, channel, clock.iso(received), by.user, now),
        )
        self.chain.append(
            conn,
            "rights_request_opened",
            by.user,
            None,
            {"request": reference, "kind": kind, "channel": channel, "received_utc": clock.iso(received)}
            | by.audit_details(),
        )

    def close_request(self, reference: str, status: str, *, by: Principal) -> dict:
        """Close an open request: answered, rejected (with the reason given to the person) or withdrawn.

        Args:
            reference: the request's reference.
            status: "answered", "rejected" or "withdrawn".
            by: the DPO.

        Returns:
            The request's row.

        Raises:
            UsageError: no such request, it is already closed, or the status is not a closing one.
        """
        require(by, Action.RIGHTS_ACCESS)
        reference = check_reference(reference)
        _check_choice("status", status, REQUEST_STATUSES[1:])
        with self.database.transaction() as conn:
            row = conn.execute("SELECT * FROM rights_requests WHERE reference = ?", (reference,)).fetchone()
            if row is None:
                raise UsageError(f"no rights request {reference}")
            if row["status"] != "open":
                raise UsageError(f"request {reference} is already {row['status']} ({row['answered_utc']})")
            now = clock.iso(clock.utc_now())
            conn.execute(
                "UPDATE rights_requests SET status = ?, answered_utc = ?, answered_by = ? WHERE reference = ?",
                (status, now, by.user, reference),
            )
            self.chain.append(
                conn,
                "rights_request_closed",
                by.user,
                None,
                {"request": reference, "status": status, "received_utc": row["received_utc"]} | by.audit_details(),
            )
            return dict(conn.execute("SELECT * FROM rights_requests WHERE reference = ?", (reference,)).fetchone())

    def requests(self, *, open_only: bool = False) -> list[dict]:
        """The rights requests, oldest received first.

        Args:
            open_only: only those still open.

        Returns:
            Their rows as dicts.
        """
        sql = "SELECT * FROM rights_requests" + (" WHERE status = 'open'" if open_only else "")
        return [dict(r) for r in self.database.query(sql + " ORDER BY received_utc, reference")]

    # -- what the register holds for a place and time ---------------------------------------------------------
    def alerts_in(self, camera_id: str | None, from_utc: str, to_utc: str) -> list[dict]:
        """Every alert of a camera (None: of every camera) in [from_utc, to_utc], restricted ones included.

        Args:
            camera_id: the camera, or None.
            from_utc: the first time stamp (as the register stores them).
            to_utc: the last one.

        Returns:
            The alerts with their decisions and `restricted_by_request` (None when not restricted).
        """
        sql = (
            "SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc, "
            "r.request_ref AS restricted_by_request FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id "
            "LEFT JOIN restrictions r ON r.alert_id = a.id WHERE a.ts_utc >= ? AND a.ts_utc <= ?"
        )
        params: list[Any] = [from_utc, to_utc]
        if camera_id:
            sql += " AND a.camera_id = ?"
            params.append(camera_id)
        return [dict(r) for r in self.database.query(sql + " ORDER BY a.ts_utc, a.id", params)]

    def record_access(self, reference: str, event: str, *, by: Principal, kind: str, details: dict) -> int:
        """Audit a search or an export for a request (creating the request when new).

        Args:
            reference: the request's reference.
            event: "rights_find" or "rights_export".
            by: the DPO.
            kind: the request's kind when it is new.
            details: what was searched or exported (camera, times, alert ids, folder).

        Returns:
            The audit row's id.
        """
        require(by, Action.RIGHTS_ACCESS)
        reference = check_reference(reference)
        with self.database.transaction() as conn:
            self._ensure(conn, reference, by, kind, "other", clock.utc_now())
            if details.get("camera_id") or details.get("from_utc"):  # the place and time the request is about
                conn.execute(
                    "UPDATE rights_requests SET camera_id = COALESCE(camera_id, ?), from_utc = COALESCE(from_utc, ?), "
                    "to_utc = COALESCE(to_utc, ?) WHERE reference = ?",
                    (details.get("camera_id"), details.get("from_utc"), details.get("to_utc"), reference),
                )
            return self.chain.append(
                conn, event, by.user, details.get("camera_id"), {"request": reference, **details} | by.audit_details()
            )

    # -- restriction ------------------------------------------------------------------------------------------
    def restrict(self, reference: str, alert_ids: list[int], *, by: Principal) -> tuple[list[int], int]:
        """Hide alerts from operators and analysts (kept, and verified, for their legal duration).

        Args:
            reference: the request's reference (created as a restriction request when new).
            alert_ids: the alerts; already restricted ones are left as they are.
            by: the DPO.

        Returns:
            (the alerts newly restricted, the audit row's id).

        Raises:
            UsageError: an unknown alert, or a pending one (the operators must decide it first).
        """
        require(by, Action.RIGHTS_RESTRICT)
        reference = check_reference(reference)
        with self.database.transaction() as conn:
            _check_alerts(conn, alert_ids, "restricted")
            self._ensure(conn, reference, by, "restriction", "other", clock.utc_now())
            already = _restricted_among(conn, alert_ids)
            fresh = sorted(set(alert_ids) - already)
            now = clock.iso(clock.utc_now())
            conn.executemany(
                "INSERT INTO restrictions(alert_id, request_ref, restricted_by, restricted_utc) VALUES (?, ?, ?, ?)",
                [(alert_id, reference, by.user, now) for alert_id in fresh],
            )
            audit_id = self.chain.append(
                conn,
                "rights_restrict",
                by.user,
                None,
                {"request": reference, "alert_ids": id_ranges(fresh), "already": id_ranges(sorted(already))}
                | by.audit_details(),
            )
        return fresh, audit_id

    def lift(self, reference: str, alert_ids: list[int], *, by: Principal) -> tuple[list[int], int]:
        """End restrictions (the person withdrew, or the reason for them ended).

        Args:
            reference: the request's reference under which this is done.
            alert_ids: the alerts; those not restricted are left as they are.
            by: the DPO.

        Returns:
            (the alerts no longer restricted, the audit row's id).
        """
        require(by, Action.RIGHTS_RESTRICT)
        reference = check_reference(reference)
        with self.database.transaction() as conn:
            _check_alerts(conn, alert_ids, None)
            self._ensure(conn, reference, by, "restriction", "other", clock.utc_now())
            lifted = sorted(_restricted_among(conn, alert_ids))
            for start in range(0, len(lifted), _CHUNK):
                part = lifted[start : start + _CHUNK]
                conn.execute(f"DELETE FROM restrictions WHERE alert_id IN ({','.join('?' * len(part))})", part)
            audit_id = self.chain.append(
                conn,
                "rights_lift",
                by.user,
                None,
                {"request": reference, "alert_ids": id_ranges(lifted)} | by.audit_details(),
            )
        return lifted, audit_id

    def restricted_ids(self) -> set[int]:
        """Every restricted alert.

        Returns:
            Their ids.
        """
        return {r[0] for r in self.database.query("SELECT alert_id FROM restrictions")}

    # -- erasure ----------------------------------------------------------------------------------------------
    def erase_media(self, reference: str, alert_ids: list[int], *, by: Principal) -> ErasedMedia:
        """Record the erasure of the alerts' media; the caller deletes `files` once this returns.

        Args:
            reference: the request's reference (created as an erasure request when new).
            alert_ids: the alerts whose snapshot and clip go.
            by: the DPO.

        Returns:
            The alerts whose media were (or had already been) erased, the audit row and the files to delete.

        Raises:
            UsageError: an unknown alert, or a pending one (the operators must decide it first).
        """
        require(by, Action.RIGHTS_ERASE)
        reference = check_reference(reference)
        with self.database.transaction() as conn:
            _check_alerts(conn, alert_ids, "erased")
            self._ensure(conn, reference, by, "erasure", "other", clock.utc_now())
            rows = _rows_of(conn, "SELECT id, snapshot, media_purged_utc FROM alerts WHERE id IN ({})", alert_ids)
            files = [r["snapshot"] for r in rows if r["snapshot"]]  # erased before: a crash may have left the file
            fresh = sorted(r["id"] for r in rows if r["media_purged_utc"] is None)
            files += _clip_paths(conn, alert_ids)
            now = clock.iso(clock.utc_now())
            conn.executemany("UPDATE alerts SET media_purged_utc = ? WHERE id = ?", [(now, i) for i in fresh])
            audit_id = self.chain.append(
                conn,
                "rights_erase",
                by.user,
                None,
                {
                    "request": reference,
                    "media_purged_alert_ids": id_ranges(fresh),  # as a purge records them
                    "already_erased": id_ranges(sorted(set(alert_ids) - set(fresh))),
                    "legal_fields_kept": True,
                }
                | by.audit_details(),
            )
        return ErasedMedia(sorted(alert_ids), audit_id, files)

    def delete_files(self, files: list[str]) -> int:
        """Delete erased media files (never outside the media folder); a failure is logged, and retried by
        the next erasure of the same alerts.

        Args:
            files: paths relative to the media folder.

        Returns:
            How many files were deleted.
        """
        deleted = sum(self.media.delete(relative, "rights erasure") is True for relative in files)
        self.media.remove_empty_folders()
        return deleted


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{name} {str(value)[:40]!r}: must be one of {', '.join(choices)}")


def _rows_of(conn: sqlite3.Connection, sql: str, ids: list[int]) -> list[sqlite3.Row]:
    """sql (with one `IN ({})`) run over ids in chunks."""
    rows: list[sqlite3.Row] = []
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        rows += conn.execute(sql.format(",".join("?" * len(part))), part).fetchall()
    return rows


def _check_alerts(conn: sqlite3.Connection, alert_ids: list[int], pending_refused_as: str | None) -> None:
    """Every id names an alert; a pending one is refused when `pending_refused_as` says what it would become."""
    if not alert_ids:
        raise UsageError("no alert given (pass --alert ID, or --camera with --from and --to)")
    rows = {r["id"]: r["status"] for r in _rows_of(conn, "SELECT id, status FROM alerts WHERE id IN ({})", alert_ids)}
    missing = sorted(set(alert_ids) - set(rows))
    if missing:
        raise UsageError(f"no alert with id {', '.join(map(str, missing[:10]))}")
    pending = sorted(i for i, status in rows.items() if status == "pending")
    if pending and pending_refused_as:
        raise UsageError(
            f"alert {', '.join(map(str, pending[:10]))} is pending: the operators decide it before it is "
            f"{pending_refused_as}"
        )


def _restricted_among(conn: sqlite3.Connection, alert_ids: list[int]) -> set[int]:
    return {r[0] for r in _rows_of(conn, "SELECT alert_id FROM restrictions WHERE alert_id IN ({})", alert_ids)}


def _clip_paths(conn: sqlite3.Connection, alert_ids: list[int]) -> list[str]:
    """The alerts' clips (every register this Vigie opens has the table: schema 5 on); their rows go now."""
    paths = [r["path"] for r in _rows_of(conn, "SELECT path FROM alert_clips WHERE alert_id IN ({})", alert_ids)]
    for start in range(0, len(alert_ids), _CHUNK):
        part = alert_ids[start : start + _CHUNK]
        conn.execute(f"DELETE FROM alert_clips WHERE alert_id IN ({','.join('?' * len(part))})", part)
    return paths
