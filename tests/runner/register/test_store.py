"""The register: alerts with snapshots, operator decisions, the hash-chained append-only audit log."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.core.access import Principal
from runner.core.alerts import canonical_json, content_digest
from runner.core.errors import StoreError, UsageError
from runner.register.store import GENESIS_HASH, Register, audit_hash
from tests.helpers import alert_record, tiny_jpeg

ALICE, BOB = Principal("alice", "operator"), Principal("bob", "operator")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def register(tmp_path):
    with Register(tmp_path / "vigie.db") as reg:
        yield reg


def raw(reg: Register) -> sqlite3.Connection:
    """A second connection, as an attacker with file access (or the test) would open it."""
    conn = sqlite3.connect(reg.db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


# -- alerts --------------------------------------------------------------------------------------------
def test_wal_mode_and_schema(register):
    conn = raw(register)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alerts", "decisions", "audit", "control", "health", "meta"} <= tables


def test_add_alert_stores_row_snapshot_and_audit(register):
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


def test_snapshot_is_written_before_the_row(register, monkeypatch):
    seen = {}
    original = Register._write_snapshot

    def spy(self, relative, data):
        seen["rows_before"] = raw(self).execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        original(self, relative, data)
        seen["file_before_row"] = (self.media_dir / relative).exists()

    monkeypatch.setattr(Register, "_write_snapshot", spy)
    stored = register.add_alert(alert_record(), tiny_jpeg())
    assert seen == {"rows_before": 0, "file_before_row": True}
    assert register.alert(stored.id) is not None


def test_alert_row_and_audit_row_commit_together(register, monkeypatch):
    def broken_audit(self, conn, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Register, "_append_audit", broken_audit)
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


def test_missing_register_without_create(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        Register(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


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


# -- audit log -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit SET details = '{}' WHERE id = 1",
        "UPDATE audit SET actor = 'mallory'",
        "DELETE FROM audit WHERE id = 1",
        "DELETE FROM audit",
    ],
)
def test_audit_log_is_append_only(register, statement):
    register.audit("test", "alice", None, {"n": 1})
    register.audit("test", "alice", None, {"n": 2})
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw(register).execute(statement)
    assert [json.loads(r["details"])["n"] for r in register.audit_rows()] == [1, 2]


def test_dropped_triggers_are_restored_on_open(register):
    register.audit("test", "alice")
    conn = raw(register)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.close()
    with Register(register.db_path) as again:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw(again).execute("DELETE FROM audit")


def test_chain_links(register):
    for i in range(3):
        register.audit("test", "alice", "cam-01" if i else None, {"i": i})
    rows = register.audit_rows()
    assert [r["id"] for r in rows] == [1, 2, 3]
    prev = GENESIS_HASH
    for row in rows:
        assert row["prev_hash"] == prev
        assert row["hash"] == audit_hash(
            prev, row["id"], row["ts_utc"], row["event"], row["actor"], row["camera_id"], row["details"]
        )
        prev = row["hash"]
    assert register.audit_rows(limit=2)[0]["id"] == 2


def _populate(reg: Register) -> dict[str, int]:
    """Audit rows: 1-3 alert_created (alerts 1-3), 4 decision on alert 2, 5 pause, 6 resume."""
    ids = [reg.add_alert(alert_record(), tiny_jpeg(10 * (i + 1))).id for i in range(3)]
    reg.decide(ids[1], "rejected", by=ALICE, reason="shadow", follow_up="none")
    reg.set_paused("*", True, BOB)
    reg.set_paused("*", False, BOB)
    assert ids == [1, 2, 3]
    return {"rows": 6}


def _sql(*statements):
    def tamper(reg: Register, conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return tamper


def _rehash_row_5(reg, conn):
    conn.execute("DROP TRIGGER audit_no_update")
    row = conn.execute("SELECT * FROM audit WHERE id = 5").fetchone()
    details = canonical_json({"scope": "cam-09"})
    digest = audit_hash(row["prev_hash"], 5, row["ts_utc"], row["event"], row["actor"], row["camera_id"], details)
    conn.execute("UPDATE audit SET details = ?, hash = ? WHERE id = 5", (details, digest))


def _snapshot_of(reg, alert_id) -> Path:
    return reg.media_dir / reg.alert(alert_id)["snapshot"]


def _fake_purge(reg, conn):
    conn.execute("DROP TRIGGER audit_no_delete")
    anchor = conn.execute("SELECT hash FROM audit WHERE id = 2").fetchone()[0]
    conn.execute("DELETE FROM audit WHERE id <= 2")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'audit_purge_upto'")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_anchor_hash'", (anchor,))
    conn.execute("DELETE FROM alerts WHERE id <= 2")


TAMPERING = [
    # (case, tamper(reg, conn), first broken row, problem fragment)
    (
        "audit details altered",
        _sql(
            "DROP TRIGGER audit_no_update",
            "UPDATE audit SET details = replace(details, '\"shadow\"', '\"fixture\"') WHERE id = 4",
        ),
        4,
        "audit row 4 (decision): content altered",
    ),
    (
        "alert_created row altered",
        _sql("DROP TRIGGER audit_no_update", "UPDATE audit SET actor = 'mallory' WHERE id = 2"),
        2,
        "content altered",
    ),
    (
        "middle audit row deleted",
        _sql("DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 3"),
        3,
        "audit row 3 is missing",
    ),
    ("row altered and rehashed", _rehash_row_5, 6, "previous-hash link broken"),
    (
        "alert score altered",
        _sql("UPDATE alerts SET score = 0.1 WHERE id = 2"),
        2,
        "alert 2 differs from its audit record",
    ),
    (
        "alert altered with its digest",
        _sql("UPDATE alerts SET score = 0.1, digest = 'f' WHERE id = 3"),
        3,
        "alert 3 differs",
    ),
    ("alert deleted", _sql("DELETE FROM alerts WHERE id = 3"), 3, "alert 3 was deleted outside the retention purge"),
    ("decision altered", _sql("UPDATE decisions SET reason = 'fixture'"), 4, "decision on alert 2 differs"),
    (
        "decision deleted",
        _sql("DELETE FROM decisions", "UPDATE alerts SET status = 'pending' WHERE id = 2"),
        4,
        "alert 2 status 'pending' does not match its audit record ('rejected', row 4)",
    ),
    ("decision row deleted", _sql("DELETE FROM decisions"), 4, "decision on alert 2 is missing"),
    ("decided alert status flipped", _sql("UPDATE alerts SET status = 'confirmed' WHERE id = 2"), 4, "alert 2 status"),
    (
        "pending alert marked confirmed",
        _sql("UPDATE alerts SET status = 'confirmed' WHERE id = 3"),
        3,
        "alert 3 status",
    ),
    ("snapshot deleted", lambda reg, conn: _snapshot_of(reg, 1).unlink(), 1, "is missing"),
    ("snapshot modified", lambda reg, conn: _snapshot_of(reg, 3).write_bytes(tiny_jpeg(200)), 3, "was altered"),
    (
        "alert inserted directly",
        _sql(
            "INSERT INTO alerts(uid, site, camera_id, rule_id, kind, ts_utc, t_s, frame_index, subject, track_id, score, bbox,"
            " details, is_test, phase, mode, source, config_revision, config_sha256, models, snapshot, snapshot_sha256,"
            " snapshot_note, created_utc, digest) SELECT 'forged', site, camera_id, rule_id, kind, ts_utc, t_s, frame_index,"
            " subject, track_id, score, bbox, details, is_test, phase, mode, source, config_revision, config_sha256, models,"
            " NULL, NULL, 'none', created_utc, digest FROM alerts WHERE id = 1"
        ),
        None,
        "alert 4 has no audit record",
    ),
    ("purge faked by hand", _fake_purge, 3, "no purge recorded"),
    (
        "two problems: the first is reported",
        _sql(
            "UPDATE alerts SET score = 0.5 WHERE id = 3",
            "DROP TRIGGER audit_no_update",
            "UPDATE audit SET actor = 'x' WHERE id = 5",
        ),
        3,
        "alert 3 differs",
    ),
]


@pytest.mark.parametrize(("case", "tamper", "first_bad_row", "problem"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_verify_detects_tampering(register, case, tamper, first_bad_row, problem):
    _populate(register)
    report = register.verify()
    assert report.ok and report.rows_checked == 6 and report.alerts_checked == 3
    conn = raw(register)
    tamper(register, conn)
    conn.close()
    report = register.verify()
    assert not report.ok
    assert report.first_bad_row == first_bad_row, report.problem
    assert problem in report.problem


def test_chain_continues_across_instances(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as first:
        first.audit("test", "a", None, {"n": 1})
        with Register(db) as second:
            second.audit("test", "b", None, {"n": 2})
            first.audit("test", "a", None, {"n": 3})
            second.audit("test", "b", None, {"n": 4})
            assert second.verify().ok
        assert [json.loads(r["details"])["n"] for r in first.audit_rows()] == [1, 2, 3, 4]
        assert first.verify().ok


_WRITER = """
import sys
import time
from runner.register.store import Register
from tests.helpers import alert_record
with Register(sys.argv[1]) as reg:
    for i in range(25):
        reg.audit("test", sys.argv[2], None, {"i": i})
        if i % 5 == 0:
            reg.add_alert(alert_record(camera_id=sys.argv[2]), b"jpeg")
