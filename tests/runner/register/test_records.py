"""Records: alerts with snapshots, operator decisions, pause control and health rows."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from runner.core.access import Principal
from runner.core.alerts import content_digest
from runner.core.errors import StoreError, UsageError
from runner.register import Register
from runner.register.audit import AuditChain
from runner.register.media import MediaStore
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

ALICE, BOB = Principal("alice", "operator"), Principal("bob", "operator")


# -- alerts --------------------------------------------------------------------------------------------
def test_add_alert_stores_row_snapshot_and_audit(register, raw):
    record = alert_record()
    jpeg = tiny_jpeg(77)
    stored = register.add_alert(record, jpeg)
    assert stored.snapshot_note is None
    path = register.media_dir / stored.snapshot
    assert path.read_bytes() == jpeg
    assert stored.snapshot == f"cam-01/{record.ts_utc[:10]}/{record.uid}.jpg"
    assert not list(register.media_dir.rglob("*.tmp"))

    row = register.alert(stored.id)
    assert row["status"] == "pending" and row["is_test"] is True
    assert row["snapshot_sha256"] == hashlib.sha256(jpeg).hexdigest()
    assert row["models"] == record.models and row["details"] == record.details and row["bbox"] == record.bbox
    assert register.snapshot_file(row) == path

    (audit,) = register.audit_rows(event="alert_created")
    details = json.loads(audit["details"])
    assert details["alert_id"] == stored.id and details["uid"] == record.uid
    # The digest covers the row's content; the audit row carries the same digest.
    assert details["digest"] == row["digest"]
    fields = {
        k: raw(register).execute(f"SELECT {k} FROM alerts WHERE id = ?", (stored.id,)).fetchone()[0]
        for k in (
            "uid",
            "site",
            "camera_id",
            "rule_id",
            "kind",
            "ts_utc",
            "t_s",
            "frame_index",
            "subject",
            "track_id",
            "score",
            "bbox",
            "details",
            "is_test",
            "phase",
            "mode",
            "source",
            "config_revision",
            "config_sha256",
            "models",
            "snapshot",
            "snapshot_sha256",
            "snapshot_note",
            "created_utc",
        )
    }
    assert content_digest(fields) == row["digest"]
    assert register.verify().ok


def test_snapshot_is_written_before_the_row(register, monkeypatch, raw):
    seen = {}
    original = MediaStore.write_snapshot

    def spy(self, relative, data):
        seen["rows_before"] = raw(register).execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        original(self, relative, data)
        seen["file_before_row"] = (self.media_dir / relative).exists()

    monkeypatch.setattr(MediaStore, "write_snapshot", spy)
    stored = register.add_alert(alert_record(), tiny_jpeg())
    assert seen == {"rows_before": 0, "file_before_row": True}
    assert register.alert(stored.id) is not None


def test_alert_row_and_audit_row_commit_together(register, monkeypatch):
    def broken_audit(self, conn, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(AuditChain, "append", broken_audit)
    with pytest.raises(StoreError, match=r"cannot write \(disk I/O error\)$"):
        register.add_alert(alert_record(), tiny_jpeg())
    monkeypatch.undo()
    assert register.alerts() == []  # the alert insert was rolled back with the failed audit row
    assert register.audit_rows() == []
    assert not list(register.media_dir.rglob("*.jpg"))  # the snapshot no row names was removed
    assert {h["camera_id"]: h["status"] for h in register.health()} == {"register": "error"}
    assert register.verify().ok
    register.add_alert(alert_record(), None)  # writing again clears the health entry
    assert {h["camera_id"]: h["status"] for h in register.health()} == {"register": "ok"}


@pytest.mark.parametrize("obstacle", ["media_dir_is_a_file", "camera_folder_is_a_file"])
def test_unwritable_snapshot_still_stores_the_alert(tmp_path, obstacle):
    media = tmp_path / "media"
    if obstacle == "media_dir_is_a_file":
        media.write_text("not a folder")
    else:
        media.mkdir()
        (media / "cam-01").write_text("not a folder")
    with Register(tmp_path / "vigie.db", media) as register:
        stored = register.add_alert(alert_record(), tiny_jpeg())
        assert stored.snapshot is None
        assert stored.snapshot_note.startswith("snapshot not saved:")
        row = register.alert(stored.id)
        assert row["snapshot"] is None and row["snapshot_note"] == stored.snapshot_note
        assert register.snapshot_file(row) is None
        assert len(register.audit_rows(event="alert_created")) == 1
        assert register.verify().ok


def test_alert_without_snapshot(register):
    stored = register.add_alert(alert_record(), None)
    assert stored.snapshot is None and stored.snapshot_note == "no snapshot requested"
    assert register.verify().ok


def test_alert_filters(register):
    a = register.add_alert(alert_record(camera_id="cam-01", is_test=True), None)
    b = register.add_alert(alert_record(camera_id="cam-02", kind="wrong_way", is_test=False), None)
    register.decide(a.id, "confirmed", by=ALICE, follow_up="field_check")
    assert [r["id"] for r in register.alerts(camera_id="cam-02")] == [b.id]
    assert [r["id"] for r in register.alerts(kind="wrong_way")] == [b.id]
    assert [r["id"] for r in register.alerts(include_tests=False)] == [b.id]
    assert [r["id"] for r in register.alerts(status="confirmed")] == [a.id]
    assert [r["id"] for r in register.alerts(after_id=a.id)] == [b.id]
    confirmed = register.alert(a.id)
    assert (confirmed["decision"], confirmed["operator"], confirmed["follow_up"]) == (
        "confirmed",
        "alice",
        "field_check",
    )


# -- decisions -----------------------------------------------------------------------------------------
DECISION_ERRORS = [
    # (kwargs, message fragment)
    (dict(decision="rejected", by=ALICE), "needs a reason"),
    (dict(decision="rejected", by=ALICE, reason="ugly"), "needs a reason"),
    (dict(decision="confirmed", by=ALICE, reason="shadow"), "only given when rejecting"),
    (dict(decision="maybe", by=ALICE), "decision must be one of"),
    (dict(decision="confirmed", by=ALICE, follow_up="shrug"), "follow-up must be one of"),
    (dict(decision="confirmed", by=ALICE, alert_id=999), "no alert with id 999"),
]


@pytest.mark.parametrize(("kwargs", "message"), DECISION_ERRORS)
def test_decide_refuses(register, kwargs, message):
    stored = register.add_alert(alert_record(), None)
    kwargs = dict(kwargs)
    alert_id = kwargs.pop("alert_id", stored.id)
    decision = kwargs.pop("decision")
    rows_before = len(register.audit_rows())
    with pytest.raises(UsageError, match=message):
        register.decide(alert_id, decision, **kwargs)
    assert register.alert(stored.id)["status"] == "pending"
    assert len(register.audit_rows()) == rows_before


@pytest.mark.parametrize(
    ("decision", "reason", "follow_up"),
    [
        ("confirmed", None, "intervention"),
        ("rejected", "reflection", "none"),
    ],
)
def test_decide_records_and_refuses_a_second_decision(register, decision, reason, follow_up):
    stored = register.add_alert(alert_record(), None)
    row = register.decide(
        stored.id, decision, by=Principal(" alice ", "operator"), reason=reason, follow_up=follow_up, note="seen"
    )
    assert row["operator"] == "alice"
    alert = register.alert(stored.id)
    assert (alert["status"], alert["decision"], alert["reason"], alert["follow_up"]) == (
        decision,
        decision,
        reason,
        follow_up,
    )
    (audit,) = register.audit_rows(event="decision")
    assert audit["actor"] == "alice" and json.loads(audit["details"])["decision"] == decision
    with pytest.raises(UsageError, match=rf"already {decision} \(by alice at "):
        register.decide(stored.id, "confirmed", by=Principal("bob", "operator"))
    assert register.alert(stored.id)["operator"] == "alice"
    assert register.verify().ok


# -- pause control and health --------------------------------------------------------------------------
def test_pause_control(register):
    assert not register.is_paused("cam-01")
    audit_id = register.set_paused("cam-01", True, ALICE)
    assert register.is_paused("cam-01") and not register.is_paused("cam-02")
    register.set_paused("*", True, BOB)
    assert register.is_paused("cam-02")
    register.set_paused("*", False, BOB)
    assert register.is_paused("cam-01") and not register.is_paused("cam-02")
    state = register.control_state()
    assert state["cam-01"]["audit_id"] == audit_id and state["cam-01"]["actor"] == "alice"
    events = [(r["event"], r["actor"], r["camera_id"]) for r in register.audit_rows()]
    assert events == [("pause", "alice", "cam-01"), ("pause", "bob", None), ("resume", "bob", None)]
    with pytest.raises(UsageError, match="user identity is required"):
        register.set_paused("*", True, Principal(" ", "operator"))


def test_health(register):
    register.set_health("cam-02", "degraded", "cannot open stream")
    register.set_health("cam-01", "ok", "running")
    register.set_health("cam-02", "ok", "")
    assert [(h["camera_id"], h["status"]) for h in register.health()] == [("cam-01", "ok"), ("cam-02", "ok")]
