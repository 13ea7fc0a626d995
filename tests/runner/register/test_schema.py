"""The register's file: WAL and schema, refusals at opening, read-only opening, triggers restored."""

from __future__ import annotations

import sqlite3

import pytest

from runner.core.errors import StoreError
from runner.register import Register
from runner.register.schema import SCHEMA_VERSION, write_blocker
from tests.helpers import alert_record, tiny_jpeg


def test_wal_mode_and_schema(register, raw):
    conn = raw(register)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alerts", "decisions", "audit", "control", "health", "meta"} <= tables


def test_missing_register_without_create(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        Register(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_dropped_triggers_are_restored_on_open(register, raw):
    register.audit("test", "alice")
    conn = raw(register)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.close()
    with Register(register.db_path) as again:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw(again).execute("DELETE FROM audit")


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


def test_user_version_is_the_schema_version(register, raw):
    assert raw(register).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sqlite_file_of_another_program_is_left_untouched(tmp_path):
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="an SQLite file but not a Vigie register; left untouched"):
        Register(db)
    assert db.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "vigie.db"
    Register(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=rf"schema {SCHEMA_VERSION + 1} is newer than this Vigie"):
        Register(db)


def test_write_blocker_on_a_writable_folder(tmp_path):
    assert write_blocker(tmp_path / "absent" / "vigie.db") is None


def _version_1_register(db, monkeypatch) -> int:
    """A register as the first schema wrote it (no migration applied), holding one alert; returns its id."""
    from runner.register import schema

    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", {})
        patch.setattr(schema, "SCHEMA_VERSION", 1)
        with Register(db) as old:
            return old.add_alert(alert_record(), tiny_jpeg()).id


def test_an_older_register_is_upgraded_in_place_with_its_records(tmp_path, monkeypatch, raw):
    db = tmp_path / "vigie.db"
    alert_id = _version_1_register(db, monkeypatch)
    with Register(db) as upgraded:
        assert raw(upgraded).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [a["id"] for a in upgraded.alerts()] == [alert_id]
        assert upgraded.verify().ok


def test_an_older_register_read_only_says_how_to_upgrade(tmp_path, monkeypatch):
    db = tmp_path / "vigie.db"
    _version_1_register(db, monkeypatch)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"schema 1 is older than this Vigie .* upgrades it in place"):
        Register(db, read_only=True)
    assert db.read_bytes() == before


def test_a_failed_migration_step_leaves_the_register_at_its_version(tmp_path, monkeypatch, raw):
    from runner.register import schema

    db = tmp_path / "vigie.db"
    _version_1_register(db, monkeypatch)
    monkeypatch.setitem(schema.MIGRATIONS, 2, "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(StoreError):
        Register(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
