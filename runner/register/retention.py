"""Retention: the purge of media and records past their limits, and its schedule (APScheduler).

An image never outlives its record; alerts go when their time is past the cutoff *or* when their audit
records do (so the register always verifies), and each purge's own audit row lists what it deleted and
the anchor from which the chain goes on.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

from runner.config.site import MAX_ALERT_DAYS, MAX_MEDIA_DAYS, Retention
from runner.core.access import RETENTION_SCHEDULE, Action, Principal, require
from runner.core.errors import UsageError
from runner.register import clock
from runner.register.audit import AuditChain, id_ranges
from runner.register.database import Database
from runner.register.media import MediaStore

if TYPE_CHECKING:  # the facade composes this module: a type only, no import cycle
    from runner.register.register import Register

log = logging.getLogger(__name__)
_DELETE_CHUNK = 500  # ids per DELETE, well under SQLite's bound-parameter limit


class RetentionPurge:
    """Deletes what is past its retention, and logs it in the audit chain."""

    def __init__(self, database: Database, chain: AuditChain, media: MediaStore):
        """Purge through the register's shared connection.

        Args:
            database: the shared connection.
            chain: the audit chain (the purge removes its old rows and appends its own).
            media: the media folder.
        """
        self.database = database
        self.chain = chain
        self.media = media

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

        Args:
            media_days: days snapshots are kept (1 to the legal cap).
            alert_days: days alerts, decisions and audit rows are kept (1 to the legal cap).
            by: who purges (must hold the purge right).
            now: the time the cutoffs count from (default: now).

        Returns:
            Counts of deleted media_files, alerts, decisions and audit_rows.
        """
        require(by, Action.PURGE)
        _check_days(media_days, alert_days)
        now = now or clock.utc_now()
        media_days = min(media_days, alert_days)
        media_cutoff, alert_cutoff = (
            clock.iso(now - timedelta(days=media_days)),
            clock.iso(now - timedelta(days=alert_days)),
        )
        counts = {"media_files": 0, "alerts": 0, "decisions": 0, "audit_rows": 0}
        # Files first (a crash leaves a row pointing to a missing file, which the next purge fixes).
        counts["media_files"], purged_ids = self._delete_old_media(media_cutoff)
        counts["media_files"] += self._sweep_orphan_media(now - timedelta(days=media_days))
        with self.database.transaction() as conn:
            # The snapshot columns stay (the digest covers them): media_purged_utc says the file is gone.
            conn.executemany(
                "UPDATE alerts SET media_purged_utc = ? WHERE id = ?", [(clock.iso(now), i) for i in purged_ids]
            )
            last_old = conn.execute("SELECT MAX(id) FROM audit WHERE ts_utc < ?", (alert_cutoff,)).fetchone()[0]
            doomed_rows = _delete_expired_records(conn, alert_cutoff, last_old, counts)
            anchor = _move_audit_anchor(conn, last_old, counts)
            self.chain.append(
                conn,
                "purge",
                by.user,
                None,
                {
                    **counts,
                    **by.audit_details(),
                    "media_days": media_days,
                    "alert_days": alert_days,
                    "media_purged_alert_ids": id_ranges(purged_ids),
                    "deleted_alert_ids": id_ranges([r["id"] for r in doomed_rows]),
                    "audit_anchor_upto": last_old,
                    "audit_anchor_hash": anchor,
                },
            )
        counts["media_files"] += self._delete_media_of_deleted(doomed_rows, purged_ids)
        self.media.remove_empty_folders()
        return counts

    def _delete_old_media(self, media_cutoff: str) -> tuple[int, list[int]]:
        """(files deleted, ids of the alerts whose image is now gone) for snapshots past the media cutoff."""
        old_media = self.database.query(
            "SELECT id, snapshot FROM alerts WHERE snapshot IS NOT NULL AND media_purged_utc IS NULL AND ts_utc < ?",
            (media_cutoff,),
        )
        deleted, purged_ids = 0, []
        for row in old_media:
            path = self.media.media_path(row["snapshot"])
            if path is None:  # never delete outside the media folder; the row's image is unusable anyway
                log.error("purge: alert %s names a snapshot outside the media folder; not deleted", row["id"])
                purged_ids.append(row["id"])
                continue
            try:
                path.unlink()
                deleted += 1
            except FileNotFoundError:
                pass  # already gone (a previous purge crashed before its commit)
            except OSError as exc:
                log.error("purge: cannot delete %s: %s", path, exc.strerror or exc)
                continue  # still there: not marked as purged, retried next time
            purged_ids.append(row["id"])
        return deleted, purged_ids

    def _sweep_orphan_media(self, cutoff: datetime) -> int:
        """Delete media files older than the cutoff that no alert references (crash leftovers)."""
        if not self.media.media_dir.exists():
            return 0
        referenced = {
            r["snapshot"] for r in self.database.query("SELECT snapshot FROM alerts WHERE snapshot IS NOT NULL")
        }
        return self.media.sweep_orphans(cutoff, referenced)

    def _delete_media_of_deleted(self, doomed_rows: list[sqlite3.Row], purged_ids: list[int]) -> int:
        """Images of records deleted before their media cutoff (their audit records expired) go too."""
        deleted = 0
        for row in doomed_rows:
            if row["snapshot"] and not row["media_purged_utc"] and row["id"] not in purged_ids:
                path = self.media.media_path(row["snapshot"])
                if path is None:
                    continue
                try:
                    path.unlink()
                    deleted += 1
                except OSError:
                    pass  # missing, or left for the orphan sweep of the next purge
        return deleted


