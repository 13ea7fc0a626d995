"""The outbox: a row per alert and per decision, committed with them or not at all; what it says (the replay's
fields, the snapshot's hash, never a credential); gone with its alert; what each destination is owed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import runner.register.clock as register_clock
from runner.core.access import Principal
from runner.core.errors import StoreError
from runner.register import Register, iso
from runner.register.outbox import Outbox, alert_fields, backlog_lines
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # each test on SQLite, and on PostgreSQL (marked postgres) by the conftest
OPERATOR = Principal("op.durand", "operator")
DPO = Principal("dpo.martin", "dpo")


def outbox_rows(register: Register) -> list[dict]:
    return [dict(r) for r in register.database.query("SELECT * FROM outbox ORDER BY id")]


def test_an_alert_and_its_outbox_row_are_stored_together(register):
    record = alert_record(camera_id="cam-02")
    stored = register.add_alert(record, tiny_jpeg())

    (row,) = outbox_rows(register)
    assert (row["event"], row["alert_id"], row["camera_id"], row["site"], row["kind"], row["is_test"]) == (
        "alert",
        stored.id,
        "cam-02",
        "test-site",
        "zone_intrusion",
        1,
    )
    payload = json.loads(row["payload"])
    # The fields of `vigie replay --json`, the snapshot by its place in the media folder, and its hash.
    assert {k: payload[k] for k in alert_fields(record, stored.id, stored.snapshot)} == json.loads(
        json.dumps(alert_fields(record, stored.id, stored.snapshot))
    )
    assert payload["event"] == "alert" and payload["uid"] == record.uid and payload["site"] == "test-site"
    assert payload["snapshot"] == stored.snapshot and (register.media_dir / stored.snapshot).is_file()
    assert payload["snapshot_sha256"] == register.alert(stored.id)["snapshot_sha256"]
    assert register.verify().ok


def test_a_failed_outbox_insert_stores_no_alert_either(register, raw):
    conn = raw(register)
    if register.target.is_postgres:
        conn.execute(
            "CREATE FUNCTION outbox_refuses() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$ "
            "LANGUAGE plpgsql"
        )
        conn.execute(
            "CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_refuses()"
        )
    else:
        conn.execute(
            "CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"
        )
    conn.close()
    with pytest.raises(StoreError, match="outbox refused"):
        register.add_alert(alert_record(), tiny_jpeg())
    assert register.alerts() == [] and outbox_rows(register) == []
    assert register.audit_rows(event="alert_created") == []
    assert list(register.media_dir.rglob("*.jpg")) == []  # its snapshot was given back too


def test_a_decision_is_pushed_without_its_note(register):
    stored = register.add_alert(alert_record(is_test=False))
    register.decide(stored.id, "rejected", by=OPERATOR, reason="shadow", note="Mme X, voisine, a appelé")

    first, second = outbox_rows(register)
    assert first["event"] == "alert" and second["event"] == "decision" and second["id"] > first["id"]
    payload = json.loads(second["payload"])
    assert payload["id"] == stored.id and payload["uid"] == register.alert(stored.id)["uid"]
    assert (payload["decision"], payload["reason"], payload["operator"], payload["is_test"]) == (
        "rejected",
        "shadow",
        "op.durand",
        False,
    )
    assert "note" not in payload and "voisine" not in second["payload"]


def test_the_payload_never_holds_a_source_credential(register):
    source = "rtsp://admin:hunter2@10.0.0.7:554/stream1?token=s3cr3tt0ken"
    register.add_alert(alert_record(source=source))
    (row,) = outbox_rows(register)
    assert "hunter2" not in row["payload"] and "s3cr3tt0ken" not in row["payload"] and "rtsp" not in row["payload"]
    assert register.alerts()[0]["source"] == source  # the register keeps what it was given (redacted upstream)


def test_outbox_rows_go_with_their_alert_at_the_purge(register, monkeypatch):
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(register_clock, "utc_now", lambda: t0)
    old = register.add_alert(alert_record(ts_utc=iso(t0)))
    register.decide(old.id, "confirmed", by=OPERATOR)
    monkeypatch.setattr(register_clock, "utc_now", lambda: t0 + timedelta(days=10))
    young = register.add_alert(alert_record(ts_utc=iso(t0 + timedelta(days=10))))

    counts = register.purge(media_days=5, alert_days=7, now=t0 + timedelta(days=10))
    assert counts["alerts"] == 1
    assert [r["alert_id"] for r in outbox_rows(register)] == [young.id]
    assert register.verify().ok


def test_each_destination_starts_after_the_newest_row_and_is_owed_what_follows(register):
    register.add_alert(alert_record(is_test=False))  # stored before the destination existed: not owed to it
    outbox = Outbox(register.database)
    cursor = outbox.open_destination("webhook:csu", include_tests=False)
    assert cursor == outbox_rows(register)[-1]["id"]

    live = register.add_alert(alert_record(is_test=False))
    register.add_alert(alert_record(is_test=True))  # a test alert reaches nobody by default
    decided = register.add_alert(alert_record(is_test=False))
    register.decide(decided.id, "confirmed", by=OPERATOR)
    register.restrict_alerts("DPO-2025-001", [decided.id], by=DPO)  # its rows are not pushed any more

    entries = outbox.after(cursor)
    assert [(e.alert_id, e.event, e.is_test, e.restricted) for e in entries] == [
        (live.id, "alert", False, False),
        (live.id + 1, "alert", True, False),
        (decided.id, "alert", False, True),
        (decided.id, "decision", False, True),
    ]
    (owed,) = outbox.backlog()
    assert (owed["destination"], owed["pending"], owed["attempts"]) == ("webhook:csu", 1, 0)

    outbox.failed("webhook:csu", "webhook:csu: https://csu.example/hook answered HTTP 503")
    outbox.failed("webhook:csu", "webhook:csu: https://csu.example/hook answered HTTP 503")
    (owed,) = outbox.backlog()
    assert owed["attempts"] == 2 and "HTTP 503" in owed["last_error"]
    assert "2 failed attempt(s)" in backlog_lines([owed])[1]

    outbox.advance("webhook:csu", entries[-1].id)
    outbox.advance("webhook:csu", cursor)  # never back
    (owed,) = outbox.backlog()
    assert (owed["pending"], owed["attempts"], owed["last_error"], owed["last_id"]) == (0, 0, None, entries[-1].id)
    assert outbox.open_destination("webhook:csu", include_tests=True) == entries[-1].id  # a restart resumes there