"""


def test_chain_continues_across_processes(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as reg:
        reg.audit("test", "main", None, {"i": -1})
        writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), f"cam-{n}"], cwd=ROOT) for n in (1, 2)]
        for i in range(10):
            reg.audit("test", "main", None, {"i": i})
        assert [w.wait(timeout=60) for w in writers] == [0, 0]
        rows = reg.audit_rows()
        assert len(rows) == 1 + 10 + 2 * (25 + 5)
        assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
        assert len(reg.alerts()) == 10
        report = reg.verify()
        assert report.ok, report.problem


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


# -- durability helpers: read-only opening, the anchor file, crash leftovers -------------------------------
def test_read_only_register_reads_but_never_writes(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as writer:
        stored = writer.add_alert(alert_record(), tiny_jpeg())
    evidence = ("vigie.db", "vigie.db.anchor")  # SQLite's own -wal / -shm working files may come and go
    before = {name: (tmp_path / name).read_bytes() for name in evidence}
    with Register(db, read_only=True) as reader:
        assert [a["id"] for a in reader.alerts()] == [stored.id] and reader.verify().ok
        with pytest.raises(StoreError, match="cannot write"):
            reader.audit("test", "mallory", None, {})
    assert {name: (tmp_path / name).read_bytes() for name in evidence} == before
    with pytest.raises(StoreError, match="no such file"):
        Register(tmp_path / "absent.db", read_only=True)


def test_anchor_file_gets_one_line_per_committed_write(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        register.audit("a", "runner", None, {})
        register.add_alert(alert_record(), None)  # alert row and audit row: one commit, one line
        register.set_health("cam-01", "ok", "running")  # no audit row, no line
        with pytest.raises(UsageError):
            with register._transaction() as conn:
                register._append_audit(conn, "rolled_back", "runner", None, {})
                raise UsageError("changed my mind")
        rows = register.audit_rows()
    lines = (tmp_path / "vigie.db.anchor").read_text().splitlines()
    assert lines == [f"{r['id']} {r['hash']}" for r in rows] and len(lines) == 2


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
