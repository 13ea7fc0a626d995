"""Scheduled purge of media and records past their retention (APScheduler), logged with counts."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from runner.config.site import MAX_ALERT_DAYS, MAX_MEDIA_DAYS, Retention
from runner.core.access import RETENTION_SCHEDULE, Principal
from runner.register.store import Register

log = logging.getLogger(__name__)


def effective_retention(register: Register, retention: Retention | None) -> Retention:
    """The config's retention if given, else the last one a runner recorded, else the legal caps."""
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
    """Apply the retention now; only the service's role may (`by`, the runner itself by default)."""
    counts = register.purge(media_days=retention.media_days, alert_days=retention.alert_days, by=by)
    log.info("purge: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def start_retention(register: Register, retention: Retention) -> BackgroundScheduler:
    """Purge now, then every `purge_every_s`. Errors are logged, never fatal to the runner."""
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
