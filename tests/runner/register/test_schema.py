"""The register's file: WAL and schema, refusals at opening, read-only opening, triggers restored."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runner.core.errors import StoreError
from runner.register import Register, schema
from runner.register.backend import database_errors
from runner.register.schema import SCHEMA_VERSION, write_blocker
from tests.helpers import alert_record, tiny_jpeg
from tests.runner.register.old_registers import older_register

RUN_ON_BOTH_BACKENDS = True  # tests that use the `register_target` fixture run on SQLite and PostgreSQL


def test_wal_mode_and_schema(register, raw):
    if register.target.is_postgres:
        pytest.skip("SQLite's journal mode")
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
    with Register(register.target, register.media_dir) as again:
        with pytest.raises(database_errors(), match="append-only"):
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
    if register.target.is_postgres:
        pytest.skip("SQLite's user_version (PostgreSQL has only the Alembic stamp)")
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


def _tables(register: Register) -> set[str]:
    if register.target.is_postgres:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return {row[0] for row in register.database.query(sql)}


@pytest.mark.parametrize("version", [1, 5])
def test_an_older_register_is_upgraded_in_place_with_its_records(register_target, tmp_path, version):
    alert_id = older_register(register_target, tmp_path / "media", version)
    with Register(register_target, tmp_path / "media") as upgraded:
        assert upgraded.database.query("SELECT version_num FROM alembic_version")[0][0] == f"{SCHEMA_VERSION:04d}"
        if not upgraded.target.is_postgres:
            assert upgraded.database.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        assert [a["id"] for a in upgraded.alerts()] == [alert_id]
        assert upgraded.verify().ok
        assert {"users", "alert_clips", "nodes"} <= _tables(upgraded)


def test_upgrading_step_by_step_gives_the_schema_of_a_new_register(register_target, tmp_path):
    """The Alembic revisions (one per step) build the same tables as a new register's one-transaction schema."""
    with Register(register_target, tmp_path / "media") as new:
        expected = _tables(new)
    older_register(register_target, tmp_path / "media", 1)
    with Register(register_target, tmp_path / "media") as upgraded:
        assert _tables(upgraded) == expected


def test_every_schema_step_has_its_alembic_revision():
    versions = Path(schema.__file__).with_name("migrations") / "versions"
    revisions = {}
    for path in versions.glob("*.py"):
        found = re.search(r'^revision = "(\d+)"', path.read_text(), re.M)
        step = re.search(r"upgrade_step\((\d+)\)", path.read_text())
        assert found and step, f"{path.name}: no revision or no upgrade_step"
        revisions[found.group(1)] = int(step.group(1))
    for step in [1, *schema.MIGRATIONS]:
        assert revisions.get(schema.revision_id(step)) == step, f"schema step {step} has no Alembic revision"


def test_an_older_register_read_only_says_how_to_upgrade(tmp_path):
    db = tmp_path / "vigie.db"
    older_register(str(db), tmp_path / "media", 1)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"schema 1 is older than this Vigie .* upgrades it in place"):
        Register(db, read_only=True)
    assert db.read_bytes() == before


def test_an_up_to_date_register_opens_without_importing_alembic(tmp_path):
    db = tmp_path / "vigie.db"
    Register(db).close()
    code = (
        f"import sys; from runner.register import Register; Register({str(db)!r}).close(); "
        "print('alembic' in sys.modules, 'psycopg' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


def test_a_failed_migration_step_leaves_the_register_at_its_version(tmp_path, monkeypatch):
    db = tmp_path / "vigie.db"
    older_register(str(db), tmp_path / "media", 1)
    monkeypatch.setitem(schema.MIGRATIONS, 2, "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(StoreError, match="schema upgrade failed"):
        Register(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
