"""Retention: the purge of media and records past their limits, per site, and its schedule (APScheduler).

What a purge may not do, and how it is prevented:

- delete another site's records: each site's retention is remembered (`site_retention`) and a purge
  only deletes the alerts (and their decisions and images) of the site it runs for. The audit chain is
  one chain for every site: its rows go, oldest first, only when they are older than the *longest*
  retention recorded for any site, and never from the first row that records an alert still kept.
- be shortened by a test: a design-phase config cannot change the retention an operational config
  recorded for its site (refused in one line, audited; the operational retention stays in force).
- follow a wrong clock: a purge is refused (audited `purge_refused`, health `retention` = `clock`) when
  now is before the newest record, or more than `max_clock_jump_days` past it, or when the records
  themselves jump that far since the last purge (the clock was wrong when they were written).
  `vigie purge --accept-clock` records that the clock is right and purges.
- leave a state that verify calls tampering: the purge's rows (deletions, images marked purged, the
  files still to delete) are committed first, then the files are deleted; files a killed purge left
  are deleted by the next purge (`media_doomed`).

An image never outlives its record; each purge's own audit row lists what it deleted and the anchor
from which the chain goes on.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

from runner.config.site import DEFAULT_MAX_CLOCK_JUMP_DAYS, MAX_ALERT_DAYS, MAX_MEDIA_DAYS, Retention
from runner.core.access import RETENTION_SCHEDULE, Action, Principal, require
from runner.core.errors import StoreError, UsageError
from runner.register import clock
from runner.register.audit import AuditChain, id_ranges
from runner.register.database import UPSERT_HEALTH, Database
from runner.register.media import MediaStore

if TYPE_CHECKING:  # the facade composes this module: a type only, no import cycle
    from runner.config.site import SiteConfig
    from runner.register.register import Register

log = logging.getLogger(__name__)
_DELETE_CHUNK = 500  # ids per DELETE, well under SQLite's bound-parameter limit
# Processes on one machine share its clock; a few minutes absorb a record written while the purge started.
CLOCK_TOLERANCE = timedelta(minutes=10)
RETENTION_HEALTH = "retention"  # the health row of the purge: "ok", or "clock" while a wrong clock stops it
COUNT_KEYS = ("media_files", "alerts", "decisions", "audit_rows")


class PurgeRefused(StoreError):
    """The purge did not run: the clock cannot be trusted (the refusal is in the audit log)."""


@dataclass(frozen=True)
class SitePolicy:
    """The retention a config asks for its site, and the config's phase."""

    site: str
    phase: str
    retention: Retention

    @classmethod
    def of(cls, config: SiteConfig) -> SitePolicy:
        """The policy of a site config.

        Args:
            config: a validated site config.

        Returns:
            Its site id, phase and retention.
        """
        return cls(config.site, config.phase, config.retention)


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
        site: str | None = None,
        by: Principal = RETENTION_SCHEDULE,
        now: datetime | None = None,
        max_clock_jump_days: int = DEFAULT_MAX_CLOCK_JUMP_DAYS,
        accept_clock: bool = False,
    ) -> dict[str, int]:
        """Delete snapshots older than media_days, alerts / decisions older than alert_days (of one site, or of
        every site when site is None), and the audit rows no site needs any more.

        Only the service's role purges (`by`, the runner's own identity by default): nobody else
        deletes records, and the retention schedule is the only way they go.

        An image never outlives its record: media are kept at most min(media_days, alert_days).
        Alerts go when their time is past the cutoff *or* when their audit records do (so the
        register always verifies), and the purge's own audit row lists the deleted alert ids.

        Args:
            media_days: days snapshots are kept (1 to the legal cap).
            alert_days: days alerts and decisions are kept (1 to the legal cap).
            site: the site whose records go; None for every site (audit rows then follow alert_days).
            by: who purges (must hold the purge right).
            now: the time the cutoffs count from (default: now).
            max_clock_jump_days: refuse when the clock or the records jump further than this (see `clock_problem`).
            accept_clock: record (audited) that the clock is right, so that a jump before now is accepted.

        Returns:
            Counts of media_files (to delete: records' images and crash leftovers), alerts, decisions and audit_rows.

        Raises:
            PurgeRefused: the clock cannot be trusted; nothing was deleted, the refusal is audited.
        """
        require(by, Action.PURGE)
        _check_days(media_days, alert_days)
        now = now or clock.utc_now()
        media_days = min(media_days, alert_days)
        self.sweep_doomed_media()  # files a killed purge committed but did not delete: always due, whatever the clock
        self._check_clock(now, max_clock_jump_days, accept_clock, by, site)
        counts = dict.fromkeys(COUNT_KEYS, 0)
        counts["media_files"] = self._sweep_orphan_media(now - timedelta(days=media_days))
        cutoffs = (clock.iso(now - timedelta(days=media_days)), clock.iso(now - timedelta(days=alert_days)))
        with self.database.transaction() as conn:
            audit_days = alert_days if site is None else _longest_alert_days(conn, site, alert_days)
            details = _purge_records(
                conn, self.media, site, cutoffs, clock.iso(now - timedelta(days=audit_days)), now, counts
            )
            self.chain.append(
                conn,
                "purge",
                by.user,
                None,
                {
                    **counts,
                    **by.audit_details(),
                    "site": site,
                    "media_days": media_days,
                    "alert_days": alert_days,
                    "audit_days": audit_days,
                    **details,
                },
            )
        self.sweep_doomed_media()
        self.media.remove_empty_folders()
        return counts

    # -- the clock guard --------------------------------------------------------------------------------
    def _check_clock(
        self, now: datetime, max_jump_days: int, accept_clock: bool, by: Principal, site: str | None
    ) -> None:
        """Refuse (audited, health `clock`) when the clock or the records jumped; record an acceptance first."""
        with self.database.transaction() as conn:
            if accept_clock:
                self.chain.append(
                    conn, "clock_accepted", by.user, None, {**by.audit_details(), "now_utc": clock.iso(now)}
                )
            problem = clock_problem(conn, now, max_jump_days)
            if problem is None:
                _set_health(conn, "ok", "purges run", only_if_not_ok=True)
                return
            message = f"purge refused: {problem}; nothing deleted (if the clock is right: vigie purge --accept-clock)"
            self.chain.append(
                conn,
                "purge_refused",
                by.user,
                None,
                {**by.audit_details(), "site": site, "reason": problem, "now_utc": clock.iso(now)},
            )
            _set_health(conn, "clock", message)
        raise PurgeRefused(message)

    # -- media files ------------------------------------------------------------------------------------
    def sweep_doomed_media(self) -> int:
        """Delete the files a committed purge marked for deletion, then forget them (a file that cannot
        be deleted stays listed, and is retried by the next purge).

        Returns:
            How many files were deleted.
        """
        doomed = [r["path"] for r in self.database.query("SELECT path FROM media_doomed ORDER BY path")]
        deleted, gone = 0, []
        for relative in doomed:
            outcome = self.media.delete(relative, "purge")
            if outcome is None:
                continue  # stays listed: retried at the next purge
            deleted += outcome
            gone.append(relative)
        for chunk in range(0, len(gone), _DELETE_CHUNK):
            paths = gone[chunk : chunk + _DELETE_CHUNK]
            with self.database.transaction() as conn:
                conn.execute(f"DELETE FROM media_doomed WHERE path IN ({','.join('?' * len(paths))})", paths)
        return deleted

    def _sweep_orphan_media(self, cutoff: datetime) -> int:
        """Delete media files older than the cutoff that no alert references (a writer killed before its row)."""
        if not self.media.media_dir.exists():
            return 0
        referenced = {
            r["snapshot"]
            for r in self.database.query(
                "SELECT snapshot FROM alerts WHERE snapshot IS NOT NULL UNION SELECT path FROM media_doomed"
            )
        }
        return self.media.sweep_orphans(cutoff, referenced)


