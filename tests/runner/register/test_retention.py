"""Retention: media and records past their limits are purged, logged with counts, and the register
still verifies afterwards (the audit chain restarts from a logged anchor)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.interval import IntervalTrigger

import runner.register.clock as register_clock
from runner.config.site import MAX_ALERT_DAYS, MAX_MEDIA_DAYS, Retention
from runner.core.access import Principal
from runner.register import Register, iso
from runner.register.retention import SitePolicy, effective_retention, run_purge, site_retentions, start_retention
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Replaces the register's wall clock, so audit rows and created_utc can be made old."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(T0)
    monkeypatch.setattr(register_clock, "utc_now", clock)
    return clock


def add(reg: Register, ts: datetime, **kw):
    return reg.add_alert(alert_record(ts_utc=iso(ts), **kw), tiny_jpeg())


def set_mtime(path, moment: datetime) -> None:
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def test_purge_media_records_and_audit(register, clock):
    day = timedelta(days=1)
    a = add(register, T0)
    register.decide(a.id, "confirmed", by=Principal("alice", "operator"), follow_up="intervention")
    b = add(register, T0 + 100 * day)  # created at T0: its audit record expires before its time stamp does
    clock.now = T0 + 300 * day
    c = add(register, T0 + 300 * day)
    register.decide(c.id, "rejected", by=Principal("alice", "operator"), reason="shadow")
    clock.now = T0 + 380 * day
    d = add(register, T0 + 380 * day)
    media = register.media_dir
    old_orphan, leftover, young_orphan = (
        media / "cam-01" / "orphan.jpg",
        media / "cam-01" / "x.tmp",
        media / "young.jpg",
    )
    for path, mtime in ((old_orphan, T0), (leftover, T0 + 200 * day), (young_orphan, T0 + 379 * day)):
        path.write_bytes(b"x")
        set_mtime(path, mtime)
    files = {s.id: media / register.alert(s.id)["snapshot"] for s in (a, b, c, d)}
    assert register.verify().ok
    rows_before = len(register.audit_rows())

    now = T0 + 390 * day
    clock.now = now
    counts = register.purge(media_days=30, alert_days=365, now=now, max_clock_jump_days=365)  # time travel

    # media: A, B, C are past 30 days (A and B also past their records), D is not; two orphans swept
    assert counts == {"media_files": 5, "alerts": 2, "decisions": 1, "audit_rows": 3}
    assert [f.exists() for f in files.values()] == [False, False, False, True]
    assert not old_orphan.exists() and not leftover.exists() and young_orphan.exists()
    remaining = {r["id"]: r for r in register.alerts()}
    assert sorted(remaining) == [c.id, d.id]
    assert remaining[c.id]["media_purged_utc"] == iso(now) and remaining[c.id]["decision"] == "rejected"
    assert remaining[d.id]["media_purged_utc"] is None
    assert register.snapshot_file(remaining[c.id]) is None
    assert register.snapshot_file(remaining[d.id]) == files[d.id]

    rows = register.audit_rows()
    assert len(rows) == rows_before - 3 + 1 and rows[0]["id"] == 4
    purge = rows[-1]
    assert purge["event"] == "purge" and purge["actor"] == "retention"
    details = json.loads(purge["details"])
    assert {k: details[k] for k in counts} == counts
    assert details["deleted_alert_ids"] == [[a.id, b.id]] and details["media_purged_alert_ids"] == [[a.id, c.id]]
    assert details["audit_anchor_upto"] == 3
    assert register.get_meta("audit_purge_upto") == "3"
    report = register.verify()
    assert report.ok, report.problem

    # A second purge long after: everything goes, the chain continues from the new anchor.
    clock.now = now + 400 * day
    counts = register.purge(media_days=30, alert_days=365, now=clock.now, max_clock_jump_days=365, accept_clock=True)
    assert counts["alerts"] == 2 and counts["media_files"] == 2 and counts["decisions"] == 1
    assert register.alerts() == []
    accepted, only = register.audit_rows()
    assert accepted["event"] == "clock_accepted" and accepted["id"] == rows[-1]["id"] + 1
    assert only["event"] == "purge" and only["id"] == rows[-1]["id"] + 2
    assert register.verify().ok
    register.audit("test", "alice")
    assert register.verify().ok
    assert not [p for p in media.rglob("*") if p.is_dir() and not any(p.iterdir())]  # empty day folders removed


def test_images_never_outlive_their_record(register, clock):
    stored = add(register, T0)
    path = register.media_dir / stored.snapshot
    counts = register.purge(media_days=30, alert_days=7, now=T0 + timedelta(days=10))
    assert counts["alerts"] == 1
    assert not path.exists()
    assert register.verify().ok


def test_purge_keeps_young_data(register, clock):
    stored = add(register, T0)
    counts = register.purge(media_days=30, alert_days=365, now=T0 + timedelta(days=29))
    assert counts == {"media_files": 0, "alerts": 0, "decisions": 0, "audit_rows": 0}
    assert (register.media_dir / stored.snapshot).exists()
    assert [r["event"] for r in register.audit_rows()] == ["alert_created", "purge"]
    assert register.verify().ok


def test_undeletable_media_stays_listed_and_is_retried(register, clock):
    stored = add(register, T0)
    path = register.media_dir / stored.snapshot
    path.unlink()
    path.mkdir()  # something the purge cannot unlink stands where the image was
    (path / "keep").write_bytes(b"x")
    clock.now = T0 + timedelta(days=20)
    register.audit("heartbeat", "test")  # the register was in use: no clock jump
    counts = register.purge(media_days=10, alert_days=365, now=clock.now)
    # The purge is recorded first (the image is purged for the law); the file is retried until it goes.
    assert counts["media_files"] == 1 and register.alert(stored.id)["media_purged_utc"]
    assert register.get_meta("audit_purge_upto") == "0"
    assert [r["path"] for r in register.database.query("SELECT path FROM media_doomed")] == [stored.snapshot]
    (path / "keep").unlink()
    path.rmdir()
    path.write_bytes(b"x")
    register.purge(media_days=10, alert_days=365, now=clock.now)
    assert not path.exists() and not register.database.query("SELECT path FROM media_doomed")
    assert register.verify().ok


def test_run_purge_uses_the_retention(register, clock):
    add(register, T0)
    clock.now = T0 + timedelta(days=20)
    counts = run_purge(register, Retention(media_days=10, alert_days=15), by=Principal("cli", "runner"))
    assert counts["alerts"] == 1
    assert register.audit_rows(event="purge")[-1]["actor"] == "cli"


def test_start_retention_schedules_and_runs_once(register):
    retention = Retention(media_days=20, alert_days=200, purge_every_s=10)
    scheduler = start_retention(register, SitePolicy("test-site", "operational", retention))
    try:
        job = scheduler.get_job("purge")
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == timedelta(seconds=10)
        assert scheduler.running
        (purge,) = register.audit_rows(event="purge")
        assert json.loads(purge["details"])["media_days"] == 20
    finally:
        scheduler.shutdown(wait=False)
    assert site_retentions(register) == {"test-site": Retention(media_days=20, alert_days=200)}


def test_a_failing_purge_is_not_fatal(register, monkeypatch, caplog):
    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(register, "purge", broken)
    scheduler = start_retention(register, SitePolicy("test-site", "design", Retention()))
    scheduler.shutdown(wait=False)
    assert "purge failed" in caplog.text


def test_effective_retention(register):
    assert effective_retention(register, None) == Retention(media_days=MAX_MEDIA_DAYS, alert_days=MAX_ALERT_DAYS)
    explicit = Retention(media_days=3, alert_days=30)
    assert effective_retention(register, explicit) is explicit
    register.set_meta("retention_media_days", "99")  # a hand-edited register cannot exceed the legal caps
    register.set_meta("retention_alert_days", "400")
    assert effective_retention(register, None) == Retention(media_days=MAX_MEDIA_DAYS, alert_days=MAX_ALERT_DAYS)


def test_purge_sweeps_temp_files_left_by_a_killed_writer(register):
    stored = register.add_alert(alert_record(), tiny_jpeg())
    folder = (register.media_dir / stored.snapshot).parent
    old_temp, fresh_temp = folder / "killed-long-ago.tmp", folder / "being-written.tmp"
    old_temp.write_bytes(b"partial")
    fresh_temp.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old_temp, (two_hours_ago, two_hours_ago))
    register.purge(media_days=7, alert_days=30)
    assert not old_temp.exists() and fresh_temp.exists()
    assert (register.media_dir / stored.snapshot).exists() and register.verify().ok
