"""The register's side of the rights requests: requests, restrictions and erasures, each audited with the
request's reference and the DPO, none of which breaks `verify` or loses an alert's legal fields."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from runner.core.access import PermissionDenied, Principal
from runner.core.errors import UsageError
from runner.register import Register, clock
from runner.register.schema import ALERT_DIGEST_FIELDS, DECISION_DIGEST_FIELDS
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

DPO = Principal("dpo.martin", "dpo")
OPERATOR = Principal("op.durand", "operator")


def _decided(register: Register, count: int = 1) -> list[int]:
    ids = []
    for _ in range(count):
        alert_id = register.add_alert(alert_record(), tiny_jpeg()).id
        register.decide(alert_id, "confirmed", by=OPERATOR, follow_up="transmitted_to_police")
        ids.append(alert_id)
    return ids


def _rows(register: Register, event: str) -> list[dict]:
    return [r | {"details": json.loads(r["details"])} for r in register.audit_rows(event=event)]


def test_a_request_is_recorded_once_audited_and_closed(register):
    received = clock.utc_now() - timedelta(days=3)
    row = register.open_rights_request("DPO-2026-001", by=DPO, kind="access", channel="email", received=received)
    assert (row["kind"], row["channel"], row["status"], row["opened_by"]) == ("access", "email", "open", DPO.user)
    again = register.open_rights_request("DPO-2026-001", by=DPO, kind="erasure")
    assert again["kind"] == "access"  # an existing request is returned as it is
    opened = _rows(register, "rights_request_opened")
    assert len(opened) == 1 and opened[0]["actor"] == DPO.user
    assert opened[0]["details"]["request"] == "DPO-2026-001" and opened[0]["details"]["role"] == "dpo"

    closed = register.close_rights_request("DPO-2026-001", "answered", by=DPO)
    assert closed["status"] == "answered" and closed["answered_by"] == DPO.user
    assert register.rights_requests(open_only=True) == []
    with pytest.raises(UsageError, match="already answered"):
        register.close_rights_request("DPO-2026-001", "answered", by=DPO)
    with pytest.raises(UsageError, match="is answered: open a new reference"):
        register.restrict_alerts("DPO-2026-001", _decided(register), by=DPO)
    assert register.verify().ok


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda reg: reg.open_rights_request("bad ref!", by=DPO, kind="access"), "request reference"),
        (lambda reg: reg.open_rights_request("R-1", by=DPO, kind="gossip"), "kind 'gossip'"),
        (
            lambda reg: reg.open_rights_request(
                "R-1", by=DPO, kind="access", received=clock.utc_now() + timedelta(days=2)
            ),
            "in the future",
        ),
        (lambda reg: reg.close_rights_request("R-404", "answered", by=DPO), "no rights request R-404"),
        (lambda reg: reg.restrict_alerts("R-1", [999], by=DPO), "no alert with id 999"),
        (lambda reg: reg.erase_media("R-1", [], by=DPO), "no alert given"),
    ],
)
def test_bad_requests_are_refused_in_one_line_and_write_nothing(register, call, message):
    before = len(register.audit_rows())
    with pytest.raises(UsageError, match=message) as refused:
        call(register)
    assert "\n" not in str(refused.value)
    assert len(register.audit_rows()) == before and register.rights_requests() == []


def test_restricted_alerts_are_hidden_from_listings_but_kept_and_verified(register):
    kept, hidden = _decided(register, 2)
    fresh, audit_id = register.restrict_alerts("DPO-2026-002", [hidden], by=DPO)
    assert fresh == [hidden]
    assert [a["id"] for a in register.alerts()] == [kept]  # the operators' and analysts' listing
    assert [a["id"] for a in register.alerts(include_restricted=True)] == [kept, hidden]
    assert register.alert(hidden) is not None and register.restricted_alert_ids() == {hidden}
    row = _rows(register, "rights_restrict")[0]
    assert row["id"] == audit_id and row["actor"] == DPO.user
    assert row["details"] == {"request": "DPO-2026-002", "alert_ids": [[hidden, hidden]], "already": [], "role": "dpo"}
    assert register.rights_requests()[0]["kind"] == "restriction"
    assert register.verify().ok

    again, _ = register.restrict_alerts("DPO-2026-002", [hidden], by=DPO)
    assert again == []
    lifted, _ = register.lift_restrictions("DPO-2026-002", [hidden, kept], by=DPO)
    assert lifted == [hidden] and [a["id"] for a in register.alerts()] == [kept, hidden]
    assert register.verify().ok


def test_a_pending_alert_is_neither_restricted_nor_erased(register):
    pending = register.add_alert(alert_record(), tiny_jpeg()).id
    before = len(register.audit_rows())
    for call in (register.restrict_alerts, register.erase_media):
        with pytest.raises(UsageError, match=f"alert {pending} is pending: the operators decide it"):
            call("DPO-2026-003", [pending], by=DPO)
    assert len(register.audit_rows()) == before and register.rights_requests() == []
    assert register.snapshot_file(register.alert(pending)).is_file()


def test_erasure_removes_the_media_keeps_the_legal_fields_and_verifies(register):
    (alert_id,) = _decided(register)
    before = register.alert(alert_id)
    snapshot = register.snapshot_file(before)
    assert snapshot.is_file()
    erased, deleted = register.erase_media("DPO-2026-004", [alert_id], by=DPO)
    assert deleted == 1 and not snapshot.exists() and erased.alert_ids == [alert_id]
    after = register.alert(alert_id)
    assert after["media_purged_utc"] is not None and register.snapshot_file(after) is None
    legal = (*ALERT_DIGEST_FIELDS, "status", *(f for f in DECISION_DIGEST_FIELDS if f != "alert_id"))
    assert {f: after[f] for f in legal} == {f: before[f] for f in legal}
    row = _rows(register, "rights_erase")[0]
    assert row["actor"] == DPO.user and row["details"]["request"] == "DPO-2026-004"
    assert row["details"]["media_purged_alert_ids"] == [[alert_id, alert_id]] and row["details"]["role"] == "dpo"
    report = register.verify()
    assert report.ok, report.problem


def test_an_erasure_interrupted_before_its_files_is_finished_by_the_next(register):
    """Recorded first, files after: a crash in between leaves a file (verify stays intact); erasing the same
    alert again deletes it."""
    (alert_id,) = _decided(register)
    snapshot = register.snapshot_file(register.alert(alert_id))
    erased = register.rights.erase_media("DPO-2026-005", [alert_id], by=DPO)  # the commit, then "kill -9"
    assert snapshot.is_file() and register.verify().ok
    _, deleted = register.erase_media("DPO-2026-005", [alert_id], by=DPO)
    assert deleted == 1 and not snapshot.exists() and register.verify().ok
    again = _rows(register, "rights_erase")[-1]["details"]
    assert again["media_purged_alert_ids"] == [] and again["already_erased"] == [[alert_id, alert_id]]
    assert erased.files == [register.alert(alert_id)["snapshot"]]


@pytest.mark.parametrize("role", ["operator", "analyst", "design", "runner"])
def test_every_rights_write_is_the_dpos_only(register, role):
    (alert_id,) = _decided(register)
    who = Principal("mallory", role)
    before = (register.audit_rows(), register.alerts(include_restricted=True), register.restricted_alert_ids())
    calls = [
        lambda: register.open_rights_request("R-9", by=who, kind="access"),
        lambda: register.restrict_alerts("R-9", [alert_id], by=who),
        lambda: register.lift_restrictions("R-9", [alert_id], by=who),
        lambda: register.erase_media("R-9", [alert_id], by=who),
        lambda: register.close_rights_request("R-9", "answered", by=who),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied, match=f"mallory \\(role {role}\\) may not .* only the dpo role may"):
            call()
    after = (register.audit_rows(), register.alerts(include_restricted=True), register.restricted_alert_ids())
    assert after == before and register.rights_requests() == []
    assert register.snapshot_file(register.alert(alert_id)).is_file()


def test_a_restriction_ends_with_its_alert_when_retention_deletes_it(register, raw):
    """The restriction row cascades with the alert (foreign key), so no restriction outlives its record."""
    (alert_id,) = _decided(register)
    register.restrict_alerts("DPO-2026-006", [alert_id], by=DPO)
    conn = raw(register)
    if not register.target.is_postgres:  # PostgreSQL always enforces foreign keys
        conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM decisions WHERE alert_id = ?", (alert_id,))
    conn.execute("DELETE FROM alerts WHERE id = ?", (alert_id,))
    conn.close()
    assert register.restricted_alert_ids() == set()