def _check_days(media_days: int, alert_days: int) -> None:
    for name, days, cap in (("media_days", media_days, MAX_MEDIA_DAYS), ("alert_days", alert_days, MAX_ALERT_DAYS)):
        if not isinstance(days, int) or not 1 <= days <= cap:  # a longer retention is not lawful
            raise UsageError(f"purge: {name} must be a whole number from 1 to {cap} (legal cap), not {days!r}")


def _set_health(conn: sqlite3.Connection, status: str, detail: str, *, only_if_not_ok: bool = False) -> None:
    """The purge's health row, written inside the caller's transaction (`vigie status` shows it)."""
    if only_if_not_ok:
        row = conn.execute("SELECT status FROM health WHERE camera_id = ?", (RETENTION_HEALTH,)).fetchone()
        if row is None or row[0] == status:
            return
    conn.execute(
        "INSERT INTO health(camera_id, status, detail, updated_utc) VALUES (?, ?, ?, ?) " + UPSERT_HEALTH,
        (RETENTION_HEALTH, status, detail[:500], clock.iso(clock.utc_now())),
    )


def clock_problem(conn: sqlite3.Connection, now: datetime, max_jump_days: int) -> str | None:
    """Why the clock cannot be trusted to purge, or None.

    The records since the last trusted moment (the last purge that ran, or the last `clock_accepted`)
    must go forward in steps of at most max_jump_days, and now must be neither before the newest of
    them (beyond CLOCK_TOLERANCE) nor more than max_jump_days after it. A clock that jumps ahead is
    seen even when this process already wrote rows with it: the jump is between two rows.

    Args:
        conn: the register's connection.
        now: the time the purge would count from.
        max_jump_days: the largest step accepted, in days.

    Returns:
        The problem in a few words, or None.
    """
    trusted = conn.execute("SELECT MAX(id) FROM audit WHERE event IN ('purge', 'clock_accepted')").fetchone()[0]
    rows = conn.execute(
        "SELECT id, ts_utc FROM audit WHERE id >= ? ORDER BY id", (trusted if trusted is not None else 0,)
    ).fetchall()
    max_jump = timedelta(days=max_jump_days)
    previous: tuple[int, datetime] | None = None
    newest: tuple[int, datetime] | None = None
    for row in rows:
        moment = datetime.fromisoformat(row["ts_utc"])
        if previous is not None and moment - previous[1] > max_jump:
            return (
                f"the records jump {_days(moment - previous[1])} days forward between audit rows {previous[0]} "
                f"and {row['id']} (more than retention.max_clock_jump_days = {max_jump_days})"
            )
        previous = (row["id"], moment)
        if newest is None or moment > newest[1]:
            newest = previous
    if newest is None:
        return None
    if now < newest[1] - CLOCK_TOLERANCE:
        return (
            f"the clock ({clock.iso(now)}) is before the newest record (audit row {newest[0]}, {clock.iso(newest[1])})"
        )
    if now - newest[1] > max_jump:
        return (
            f"the clock ({clock.iso(now)}) is {_days(now - newest[1])} days past the newest record (audit row "
            f"{newest[0]}), more than retention.max_clock_jump_days = {max_jump_days}"
        )
    return None


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f}"