def _check_days(media_days: int, alert_days: int) -> None:
    for name, days, cap in (("media_days", media_days, MAX_MEDIA_DAYS), ("alert_days", alert_days, MAX_ALERT_DAYS)):
        if not isinstance(days, int) or not 1 <= days <= cap:  # a longer retention is not lawful
            raise UsageError(f"purge: {name} must be a whole number from 1 to {cap} (legal cap), not {days!r}")


def _delete_expired_records(
    conn: sqlite3.Connection, alert_cutoff: str, last_old: int | None, counts: dict[str, int]
) -> list[sqlite3.Row]:
    """Delete the alerts (and their decisions) past the cutoff or whose audit records expire; counted in counts.

    Returns:
        The deleted alerts' rows (id, snapshot, media_purged_utc).
    """
    doomed_rows = conn.execute(
        "SELECT id, snapshot, media_purged_utc FROM alerts WHERE ts_utc < ? OR id IN ("
        " SELECT CAST(json_extract(details, '$.alert_id') AS INTEGER) FROM audit"
        " WHERE id <= ? AND event IN ('alert_created', 'decision'))",
        (alert_cutoff, last_old if last_old is not None else -1),
    ).fetchall()
    doomed = [r["id"] for r in doomed_rows]
    for chunk in range(0, len(doomed), _DELETE_CHUNK):
        ids = doomed[chunk : chunk + _DELETE_CHUNK]
        marks = ",".join("?" * len(ids))
        counts["decisions"] += conn.execute(f"DELETE FROM decisions WHERE alert_id IN ({marks})", ids).rowcount
        counts["alerts"] += conn.execute(f"DELETE FROM alerts WHERE id IN ({marks})", ids).rowcount
    return doomed_rows


def _move_audit_anchor(conn: sqlite3.Connection, last_old: int | None, counts: dict[str, int]) -> str | None:
    """Delete the audit rows up to last_old, and make the last one's hash the anchor the chain goes on from.

    Returns:
        The new anchor hash, or None when no audit row expired.
    """
    if last_old is None:
        return None
    anchor = conn.execute("SELECT hash FROM audit WHERE id = ?", (last_old,)).fetchone()[0]
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_purge_upto'", (str(last_old),))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_anchor_hash'", (anchor,))
    counts["audit_rows"] = conn.execute("DELETE FROM audit WHERE id <= ?", (last_old,)).rowcount
    return anchor


# -- the schedule -----------------------------------------------------------------------------------------------
def effective_retention(register: Register, retention: Retention | None) -> Retention:
    """The config's retention if given, else the last one a runner recorded, else the legal caps.

    Args:
        register: the register (its meta keeps the last retention a runner applied).
        retention: the config's retention, or None.

    Returns:
        The retention to apply.
    """
    if retention is not None:
        return retention
    media, alerts = register.get_meta("retention_media_days"), register.get_meta("retention_alert_days")
    if media and alerts:
        try:
            return Retention(media_days=int(media), alert_days=int(alerts))
        except ValueError:  # not a number, or beyond the legal caps (pydantic's error is a ValueError)
            log.warning("register records an invalid retention (%s / %s days): using the legal caps", media, alerts)
    return Retention(media_days=MAX_MEDIA_DAYS, alert_days=MAX_ALERT_DAYS)


def run_purge(register: Register, retention: Retention, by: Principal = RETENTION_SCHEDULE) -> dict[str, int]:
    """Apply the retention now; only the service's role may (`by`, the runner itself by default).

    Args:
        register: the register.
        retention: what to keep.
        by: who purges.

    Returns:
        The purge's counts.
    """
    counts = register.purge(media_days=retention.media_days, alert_days=retention.alert_days, by=by)
    log.info("purge: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def start_retention(register: Register, retention: Retention) -> BackgroundScheduler:
    """Purge now, then every `purge_every_s`. Errors are logged, never fatal to the runner.

    Args:
        register: the register.
        retention: what to keep, and how often to purge.

    Returns:
        The running scheduler (shut it down on exit).
    """
    register.set_meta("retention_media_days", str(retention.media_days))
    register.set_meta("retention_alert_days", str(retention.alert_days))

    def job() -> None:
        try:
            run_purge(register, retention)
        except Exception:  # a failed purge must not kill the analysis; it is retried next time
            log.exception("purge failed")

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job, "interval", seconds=retention.purge_every_s, id="purge", max_instances=1, coalesce=True)
    scheduler.start()
    job()
    return scheduler
