"""The shared connection: write transactions, the after-commit action, failed writes and storage health."""

from __future__ import annotations

import pytest

from runner.core.errors import StoreError
from runner.register.database import REGISTER_HEALTH, STORAGE_HEALTH, Database, read_meta


@pytest.fixture
def database(tmp_path):
    db = Database(tmp_path / "vigie.db", read_only=False)
    yield db
    db.close()


def test_transaction_commits_and_runs_the_latest_after_commit_action(database):
    ran = []
    with database.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
        database.run_after_commit(lambda: ran.append("first"))
        database.run_after_commit(lambda: ran.append("second"))  # replaces the first
    assert ran == ["second"]
    assert database.get_meta("k") == "v"
    with database.transaction():
        pass
    assert ran == ["second"]  # an action runs once, for its own transaction only


def test_a_rolled_back_transaction_runs_no_action(database):
    ran = []
    with pytest.raises(ValueError):
        with database.transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
            database.run_after_commit(lambda: ran.append("never"))
            raise ValueError("changed my mind")
    assert ran == [] and database.get_meta("k") is None


def test_a_failed_write_is_a_store_error_and_a_health_entry(database):
    with pytest.raises(StoreError, match=r"^register .*vigie\.db: cannot write \(no such table: nowhere\)$"):
        with database.transaction() as conn:
            conn.execute("INSERT INTO nowhere VALUES (1)")
    assert database.storage_status(REGISTER_HEALTH) == "error"
    database.set_meta("k", "v")  # the next write that succeeds clears it
    assert database.storage_status(REGISTER_HEALTH) == "ok"
    rows = {r["camera_id"]: r["detail"] for r in database.query("SELECT * FROM health")}
    assert rows == {REGISTER_HEALTH: "writing again"}


def test_a_failed_read_is_a_store_error(database):
    with pytest.raises(StoreError, match=r"^register .*: no such table: nowhere$"):
        database.query("SELECT * FROM nowhere")


def test_storage_health_the_register_cannot_take_is_kept_in_memory(database):
    database.conn.execute("DROP TABLE health")
    database.set_storage_health(STORAGE_HEALTH, "error", "disk full")
    assert database.storage_status(STORAGE_HEALTH) == "error"
    assert database.unrecorded_health()[STORAGE_HEALTH]["detail"] == "disk full"


def test_storage_health_survives_reopening(tmp_path, database):
    database.set_storage_health(STORAGE_HEALTH, "error", "disk full")
    again = Database(tmp_path / "vigie.db", read_only=True)
    try:
        assert again.storage_status(STORAGE_HEALTH) == "error"
        assert again.storage_status(REGISTER_HEALTH) == "ok"  # never reported
    finally:
        again.close()


def test_read_meta(database):
    database.set_meta("k", "v")
    with database.transaction() as conn:
        assert read_meta(conn, "k") == "v" and read_meta(conn, "absent") == ""


def test_a_damaged_file_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "vigie.db"
    db.write_bytes(b"not a database at all, only text" * 100)
    before = db.read_bytes()
    with pytest.raises(StoreError, match="damaged, or not a register"):
        Database(db, read_only=False)
    assert db.read_bytes() == before