def _longest_alert_days(conn: sqlite3.Connection, site: str, alert_days: int) -> int:
    """The days audit rows are kept: the longest retention of any site in the register (a site with
    alerts but no recorded retention counts as the legal cap)."""
    recorded = conn.execute("SELECT MAX(alert_days) FROM site_retention WHERE site != ?", (site,)).fetchone()[0]
    unrecorded = conn.execute(
        "SELECT 1 FROM alerts WHERE site != ? AND site NOT IN (SELECT site FROM site_retention) LIMIT 1", (site,)
    ).fetchone()
    return max(alert_days, recorded or 0, MAX_ALERT_DAYS if unrecorded else 0)


def _purge_records(
    conn: sqlite3.Connection,
    media: MediaStore,
    site: str | None,
    cutoffs: tuple[str, str],
    audit_cutoff: str,
    now: datetime,
    counts: dict[str, int],
) -> dict:
    """Inside the purge's transaction: mark old images purged, delete the expired alerts and decisions and
    the audit rows no site needs, and list every file to delete in media_doomed (deleted after the commit).

    Returns:
        The purge row's details besides the counts (ids purged and deleted, the new anchor).
    """
    media_cutoff, alert_cutoff = cutoffs
    of_site, params = ("", []) if site is None else (" AND a.site = ?", [site])
    old_media = conn.execute(
        "SELECT a.id, a.snapshot, c.path AS clip FROM alerts a LEFT JOIN alert_clips c ON c.alert_id = a.id "
        f"WHERE a.snapshot IS NOT NULL AND a.media_purged_utc IS NULL AND a.ts_utc < ?{of_site}",
        [media_cutoff, *params],
    ).fetchall()
    purged_ids = [r["id"] for r in old_media]
    conn.executemany("UPDATE alerts SET media_purged_utc = ? WHERE id = ?", [(clock.iso(now), i) for i in purged_ids])
    last_old = _last_expired_audit_row(conn, site, audit_cutoff)
    doomed_rows = _delete_expired_records(conn, alert_cutoff, site, last_old, counts)
    # An alert's clip goes with its snapshot, in the same commit (clip rows of deleted alerts go by cascade).
    losing_media = list(old_media) + [
        r for r in doomed_rows if r["snapshot"] and not r["media_purged_utc"] and r["id"] not in purged_ids
    ]
    files = [path for r in losing_media for path in (r["snapshot"], r["clip"]) if path]
    counts["media_files"] += _doom_files(conn, media, files, now)
    anchor = _move_audit_anchor(conn, last_old, counts)
    return {
        "media_purged_alert_ids": id_ranges(purged_ids),
        "deleted_alert_ids": id_ranges([r["id"] for r in doomed_rows]),
        "audit_anchor_upto": last_old,
        "audit_anchor_hash": anchor,
    }


