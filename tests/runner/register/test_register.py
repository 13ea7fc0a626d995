"""The facade: the names callers import, one clock for every part, and closing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import runner.register as register_package
import runner.register.clock as register_clock
from runner.core.access import Principal
from runner.register import Register, iso
from tests.helpers import alert_record, tiny_jpeg

FROZEN = datetime(2025, 6, 1, 8, 30, tzinfo=UTC)


def test_the_package_exports_what_callers_import():
    assert set(register_package.__all__) >= {
        "Register",
        "StoredAlert",
        "VerifyReport",
        "STORAGE_HEALTH_KEYS",
        "anchor_path_for",
        "audit_hash",
        "GENESIS_HASH",
        "iso",
        "utc_now",
    }
    for name in register_package.__all__:
        assert getattr(register_package, name) is not None


def test_one_clock_reaches_every_time_stamp(tmp_path, monkeypatch):
    monkeypatch.setattr(register_clock, "utc_now", lambda: FROZEN)
    stamp = iso(FROZEN)
    assert stamp == "2025-06-01T08:30:00.000+00:00"
    with Register(tmp_path / "vigie.db") as register:
        stored = register.add_alert(alert_record(), tiny_jpeg())
        register.decide(stored.id, "confirmed", by=Principal("alice", "operator"))
        register.set_paused("*", True, Principal("alice", "operator"))
        register.set_health("cam-01", "ok")
        alert = register.alert(stored.id)
        assert (alert["created_utc"], alert["decided_utc"]) == (stamp, stamp)
        assert {r["ts_utc"] for r in register.audit_rows()} == {stamp}
        assert register.control_state()["*"]["changed_utc"] == stamp
        assert [h["updated_utc"] for h in register.health()] == [stamp]
        assert register.verify().ok


def test_the_parts_share_one_connection(tmp_path):
    with Register(tmp_path / "vigie.db") as register:
        assert register.records.database is register.database is register.audit_chain.database
        assert register.retention.media is register.media is register.records.media
        register.audit("test", "alice", None, {"n": 1})
        assert json.loads(register.audit_rows()[0]["details"]) == {"n": 1}
    lines = register.anchor_path.read_text().splitlines()
    assert len(lines) == 1
