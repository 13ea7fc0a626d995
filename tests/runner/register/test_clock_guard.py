"""A wrong clock does not purge: the purge is refused (audited, health `clock`) when now is before the
newest record or jumps more than `max_clock_jump_days` past it, or when the records themselves jump."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import runner.register.clock as register_clock
from runner.config.site import Retention
from runner.core.access import Principal
from runner.register import Register, iso
from runner.register.retention import RETENTION_HEALTH, PurgeRefused, SitePolicy, run_purge, start_retention
from tests.helpers import alert_record, tiny_jpeg

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
OPERATOR = Principal("alice", "operator")


@pytest.fixture
def clock(monkeypatch):
    moment = {"now": T0}
    monkeypatch.setattr(register_clock, "utc_now", lambda: moment["now"])
    return moment


@pytest.fixture
def used_register(register, clock):
    """Ten days of use: alerts, a police transmission, a daily purge row; the clock now at day 10."""
    for day in range(10):
        clock["now"] = T0 + day * DAY
        stored = register.add_alert(alert_record(ts_utc=iso(clock["now"])), tiny_jpeg())
        if day == 0:
            register.decide(stored.id, "confirmed", by=OPERATOR, follow_up="transmitted_to_police")
    clock["now"] = T0 + 10 * DAY
    return register


def snapshot(reg: Register) -> tuple:
    return len(reg.alerts()), [a["decision"] for a in reg.alerts()], len(reg.audit_rows(event="alert_created"))


def health(reg: Register) -> dict:
    return {r["camera_id"]: r for r in reg.health()}.get(RETENTION_HEALTH, {})


def test_a_clock_400_days_ahead_purges_nothing(used_register, clock):
    before = snapshot(used_register)
    clock["now"] = T0 + 410 * DAY
    with pytest.raises(PurgeRefused, match="401.0 days past the newest record") as refused:
        used_register.purge(media_days=30, alert_days=365)
    assert "\n" not in str(refused.value) and "--accept-clock" in str(refused.value)
    assert snapshot(used_register) == before
    (row,) = used_register.audit_rows(event="purge_refused")
    assert "days past the newest record" in json.loads(row["details"])["reason"]
    assert health(used_register)["status"] == "clock"
    assert used_register.verify().ok


def test_a_clock_behind_the_newest_record_purges_nothing(used_register, clock):
    before = snapshot(used_register)
    clock["now"] = T0 - 400 * DAY
    with pytest.raises(PurgeRefused, match="before the newest record"):
        used_register.purge(media_days=1, alert_days=1)
    assert snapshot(used_register) == before and health(used_register)["status"] == "clock"


def test_rows_written_with_the_wrong_clock_do_not_make_it_right(used_register, clock):
    # `vigie run` under a clock 400 days ahead audits its start before its first purge
    clock["now"] = T0 + 410 * DAY
    used_register.audit("runner_started", "runner")
    before = snapshot(used_register)
    with pytest.raises(PurgeRefused, match="the records jump 401.0 days forward"):
        used_register.purge(media_days=30, alert_days=365)
    with pytest.raises(PurgeRefused):  # and again: the refusal rows do not make the jump go away
        used_register.purge(media_days=30, alert_days=365)
    assert snapshot(used_register) == before and used_register.verify().ok
    # the clock put right: the rows from the future still stop the purge until someone accepts the clock
    clock["now"] = T0 + 11 * DAY
    with pytest.raises(PurgeRefused, match="purge refused"):
        used_register.purge(media_days=30, alert_days=365)


def test_accepting_the_clock_is_audited_and_lets_the_purge_run(used_register, clock):
    clock["now"] = T0 + 60 * DAY  # the site was closed for seven weeks: a real gap, not a wrong clock
    with pytest.raises(PurgeRefused):
        used_register.purge(media_days=30, alert_days=365)
    counts = used_register.purge(media_days=30, alert_days=365, by=Principal("dpo", "runner"), accept_clock=True)
    assert counts["media_files"] == 10 and counts["alerts"] == 0
    (accepted,) = used_register.audit_rows(event="clock_accepted")
    assert accepted["actor"] == "dpo"
    assert health(used_register)["status"] == "ok"
    clock["now"] += DAY  # from the accepted moment on, purges run again by themselves
    used_register.purge(media_days=30, alert_days=365)
    assert used_register.verify().ok


def test_a_register_in_daily_use_is_purged(used_register, clock):
    clock["now"] = T0 + 10 * DAY
    counts = used_register.purge(media_days=5, alert_days=7)
    assert counts["alerts"] == 3 and counts["decisions"] == 1 and not health(used_register)
    assert used_register.verify().ok


def test_the_margin_is_configurable(used_register, clock):
    clock["now"] = T0 + 13 * DAY
    retention = Retention(media_days=30, alert_days=365, max_clock_jump_days=2)
    with pytest.raises(PurgeRefused, match="max_clock_jump_days = 2"):
        run_purge(used_register, retention, site="test-site")
    assert run_purge(used_register, Retention(max_clock_jump_days=5), site="test-site")["alerts"] == 0


def test_the_service_reports_the_refusal_and_keeps_running(used_register, clock, caplog):
    before = snapshot(used_register)
    clock["now"] = T0 + 410 * DAY
    scheduler = start_retention(used_register, SitePolicy("test-site", "operational", Retention()))
    scheduler.shutdown(wait=False)
    assert snapshot(used_register) == before
    assert health(used_register)["status"] == "clock" and "purge refused" in health(used_register)["detail"]
    assert "purge refused" in caplog.text and "Traceback" not in caplog.text
