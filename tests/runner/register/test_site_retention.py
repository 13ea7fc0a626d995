"""Retention per site: a purge only touches the rows of its site, the shared audit chain keeps what any site
still needs, and a design-phase config cannot change the retention an operational one recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import runner.register.clock as register_clock
from runner.config.site import Retention
from runner.core.access import Principal
from runner.register import Register, iso
from runner.register.retention import SitePolicy, purge_preview, record_site_retention, run_purge, site_retentions
from tests.helpers import alert_record, tiny_jpeg

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register` fixture run on SQLite and PostgreSQL

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
OPERATOR = Principal("alice", "operator")
RUNNER = Principal("svc", "runner")
TOWN = SitePolicy("town-hall", "operational", Retention(media_days=30, alert_days=365))
LAB = SitePolicy("lab", "design", Retention(media_days=1, alert_days=1))


@pytest.fixture
def clock(monkeypatch):
    moment = {"now": T0}
    monkeypatch.setattr(register_clock, "utc_now", lambda: moment["now"])
    return moment


def add(reg: Register, site: str, ts: datetime) -> int:
    return reg.add_alert(alert_record(site=site, ts_utc=iso(ts)), tiny_jpeg()).id


def test_a_design_config_with_one_day_deletes_nothing_of_another_site(register, clock):
    town = [add(register, "town-hall", T0 + i * DAY) for i in range(5)]
    register.decide(town[0], "confirmed", by=OPERATOR, follow_up="transmitted_to_police")
    lab = [add(register, "lab", T0 + i * DAY) for i in range(3)]
    record_site_retention(register, TOWN, RUNNER)
    clock["now"] = T0 + 10 * DAY
    retention, refusal = record_site_retention(register, LAB, RUNNER)
    assert refusal is None and retention == LAB.retention
    counts = run_purge(register, retention, RUNNER, site="lab")

    assert counts["alerts"] == 3 and counts["decisions"] == 0 and counts["audit_rows"] == 0
    left = register.alerts()
    assert [a["id"] for a in left] == town and left[0]["decision"] == "confirmed"
    assert not set(lab) & {a["id"] for a in left}
    assert all(register.snapshot_file(a) for a in left)  # the other site's images too
    assert register.verify().ok
    purge = json.loads(register.audit_rows(event="purge")[-1]["details"])
    assert purge["site"] == "lab" and purge["audit_days"] == 365  # audit rows follow the longest retention
    # and the retention each site recorded is its own, not the last one run
    assert site_retentions(register) == {"lab": LAB.retention, "town-hall": TOWN.retention}


def test_a_site_with_alerts_but_no_recorded_retention_keeps_the_legal_cap(register, clock):
    kept = add(register, "unknown-site", T0)
    add(register, "lab", T0)
    clock["now"] = T0 + 10 * DAY
    record_site_retention(register, LAB, RUNNER)
    run_purge(register, LAB.retention, RUNNER, site="lab")
    assert [a["id"] for a in register.alerts()] == [kept]
    assert site_retentions(register)["unknown-site"] == Retention()
    assert register.verify().ok


def test_the_shared_chain_is_purged_only_up_to_the_first_row_another_site_needs(register, clock):
    town_retention = SitePolicy("town-hall", "operational", Retention(media_days=10, alert_days=20))
    record_site_retention(register, town_retention, RUNNER)
    record_site_retention(register, LAB, RUNNER)
    lab_old = add(register, "lab", T0)  # audit row 1
    clock["now"] = T0 + DAY
    town_old = add(register, "town-hall", T0 + DAY)  # audit row 2: still needed while the alert is kept
    for day in range(2, 40, 5):  # the register is in use: its rows go forward day by day
        clock["now"] = T0 + day * DAY
        register.audit("heartbeat", "test")
    run_purge(register, LAB.retention, RUNNER, site="lab")
    assert [a["id"] for a in register.alerts()] == [town_old]
    assert register.get_meta("audit_purge_upto") == "1"  # lab's row 1 went, town-hall's row 2 stays
    assert register.verify().ok
    # town-hall's own purge then removes its alert, and the rows nobody needs any more
    run_purge(register, town_retention.retention, RUNNER, site="town-hall")
    assert register.alerts() == [] and int(register.get_meta("audit_purge_upto")) > 2
    assert register.verify().ok
    assert lab_old not in {a["id"] for a in register.alerts()}


def test_a_design_config_cannot_change_an_operational_retention(register, clock):
    record_site_retention(register, TOWN, RUNNER)
    stored = add(register, "town-hall", T0)
    clock["now"] = T0 + 3 * DAY
    careless = SitePolicy("town-hall", "design", Retention(media_days=1, alert_days=1))
    retention, refusal = record_site_retention(register, careless, RUNNER)

    assert refusal is not None and "\n" not in refusal
    assert "design-phase config cannot change the operational one" in refusal
    assert (retention.media_days, retention.alert_days) == (30, 365)  # the operational one stays in force
    assert site_retentions(register)["town-hall"] == TOWN.retention
    (row,) = register.audit_rows(event="retention_refused")
    details = json.loads(row["details"])
    assert details["site"] == "town-hall" and details["asked"][1] == 1 and details["kept"][1] == 365
    run_purge(register, retention, RUNNER, site="town-hall")
    assert [a["id"] for a in register.alerts()] == [stored]
    # the same retention from a design config is no change; a new operational config replaces it
    assert record_site_retention(register, SitePolicy("town-hall", "design", TOWN.retention), RUNNER)[1] is None
    shorter = SitePolicy("town-hall", "operational", Retention(media_days=7, alert_days=90))
    assert record_site_retention(register, shorter, RUNNER) == (shorter.retention, None)
    assert site_retentions(register)["town-hall"] == shorter.retention


def test_the_preview_counts_per_site_and_writes_nothing(register, clock):
    for i in range(3):
        add(register, "town-hall", T0 + i * DAY)
    add(register, "lab", T0)
    register.decide(1, "rejected", by=OPERATOR, reason="shadow")
    for day in range(10, 41, 10):
        clock["now"] = T0 + day * DAY
        register.audit("heartbeat", "test")
    rows_before = register.audit_rows()
    preview = purge_preview(
        register, {"town-hall": Retention(media_days=30, alert_days=38), "lab": LAB.retention}, clock["now"]
    )
    town, lab = preview["sites"]
    assert (town["alerts"], town["decisions"], town["media_files"]) == (2, 1, 3)
    assert town["oldest"] == iso(T0) and town["newest"] == iso(T0 + DAY)
    assert (lab["alerts"], lab["media_files"]) == (1, 1)
    assert preview["audit"]["alert_days"] == 365 and preview["audit"]["audit_rows"] == 0
    assert preview["clock"] is None
    assert register.audit_rows() == rows_before and len(register.alerts()) == 4
    assert purge_preview(register, {"lab": LAB.retention}, T0 + 400 * DAY)["clock"]  # would be refused
