"""The audit chain: append-only rows, hash links, the anchor file, and verify against tampering."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runner.core.access import Principal
from runner.core.alerts import canonical_json
from runner.core.errors import UsageError
from runner.register import GENESIS_HASH, Register, audit_hash
from runner.register.audit import (
    check_alerts,
    check_chain,
    check_decisions,
    check_deleted_alerts,
    check_purge_anchor,
    expand_id_ranges,
    id_ranges,
    verify_records,
)
from runner.register.backend import database_errors
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

ALICE, BOB = Principal("alice", "operator"), Principal("bob", "operator")

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit SET details = '{}' WHERE id = 1",
        "UPDATE audit SET actor = 'mallory'",
        "DELETE FROM audit WHERE id = 1",
        "DELETE FROM audit",
    ],
)
def test_audit_log_is_append_only(register, statement, raw):
    register.audit("test", "alice", None, {"n": 1})
    register.audit("test", "alice", None, {"n": 2})
    with pytest.raises(database_errors(), match="append-only"):
        raw(register).execute(statement)
    assert [json.loads(r["details"])["n"] for r in register.audit_rows()] == [1, 2]


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
            "INSERT INTO alerts(uid, site, camera_id, rule_id, kind, ts_utc, t_s, frame_index, subject, track_id,"
            " score, bbox, details, is_test, phase, mode, source, config_revision, config_sha256, models, snapshot,"
            " snapshot_sha256, snapshot_note, created_utc, digest) SELECT 'forged', site, camera_id, rule_id, kind,"
            " ts_utc, t_s, frame_index, subject, track_id, score, bbox, details, is_test, phase, mode, source,"
            " config_revision, config_sha256, models, NULL, NULL, 'none', created_utc, digest FROM alerts WHERE id = 1"
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
def test_verify_detects_tampering(register, case, tamper, first_bad_row, problem, raw):
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
from runner.register import Register
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


def test_anchor_file_gets_one_line_per_committed_write(tmp_path):
    db = tmp_path / "vigie.db"
    with Register(db) as register:
        register.audit("a", "runner", None, {})
        register.add_alert(alert_record(), None)  # alert row and audit row: one commit, one line
        register.set_health("cam-01", "ok", "running")  # no audit row, no line
        with pytest.raises(UsageError):
            with register.database.transaction() as conn:
                register.audit_chain.append(conn, "rolled_back", "runner", None, {})
                raise UsageError("changed my mind")
        rows = register.audit_rows()
    lines = (tmp_path / "vigie.db.anchor").read_text().splitlines()
    assert lines == [f"{r['id']} {r['hash']}" for r in rows] and len(lines) == 2


# -- the checks of verify, one by one ------------------------------------------------------------------
def test_id_ranges_round_trip():
    assert id_ranges([7, 1, 3, 2]) == [[1, 3], [7, 7]]
    assert id_ranges([]) == []
    assert expand_id_ranges([[1, 3], [7, 7]]) == {1, 2, 3, 7}


def test_check_chain_collects_the_records_of_the_intact_part(register):
    _populate(register)
    walk = check_chain(register.database.conn, GENESIS_HASH, 0)
    assert (walk.rows_checked, walk.broken, walk.problems) == (6, False, [])
    assert sorted(walk.alert_records) == [1, 2, 3]
    assert {alert_id: record[2] for alert_id, record in walk.decision_records.items()} == {2: "rejected"}


def test_check_chain_stops_at_the_first_break(register, raw):
    _populate(register)
    _sql("DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 2")(register, raw(register))
    walk = check_chain(register.database.conn, GENESIS_HASH, 0)
    assert walk.broken and walk.rows_checked == 2
    assert walk.problems == [(2, "audit row 2 is missing (next row is 3)")]
    assert list(walk.alert_records) == [1]


def test_a_broken_chain_hides_the_record_checks_it_cannot_make(register, raw):
    _populate(register)
    _sql("DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id >= 2 AND id <= 4")(register, raw(register))
    conn = register.database.conn
    walk = check_chain(conn, GENESIS_HASH, 0)
    problems, alive, checked = check_alerts(conn, walk, register.media)
    assert (problems, alive, checked) == ([], {1, 2, 3}, 3)
    assert check_deleted_alerts(walk, set()) == []
    assert check_purge_anchor(walk, 2, "x") == []


def test_check_decisions_reports_differing_then_missing(register, raw):
    _populate(register)
    conn = register.database.conn
    walk = check_chain(conn, GENESIS_HASH, 0)
    assert check_decisions(conn, walk, {1, 2, 3}) == []
    raw(register).execute("DELETE FROM decisions")
    assert check_decisions(conn, walk, {1, 2, 3}) == [(4, "decision on alert 2 is missing (recorded in row 4)")]
    assert check_decisions(conn, walk, {1, 3}) == []  # its alert is gone: check_deleted_alerts reports that


def test_verify_records_without_the_anchor_file(register):
    _populate(register)
    if register.anchor_path is None:
        pytest.skip("a PostgreSQL register has no anchor file")
    register.anchor_path.unlink()
    assert verify_records(register.database.conn, register.media).ok
    assert not register.verify().ok  # the anchor file's check is verify()'s, on top
