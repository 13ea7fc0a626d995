"""The register: alerts, operator decisions and the hash-chained, append-only audit log (an SQLite file in WAL
mode, or a PostgreSQL database shared by several runner nodes: see `backend`).

`Register` is a thin facade over the parts, each in its own module and sharing one `Database`
(connection, lock, transactions):

- `backend`: where the register lives (`--db`: a file or a PostgreSQL URL), and PostgreSQL's connection;
- `schema`: the DDL, opening, upgrades (Alembic, `migrations/`), read-only opening, refusals;
- `audit`: the hash chain, its anchor file and `verify`;
- `media`: the snapshot files;
- `records`: alerts, decisions, pause / resume, health;
- `retention`: the purge, and its schedule;
- `rights`: the DPO's rights requests, restrictions and erasures;
- `users`: the workbench's named logins and their failed logins.
- `leases`: the runner nodes sharing a site's cameras, and their camera leases.
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path

from runner.config.site import DEFAULT_MAX_CLOCK_JUMP_DAYS
from runner.core.access import RETENTION_SCHEDULE, Principal
from runner.core.alerts import AlertRecord
from runner.core.errors import StoreError
from runner.register.audit import AuditChain, VerifyReport, anchor_path_for, refuse_replaced_register
from runner.register.backend import DbTarget, parse_target
from runner.register.checkpoints import (
    Checkpoint,
    checkpoint_check,
    load_private_key,
    load_public_key,
    read_checkpoints,
    sign_checkpoint,
)
from runner.register.database import Database
from runner.register.leases import Lease, Leases
from runner.register.media import MediaStore
from runner.register.records import Records, StoredAlert
from runner.register.retention import RetentionPurge
from runner.register.rights import ErasedMedia, RightsRecords
from runner.register.schema import DEFAULT_DB, refuse_unwritable
from runner.register.users import Users


class Register:
    """One SQLite file (WAL) or PostgreSQL database, plus a media folder for snapshots. Thread-safe (one lock)."""

    def __init__(
        self,
        db_path: str | Path | DbTarget = DEFAULT_DB,
        media_dir: str | Path | None = None,
        *,
        create: bool = True,
        read_only: bool = False,
    ):
        """Open (or create) the register. A damaged file is never modified: opening it fails with a
        one-line StoreError.

        Args:
            db_path: the SQLite file, or a `postgresql://user@host:port/name` URL (${ENV} expanded).
            media_dir: the snapshot folder (default: `media` beside the file; `var/media` for PostgreSQL).
            create: create the file when missing (else a missing file is a StoreError); a PostgreSQL
                database must exist (its tables are created on a writing open).
            read_only: open an existing register for reading only (listing, verifying), which also
                works on a read-only file or file system.
        """
        self.target = parse_target(db_path)
        self.media_dir = Path(media_dir) if media_dir else self.target.default_media_dir()
        # The file; for PostgreSQL, a name in the media folder that derived file names (checkpoints) start from.
        self.db_path = self.target.path or self.media_dir / self.target.name
        # PostgreSQL has no anchor file: the signed checkpoints witness its newest row (docs/register.md).
        self.anchor_path = None if self.target.is_postgres else anchor_path_for(self.db_path)
        self.read_only = read_only
        if self.anchor_path is not None:
            if (read_only or not create) and not self.db_path.exists():
                raise StoreError(f"register {self.db_path}: no such file (run the runner first, or pass --db)")
            if not read_only:
                refuse_unwritable(self.db_path)
                refuse_replaced_register(self.db_path, self.anchor_path)
        self.database = Database(self.target, read_only=read_only)
        self.media = MediaStore(self.media_dir)
        self.audit_chain = AuditChain(self.database, self.anchor_path, self.media)
        self.records = Records(self.database, self.audit_chain, self.media)
        self.retention = RetentionPurge(self.database, self.audit_chain, self.media)
        self.users = Users(self.database, self.audit_chain)  # named logins (vigie users, workbench)
        self.leases = Leases(self.database, self.audit_chain)  # runner nodes and their camera leases
        self.owner: Lease | None = None  # set on the view `owned_by` gives a node's camera pipeline
        self.rights = RightsRecords(self.database, self.audit_chain, self.media)
        # The fault tests fill the disk and checkpoint the WAL through these.
        self._conn, self._lock = self.database.conn, self.database.lock

    def close(self) -> None:
        """Close the database and the anchor file."""
        with self._lock:
            self.database.close()
            self.audit_chain.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- audit ------------------------------------------------------------------------------------------
    def audit(self, event: str, actor: str, camera_id: str | None = None, details: dict | None = None) -> int:
        """Append one audit row (see `AuditChain.record`).

        Args:
            event: the event name.
            actor: who did it.
            camera_id: the camera concerned, or None.
            details: what happened.

        Returns:
            The new row's id.
        """
        return self.audit_chain.record(event, actor, camera_id, details)

    def audit_rows(self, limit: int | None = None, event: str | None = None) -> list[dict]:
        """Audit rows, oldest first (see `AuditChain.rows`).

        Args:
            limit: only the newest `limit` rows.
            event: only rows of this event.

        Returns:
            The rows as dicts.
        """
        return self.audit_chain.rows(limit, event)

    def verify(self, checkpoints: Path | None = None, public_key: Path | None = None) -> VerifyReport:
        """Check the file, the audit chain, every record against it, and the anchor file (see `AuditChain.verify`);
        with a checkpoint file and its public key, every signed checkpoint too (see `checkpoints`).

        Args:
            checkpoints: the signed checkpoint file, or None.
            public_key: the public key that checks it (required with checkpoints).

        Returns:
            The report: ok, or the problem on the earliest audit row.
        """
        if checkpoints is None:
            return self.audit_chain.verify()
        if public_key is None:
            raise StoreError("checking checkpoints needs the public key that signed them (--public-key)")
        entries = read_checkpoints(checkpoints)  # before the snapshot: every row they name is committed
        return self.audit_chain.verify(checkpoint_check(entries, load_public_key(public_key), checkpoints.name))

    def checkpoint(self, private_key: Path) -> Checkpoint:
        """Sign the newest audit row with the DPO's key (see `checkpoints.sign_checkpoint`); writes nothing.

        Args:
            private_key: the Ed25519 private key file (mode 0600).

        Returns:
            The signed checkpoint, to append to a file kept outside the register's folder.
        """
        key = load_private_key(private_key)
        with self._lock:
            return sign_checkpoint(self.database.conn, self.target.name, key)

    # -- meta -------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """One meta value.

        Args:
            key: a meta key.

        Returns:
            Its value, or None when absent.
        """
        return self.database.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta key, in its own transaction.

        Args:
            key: a meta key.
            value: its new value.
        """
        self.database.set_meta(key, value)

    # -- media ------------------------------------------------------------------------------------------
    def media_path(self, relative: str) -> Path | None:
        """media_dir / relative, or None when it would lead outside the media folder (see `MediaStore.media_path`).

        Args:
            relative: a snapshot path as stored.

        Returns:
            The file's path, or None.
        """
        return self.media.media_path(relative)

    def owned_by(self, lease: Lease) -> Register:
        """This register as seen by the pipeline of a camera a node holds: its alerts carry the lease's node and
        token, and are refused once the lease is lost (see `Records.add_alert`). It shares every part (and the
        connection) with this one; close this one, not the view.

        Args:
            lease: the node's lease on the camera.

        Returns:
            The view.
        """
        view = copy.copy(self)
        view.owner = lease
        return view

    # -- records ----------------------------------------------------------------------------------------
    def add_alert(
        self, record: AlertRecord, snapshot_jpeg: bytes | None = None, snapshot_note: str | None = None
    ) -> StoredAlert:
        """Store an alert, its snapshot first (see `Records.add_alert`).

        Args:
            record: the alert.
            snapshot_jpeg: its image, or None.
            snapshot_note: why there is no image, when snapshot_jpeg is None.

        Returns:
            The stored alert's id, uid, snapshot path and note.

        Raises:
            LeaseLost: on a node's view (`owned_by`), the node no longer holds the camera under that lease.
        """
        return self.records.add_alert(record, snapshot_jpeg, snapshot_note, owner=self.owner)

    def alert(self, alert_id: int) -> dict | None:
        """One alert, with its decision.

        Args:
            alert_id: the alert's id.

        Returns:
            The alert with its decision, or None.
        """
        return self.records.alert(alert_id)

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
        """Alerts with their decisions, oldest first (see `Records.alerts` for the filters).

        Args:
            status: only "pending", "confirmed" or "rejected" ones.
            camera_id: only this camera's.
            kind: only this event kind.
            include_tests: include test alerts.
            since_utc: only those from this time stamp on.
            after_id: only those with a larger id.
            limit: at most this many.
            include_restricted: include the alerts the DPO restricted (hidden from operators and analysts).

        Returns:
            The alerts as dicts.
        """
        return self.records.alerts(
            status=status,
            camera_id=camera_id,
            kind=kind,
            include_tests=include_tests,
            since_utc=since_utc,
            after_id=after_id,
            limit=limit,
            include_restricted=include_restricted,
        )

    def snapshot_file(self, alert: dict) -> Path | None:
        """Path of the alert's image.

        Args:
            alert: an alert as `alert()` or `alerts()` return it.

        Returns:
            Its image's path, or None when it was never saved or has been purged.
        """
        return self.records.snapshot_file(alert)

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
        """Record an operator's decision (see `Records.decide`).

        Args:
            alert_id: the pending alert decided on.
            decision: "confirmed" or "rejected".
            by: the operator.
            follow_up: one of FOLLOW_UPS.
            reason: one of REJECT_REASONS for a rejection; None for a confirmation.
            note: free text.

        Returns:
            The decision row.
        """
        return self.records.decide(alert_id, decision, by=by, follow_up=follow_up, reason=reason, note=note)

    def set_paused(self, scope: str, paused: bool, by: Principal, reason: str | None = None) -> int:
        """Pause or resume alerting (see `Records.set_paused`).

        Args:
            scope: '*' (everything) or a camera id.
            paused: True to pause, False to resume.
            by: the operator.
            reason: why, recorded in the audit row; None when not given.

        Returns:
            The audit row id.
        """
        return self.records.set_paused(scope, paused, by, reason)

    def take(self, alert_id: int, by: Principal, *, take_over: bool = False) -> dict:
        """An operator takes a pending alert (see `Records.take`).

        Args:
            alert_id: the pending alert.
            by: the operator.
            take_over: take it from the operator holding it.

        Returns:
            The claim row (alert_id, operator, taken_utc).
        """
        return self.records.take(alert_id, by, take_over=take_over)

    def release(self, alert_id: int, by: Principal) -> bool:
        """An operator gives back an alert they hold (see `Records.release`).

        Args:
            alert_id: the alert.
            by: the operator.

        Returns:
            Whether a claim was released.
        """
        return self.records.release(alert_id, by)

    def claims(self) -> dict[int, dict]:
        """Who holds which pending alert.

        Returns:
            Alert id -> its claim row (alert_id, operator, taken_utc).
        """
        return self.records.claims()

    def add_clip(
        self, alert_id: int, data: bytes, *, extension: str, media_type: str, frames: int, duration_s: float
    ) -> dict:
        """Store an alert's short clip beside its snapshot (see `Records.add_clip`).

        Args:
            alert_id: the stored alert.
            data: the encoded clip.
            extension: its file extension ("mp4").
            media_type: its MIME type.
            frames: its frame count.
            duration_s: how long it plays.

        Returns:
            The clip row.
        """
        return self.records.add_clip(
            alert_id, data, extension=extension, media_type=media_type, frames=frames, duration_s=duration_s
        )

    def clip(self, alert_id: int) -> dict | None:
        """An alert's clip row with its intact file's path, or None (see `Records.clip`).

        Args:
            alert_id: the alert.

        Returns:
            The clip row plus `file`, or None when the alert has no clip.
        """
        return self.records.clip(alert_id)

    def control_state(self) -> dict[str, dict]:
        """The control rows by scope.

        Returns:
            Scope ('*' or a camera id) -> its control row (see `Records.control_state`).
        """
        return self.records.control_state()

    def is_paused(self, camera_id: str, state: dict[str, dict] | None = None) -> bool:
        """Whether alerts of a camera are paused.

        Args:
            camera_id: the camera.
            state: a `control_state()` already read, or None.

        Returns:
            Whether the camera, or everything, is paused.
        """
        return self.records.is_paused(camera_id, state)

    def set_health(self, camera_id: str, status: str, detail: str = "") -> None:
        """Set a camera's health row.

        Args:
            camera_id: the camera.
            status: its status.
            detail: why.
        """
        self.records.set_health(camera_id, status, detail)

    def health(self) -> list[dict]:
        """Every health row, storage entries this process could not write included.

        Returns:
            The rows sorted by camera_id (see `Records.health`).
        """
        return self.records.health()

    # -- retention --------------------------------------------------------------------------------------
    def purge(
        self,
        *,
        media_days: int,
        alert_days: int,
        site: str | None = None,
        by: Principal = RETENTION_SCHEDULE,
        now: datetime | None = None,
        max_clock_jump_days: int = DEFAULT_MAX_CLOCK_JUMP_DAYS,
        accept_clock: bool = False,
    ) -> dict[str, int]:
        """Delete what is past its retention, refused when the clock cannot be trusted (see `RetentionPurge.purge`).

        Args:
            media_days: days snapshots are kept.
            alert_days: days alerts and decisions are kept.
            site: only this site's records (None: every site's, and audit rows after alert_days).
            by: who purges (the runner's own identity by default).
            now: the time the cutoffs count from (default: now).
            max_clock_jump_days: refuse when the clock or the records jump further than this.
            accept_clock: record (audited) that the clock is right before purging.

        Returns:
            Counts of media_files, alerts, decisions and audit_rows purged.
        """
        return self.retention.purge(
            media_days=media_days,
            alert_days=alert_days,
            site=site,
            by=by,
            now=now,
            max_clock_jump_days=max_clock_jump_days,
            accept_clock=accept_clock,
        )

    # -- rights of the persons filmed (the DPO) ---------------------------------------------------------
    def open_rights_request(
        self, reference: str, *, by: Principal, kind: str, channel: str = "other", received: datetime | None = None
    ) -> dict:
        """Record a rights request (see `RightsRecords.open_request`).

        Args:
            reference: the request's reference.
            by: the DPO.
            kind: one of REQUEST_KINDS.
            channel: one of REQUEST_CHANNELS.
            received: when it was received; None for now.

        Returns:
            The request's row.
        """
        return self.rights.open_request(reference, by=by, kind=kind, channel=channel, received=received)

    def close_rights_request(self, reference: str, status: str, *, by: Principal) -> dict:
        """Close a rights request (see `RightsRecords.close_request`).

        Args:
            reference: the request's reference.
            status: "answered", "rejected" or "withdrawn".
            by: the DPO.

        Returns:
            The request's row.
        """
        return self.rights.close_request(reference, status, by=by)

    def rights_requests(self, *, open_only: bool = False) -> list[dict]:
        """The rights requests, oldest received first.

        Args:
            open_only: only those still open.

        Returns:
            Their rows.
        """
        return self.rights.requests(open_only=open_only)

    def restrict_alerts(self, reference: str, alert_ids: list[int], *, by: Principal) -> tuple[list[int], int]:
        """Hide alerts from operators and analysts (see `RightsRecords.restrict`).

        Args:
            reference: the request's reference.
            alert_ids: the alerts.
            by: the DPO.

        Returns:
            (the alerts newly restricted, the audit row's id).
        """
        return self.rights.restrict(reference, alert_ids, by=by)

    def lift_restrictions(self, reference: str, alert_ids: list[int], *, by: Principal) -> tuple[list[int], int]:
        """End restrictions (see `RightsRecords.lift`).

        Args:
            reference: the request's reference.
            alert_ids: the alerts.
            by: the DPO.

        Returns:
            (the alerts no longer restricted, the audit row's id).
        """
        return self.rights.lift(reference, alert_ids, by=by)

    def restricted_alert_ids(self) -> set[int]:
        """Every restricted alert.

        Returns:
            Their ids.
        """
        return self.rights.restricted_ids()

    def erase_media(self, reference: str, alert_ids: list[int], *, by: Principal) -> tuple[ErasedMedia, int]:
        """Erase the alerts' media for a rights request: recorded first, files deleted after the commit.

        Args:
            reference: the request's reference.
            alert_ids: the alerts (their legal fields and decisions stay).
            by: the DPO.

        Returns:
            (what was recorded, how many files were deleted).
        """
        erased = self.rights.erase_media(reference, alert_ids, by=by)
        return erased, self.rights.delete_files(erased.files)