def _doom_files(conn: sqlite3.Connection, media: MediaStore, files: list[str], now: datetime) -> int:
    """List the files to delete once the purge is committed; a path outside the media folder is never deleted
    (its image is unusable anyway). Returns how many were listed."""
    listed = 0
    for relative in files:
        if media.media_path(relative) is None:
            log.error("purge: a snapshot path leads outside the media folder; not deleted: %r", relative[:80])
            continue
        conn.execute(
            "INSERT INTO media_doomed(path, purged_utc) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (relative, clock.iso(now)),
        )
        listed += 1
    return listed


def _last_expired_audit_row(conn: sqlite3.Connection, site: str | None, audit_cutoff: str) -> int | None:
    """The last audit row to delete: older than the cutoff, and before the first row that records an alert
    of another site (the chain is shared: a site's purge never removes what another site still keeps)."""
    last_old = conn.execute("SELECT MAX(id) FROM audit WHERE ts_utc < ?", (audit_cutoff,)).fetchone()[0]
    if last_old is None or site is None:
        return last_old
    first_needed = conn.execute(
        "SELECT MIN(id) FROM audit WHERE id <= ? AND event IN ('alert_created', 'decision') AND "
        "CAST(json_extract(details, '$.alert_id') AS INTEGER) IN (SELECT id FROM alerts WHERE site != ?)",
        (last_old, site),
    ).fetchone()[0]
    if first_needed is None:
        return last_old
    return first_needed - 1 if first_needed - 1 > int(_meta(conn, "audit_purge_upto")) else None


