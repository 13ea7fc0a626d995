"""`vigie audit verify` checks each alert's clip file against the sha256 its row holds, as it does snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runner.register import Register
from runner.register.retention import RETENTION_SCHEDULE
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL


def _alert_with_clip(register: Register) -> tuple[int, object]:
    stored = register.add_alert(alert_record(), tiny_jpeg())
    clip = b"\x00\x00\x00\x18ftypmp42 a short clip"
    register.add_clip(stored.id, clip, extension="mp4", media_type="video/mp4", frames=15, duration_s=3.0)
    return stored.id, register.clip(stored.id)["file"]


def test_an_intact_clip_verifies(register):
    _alert_with_clip(register)
    assert register.verify().ok


def test_an_altered_clip_is_reported(register):
    alert_id, path = _alert_with_clip(register)
    path.write_bytes(b"another video")
    report = register.verify()
    assert not report.ok and f"alert {alert_id}: clip" in report.problem and "was altered" in report.problem


def test_a_deleted_clip_is_reported(register):
    alert_id, path = _alert_with_clip(register)
    path.unlink()
    report = register.verify()
    assert not report.ok and "is missing (deleted outside the retention purge)" in report.problem


def test_a_clip_purged_with_its_snapshot_verifies(register):
    _, path = _alert_with_clip(register)
    register.purge(media_days=7, alert_days=30, by=RETENTION_SCHEDULE, now=datetime.now(UTC) + timedelta(days=8))
    assert not path.exists() and register.verify().ok
