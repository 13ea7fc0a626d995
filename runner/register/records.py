"""What the register records: alerts (with their snapshots), operator decisions, pauses, health.

Durability rules: a snapshot is written *before* its alert row; an alert row and its audit row commit
in one transaction; a snapshot that cannot be written never prevents the alert from being stored (the
row says why there is no image).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.access import Action, Principal, require
from runner.core.alerts import DECISIONS, FOLLOW_UPS, REJECT_REASONS, AlertRecord, canonical_json, content_digest
from runner.core.errors import StoreError, UsageError
from runner.register import clock
from runner.register.audit import AuditChain
from runner.register.database import STORAGE_HEALTH, UPSERT_HEALTH, Database
from runner.register.leases import Lease, LeaseLost, holds
from runner.register.media import MediaStore
from runner.register.outbox import enqueue_alert, enqueue_decision
from runner.register.schema import DECISION_DIGEST_FIELDS, alert_digest_fields

log = logging.getLogger(__name__)
_ALERT_WITH_DECISION = (
    "SELECT a.*, d.decision, d.reason, d.follow_up, d.operator, d.note, d.decided_utc "
    "FROM alerts a LEFT JOIN decisions d ON d.alert_id = a.id"
)


@dataclass(frozen=True)
class StoredAlert:
    id: int
    uid: str
    snapshot: str | None
    snapshot_note: str | None


class Records:
    """Alerts, decisions, control (pause / resume) and health rows; each write is audited where it must be."""

    def __init__(self, database: Database, chain: AuditChain, media: MediaStore):
        """Records through the register's shared connection.

        Args:
            database: the shared connection.
            chain: the audit chain, appended in the same transaction as each audited write.
            media: the media folder of the snapshots.
        """
        self.database = database
        self.chain = chain
        self.media = media

    # -- alerts -----------------------------------------------------------------------------------------
    def add_alert(
        self,
        record: AlertRecord,
        snapshot_jpeg: bytes | None = None,
        snapshot_note: str | None = None,
        *,
        owner: Lease | None = None,
    ) -> StoredAlert:
        """Store an alert (and its snapshot first). `snapshot_note` says why there is no image, when none is given.

        Args:
            record: the alert.
            snapshot_jpeg: its image, or None.
            snapshot_note: why there is no image, when snapshot_jpeg is None.
            owner: the lease under which a runner node analysed the camera (None: a single runner, no lease).
                The row carries its node and token, and is stored only while that lease stands.

        Returns:
            The stored alert's id, uid, snapshot path and note.

        Raises:
            StoreError: the row could not be written (its snapshot is then removed).
            LeaseLost: the node no longer holds the camera under `owner`: no row, no image, one
                `alert_fenced` audit row (the new owner analyses the camera from then on).
        """
        if snapshot_jpeg is not None:
            snapshot, snapshot_sha, note = self._save_snapshot(record, snapshot_jpeg)
        else:
            snapshot, snapshot_sha, note = None, None, snapshot_note or "no snapshot requested"
        row = _alert_row(record, snapshot, snapshot_sha, note, owner)
        try:
            alert_id = self._insert_alert(record, row, owner)
        except (StoreError, LeaseLost) as exc:
            if snapshot is not None:  # no row names it: give the room back (a full disk is the usual cause)
                self.media.discard(snapshot)
            if isinstance(exc, LeaseLost) and owner is not None:
                self._audit_fenced(record, row, owner)
            raise
        return StoredAlert(alert_id, record.uid, snapshot, note)

    def _save_snapshot(self, record: AlertRecord, jpeg: bytes) -> tuple[str | None, str | None, str | None]:
        """(snapshot path, its SHA-256, None), or (None, None, why not) when it could not be written."""
        try:
            relative = self.media.snapshot_path(record)
            self.media.write_snapshot(relative, jpeg)
        except OSError as exc:
            # The alert is stored all the same; its row and the storage health entry say why.
            note = f"snapshot not saved: {exc.strerror or exc}"
            log.error("camera %s: %s", record.camera_id, note)
            with self.database.lock:
                self.database.set_storage_health(STORAGE_HEALTH, "error", f"{self.media.media_dir}: {note}")
            return None, None, note
        if self.database.storage_status(STORAGE_HEALTH) != "ok":
            with self.database.lock:
                self.database.set_storage_health(STORAGE_HEALTH, "ok", "snapshots saved again")
        return relative.as_posix(), hashlib.sha256(jpeg).hexdigest(), None

    def _insert_alert(self, record: AlertRecord, row: dict[str, Any], owner: Lease | None = None) -> int:
        """The alert row and its audit row, in one transaction; with an owner, only while its lease stands."""
        columns = list(row)
        with self.database.transaction() as conn:
            # In the insert's own transaction: no takeover can commit between the check and the row.
            if owner is not None and not holds(conn, record.site, record.camera_id, owner.node, owner.token):
                raise LeaseLost(
                    f"camera {record.camera_id}: alert {record.uid} not stored: node {owner.node} no longer holds "
                    f"the camera under token {owner.token}"
                )
            cursor = conn.execute(
                f"INSERT INTO alerts({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING id",
                [row[c] for c in columns],
            )
            alert_id = int(cursor.fetchone()[0])
            self.chain.append(
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
            enqueue_alert(conn, alert_id, record, row)  # pushed out (MQTT, webhooks) exactly when stored
        return alert_id

    def _audit_fenced(self, record: AlertRecord, row: dict[str, Any], owner: Lease) -> None:
        """The trace of an alert refused to a node that lost its camera: what it was, never its image."""
        details = {
            "uid": record.uid,
            "kind": record.kind,
            "rule_id": record.rule_id,
            "ts_utc": record.ts_utc,
            "token": owner.token,
            "digest": row["digest"],
        }
        log.warning("camera %s: node %s lost its lease: alert %s refused", record.camera_id, owner.node, record.uid)
        self.chain.record("alert_fenced", owner.node, record.camera_id, details)

    def alert(self, alert_id: int) -> dict | None:
        """One alert, with its decision.

        Args:
            alert_id: the alert's id.

        Returns:
            The alert with its decision's columns (None where undecided), or None when there is no such alert.
        """
        rows = self.database.query(f"{_ALERT_WITH_DECISION} WHERE a.id = ?", (alert_id,))
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
        include_restricted: bool = False,
    ) -> list[dict]:
        """Alerts with their decisions, oldest first. Alerts the DPO restricted are left out unless asked for:
        operators and analysts do not see them (see `RightsRecords.restrict`).

        Args:
            status: only "pending", "confirmed" or "rejected" ones.
            camera_id: only this camera's.
            kind: only this event kind.
            include_tests: include test alerts.
            since_utc: only those from this time stamp on.
            after_id: only those with a larger id.
            limit: at most this many.
            include_restricted: include the restricted alerts (the DPO's view).

        Returns:
            The alerts as dicts (bbox, details and models decoded).
        """
        sql = f"{_ALERT_WITH_DECISION} WHERE 1=1"
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
        if not include_restricted:
            sql += " AND a.id NOT IN (SELECT alert_id FROM restrictions)"
        sql += " ORDER BY a.id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_alert_dict(r) for r in self.database.query(sql, params)]

    def snapshot_file(self, alert: dict) -> Path | None:
        """Path of the alert's image, or None when it was never saved or has been purged.

        Args:
            alert: an alert as `alert()` or `alerts()` return it.

        Returns:
            The image's path inside the media folder, or None.
        """
        if not alert.get("snapshot") or alert.get("media_purged_utc"):
            return None
        return self.media.media_path(alert["snapshot"])

    # -- decisions --------------------------------------------------------------------------------------
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
        """Record an operator's decision. `by` must hold the operator role (else PermissionDenied).

        Args:
            alert_id: the pending alert decided on.
            decision: "confirmed" or "rejected".
            by: the operator.
            follow_up: one of FOLLOW_UPS.
            reason: one of REJECT_REASONS for a rejection; None for a confirmation.
            note: free text.

        Returns:
            The decision row, with its digest.

        Raises:
            UsageError: an invalid decision, an unknown alert, or one already decided.
        """
        require(by, Action.DECIDE)
        _check_decision(decision, reason, follow_up)
        with self.database.transaction() as conn:
            alert = conn.execute(
                "SELECT id, status, camera_id, is_test FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
            _check_pending(conn, alert_id, alert)
            _check_not_held_by_another(conn, alert_id, by.user)
            row: dict[str, Any] = {
                "alert_id": alert_id,
                "decision": decision,
                "reason": reason,
                "follow_up": follow_up,
                "operator": by.user,
                "note": note,
                "decided_utc": clock.iso(clock.utc_now()),
            }
            row["digest"] = content_digest({k: row[k] for k in DECISION_DIGEST_FIELDS})
            conn.execute(
                "INSERT INTO decisions(alert_id, decision, reason, follow_up, operator, note, decided_utc, digest) "
                "VALUES (:alert_id, :decision, :reason, :follow_up, :operator, :note, :decided_utc, :digest)",
                row,
            )
            conn.execute("UPDATE alerts SET status = ? WHERE id = ?", (decision, alert_id))
            conn.execute("DELETE FROM alert_claims WHERE alert_id = ?", (alert_id,))  # decided: nobody holds it
            self.chain.append(
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
            enqueue_decision(conn, alert_id, row)
        return row

    # -- pause / resume ---------------------------------------------------------------------------------
    def set_paused(self, scope: str, paused: bool, by: Principal, reason: str | None = None) -> int:
        """Pause or resume alerting; `by` must hold the operator role.

        Args:
            scope: '*' (everything) or a camera id.
            paused: True to pause, False to resume.
            by: the operator.
            reason: why, in the operator's words (recorded in the audit row); None when not given.

        Returns:
            The audit row id.
        """
        require(by, Action.PAUSE)
        reason = _clean_reason(reason)
        with self.database.transaction() as conn:
            audit_id = self.chain.append(
                conn,
                "pause" if paused else "resume",
                by.user,
                None if scope == "*" else scope,
                {"scope": scope, **({"reason": reason} if reason else {}), **by.audit_details()},
            )
            conn.execute(
                "INSERT INTO control(scope, paused, actor, changed_utc, audit_id) VALUES (?,?,?,?,?) "
                "ON CONFLICT (scope) DO UPDATE SET paused = excluded.paused, actor = excluded.actor, "
                "changed_utc = excluded.changed_utc, audit_id = excluded.audit_id",
                (scope, int(paused), by.user, clock.iso(clock.utc_now()), audit_id),
            )
        return audit_id

    def control_state(self) -> dict[str, dict]:
        """The control rows by scope ('*' or a camera id).

        Returns:
            Scope -> its row (scope, paused 0/1, actor, changed_utc, audit_id); a scope never paused is absent.
        """
        return {r["scope"]: dict(r) for r in self.database.query("SELECT * FROM control")}

    def is_paused(self, camera_id: str, state: dict[str, dict] | None = None) -> bool:
        """Whether alerts of a camera are paused.

        Args:
            camera_id: the camera.
            state: a `control_state()` already read, or None to read it now.

        Returns:
            Whether the camera, or everything, is paused.
        """
        state = self.control_state() if state is None else state
        return any(state.get(scope, {}).get("paused") for scope in ("*", camera_id))

    # -- who holds which alert (new -> taken -> decided) ----------------------------------------------------
    def take(self, alert_id: int, by: Principal, *, take_over: bool = False) -> dict:
        """`by` takes a pending alert: the other operators see who holds it, and cannot decide on it.

        Args:
            alert_id: the pending alert.
            by: the operator taking it.
            take_over: take it from the operator holding it (audited with their name); else that is refused.

        Returns:
            The claim row (alert_id, operator, taken_utc).

        Raises:
            UsageError: an unknown or decided alert, or one held by another operator without take_over.
        """
        require(by, Action.TAKE)
        with self.database.transaction() as conn:
            alert = conn.execute("SELECT id, status, camera_id FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            _check_pending(conn, alert_id, alert)
            held = conn.execute("SELECT operator FROM alert_claims WHERE alert_id = ?", (alert_id,)).fetchone()
            if held is not None and held["operator"] == by.user:
                return dict(conn.execute("SELECT * FROM alert_claims WHERE alert_id = ?", (alert_id,)).fetchone())
            if held is not None and not take_over:
                _check_not_held_by_another(conn, alert_id, by.user)
            row = {"alert_id": alert_id, "operator": by.user, "taken_utc": clock.iso(clock.utc_now())}
            conn.execute(
                "INSERT INTO alert_claims(alert_id, operator, taken_utc) VALUES (?, ?, ?) "
                "ON CONFLICT (alert_id) DO UPDATE SET operator = excluded.operator, taken_utc = excluded.taken_utc",
                (alert_id, by.user, row["taken_utc"]),
            )
            details = {"alert_id": alert_id, **({"from": held["operator"]} if held else {}), **by.audit_details()}
            self.chain.append(conn, "alert_taken", by.user, alert["camera_id"], details)
        return row

    def release(self, alert_id: int, by: Principal) -> bool:
        """`by` gives back an alert they hold (it becomes new again for everyone).

        Args:
            alert_id: the alert.
            by: the operator holding it.

        Returns:
            Whether a claim was released (False when `by` did not hold it).
        """
        require(by, Action.TAKE)
        with self.database.transaction() as conn:
            camera = conn.execute("SELECT camera_id FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            deleted = conn.execute(
                "DELETE FROM alert_claims WHERE alert_id = ? AND operator = ?", (alert_id, by.user)
            ).rowcount
            if deleted:
                self.chain.append(
                    conn, "alert_released", by.user, camera["camera_id"], {"alert_id": alert_id, **by.audit_details()}
                )
        return bool(deleted)

    def claims(self) -> dict[int, dict]:
        """Who holds which pending alert.

        Returns:
            Alert id -> its claim row (alert_id, operator, taken_utc).
        """
        return {r["alert_id"]: dict(r) for r in self.database.query("SELECT * FROM alert_claims")}

    # -- clips ------------------------------------------------------------------------------------------
    def add_clip(
        self, alert_id: int, data: bytes, *, extension: str, media_type: str, frames: int, duration_s: float
    ) -> dict:
        """Store an alert's short clip beside its snapshot (file first, then its row with its SHA-256).

        Args:
            alert_id: the stored alert the clip belongs to.
            data: the encoded clip.
            extension: its file extension without the dot ("mp4", "webm").
            media_type: its MIME type, for the players.
            frames: how many frames it holds.
            duration_s: how long it plays.

        Returns:
            The clip row (alert_id, path, sha256, media_type, frames, duration_s, size_bytes, created_utc).

        Raises:
            UsageError: no such alert.
            StoreError: the row could not be written (the file is then removed).
            OSError: the file could not be written.
        """
        alert = self.database.query("SELECT camera_id, ts_utc, uid FROM alerts WHERE id = ?", (alert_id,))
        if not alert:
            raise UsageError(f"no alert with id {alert_id}")
        relative = self.media.clip_path(alert[0]["camera_id"], alert[0]["ts_utc"], alert[0]["uid"], extension)
        self.media.write_snapshot(relative, data)
        row: dict[str, Any] = {
            "alert_id": alert_id,
            "path": relative.as_posix(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "media_type": media_type,
            "frames": int(frames),
            "duration_s": float(duration_s),
            "size_bytes": len(data),
            "created_utc": clock.iso(clock.utc_now()),
        }
        try:
            with self.database.transaction() as conn:
                conn.execute(
                    f"INSERT INTO alert_clips({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)}) "
                    f"ON CONFLICT (alert_id) DO UPDATE SET {', '.join(f'{k} = excluded.{k}' for k in row)}",
                    row,
                )
        except StoreError:
            self.media.discard(row["path"])
            raise
        return row

    def clip(self, alert_id: int) -> dict | None:
        """An alert's clip row, with the file's path when it is still there and intact.

        Args:
            alert_id: the alert.

        Returns:
            The clip row plus `file` (its Path, or None when purged, missing, outside the media folder or
            altered), or None when the alert has no clip.
        """
        rows = self.database.query("SELECT * FROM alert_clips WHERE alert_id = ?", (alert_id,))
        if not rows:
            return None
        row = dict(rows[0])
        path = self.media.media_path(row["path"])
        try:
            intact = path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        except OSError:
            intact = False
        row["file"] = path if intact else None
        return row

    # -- health -----------------------------------------------------------------------------------------
    def set_health(self, camera_id: str, status: str, detail: str = "") -> None:
        """Set a camera's health row.

        Args:
            camera_id: the camera (or a storage key).
            status: its status.
            detail: why.
        """
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT INTO health(camera_id, status, detail, updated_utc) VALUES (?,?,?,?) " + UPSERT_HEALTH,
                (camera_id, status, detail, clock.iso(clock.utc_now())),
            )

    def health(self) -> list[dict]:
        """Every health row; a storage entry this process could not write (full disk) is shown as well.

        Returns:
            The rows (camera_id, status, detail, updated_utc) sorted by camera_id; an unwritten row replaces
            the stored one with the same key.
        """
        rows = {r["camera_id"]: dict(r) for r in self.database.query("SELECT * FROM health ORDER BY camera_id")}
        rows.update(self.database.unrecorded_health())
        return [rows[key] for key in sorted(rows)]


def _check_decision(decision: str, reason: str | None, follow_up: str) -> None:
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}")
    if decision == "rejected" and reason not in REJECT_REASONS:
        raise UsageError(f"a rejection needs a reason among: {', '.join(REJECT_REASONS)}")
    if decision == "confirmed" and reason is not None:
        raise UsageError("a reason is only given when rejecting")
    if follow_up not in FOLLOW_UPS:
        raise UsageError(f"follow-up must be one of {', '.join(FOLLOW_UPS)}")


def _check_pending(conn: sqlite3.Connection, alert_id: int, alert: sqlite3.Row | None) -> None:
    """Only an existing, pending alert can be decided on; the refusal names who decided it, and when."""
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


def _check_not_held_by_another(conn: sqlite3.Connection, alert_id: int, user: str) -> None:
    """An alert another operator holds is theirs to decide on; the refusal names them and since when."""
    held = conn.execute("SELECT operator, taken_utc FROM alert_claims WHERE alert_id = ?", (alert_id,)).fetchone()
    if held is not None and held["operator"] != user:
        raise UsageError(
            f"alert {alert_id} is held by {held['operator']} (since {held['taken_utc']}): take it over first"
        )


_MAX_REASON_CHARS = 300


def _clean_reason(reason: str | None) -> str | None:
    """A pause's reason as recorded: trimmed, one line, bounded; blank counts as none."""
    reason = " ".join((reason or "").split())
    if len(reason) > _MAX_REASON_CHARS:
        raise UsageError(f"a pause reason is at most {_MAX_REASON_CHARS} characters, not {len(reason)}")
    return reason or None


def _alert_row(
    record: AlertRecord, snapshot: str | None, snapshot_sha: str | None, note: str | None, owner: Lease | None = None
) -> dict[str, Any]:
    """The alert's row as stored, with its content digest (covering its owner's node and token when it has one)."""
    row = record.as_row()
    if owner is not None:
        row.update(node=owner.node, lease_token=owner.token)
    row.update(
        bbox=json.dumps(record.bbox) if record.bbox is not None else None,
        details=canonical_json(record.details),
        models=canonical_json(record.models),
        is_test=int(record.is_test),
        snapshot=snapshot,
        snapshot_sha256=snapshot_sha,
        snapshot_note=note,
        created_utc=clock.iso(clock.utc_now()),
    )
    row["digest"] = content_digest({k: row[k] for k in alert_digest_fields(row)})
    return row


def _alert_dict(row: sqlite3.Row) -> dict:
    data = dict(row)
    data["bbox"] = json.loads(data["bbox"]) if data.get("bbox") else None
    data["details"] = json.loads(data["details"]) if data.get("details") else {}
    data["models"] = json.loads(data["models"]) if data.get("models") else []
    data["is_test"] = bool(data["is_test"])
    return data