def _meta(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else "0"


def _delete_expired_records(
    conn: sqlite3.Connection, alert_cutoff: str, site: str | None, last_old: int | None, counts: dict[str, int]
) -> list[sqlite3.Row]:
    """Delete the site's alerts (and their decisions) past the cutoff, and those whose audit records expire;
    counted in counts.

    Returns:
        The deleted alerts' rows (id, snapshot, media_purged_utc, clip).
    """
    of_site, params = ("", []) if site is None else (" AND a.site = ?", [site])
    doomed_rows = conn.execute(
        "SELECT a.id, a.snapshot, a.media_purged_utc, c.path AS clip FROM alerts a "
        f"LEFT JOIN alert_clips c ON c.alert_id = a.id WHERE (a.ts_utc < ?{of_site}) "
        "OR a.id IN (SELECT CAST(json_extract(details, '$.alert_id') AS INTEGER) FROM audit"
        " WHERE id <= ? AND event IN ('alert_created', 'decision'))",
        [alert_cutoff, *params, last_old if last_old is not None else -1],
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


# -- each site's retention --------------------------------------------------------------------------------
def effective_retention(register: Register, retention: Retention | None) -> Retention:
    """The config's retention if given, else the one a runner of an older Vigie recorded, else the legal caps.

    Args:
        register: the register (its meta may keep the last retention an older runner applied).
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


def site_retentions(register: Register) -> dict[str, Retention]:
    """Each site's retention: the recorded one, else (a site with alerts only) `effective_retention(None)`.

    Args:
        register: the register.

    Returns:
        Site id -> its retention, by site id.
    """
    recorded = {
        r["site"]: Retention(
            media_days=r["media_days"], alert_days=r["alert_days"], max_clock_jump_days=r["max_clock_jump_days"]
        )
        for r in register.database.query("SELECT * FROM site_retention")
    }
    for row in register.database.query("SELECT DISTINCT site FROM alerts"):
        recorded.setdefault(row["site"], effective_retention(register, None))
    return dict(sorted(recorded.items()))


def record_site_retention(register: Register, policy: SitePolicy, by: Principal) -> tuple[Retention, str | None]:
    """Remember the site's retention, unless a design-phase config would change what an operational one set.

    Args:
        register: the register.
        policy: the config's site, phase and retention.
        by: who applies it (named in the refusal's audit row).

    Returns:
        (the retention in force for the site, the refusal in one line or None). On a refusal the operational
        retention stays in force and an audited `retention_refused` row says what was asked.
    """
    wanted = policy.retention
    with register.database.transaction() as conn:
        row = conn.execute("SELECT * FROM site_retention WHERE site = ?", (policy.site,)).fetchone()
        kept = (row["media_days"], row["alert_days"], row["max_clock_jump_days"]) if row else None
        asked = (wanted.media_days, wanted.alert_days, wanted.max_clock_jump_days)
        if kept is not None and row["phase"] == "operational" and policy.phase != "operational" and kept != asked:
            refusal = (
                f"retention of site {policy.site}: a {policy.phase}-phase config cannot change the operational one "
                f"(media {kept[0]} d, records {kept[1]} d, clock jump {kept[2]} d; asked {asked[0]} / {asked[1]} / "
                f"{asked[2]}): the operational retention stays in force"
            )
            register.audit_chain.append(
                conn,
                "retention_refused",
                by.user,
                None,
                {**by.audit_details(), "site": policy.site, "phase": policy.phase, "asked": asked, "kept": kept},
            )
            in_force = Retention(media_days=kept[0], alert_days=kept[1], max_clock_jump_days=kept[2])
            return in_force.model_copy(update={"purge_every_s": wanted.purge_every_s}), refusal
        if kept != asked or (row is not None and row["phase"] != policy.phase):
            conn.execute(
                "INSERT INTO site_retention(site, phase, media_days, alert_days, max_clock_jump_days, "
                "updated_utc) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET phase = excluded.phase, "
                "media_days = excluded.media_days, alert_days = excluded.alert_days, "
                "max_clock_jump_days = excluded.max_clock_jump_days, updated_utc = excluded.updated_utc",
                (policy.site, policy.phase, *asked, clock.iso(clock.utc_now())),
            )
    return wanted, None


def run_purge(
    register: Register,
    retention: Retention,
    by: Principal = RETENTION_SCHEDULE,
    *,
    site: str | None = None,
    accept_clock: bool = False,
) -> dict[str, int]:
    """Apply a retention now, to one site (or to every site when site is None); only the service's role may.

    Args:
        register: the register.
        retention: what to keep.
        by: who purges (the runner itself by default).
        site: the site whose records go.
        accept_clock: record that the clock is right before purging (see `RetentionPurge.purge`).

    Returns:
        The purge's counts.
    """
    counts = register.purge(
        media_days=retention.media_days,
        alert_days=retention.alert_days,
        site=site,
        by=by,
        max_clock_jump_days=retention.max_clock_jump_days,
        accept_clock=accept_clock,
    )
    log.info("purge%s: %s", f" of site {site}" if site else "", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def purge_preview(register: Register, retentions: dict[str, Retention], now: datetime | None = None) -> dict:
    """What a purge of each site would delete now, read in one snapshot, writing nothing (`vigie purge --dry-run`).

    Args:
        register: the register.
        retentions: site id -> the retention its purge would apply.
        now: the time the cutoffs count from (default: now).

    Returns:
        {"clock": why a purge would be refused, or None; "sites": per site: site, media_days, alert_days,
        media_files, alerts, decisions, oldest, newest (time stamps of the alerts that would go);
        "audit": alert_days (the longest retention), audit_rows, oldest, newest}. Alerts that go because
        their audit records expire and orphan files are not counted.
    """
    now = now or clock.utc_now()
    with register.database.lock:
        conn = register.database.conn
        conn.execute("BEGIN")  # one snapshot for every count
        try:
            jumps = [r.max_clock_jump_days for r in retentions.values()] or [DEFAULT_MAX_CLOCK_JUMP_DAYS]
            problem = clock_problem(conn, now, min(jumps))
            sites = [_site_preview(conn, site, retention, now) for site, retention in retentions.items()]
            longest = max(
                [_longest_alert_days(conn, site, r.alert_days) for site, r in retentions.items()] or [MAX_ALERT_DAYS]
            )
            cutoff = clock.iso(now - timedelta(days=longest))
            audit = conn.execute(
                "SELECT COUNT(*), MIN(ts_utc), MAX(ts_utc) FROM audit WHERE ts_utc < ?", (cutoff,)
            ).fetchone()
        finally:
            conn.execute("COMMIT")
    return {
        "clock": problem,
        "sites": sites,
        "audit": {"alert_days": longest, "audit_rows": audit[0], "oldest": audit[1], "newest": audit[2]},
    }


def _site_preview(conn: sqlite3.Connection, site: str, retention: Retention, now: datetime) -> dict:
    media_days = min(retention.media_days, retention.alert_days)
    media_cutoff = clock.iso(now - timedelta(days=media_days))
    alert_cutoff = clock.iso(now - timedelta(days=retention.alert_days))
    alerts = conn.execute(
        "SELECT COUNT(*), MIN(ts_utc), MAX(ts_utc) FROM alerts WHERE site = ? AND ts_utc < ?", (site, alert_cutoff)
    ).fetchone()
    decisions = conn.execute(
        "SELECT COUNT(*) FROM decisions WHERE alert_id IN (SELECT id FROM alerts WHERE site = ? AND ts_utc < ?)",
        (site, alert_cutoff),
    ).fetchone()[0]
    media = conn.execute(
        "SELECT COUNT(*) FROM alerts WHERE site = ? AND snapshot IS NOT NULL AND media_purged_utc IS NULL "
        "AND ts_utc < ?",
        (site, media_cutoff),
    ).fetchone()[0]
    return {
        "site": site,
        "media_days": media_days,
        "alert_days": retention.alert_days,
        "media_files": media,
        "alerts": alerts[0],
        "decisions": decisions,
        "oldest": alerts[1],
        "newest": alerts[2],
    }


def start_retention(register: Register, policy: SitePolicy) -> BackgroundScheduler:
    """Record the site's retention, purge its records now, then every `purge_every_s`. Errors (a refused
    retention, a refused purge) are logged and audited, never fatal to the runner.

    Args:
        register: the register.
        policy: the site, its phase and the retention its config asks for.

    Returns:
        The running scheduler (shut it down on exit).
    """
    retention, refusal = record_site_retention(register, policy, RETENTION_SCHEDULE)
    if refusal:
        log.error("%s", refusal)

    def job() -> None:
        try:
            run_purge(register, retention, site=policy.site)
        except PurgeRefused as refused:
            log.error("%s", refused)  # audited and in the health rows too; retried next time
        except Exception:  # a failed purge must not kill the analysis; it is retried next time
            log.exception("purge failed")

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job, "interval", seconds=retention.purge_every_s, id="purge", max_instances=1, coalesce=True)
    scheduler.start()
    job()
    return scheduler


def purge_summary(counts: dict[str, int]) -> str:
    """The counts as `vigie purge` prints them.

    Args:
        counts: a purge's counts.

    Returns:
        e.g. "media_files 2, alerts 1, decisions 0, audit_rows 0".
    """
    return ", ".join(f"{k} {counts[k]}" for k in COUNT_KEYS)
